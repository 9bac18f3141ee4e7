//! Terminal sessions tested in-process over Unix socketpairs, on real pseudo-terminals.

use crate::reaper::{ReapMode, Reaper};
use crate::service::{ControlService, Platform};
use paddock_protocol::{
    read_frame, write_frame, BootInfo, EngineState, ExecRequest, ExitStatus, FrameError, PtyConfig,
    Request, Response, ShutdownAction, UnixTime, WindowSize,
};
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct NoPlatform;

impl Platform for NoPlatform {
    fn boot_info(&self) -> BootInfo {
        BootInfo {
            uptime_ns: 0,
            kernel_release: "test".into(),
            init_version: "test".into(),
            engine: EngineState::Absent,
        }
    }

    fn resume(&self, _: UnixTime, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn shutdown(&self, _: ShutdownAction) {}
}

fn service() -> Arc<ControlService> {
    Arc::new(ControlService::new(
        Arc::new(NoPlatform),
        Reaper::new(ReapMode::PerChild),
    ))
}

/// The host end of one connection to the service.
struct Host {
    stream: UnixStream,
    served: JoinHandle<()>,
    /// Terminal output received so far.
    output: Vec<u8>,
}

impl Host {
    fn connect(service: &Arc<ControlService>) -> Self {
        let (stream, guest) = UnixStream::pair().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let service = Arc::clone(service);
        let served = std::thread::spawn(move || {
            let _ = service.serve(guest);
        });
        Self {
            stream,
            served,
            output: Vec::new(),
        }
    }

    fn send(&mut self, request: &Request) {
        write_frame(&mut self.stream, request).unwrap();
    }

    fn input(&mut self, bytes: &[u8]) {
        self.send(&Request::Stdin {
            data: bytes.to_vec(),
        });
    }

    /// The next message that is not terminal output (output is collected).
    fn next(&mut self) -> Response {
        loop {
            match read_frame(&mut self.stream).unwrap() {
                Response::Stdout { data } => self.output.extend(data),
                other => return other,
            }
        }
    }

    /// Collects output until it contains `needle`.
    fn expect_output(&mut self, needle: &str) {
        let start = Instant::now();
        while !String::from_utf8_lossy(&self.output).contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {needle:?} in {:?}",
                self.text()
            );
            match read_frame(&mut self.stream).unwrap() {
                Response::Stdout { data } => self.output.extend(data),
                other => panic!(
                    "expected output {needle:?}, got {other:?} after {:?}",
                    self.text()
                ),
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Waits for `Exited`, then for the guest closing the connection.
    fn exit_status(mut self) -> (ExitStatus, String) {
        let status = match self.next() {
            Response::Exited { status } => status,
            other => panic!("expected Exited, got {other:?} after {:?}", self.text()),
        };
        self.expect_closed();
        (status, self.text())
    }

    fn expect_closed(&mut self) {
        match read_frame::<_, Response>(&mut self.stream) {
            Err(FrameError::Closed) => {}
            other => panic!("expected the guest to close, got {other:?}"),
        }
    }

    fn finish(self) {
        drop(self.stream);
        self.served.join().unwrap();
    }
}

fn pty_request(argv: &[&str], size: WindowSize) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: true,
        tty: Some(PtyConfig::new(size, "xterm-256color").unwrap()),
        ..ExecRequest::default()
    }
}

/// Starts a terminal exec; returns the connection and the command's pid.
fn start(service: &Arc<ControlService>, argv: &[&str], size: WindowSize) -> (Host, u32) {
    let mut host = Host::connect(service);
    host.send(&Request::Exec(pty_request(argv, size)));
    match host.next() {
        Response::Started { pid } => (host, pid),
        other => panic!("expected Started, got {other:?}"),
    }
}

fn attach(service: &Arc<ControlService>, pid: Option<u32>, size: WindowSize) -> (Host, Response) {
    let mut host = Host::connect(service);
    host.send(&Request::Attach { pid, size });
    let answer = host.next();
    (host, answer)
}

