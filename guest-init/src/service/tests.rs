//! The control service tested in-process over a Unix socketpair, running real commands.

use super::*;
use crate::reaper::ReapMode;
use paddock_protocol::workspace::{ChangeKind, ChangedNode, WorkspaceChange};
use paddock_protocol::{ExecRequest, ExitStatus, MAX_STREAM_CHUNK};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Resume(UnixTime, Vec<u8>),
    Shutdown(ShutdownAction),
    MountWorkspace(String, paddock_protocol::WorkspaceMode),
}

#[derive(Default)]
struct RecordingPlatform {
    calls: Mutex<Vec<Call>>,
}

impl Platform for RecordingPlatform {
    fn boot_info(&self) -> BootInfo {
        BootInfo {
            uptime_ns: 42,
            kernel_release: "test".into(),
            init_version: "test".into(),
            engine: paddock_protocol::EngineState::Absent,
        }
    }

    fn resume(&self, wall_clock: UnixTime, entropy: &[u8]) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Resume(wall_clock, entropy.to_vec()));
        Ok(())
    }

    fn shutdown(&self, action: ShutdownAction) {
        self.calls.lock().unwrap().push(Call::Shutdown(action));
    }

    fn mount_workspace(
        &self,
        path: &str,
        mode: paddock_protocol::WorkspaceMode,
    ) -> Result<crate::workspace::Mounted, crate::workspace::MountError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::MountWorkspace(path.to_string(), mode));
        match path {
            "/unreachable" => Err(crate::workspace::MountError::Host(
                io::Error::from_raw_os_error(libc::ECONNRESET),
            )),
            "/carried" => Ok(crate::workspace::Mounted::Carried),
            _ => Ok(crate::workspace::Mounted::Fresh),
        }
    }

    fn workspace_changes(
        &self,
        path: &str,
    ) -> Result<Vec<WorkspaceChange>, crate::workspace::ChangesError> {
        match path {
            "/many" => Ok((0..3000u32)
                .map(|i| WorkspaceChange {
                    path: vec![b'a'; 200].into_iter().chain(i.to_le_bytes()).collect(),
                    kind: ChangeKind::Added,
                    node: ChangedNode::File {
                        mode: 0o644,
                        size: 1,
                    },
                })
                .collect()),
            "/none" => Ok(Vec::new()),
            other => Err(crate::workspace::ChangesError::Live(other.to_string())),
        }
    }
}

struct Harness {
    host: UnixStream,
    platform: Arc<RecordingPlatform>,
    service: JoinHandle<Result<(), ServiceError>>,
}

fn start() -> Harness {
    let (host, guest) = UnixStream::pair().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let platform = Arc::new(RecordingPlatform::default());
    let service = ControlService::new(platform.clone(), Reaper::new(ReapMode::PerChild));
    let service = std::thread::spawn(move || service.serve(guest));
    Harness {
        host,
        platform,
        service,
    }
}

impl Harness {
    fn send(&mut self, request: &Request) {
        write_frame(&mut self.host, request).unwrap();
    }

    fn recv(&mut self) -> Response {
        read_frame(&mut self.host).unwrap()
    }

    fn finish(self) -> Result<(), ServiceError> {
        drop(self.host);
        self.service.join().unwrap()
    }
}

/// Everything an exec session produced.
#[derive(Debug, Default)]
struct Outcome {
    pid: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<ExitStatus>,
    largest_chunk: usize,
}

fn exec_request(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..ExecRequest::default()
    }
}

