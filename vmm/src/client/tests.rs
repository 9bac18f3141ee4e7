//! Client tests against the real guest-init control service, behind a stand-in for the VMM's
//! vsock Unix socket (see [`super::fake_guest`]).

use super::fake_guest::{
    fake_vm, serve_vsock_socket, FakeVm, TestPlatform, FAKE_HOST_PORT, GARBLED_PORT,
};
use super::*;
use guest_init::{ControlService, ReapMode, Reaper};
use paddock_protocol::{
    write_frame, ExecRequest, ExitStatus, Response, ShutdownAction, UnixTime, CONTROL_PORT,
    READY_PORT, RESUME_ENTROPY_MIN,
};
use std::io::{self, Cursor, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn control(vm: &FakeVm) -> Connection {
    let conn = connect(&vm.uds, CONTROL_PORT).unwrap();
    conn.set_timeout(Some(Duration::from_secs(20))).unwrap();
    conn
}

fn request(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..ExecRequest::default()
    }
}

#[test]
fn handshake_then_ping() {
    let vm = fake_vm();
    let mut conn = control(&vm);
    assert_eq!(conn.host_port(), Some(FAKE_HOST_PORT));
    for nonce in [1, 2, u64::MAX] {
        let rtt = conn.ping(nonce).unwrap();
        assert!(rtt < Duration::from_secs(5));
    }
}

#[test]
fn a_workspace_mount_reports_the_guests_answer() {
    let vm = fake_vm();
    let mut conn = control(&vm);
    let live = paddock_protocol::WorkspaceMode::Live;
    conn.mount_workspace("/home/me/project", live).unwrap();
    let err = conn.mount_workspace("relative", live).unwrap_err();
    assert!(
        matches!(&err, MountWorkspaceError::Guest(m) if m.contains("relative")),
        "{err}"
    );
    // The test platform has no copy-on-write workspace: the guest's refusal comes through.
    let err = conn.workspace_changes("/home/me/project").unwrap_err();
    assert!(
        matches!(&err, MountWorkspaceError::Guest(m) if m.contains("no workspaces")),
        "{err}"
    );
    conn.ping(1).unwrap();
}

#[test]
fn port_without_listener_is_not_listening_even_after_retries() {
    let vm = fake_vm();
    assert!(matches!(
        connect(&vm.uds, 4000),
        Err(ConnectError::NotListening { port: 4000 })
    ));
    let start = Instant::now();
    let options = ConnectOptions {
        retry_for: Some(Duration::from_millis(200)),
        ..ConnectOptions::default()
    };
    assert!(matches!(
        connect_with(&vm.uds, 4000, &options),
        Err(ConnectError::NotListening { .. })
    ));
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn bad_handshake_answer_is_not_retried() {
    let vm = fake_vm();
    let options = ConnectOptions {
        retry_for: Some(Duration::from_secs(10)),
        ..ConnectOptions::default()
    };
    let start = Instant::now();
    let err = connect_with(&vm.uds, GARBLED_PORT, &options).unwrap_err();
    assert!(
        matches!(&err, ConnectError::BadReply { reply } if reply == "FAILURE"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn missing_socket_fails_at_once_or_waits_for_the_vmm_when_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("later.sock");
    assert!(matches!(
        connect(&uds, CONTROL_PORT),
        Err(ConnectError::Socket { .. })
    ));
    let platform = Arc::new(TestPlatform::default());
    let starter = {
        let uds = uds.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            serve_vsock_socket(&uds, platform);
        })
    };
    let options = ConnectOptions {
        retry_for: Some(Duration::from_secs(10)),
        ..ConnectOptions::default()
    };
    let mut conn = connect_with(&uds, CONTROL_PORT, &options).unwrap();
    conn.ping(9).unwrap();
    starter.join().unwrap();
}

#[test]
fn handshake_times_out_when_the_vmm_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("mute.sock");
    let listener = UnixListener::bind(&uds).unwrap();
    let options = ConnectOptions {
        handshake_timeout: Duration::from_millis(100),
        retry_for: None,
    };
    let err = connect_with(&uds, CONTROL_PORT, &options).unwrap_err();
    assert!(matches!(err, ConnectError::Timeout(_)), "{err}");
    drop(listener);
}

