//! Supervised daemons (containerd, dockerd): children of PID 1 reaped by the central
//! [`Reaper`], their output in a bounded log, restarted with backoff if they die once the
//! engine is up.
//!
//! Before the engine is up a daemon that dies is not restarted: the start-up reports it as a
//! failure instead. Afterwards each death is restarted after a growing delay, at most
//! [`RestartPolicy::max_restarts`] times in a row (a run that lasted
//! [`RestartPolicy::stable_after`] resets the count); then the daemon is given up.

use super::log_sink::{self, LogSink};
use crate::reaper::Reaper;
use paddock_protocol::ExitStatus;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Environment of a supervised daemon.
const DAEMON_ENV: [(&str, &str); 2] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

/// Set once the guest shuts down: a daemon stopped by the shutdown is not started again.
static RESTARTS_STOPPED: AtomicBool = AtomicBool::new(false);

/// No supervised daemon is restarted from now on (the guest is shutting down).
pub fn stop_restarts() {
    RESTARTS_STOPPED.store(true, Ordering::SeqCst);
}

/// When and how often a daemon that died is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts in a row before giving up.
    pub max_restarts: u32,
    /// Delay before the first restart; doubled for each further one.
    pub first_backoff: Duration,
    /// Longest delay between restarts.
    pub max_backoff: Duration,
    /// A run at least this long resets the count of restarts in a row.
    pub stable_after: Duration,
}

/// The engine's daemons' policy.
pub const ENGINE_RESTART_POLICY: RestartPolicy = RestartPolicy {
    max_restarts: 5,
    first_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(30),
    stable_after: Duration::from_secs(120),
};

/// What to do about a daemon that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after `after`; this is restart number `attempt` in a row.
    Restart { after: Duration, attempt: u32 },
    /// Too many restarts in a row.
    GiveUp { restarts: u32 },
}

/// Counts restarts in a row and decides about the next one.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    in_a_row: u32,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            in_a_row: 0,
        }
    }

    /// Decides after a run that lasted `ran_for`.
    pub fn on_exit(&mut self, ran_for: Duration) -> RestartDecision {
        if ran_for >= self.policy.stable_after {
            self.in_a_row = 0;
        }
        if self.in_a_row >= self.policy.max_restarts {
            return RestartDecision::GiveUp {
                restarts: self.in_a_row,
            };
        }
        let doublings = self.in_a_row.min(31);
        let after = self
            .policy
            .first_backoff
            .saturating_mul(1 << doublings)
            .min(self.policy.max_backoff);
        self.in_a_row += 1;
        RestartDecision::Restart {
            after,
            attempt: self.in_a_row,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    /// Name for logs.
    pub name: &'static str,
    pub program: &'static str,
    pub args: Vec<String>,
    /// Environment variables on top of the common ones (`PATH`, `HOME`).
    pub env: &'static [(&'static str, &'static str)],
}

/// How one run of a daemon ended.
#[derive(Debug, Clone)]
pub enum DaemonExit {
    Exited(ExitStatus),
    CannotStart(Arc<io::Error>),
    /// The reaper could no longer deliver the status.
    StatusLost,
}

impl fmt::Display for DaemonExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(ExitStatus::Code(code)) => write!(f, "exited with code {code}"),
            Self::Exited(ExitStatus::Signal(signal)) => write!(f, "was killed by signal {signal}"),
            Self::CannotStart(e) => write!(f, "could not be started: {e}"),
            Self::StatusLost => f.write_str("ended with its exit status lost"),
        }
    }
}

/// Where a supervised daemon is.
#[derive(Debug, Clone)]
pub enum DaemonStatus {
    Starting,
    Running {
        pid: u32,
    },
    /// Died once the engine was up; starts again after a delay.
    Restarting {
        attempt: u32,
        last: DaemonExit,
    },
    /// Died before the engine was up: not restarted.
    Stopped(DaemonExit),
    /// Died too often in a row.
    GaveUp {
        restarts: u32,
        last: DaemonExit,
    },
}