/// Sends `request` and waits for `Started`.
fn start_exec(h: &mut Harness, request: ExecRequest) -> u32 {
    h.send(&Request::Exec(request));
    match h.recv() {
        Response::Started { pid } => pid,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Reads output frames until `Exited`, then checks the guest closed the connection.
fn collect(h: &mut Harness, pid: u32) -> Outcome {
    let mut out = Outcome {
        pid,
        ..Outcome::default()
    };
    loop {
        match h.recv() {
            Response::Stdout { data } => {
                out.largest_chunk = out.largest_chunk.max(data.len());
                out.stdout.extend(data);
            }
            Response::Stderr { data } => {
                out.largest_chunk = out.largest_chunk.max(data.len());
                out.stderr.extend(data);
            }
            Response::Exited { status } => {
                out.status = Some(status);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let after = read_frame::<_, Response>(&mut h.host);
    assert!(
        matches!(after, Err(FrameError::Closed)),
        "guest closes after Exited: {after:?}"
    );
    out
}

fn run(request: ExecRequest) -> Outcome {
    let mut h = start();
    let pid = start_exec(&mut h, request);
    let out = collect(&mut h, pid);
    h.finish().unwrap();
    out
}

/// True once `pid` no longer exists or is a zombie waiting for its parent.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn ping_answers_pong_repeatedly_then_closes_cleanly() {
    let mut h = start();
    for nonce in [1, u64::MAX] {
        h.send(&Request::Ping { nonce });
        assert_eq!(h.recv(), Response::Pong { nonce });
    }
    h.finish().unwrap();
}

#[test]
fn echo_streams_stdout_and_exit_code() {
    let out = run(exec_request(&["echo", "hello", "world"]));
    assert!(out.pid > 0);
    assert_eq!(out.stdout, b"hello world\n");
    assert!(out.stderr.is_empty());
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
}

#[test]
fn cat_echoes_streamed_stdin_until_stdin_close() {
    let mut h = start();
    let mut request = exec_request(&["cat"]);
    request.stdin = true;
    let pid = start_exec(&mut h, request);
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let data = format!("line {i} {}\n", "x".repeat(i as usize * 100)).into_bytes();
        expected.extend_from_slice(&data);
        h.send(&Request::Stdin { data });
    }
    h.send(&Request::StdinClose);
    let out = collect(&mut h, pid);
    assert_eq!(out.stdout, expected);
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
    h.finish().unwrap();
}

#[test]
fn exit_code_is_reported() {
    assert_eq!(
        run(exec_request(&["sh", "-c", "exit 7"])).status,
        Some(ExitStatus::Code(7))
    );
}

#[test]
fn death_by_signal_is_reported() {
    let out = run(exec_request(&["sh", "-c", "kill -9 $$"]));
    assert_eq!(out.status, Some(ExitStatus::Signal(9)));
}

#[test]
fn big_stdout_arrives_complete_in_bounded_chunks() {
    let out = run(exec_request(&["seq", "1", "400000"]));
    let expected: String = (1..=400_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected.as_bytes());
    assert!(out.largest_chunk <= MAX_STREAM_CHUNK);
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
}

#[test]
fn stdout_and_stderr_stay_separate() {
    let out = run(exec_request(&[
        "sh",
        "-c",
        "echo out; echo err >&2; echo out2",
    ]));
    assert_eq!(out.stdout, b"out\nout2\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn env_defaults_merge_with_request_and_cwd_applies() {
    let mut request = exec_request(&["sh", "-c", "echo \"$PATH|$HOME|$FOO\"; pwd"]);
    request.env = vec![
        ("FOO".into(), "bar baz".into()),
        ("HOME".into(), "/home/agent".into()),
    ];
    request.cwd = Some("/tmp".into());
    let out = run(request);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/home/agent|bar baz\n/tmp\n"
    );
}

#[test]
fn signal_request_terminates_sleep() {
    let mut h = start();
    let pid = start_exec(&mut h, exec_request(&["sleep", "30"]));
    let start = Instant::now();
    h.send(&Request::Signal {
        signal: libc::SIGTERM,
    });
    let out = collect(&mut h, pid);
    assert_eq!(out.status, Some(ExitStatus::Signal(libc::SIGTERM)));
    assert!(start.elapsed() < Duration::from_secs(5));
    h.finish().unwrap();
}

#[test]
fn signal_reaches_the_whole_process_group() {
    let mut h = start();
    // The shell prints its background child's pid, then waits for it.
    let mut request = exec_request(&["sh", "-c", "sleep 30 & echo $!; wait"]);
    request.stdin = false;
    let pid = start_exec(&mut h, request);
    let Response::Stdout { data } = h.recv() else {
        panic!("expected the background pid")
    };
    let background: u32 = String::from_utf8(data).unwrap().trim().parse().unwrap();
    h.send(&Request::Signal {
        signal: libc::SIGTERM,
    });
    let out = collect(&mut h, pid);
    assert_eq!(out.status, Some(ExitStatus::Signal(libc::SIGTERM)));
    assert!(
        wait_gone(background, Duration::from_secs(5)),
        "background sleep survived"
    );
    h.finish().unwrap();
}

#[test]
fn background_grandchild_holding_stdout_does_not_hang_the_exec() {
    let start = Instant::now();
    let out = run(exec_request(&["sh", "-c", "sleep 20 & echo $!"]));
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let background: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild was left running (only its output was cut off); clean it up.
    assert!(!process_gone(background));
    // SAFETY: plain syscall on a process this test started.
    unsafe { libc::kill(i32::try_from(background).unwrap(), libc::SIGKILL) };
}

#[test]
fn unread_stdin_does_not_deadlock_when_the_command_exits() {
    let mut h = start();
    let mut request = exec_request(&["sh", "-c", "exit 3"]);
    request.stdin = true;
    let pid = start_exec(&mut h, request);
    let mut writer = h.host.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        for _ in 0..64 {
            let chunk = Request::Stdin {
                data: vec![b'z'; MAX_STREAM_CHUNK],
            };
            if write_frame(&mut writer, &chunk).is_err() {
                break; // the guest closed the connection after Exited
            }
        }
    });
    let out = collect(&mut h, pid);
    assert_eq!(out.status, Some(ExitStatus::Code(3)));
    feeder.join().unwrap();
    h.finish().unwrap();
}

#[test]
fn host_hangup_sends_sighup_to_the_command() {
    let mut h = start();
    let pid = start_exec(&mut h, exec_request(&["sleep", "30"]));
    h.finish().unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "sleep survived the hangup"
    );
}