/// Reads until `Detached`, then checks the guest closed the connection.
fn detach(mut host: Host) -> u32 {
    host.send(&Request::Detach);
    let pid = match host.next() {
        Response::Detached { pid } => pid,
        other => panic!("expected Detached, got {other:?}"),
    };
    host.expect_closed();
    host.finish();
    pid
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn wait_gone(pid: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

const SIZE: WindowSize = WindowSize {
    rows: 33,
    cols: 101,
};

#[test]
fn the_terminal_has_the_requested_size_term_and_is_controlling() {
    let service = service();
    let (host, _) = start(
        &service,
        &["sh", "-c", "stty size; echo \"TERM=$TERM\"; tty"],
        SIZE,
    );
    let (status, text) = host.exit_status();
    assert_eq!(status, ExitStatus::Code(0), "{text}");
    assert!(text.contains("33 101\r\n"), "{text:?}");
    assert!(text.contains("TERM=xterm-256color\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
}

#[test]
fn typed_input_is_echoed_and_ctrl_d_ends_the_input() {
    let service = service();
    let (mut host, _) = start(&service, &["cat"], SIZE);
    host.input(b"hello\r");
    // The terminal echoes the line, then cat prints it back.
    host.expect_output("hello\r\nhello\r\n");
    host.input(b"\x04");
    let (status, _) = host.exit_status();
    assert_eq!(status, ExitStatus::Code(0));
}

#[test]
fn ctrl_c_interrupts_the_foreground_command() {
    let service = service();
    let (mut host, pid) = start(&service, &["sleep", "30"], SIZE);
    std::thread::sleep(Duration::from_millis(100));
    host.input(b"\x03");
    let (status, _) = host.exit_status();
    assert_eq!(status, ExitStatus::Signal(libc::SIGINT));
    assert!(wait_gone(pid));
}

#[test]
fn resize_changes_the_size_the_command_sees() {
    let service = service();
    let script = "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done";
    let (mut host, _) = start(&service, &["sh", "-c", script], SIZE);
    host.expect_output("ready");
    host.send(&Request::Resize {
        size: WindowSize {
            rows: 40,
            cols: 120,
        },
    });
    host.expect_output("40 120");
    host.send(&Request::Signal {
        signal: libc::SIGKILL,
    });
    let (status, _) = host.exit_status();
    assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn detach_keeps_the_command_and_attach_replays_what_it_printed() {
    let service = service();
    let script = "read a; sleep 0.3; echo \"late $a\"; read b; echo \"second $b\"";
    let (mut host, pid) = start(&service, &["sh", "-c", script], SIZE);
    host.input(b"one\r");
    assert_eq!(detach(host), pid);
    std::thread::sleep(Duration::from_millis(600));
    assert!(alive(pid), "the detached command was stopped");

    let (mut host, answer) = attach(&service, None, WindowSize { rows: 20, cols: 70 });
    assert_eq!(answer, Response::Attached { pid });
    host.expect_output("late one");
    host.input(b"two\r");
    host.expect_output("second two");
    let (status, _) = host.exit_status();
    assert_eq!(status, ExitStatus::Code(0));
}

#[test]
fn attach_signals_a_redraw_even_when_the_size_is_unchanged() {
    let service = service();
    let script = "trap 'echo winch; stty size' WINCH; echo ready; while :; do sleep 0.05; done";
    let (mut host, pid) = start(&service, &["sh", "-c", script], SIZE);
    host.expect_output("ready");
    detach(host);
    let (mut host, answer) = attach(&service, Some(pid), SIZE);
    assert_eq!(answer, Response::Attached { pid });
    host.expect_output("winch");
    host.expect_output("33 101");
    host.send(&Request::Signal {
        signal: libc::SIGKILL,
    });
    assert_eq!(host.exit_status().0, ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn the_most_recently_detached_session_is_attached() {
    let service = service();
    let (first, first_pid) = start(&service, &["sh", "-c", "echo first; sleep 30"], SIZE);
    detach(first);
    // Output before the detach goes to the first connection: prove the attachment by a
    // round trip through it instead.
    let script = "read a; echo \"second $a\"; sleep 30";
    let (second, second_pid) = start(&service, &["sh", "-c", script], SIZE);
    detach(second);
    let (mut host, answer) = attach(&service, None, SIZE);
    assert_eq!(answer, Response::Attached { pid: second_pid });
    host.input(b"x\r");
    host.expect_output("second x");
    host.send(&Request::Signal {
        signal: libc::SIGKILL,
    });
    assert_eq!(host.exit_status().0, ExitStatus::Signal(libc::SIGKILL));
    let (mut host, answer) = attach(&service, None, SIZE);
    assert_eq!(answer, Response::Attached { pid: first_pid });
    host.send(&Request::Signal {
        signal: libc::SIGKILL,
    });
    assert_eq!(host.exit_status().0, ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn attach_errors_without_a_detached_session() {
    let service = service();
    let (answer_host, answer) = attach(&service, None, SIZE);
    assert!(
        matches!(answer, Response::Error { ref message, .. } if message.contains("no detached"))
    );
    answer_host.finish();
    let (running, pid) = start(&service, &["sleep", "30"], SIZE);
    let (other, answer) = attach(&service, Some(pid), SIZE);
    assert!(matches!(answer, Response::Error { ref message, .. } if message.contains("attached")));
    other.finish();
    let (other, answer) = attach(&service, Some(u32::MAX), SIZE);
    assert!(matches!(answer, Response::Error { .. }));
    other.finish();
    running.finish();
    assert!(wait_gone(pid), "hung up");
}

#[test]
fn a_connection_gone_without_detaching_hangs_the_session_up() {
    let service = service();
    let (host, pid) = start(&service, &["sh", "-c", "sleep 30; echo not reached"], SIZE);
    host.finish();
    assert!(wait_gone(pid), "the command survived the hangup");
    let (host, answer) = attach(&service, None, SIZE);
    assert!(matches!(answer, Response::Error { .. }), "{answer:?}");
    host.finish();
}

#[test]
fn a_session_that_ends_while_detached_is_gone() {
    let service = service();
    let (host, pid) = start(&service, &["sh", "-c", "sleep 0.2"], SIZE);
    detach(host);
    assert!(wait_gone(pid));
    std::thread::sleep(Duration::from_millis(300));
    let (host, answer) = attach(&service, None, SIZE);
    assert!(matches!(answer, Response::Error { .. }), "{answer:?}");
    host.finish();
}

#[test]
fn spawn_failures_and_bad_requests_are_errors() {
    let service = service();
    let mut host = Host::connect(&service);
    host.send(&Request::Exec(pty_request(&["/nonexistent/program"], SIZE)));
    assert!(
        matches!(host.next(), Response::Error { ref message, .. } if message.contains("os error 2")),
    );
    host.finish();
    let mut host = Host::connect(&service);
    let mut request = pty_request(&["true"], SIZE);
    request.env = vec![("A=B".into(), "c".into())];
    host.send(&Request::Exec(request));
    assert!(matches!(host.next(), Response::Error { ref message, .. } if message.contains("A=B")));
    host.finish();
}

#[test]
fn the_number_of_sessions_is_bounded() {
    let service = service();
    let mut running = Vec::new();
    for _ in 0..super::MAX_PTY_SESSIONS {
        running.push(start(&service, &["sleep", "30"], SIZE));
    }
    let mut host = Host::connect(&service);
    host.send(&Request::Exec(pty_request(&["true"], SIZE)));
    assert!(
        matches!(host.next(), Response::Error { ref message, .. } if message.contains("too many"))
    );
    host.finish();
    for (host, pid) in running {
        host.finish();
        assert!(wait_gone(pid));
    }
}