/// One supervised daemon, shared by its supervising thread and whoever watches it.
#[derive(Debug)]
pub struct Supervised {
    spec: DaemonSpec,
    status: Mutex<DaemonStatus>,
    restartable: AtomicBool,
}

impl Supervised {
    /// Starts `spec` with its output in `sink` and supervises it on a new thread.
    pub fn start(
        spec: DaemonSpec,
        sink: LogSink,
        reaper: Arc<Reaper>,
        policy: RestartPolicy,
    ) -> io::Result<Arc<Self>> {
        let supervised = Arc::new(Self {
            spec,
            status: Mutex::new(DaemonStatus::Starting),
            restartable: AtomicBool::new(false),
        });
        let watched = Arc::clone(&supervised);
        std::thread::Builder::new()
            .name(format!("supervise-{}", supervised.spec.name))
            .spawn(move || watched.supervise(&sink, &reaper, policy))?;
        Ok(supervised)
    }

    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The daemon's status now.
    pub fn status(&self) -> DaemonStatus {
        self.lock().clone()
    }

    /// From now on a death is restarted (the engine is up).
    pub fn allow_restarts(&self) {
        self.restartable.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, DaemonStatus> {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, status: DaemonStatus) {
        *self.lock() = status;
    }

    fn supervise(&self, sink: &LogSink, reaper: &Arc<Reaper>, policy: RestartPolicy) {
        let mut tracker = RestartTracker::new(policy);
        loop {
            self.set(DaemonStatus::Starting);
            let started = Instant::now();
            let exit = self.run_once(sink, reaper);
            let ran_for = started.elapsed();
            crate::console_log!("{} {exit} after {ran_for:.1?}", self.spec.name);
            if !self.restartable.load(Ordering::SeqCst) || RESTARTS_STOPPED.load(Ordering::SeqCst) {
                self.set(DaemonStatus::Stopped(exit));
                return;
            }
            match tracker.on_exit(ran_for) {
                RestartDecision::Restart { after, attempt } => {
                    crate::console_log!(
                        "restarting {} in {after:?} (restart {attempt} in a row)",
                        self.spec.name
                    );
                    self.set(DaemonStatus::Restarting {
                        attempt,
                        last: exit.clone(),
                    });
                    std::thread::sleep(after);
                    if RESTARTS_STOPPED.load(Ordering::SeqCst) {
                        self.set(DaemonStatus::Stopped(exit));
                        return;
                    }
                }
                RestartDecision::GiveUp { restarts } => {
                    crate::console_log!(
                        "giving up on {} after {restarts} restarts in a row",
                        self.spec.name
                    );
                    log_sink::copy_tail_to_console(sink.path());
                    self.set(DaemonStatus::GaveUp {
                        restarts,
                        last: exit,
                    });
                    return;
                }
            }
        }
    }

    /// Runs the daemon once and waits for it to end.
    fn run_once(&self, sink: &LogSink, reaper: &Arc<Reaper>) -> DaemonExit {
        let spawned = self
            .command(sink)
            .and_then(|mut command| reaper.spawn(&mut command));
        let (child, exit) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => return DaemonExit::CannotStart(Arc::new(e)),
        };
        // Its pipes go to the log, not to us; the reaper reports its end.
        drop(child);
        self.set(DaemonStatus::Running { pid: exit.pid() });
        match exit.wait() {
            Some(status) => DaemonExit::Exited(status),
            None => DaemonExit::StatusLost,
        }
    }

    fn command(&self, sink: &LogSink) -> io::Result<Command> {
        let mut command = Command::new(self.spec.program);
        command
            .args(&self.spec.args)
            .env_clear()
            .envs(DAEMON_ENV)
            .envs(self.spec.env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(sink.stdio()?)
            .stderr(sink.stdio()?);
        crate::sys::with_default_signals(&mut command);
        // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
        // which is async-signal-safe and touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(command)
    }
}

#[cfg(test)]
mod tests;
