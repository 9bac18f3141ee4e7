//! Terminal sessions through the client, against the real guest-init service.

use super::*;
use paddock_protocol::{PtyConfig, WindowSize};

const SIZE: WindowSize = WindowSize {
    rows: 33,
    cols: 101,
};

fn pty_request(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        stdin: true,
        tty: Some(PtyConfig::new(SIZE, "xterm").unwrap()),
        ..request(argv)
    }
}

/// Waits for the session on a thread of its own, collecting the output.
fn wait_in_background(
    session: PtySession,
) -> std::thread::JoinHandle<(Result<PtyEnd, PtyError>, String)> {
    std::thread::spawn(move || {
        let mut output = Vec::new();
        let end = session.wait(&mut output);
        (end, String::from_utf8_lossy(&output).into_owned())
    })
}

#[test]
fn a_command_runs_on_a_terminal_of_the_requested_size() {
    let vm = fake_vm();
    let session = control(&vm)
        .start_pty(&pty_request(&[
            "sh",
            "-c",
            "stty size; echo \"$TERM\"; exit 3",
        ]))
        .unwrap();
    assert!(session.pid() > 0);
    let mut output = Vec::new();
    let end = session.wait(&mut output).unwrap();
    assert_eq!(end, PtyEnd::Exited(ExitStatus::Code(3)));
    assert_eq!(String::from_utf8_lossy(&output), "33 101\r\nxterm\r\n");
}

#[test]
fn a_request_without_a_terminal_is_refused() {
    let vm = fake_vm();
    let err = control(&vm).start_pty(&request(&["true"])).unwrap_err();
    assert!(matches!(err, PtyError::NoTerminalRequested), "{err}");
}

#[test]
fn typed_input_and_ctrl_d_reach_the_command() {
    let vm = fake_vm();
    let session = control(&vm).start_pty(&pty_request(&["cat"])).unwrap();
    let control = session.control();
    let waiter = wait_in_background(session);
    control.input(b"typed\r").unwrap();
    control.input(b"\x04").unwrap();
    let (end, output) = waiter.join().unwrap();
    assert_eq!(end.unwrap(), PtyEnd::Exited(ExitStatus::Code(0)));
    assert_eq!(output, "typed\r\ntyped\r\n");
}

#[test]
fn detach_then_attach_returns_to_the_same_command() {
    let vm = fake_vm();
    let script = "read a; echo \"got $a\"; stty size";
    let session = control(&vm)
        .start_pty(&pty_request(&["sh", "-c", script]))
        .unwrap();
    let pid = session.pid();
    let control_first = session.control();
    let waiter = wait_in_background(session);
    control_first.detach().unwrap();
    let (end, _) = waiter.join().unwrap();
    assert_eq!(end.unwrap(), PtyEnd::Detached);

    let size = WindowSize { rows: 10, cols: 40 };
    let session = super::control(&vm).attach(None, size).unwrap();
    assert_eq!(session.pid(), pid);
    let control_second = session.control();
    let waiter = wait_in_background(session);
    control_second.input(b"back\r").unwrap();
    let (end, output) = waiter.join().unwrap();
    assert_eq!(end.unwrap(), PtyEnd::Exited(ExitStatus::Code(0)));
    assert!(output.contains("got back\r\n10 40\r\n"), "{output:?}");
}

#[test]
fn resize_reaches_the_terminal() {
    let vm = fake_vm();
    let script = "read a; stty size";
    let session = control(&vm)
        .start_pty(&pty_request(&["sh", "-c", script]))
        .unwrap();
    let control = session.control();
    let waiter = wait_in_background(session);
    control
        .resize(WindowSize {
            rows: 50,
            cols: 200,
        })
        .unwrap();
    control.input(b"\r").unwrap();
    let (end, output) = waiter.join().unwrap();
    assert_eq!(end.unwrap(), PtyEnd::Exited(ExitStatus::Code(0)));
    assert!(output.ends_with("50 200\r\n"), "{output:?}");
}

#[test]
fn attach_without_a_detached_session_is_a_guest_error() {
    let vm = fake_vm();
    let err = control(&vm).attach(None, SIZE).unwrap_err();
    assert!(
        matches!(
            &err,
            PtyError::Guest {
                kind: paddock_protocol::ErrorKind::NoDetachedSession,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn hang_up_ends_the_wait_and_the_command() {
    let vm = fake_vm();
    let session = control(&vm)
        .start_pty(&pty_request(&["sleep", "30"]))
        .unwrap();
    let control = session.control();
    let waiter = wait_in_background(session);
    control.hang_up();
    let (end, _) = waiter.join().unwrap();
    assert!(end.is_err());
    // The command was hung up: nothing is left to attach to.
    let start = Instant::now();
    loop {
        match super::control(&vm).attach(None, SIZE) {
            Err(PtyError::Guest { .. }) => break,
            other => assert!(
                start.elapsed() < Duration::from_secs(5),
                "still attachable: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