#[test]
fn spawn_failures_are_reported_as_errors() {
    for argv in [vec!["/nonexistent/program"], vec![]] {
        let mut h = start();
        h.send(&Request::Exec(exec_request(&argv)));
        match h.recv() {
            Response::Error { message, .. } => assert!(!message.is_empty()),
            other => panic!("expected Error, got {other:?}"),
        }
        h.finish().unwrap();
    }
    let mut h = start();
    let mut request = exec_request(&["true"]);
    request.cwd = Some("/nonexistent/dir".into());
    h.send(&Request::Exec(request));
    assert!(matches!(h.recv(), Response::Error { .. }));
    let mut request = exec_request(&["true"]);
    request.env = vec![("A=B".into(), "c".into())];
    let mut h = start();
    h.send(&Request::Exec(request));
    assert!(matches!(h.recv(), Response::Error { message, .. } if message.contains("A=B")));
}

#[test]
fn session_requests_without_an_exec_are_errors() {
    let mut h = start();
    h.send(&Request::Signal { signal: 9 });
    assert!(matches!(h.recv(), Response::Error { .. }));
    h.send(&Request::Ping { nonce: 3 });
    assert_eq!(h.recv(), Response::Pong { nonce: 3 });
    h.finish().unwrap();
}

#[test]
fn resume_validates_then_calls_the_platform() {
    let mut h = start();
    let time = UnixTime {
        secs: 1_750_000_000,
        nanos: 5,
    };
    h.send(&Request::Resume {
        wall_clock: time,
        entropy: vec![1; RESUME_ENTROPY_MIN - 1],
    });
    assert!(matches!(h.recv(), Response::Error { .. }));
    h.send(&Request::Resume {
        wall_clock: UnixTime {
            secs: 1,
            nanos: 1_000_000_000,
        },
        entropy: vec![1; 64],
    });
    assert!(matches!(h.recv(), Response::Error { .. }));
    assert!(h.platform.calls.lock().unwrap().is_empty());

    h.send(&Request::Resume {
        wall_clock: time,
        entropy: vec![9; 64],
    });
    assert!(matches!(h.recv(), Response::Resumed(info) if info.uptime_ns == 42));
    assert_eq!(
        *h.platform.calls.lock().unwrap(),
        vec![Call::Resume(time, vec![9; 64])]
    );
    h.finish().unwrap();
}

#[test]
fn shutdown_is_acknowledged_before_it_happens() {
    let mut h = start();
    h.send(&Request::Shutdown {
        action: ShutdownAction::PowerOff,
    });
    assert_eq!(h.recv(), Response::ShuttingDown);
    let platform = h.platform.clone();
    h.finish().unwrap();
    assert_eq!(
        *platform.calls.lock().unwrap(),
        vec![Call::Shutdown(ShutdownAction::PowerOff)]
    );
}

