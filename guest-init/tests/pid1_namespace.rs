//! guest-init's PID-1 parts, run for real as PID 1 of new mount, UTS, network and PID
//! namespaces (`unshare`, needs root; skipped otherwise). The vsock parts are left out: on a
//! build machine vsock would reach the machine's own hypervisor.
//!
//! The outer run re-executes this binary inside the namespaces; the inner run mounts, sets the
//! hostname, brings up loopback, serves execs with the central reaper driven by the signalfd,
//! then shuts down with reboot(2), which in a PID namespace kills its init with SIGHUP.

use guest_init::pid1::mount_plan::{Profile, SYSTEM_EARLY};
use guest_init::pid1::setup_root::{self, RootOutcome};
use guest_init::pid1::{console, hostname, loopback, mounts, power, signals};
use guest_init::{ControlService, Platform, ReapMode, Reaper};
use paddock_protocol::{
    read_frame, write_frame, BootInfo, ExecRequest, ExitStatus, Request, Response, ShutdownAction,
    UnixTime,
};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INNER: &str = "PADDOCK_PID1_NAMESPACE_INNER";

fn main() {
    if std::env::var_os(INNER).is_some() {
        inner();
    } else {
        outer();
    }
}

fn outer() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("pid1_namespace: skipped (needs root for unshare)");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = match Command::new("unshare")
        .args([
            "--mount",
            "--uts",
            "--net",
            "--pid",
            "--fork",
            "--propagation",
            "private",
        ])
        .arg(exe)
        .env(INNER, "1")
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("pid1_namespace: skipped (cannot run unshare: {e})");
            return;
        }
    };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("PID 1 run timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    print!("{output}");
    if output.contains("unshare failed") || status.code() == Some(1) && output.is_empty() {
        println!("pid1_namespace: skipped (namespaces unavailable)");
        return;
    }
    for step in [
        "mounts ok",
        "hostname ok",
        "loopback ok",
        "execs ok",
        "orphan reaped",
        "shutting down",
    ] {
        assert!(
            output.contains(step),
            "inner run did not report {step:?}; status {status:?}"
        );
    }
    // util-linux unshare re-raises the signal that killed its child; reboot(2) in a PID
    // namespace reports init as killed by SIGHUP.
    assert_eq!(status.signal(), Some(libc::SIGHUP), "status {status:?}");
    println!("pid1_namespace: ok");
}

fn say(step: &str) {
    println!("{step}");
    let _ = io::stdout().flush();
}

fn inner() {
    // SAFETY: getpid has no preconditions.
    assert_eq!(unsafe { libc::getpid() }, 1, "not PID 1 of a new namespace");
    let signals = signals::SignalFd::new().unwrap();

    let failures = mounts::mount_all(&SYSTEM_EARLY);
    for failure in &failures {
        println!("mount {} failed: {}", failure.target, failure.error);
    }
    assert!(failures.is_empty());
    // The minimal profile: no root switch, the rest of the system mounts in place.
    assert!(matches!(
        setup_root::mount_profile(&Profile::Minimal),
        RootOutcome::Initramfs
    ));
    check_fs_type("/proc", libc::PROC_SUPER_MAGIC);
    check_fs_type("/sys", libc::SYSFS_MAGIC);
    check_fs_type("/dev", libc::TMPFS_MAGIC); // devtmpfs reports tmpfs
    check_fs_type("/dev/pts", libc::DEVPTS_SUPER_MAGIC);
    check_fs_type("/tmp", libc::TMPFS_MAGIC);
    check_fs_type("/run", libc::TMPFS_MAGIC);
    check_fs_type("/sys/fs/cgroup", libc::CGROUP2_SUPER_MAGIC);
    // Mounting twice is tolerated (EBUSY or a harmless stacked mount).
    assert!(mounts::mount_all(&SYSTEM_EARLY[..1]).is_empty());
    assert_eq!(
        std::fs::read_link("/proc/self").unwrap().to_str(),
        Some("1")
    );
    console::ensure_console_stdio().unwrap();
    say("mounts ok");

    hostname::set_hostname().unwrap();
    let name = Command::new("hostname").output().unwrap().stdout;
    assert_eq!(
        String::from_utf8_lossy(&name).trim(),
        hostname::DEFAULT_HOSTNAME
    );
    say("hostname ok");

    loopback::bring_up_loopback().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    say("loopback ok");

    let reaper = Reaper::new(ReapMode::Central);
    let worker = {
        let reaper = Arc::clone(&reaper);
        std::thread::spawn(move || work_as_pid1(reaper))
    };
    // The main thread is PID 1's signal loop, as in `pid1::run`.
    loop {
        if signals.next().unwrap() == libc::SIGCHLD {
            reaper.reap_children();
        }
        if worker.is_finished() {
            // The worker only ends by panicking (success ends in reboot).
            let _ = worker.join();
            std::process::exit(2);
        }
    }
}

fn work_as_pid1(reaper: Arc<Reaper>) {
    let service = Arc::new(ControlService::new(
        Arc::new(NoPlatform),
        Arc::clone(&reaper),
    ));
    let (out, status) = exec(&service, &["sh", "-c", "echo hi; exit 4"]);
    assert_eq!(
        (out.as_slice(), status),
        (&b"hi\n"[..], ExitStatus::Code(4))
    );
    say("execs ok");

    // The shell exits at once; its background sleep becomes our orphan.
    let (out, status) = exec(&service, &["sh", "-c", "sleep 0.2 & echo $!"]);
    assert_eq!(status, ExitStatus::Code(0));
    let orphan = String::from_utf8(out).unwrap().trim().to_string();
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{orphan}")).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "orphan not reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    say("orphan reaped");

    // A process that ignores nothing: shutdown must terminate it before rebooting.
    let _sleeper = reaper.spawn(Command::new("sleep").arg("100")).unwrap();
    say("shutting down");
    power::shutdown(ShutdownAction::Reboot, &reaper);
}

fn check_fs_type(path: &str, expected: libc::c_long) {
    let c_path = std::ffi::CString::new(path).unwrap();
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer for the duration of the call.
    let ret = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    assert_eq!(ret, 0, "statfs {path}");
    assert_eq!(st.f_type, expected, "filesystem type of {path}");
}

struct NoPlatform;

impl Platform for NoPlatform {
    fn boot_info(&self) -> BootInfo {
        guest_init::sysinfo::boot_info(paddock_protocol::EngineState::Absent)
    }
    fn resume(&self, _: UnixTime, _: &[u8]) -> io::Result<()> {
        Err(io::Error::other("not in this test"))
    }
    fn shutdown(&self, _: ShutdownAction) {}
}

fn exec(service: &Arc<ControlService>, argv: &[&str]) -> (Vec<u8>, ExitStatus) {
    let (mut host, guest) = UnixStream::pair().unwrap();
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
    let status = loop {
        match read_frame::<_, Response>(&mut host).unwrap() {
            Response::Started { .. } | Response::Stderr { .. } => {}
            Response::Stdout { data } => stdout.extend(data),
            Response::Exited { status } => break status,
            other => panic!("unexpected {other:?}"),
        }
    };
    drop(host);
    server.join().unwrap().unwrap();
    (stdout, status)
}
