//! Central reaping as PID 1 does it, without being PID 1: this test process becomes a child
//! subreaper (orphans are re-parented to it) and a thread reaps with `waitpid(-1)` the whole
//! time. It is the only test in this binary because `waitpid(-1)` takes every child.

use guest_init::{ControlService, Platform, ReapMode, Reaper};
use paddock_protocol::{
    read_frame, write_frame, BootInfo, ExecRequest, ExitStatus, FrameError, Request, Response,
    ShutdownAction, UnixTime,
};
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoPlatform;

impl Platform for NoPlatform {
    fn boot_info(&self) -> BootInfo {
        BootInfo {
            uptime_ns: 0,
            kernel_release: String::new(),
            init_version: String::new(),
            engine: paddock_protocol::EngineState::Absent,
        }
    }
    fn resume(&self, _: UnixTime, _: &[u8]) -> io::Result<()> {
        Err(io::Error::other("not in this test"))
    }
    fn shutdown(&self, _: ShutdownAction) {}
}

/// Runs one exec through a fresh connection; returns (stdout, Exited status or Error text).
fn exec(service: &Arc<ControlService>, argv: &[&str]) -> (Vec<u8>, Result<ExitStatus, String>) {
    let (mut host, guest) = UnixStream::pair().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let server = {
        let service = Arc::clone(service);
        std::thread::spawn(move || service.serve(guest))
    };
    let request = ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..ExecRequest::default()
    };
    write_frame(&mut host, &Request::Exec(request)).unwrap();
    let mut stdout = Vec::new();
    let result = loop {
        match read_frame::<_, Response>(&mut host) {
            Ok(Response::Started { .. }) => {}
            Ok(Response::Stdout { data }) => stdout.extend(data),
            Ok(Response::Stderr { .. }) => {}
            Ok(Response::Exited { status }) => break Ok(status),
            Ok(Response::Error { message, .. }) => break Err(message),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(FrameError::Closed) => panic!("closed before the end of the exec"),
            Err(e) => panic!("{e}"),
        }
    };
    drop(host);
    server.join().unwrap().unwrap();
    (stdout, result)
}

#[test]
fn central_reaper_serves_execs_and_reaps_orphans() {
    // SAFETY: plain prctl with integer arguments.
    let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(subreaper, 0);
    let reaper = Reaper::new(ReapMode::Central);
    let stop = Arc::new(AtomicBool::new(false));
    let reaping = {
        let (reaper, stop) = (Arc::clone(&reaper), Arc::clone(&stop));
        // Spins without sleeping to make any race between spawning and reaping likely.
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reaper.reap_children();
            }
        })
    };
    let service = Arc::new(ControlService::new(
        Arc::new(NoPlatform),
        Arc::clone(&reaper),
    ));

    assert_eq!(
        exec(&service, &["sh", "-c", "exit 7"]).1,
        Ok(ExitStatus::Code(7))
    );
    assert_eq!(
        exec(&service, &["sh", "-c", "kill -9 $$"]).1,
        Ok(ExitStatus::Signal(9))
    );

    // A failed exec's child is waited for by std inside `spawn`; the reaper must not steal it
    // (std would panic on ECHILD).
    for _ in 0..200 {
        let (_, result) = exec(&service, &["/nonexistent/program"]);
        assert!(result.is_err());
    }

    // The orphaned background sleep is re-parented to us and reaped by the central reaper.
    let (stdout, result) = exec(&service, &["sh", "-c", "sleep 0.2 & echo $!"]);
    assert_eq!(result, Ok(ExitStatus::Code(0)));
    let orphan: u32 = String::from_utf8(stdout).unwrap().trim().parse().unwrap();
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{orphan}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "orphan {orphan} was not reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    stop.store(true, Ordering::Relaxed);
    reaping.join().unwrap();
}