#[test]
fn exec_streams_stdout_and_stderr_separately() {
    let vm = fake_vm();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = control(&vm)
        .exec(
            &request(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            None,
            &mut out,
            &mut err,
        )
        .unwrap();
    assert_eq!(status, ExitStatus::Code(3));
    assert_eq!(out, b"out\n");
    assert_eq!(err, b"err\n");
}

#[test]
fn exec_forwards_large_stdin_from_any_reader() {
    let vm = fake_vm();
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut req = request(&["cat"]);
    req.stdin = true;
    let mut out = Vec::new();
    let status = control(&vm)
        .exec(
            &req,
            Some(Box::new(Cursor::new(input.clone()))),
            &mut out,
            &mut io::sink(),
        )
        .unwrap();
    assert_eq!(status, ExitStatus::Code(0));
    assert!(
        out == input,
        "stdout differs from stdin ({} vs {} bytes)",
        out.len(),
        input.len()
    );
}

#[test]
fn exec_without_stdin_reader_closes_requested_stdin() {
    let vm = fake_vm();
    let mut req = request(&["cat"]);
    req.stdin = true;
    let out = control(&vm).exec_output(&req, b"").unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert!(out.stdout.is_empty());
    let running = control(&vm).start_exec(&req).unwrap();
    // `cat` would wait forever if the client did not close its stdin.
    let status = running
        .wait(None, &mut io::sink(), &mut io::sink())
        .unwrap();
    assert_eq!(status, ExitStatus::Code(0));
}

#[test]
fn stdin_reader_without_stdin_request_is_refused() {
    let vm = fake_vm();
    let running = control(&vm).start_exec(&request(&["true"])).unwrap();
    let err = running
        .wait(
            Some(Box::new(Cursor::new(b"x".to_vec()))),
            &mut io::sink(),
            &mut io::sink(),
        )
        .unwrap_err();
    assert!(matches!(err, ExecError::StdinNotRequested));
}

#[test]
fn signaller_interrupts_a_running_command() {
    let vm = fake_vm();
    let running = control(&vm).start_exec(&request(&["sleep", "30"])).unwrap();
    assert!(running.pid() > 0);
    let signaller = running.signaller();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        signaller.signal(libc::SIGINT).unwrap();
    });
    let status = running
        .wait(None, &mut io::sink(), &mut io::sink())
        .unwrap();
    sender.join().unwrap();
    assert_eq!(status, ExitStatus::Signal(libc::SIGINT));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn exec_output_collects_everything() {
    let vm = fake_vm();
    let mut req = request(&["sh", "-c", "tr a-z A-Z; echo done >&2"]);
    req.stdin = true;
    let out = control(&vm).exec_output(&req, b"hello\n").unwrap();
    assert_eq!(
        out,
        ExecOutput {
            status: ExitStatus::Code(0),
            stdout: b"HELLO\n".to_vec(),
            stderr: b"done\n".to_vec(),
        }
    );
}

#[test]
fn exec_streaming_writes_stdout_through_and_keeps_only_the_start_of_stderr() {
    let vm = fake_vm();
    let script = "cat; head -c 200000 /dev/zero | tr '\\0' e >&2; exit 3";
    let mut req = request(&["sh", "-c", script]);
    req.stdin = true;
    let mut out = Vec::new();
    let done = control(&vm)
        .exec_streaming(&req, b"hello\n", &mut out)
        .unwrap();
    assert_eq!(done.status, ExitStatus::Code(3));
    assert_eq!(out, b"hello\n");
    assert_eq!(done.stderr, vec![b'e'; KEPT_STDERR]);
}

#[test]
fn guest_spawn_failure_is_a_guest_error() {
    let vm = fake_vm();
    let err = control(&vm)
        .start_exec(&request(&["/nonexistent/tool"]))
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::Guest { kind: paddock_protocol::ErrorKind::CommandNotFound, message } if message.contains("/nonexistent/tool")),
        "{err}"
    );
}

#[test]
fn output_writer_failure_stops_the_exec() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let vm = fake_vm();
    let err = control(&vm)
        .exec(&request(&["yes"]), None, &mut Broken, &mut io::sink())
        .unwrap_err();
    assert!(matches!(err, ExecError::Output(_)), "{err}");
}

#[test]
fn resume_returns_boot_info_and_reaches_the_platform() {
    let vm = fake_vm();
    let mut conn = control(&vm);
    let now = UnixTime::now();
    let entropy = vec![0xAB; 64];
    let info = conn.resume(now, &entropy).unwrap();
    assert_eq!(info.kernel_release, "test-kernel");
    assert_eq!(*vm.platform.resumes.lock().unwrap(), vec![(now, entropy)]);
    let err = conn.resume(now, &[1; RESUME_ENTROPY_MIN - 1]).unwrap_err();
    assert!(matches!(err, ResumeError::Guest(_)), "{err}");
    conn.ping(1).unwrap();
}