#[test]
fn a_workspace_mount_is_answered_with_its_outcome_and_the_connection_stays() {
    let mut h = start();
    h.send(&Request::MountWorkspace {
        path: "/home/me/project".into(),
        mode: paddock_protocol::WorkspaceMode::Cow,
    });
    assert_eq!(h.recv(), Response::WorkspaceMounted { carried: false });
    h.send(&Request::MountWorkspace {
        path: "/carried".into(),
        mode: paddock_protocol::WorkspaceMode::Live,
    });
    assert_eq!(h.recv(), Response::WorkspaceMounted { carried: true });
    h.send(&Request::MountWorkspace {
        path: "/unreachable".into(),
        mode: paddock_protocol::WorkspaceMode::Live,
    });
    assert!(matches!(
        h.recv(),
        Response::Error { kind: ErrorKind::Workspace, message } if message.contains("workspace server")
    ));
    h.send(&Request::Ping { nonce: 5 });
    assert_eq!(h.recv(), Response::Pong { nonce: 5 });
    let platform = h.platform.clone();
    h.finish().unwrap();
    assert_eq!(
        *platform.calls.lock().unwrap(),
        vec![
            Call::MountWorkspace(
                "/home/me/project".into(),
                paddock_protocol::WorkspaceMode::Cow
            ),
            Call::MountWorkspace("/carried".into(), paddock_protocol::WorkspaceMode::Live),
            Call::MountWorkspace("/unreachable".into(), paddock_protocol::WorkspaceMode::Live)
        ]
    );
}

#[test]
fn workspace_changes_come_in_bounded_batches_and_end_once() {
    let mut h = start();
    h.send(&Request::WorkspaceChanges {
        path: "/many".into(),
    });
    let mut got = 0;
    let mut batches = 0;
    loop {
        match h.recv() {
            Response::WorkspaceChanges { changes, more } => {
                let bytes: usize = changes.iter().map(|c| c.path.len()).sum();
                assert!(bytes <= paddock_protocol::workspace::MAX_CHANGES_BYTES);
                got += changes.len();
                batches += 1;
                if !more {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, 3000);
    assert!(batches > 1);
    h.send(&Request::WorkspaceChanges {
        path: "/none".into(),
    });
    assert_eq!(
        h.recv(),
        Response::WorkspaceChanges {
            changes: Vec::new(),
            more: false
        }
    );
    h.send(&Request::WorkspaceChanges {
        path: "/live".into(),
    });
    assert!(matches!(
        h.recv(),
        Response::Error { kind: ErrorKind::Workspace, message } if message.contains("live")
    ));
    h.finish().unwrap();
}

#[test]
fn garbage_gets_an_error_and_a_hangup() {
    let mut h = start();
    h.host.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(matches!(h.recv(), Response::Error { message, .. } if message.contains("magic")));
    assert!(matches!(
        h.finish(),
        Err(ServiceError::Frame(FrameError::BadMagic(_)))
    ));
}

#[test]
fn stdin_held_by_a_non_reading_descendant_does_not_wedge_the_connection() {
    let mut h = start();
    // Background jobs get /dev/null as stdin unless redirected from another fd, hence fd 3.
    // The shell lingers so the stdin queue fills up before the session ends.
    let script = "exec 3<&0; sleep 10 <&3 >/dev/null 2>&1 & echo $!; sleep 0.5";
    let mut request = exec_request(&["sh", "-c", script]);
    request.stdin = true;
    let pid = start_exec(&mut h, request);
    let mut writer = h.host.try_clone().unwrap();
    // More than the stdin queue plus a pipe buffer can hold.
    let feeder = std::thread::spawn(move || {
        for _ in 0..40 {
            let chunk = Request::Stdin {
                data: vec![b'z'; MAX_STREAM_CHUNK],
            };
            if write_frame(&mut writer, &chunk).is_err() {
                break;
            }
        }
    });
    let out = collect(&mut h, pid);
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
    let sleeper: i32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    feeder.join().unwrap();
    drop(h.host);
    let start = Instant::now();
    while !h.service.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "connection thread is stuck"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.service.join().unwrap().unwrap();
    // SAFETY: plain syscall on a process this test started.
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
}
