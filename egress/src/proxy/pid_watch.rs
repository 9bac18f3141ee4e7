//! Watching the sandbox's VMM: the proxy exits once that process is gone (exited, or a zombie
//! nobody reaped), so a crashed VMM never leaves its proxy behind.

use std::time::Duration;

use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::process::{pidfd_open, test_kill_process, Pid, PidfdFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A watch on one process, set up before the proxy confines itself: a pidfd where the kernel
/// has them (readable once the process exited, zombie or not, and needing no `/proc`, which a
/// jailed proxy does not see), else polling.
#[derive(Debug)]
pub struct PidWatch {
    pid: Option<u32>,
    pidfd: Option<AsyncFd<OwnedFd>>,
    interval: Duration,
}

impl PidWatch {
    /// Watches `pid` (`None`: nothing, never gone); polls every `interval` without a pidfd.
    /// Call within the runtime, before any seccomp filter: it opens and registers the pidfd.
    pub fn new(pid: Option<u32>, interval: Duration) -> Self {
        let pidfd = pid
            .and_then(|pid| i32::try_from(pid).ok().and_then(Pid::from_raw))
            .and_then(|raw| pidfd_open(raw, PidfdFlags::empty()).ok())
            .and_then(|fd| {
                // SAFETY: an `OwnedFd` is a valid open descriptor that stays open, and names
                // the same file, for as long as the `AsyncFd` owns it.
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
            });
        Self {
            pid,
            pidfd,
            interval,
        }
    }

    /// Completes once the process is gone.
    pub async fn gone(self) {
        match self.pidfd {
            Some(pidfd) => {
                // Readable (or failing) only once the process has exited.
                let _ = pidfd.readable().await;
            }
            None => process_gone(self.pid, self.interval).await,
        }
    }
}

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
