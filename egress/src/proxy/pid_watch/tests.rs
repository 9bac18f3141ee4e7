//! Tests of `pid_watch`.
use std::process::Command;

use super::*;

#[test]
fn this_process_is_alive_and_nonsense_is_not() {
    assert!(process_alive(std::process::id()));
    assert!(!process_alive(0));
    assert!(!process_alive(u32::MAX));
}

#[test]
fn an_exited_child_is_gone_even_before_it_is_reaped() {
    // `sh` (dash, in the host tool table) rather than `true`: any short-lived child does.
    let mut child = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
    let pid = child.id();
    // Not waited for yet: a zombie once it exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(std::time::Instant::now() < deadline, "child still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait().unwrap();
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn watching_ends_when_the_process_ends() {
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    let pid = child.id();
    let watched = tokio::time::timeout(
        Duration::from_secs(10),
        process_gone(Some(pid), Duration::from_millis(20)),
    );
    assert!(watched.await.is_ok());
    child.wait().unwrap();
    let never = tokio::time::timeout(
        Duration::from_millis(100),
        process_gone(None, Duration::from_millis(20)),
    );
    assert!(never.await.is_err());
}

#[tokio::test]
async fn a_pid_watch_ends_when_the_process_exits_even_unreaped() {
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    let watch = PidWatch::new(Some(child.id()), Duration::from_secs(3600));
    assert!(watch.pidfd.is_some(), "this kernel has pidfds");
    // The hour-long poll interval would time out: only the pidfd can end it, while the child
    // is still an unreaped zombie.
    let watched = tokio::time::timeout(Duration::from_secs(10), watch.gone());
    assert!(watched.await.is_ok());
    child.wait().unwrap();
    let never = tokio::time::timeout(
        Duration::from_millis(100),
        PidWatch::new(None, Duration::from_millis(20)).gone(),
    );
    assert!(never.await.is_err());
}