#[test]
fn shutdown_is_acknowledged() {
    let vm = fake_vm();
    control(&vm).shutdown(ShutdownAction::Reboot).unwrap();
    let start = Instant::now();
    while vm.platform.shutdowns.lock().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        *vm.platform.shutdowns.lock().unwrap(),
        vec![ShutdownAction::Reboot]
    );
}

#[test]
fn the_announcement_link_carries_resume_and_is_announced_again_when_it_breaks() {
    use guest_init::pid1::readiness::{announce_once, keep_announcing, LinkEnd};
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm.sock");
    let ready = ReadyListener::bind(&uds, READY_PORT).unwrap();
    assert_eq!(ready.path(), dir.path().join("vm.sock_1025"));
    let path = ready.path().to_path_buf();
    let platform = Arc::new(TestPlatform::default());
    let service = Arc::new(ControlService::new(
        platform.clone(),
        Reaper::new(ReapMode::PerChild),
    ));
    let before = Instant::now();
    let guest_service = service.clone();
    let guest_path = path.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        keep_announcing(|| UnixStream::connect(&guest_path), &guest_service)
    });

    // Boot: the announcement, then requests on the same connection.
    let mut announced = ready.wait(Duration::from_secs(10)).unwrap();
    assert!(announced.connected_at >= before + Duration::from_millis(50));
    assert_eq!(announced.boot.kernel_release, "test-kernel");
    announced.link.ping(5).unwrap();

    // A broken link (here: garbage where a frame belongs) is announced again at once, and the
    // new link carries the resume.
    announced.link.stream.write_all(&[0xff; 64]).unwrap();
    let mut again = ready.wait(Duration::from_secs(10)).unwrap();
    let entropy = vec![3u8; RESUME_ENTROPY_MIN];
    again
        .link
        .resume(UnixTime { secs: 9, nanos: 1 }, &entropy)
        .unwrap();
    assert_eq!(
        platform.resumes.lock().unwrap().as_slice(),
        &[(UnixTime { secs: 9, nanos: 1 }, entropy)]
    );

    // How single announcements end.
    let refused = announce_once(
        || Err::<UnixStream, _>(io::Error::from(io::ErrorKind::ConnectionRefused)),
        &service,
    );
    assert_eq!(refused, LinkEnd::NotConnected);
    let (host, guest) = UnixStream::pair().unwrap();
    drop(host);
    assert_eq!(announce_once(|| Ok(guest), &service), LinkEnd::NotConnected);
    let (host, guest) = UnixStream::pair().unwrap();
    let closer = std::thread::spawn(move || {
        let mut host = host;
        let _ = read_frame_response(&mut host);
        host.shutdown(std::net::Shutdown::Both).unwrap();
    });
    assert_eq!(announce_once(|| Ok(guest), &service), LinkEnd::ClosedByHost);
    closer.join().unwrap();
}

fn read_frame_response(stream: &mut UnixStream) -> Response {
    paddock_protocol::read_frame(stream).unwrap()
}

#[test]
fn ready_listener_times_out_rejects_other_messages_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vm.sock");
    // A stale socket file from an earlier run is replaced.
    let stale = UnixListener::bind(dir.path().join("vm.sock_1025")).unwrap();
    drop(stale);
    let ready = ReadyListener::bind(&uds, READY_PORT).unwrap();

    let start = Instant::now();
    assert!(matches!(
        ready.wait(Duration::from_millis(100)),
        Err(ReadyError::Timeout(_))
    ));
    assert!(start.elapsed() >= Duration::from_millis(100));

    let mut stream = UnixStream::connect(ready.path()).unwrap();
    write_frame(&mut stream, &Response::Pong { nonce: 1 }).unwrap();
    assert!(matches!(
        ready.wait(Duration::from_secs(5)),
        Err(ReadyError::Unexpected("Pong"))
    ));

    let mut stream = UnixStream::connect(ready.path()).unwrap();
    stream.write_all(b"not a frame at all").unwrap();
    assert!(matches!(
        ready.wait(Duration::from_secs(5)),
        Err(ReadyError::Frame(_))
    ));

    // Connected but silent: the remaining time bounds the read.
    let _silent = UnixStream::connect(ready.path()).unwrap();
    assert!(matches!(
        ready.wait(Duration::from_millis(100)),
        Err(ReadyError::Timeout(_))
    ));

    let path = ready.path().to_path_buf();
    drop(ready);
    assert!(!path.exists());

    std::fs::write(&path, b"regular file").unwrap();
    assert!(matches!(
        ReadyListener::bind(&uds, READY_PORT),
        Err(ReadyError::PathInUse { .. })
    ));
}

mod pty;
