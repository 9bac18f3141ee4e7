//! Watching the sandbox's VMM: the proxy exits once that process is gone (exited, or a zombie
//! nobody reaped), so a crashed VMM never leaves its proxy behind.

use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{test_kill_process, Pid};

/// Completes once process `pid` is gone, checking every `interval`; never, for `None`.
pub async fn process_gone(pid: Option<u32>, interval: Duration) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !process_alive(pid) {
            return;
        }
    }
}

/// Whether process `pid` exists and has not exited (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    match test_kill_process(raw) {
        Ok(()) => !is_zombie(pid),
        // It exists, but belongs to someone we may not signal.
        Err(Errno::PERM) => true,
        Err(_) => false,
    }
}

/// Whether `/proc/<pid>/stat` says the process is a zombie.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the command may hold spaces and parentheses; the state follows the
    // last `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z")
}

#[cfg(test)]
mod tests;
