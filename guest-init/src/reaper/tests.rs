//! Per-child reaping on an ordinary host process.

use super::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn spawn(reaper: &Arc<Reaper>, script: &str) -> (Child, ChildExit) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    reaper.spawn(&mut cmd).unwrap()
}

#[test]
fn statuses_of_exits_and_signals_are_delivered() {
    let reaper = Reaper::new(ReapMode::PerChild);
    let (_c1, exit1) = spawn(&reaper, "exit 0");
    let (_c2, exit2) = spawn(&reaper, "exit 42");
    let (_c3, exit3) = spawn(&reaper, "kill -9 $$");
    assert_eq!(exit1.wait(), Some(ExitStatus::Code(0)));
    assert_eq!(exit2.wait(), Some(ExitStatus::Code(42)));
    assert_eq!(exit3.wait(), Some(ExitStatus::Signal(9)));
    assert!(reaper.table().is_empty(), "reaped children leave the table");
}

#[test]
fn signal_group_reaches_a_live_child_and_refuses_a_reaped_one() {
    let reaper = Reaper::new(ReapMode::PerChild);
    let (_child, exit) = spawn(&reaper, "sleep 30");
    assert!(reaper.signal_group(exit.pid(), libc::SIGTERM).unwrap());
    assert_eq!(exit.wait(), Some(ExitStatus::Signal(libc::SIGTERM)));
    assert!(!reaper.signal_group(exit.pid(), libc::SIGTERM).unwrap());
}

#[test]
fn pidfd_becomes_readable_when_the_child_exits() {
    let reaper = Reaper::new(ReapMode::PerChild);
    let (_child, exit) = spawn(&reaper, "sleep 0.2");
    let start = Instant::now();
    let mut fds = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&exit.pidfd()),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) };
    assert_eq!(ready, 1);
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(exit.wait(), Some(ExitStatus::Code(0)));
}

#[test]
fn failed_spawn_registers_nothing() {
    let reaper = Reaper::new(ReapMode::PerChild);
    let err = reaper
        .spawn(&mut Command::new("/nonexistent/program"))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(reaper.table().is_empty());
}

#[test]
fn wait_statuses_decode() {
    // Layout of the classic wait status word: code << 8 for exits, the signal number otherwise.
    assert_eq!(decode_wait_status(7 << 8), ExitStatus::Code(7));
    assert_eq!(decode_wait_status(9), ExitStatus::Signal(9));
    assert_eq!(
        decode_wait_status(15 | 0x80),
        ExitStatus::Signal(15),
        "core dump flag ignored"
    );
}
