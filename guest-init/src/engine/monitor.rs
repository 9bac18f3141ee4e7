//! The engine's state, shared by the start-up thread (which settles it), the readiness thread
//! (which announces only once it is settled) and `Resumed` (which reports it as it is now).

use super::supervisor::{DaemonStatus, Supervised};
use paddock_protocol::{EngineStage, EngineState};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The daemons behind an `Up` engine, each with the stage its failure is reported as.
pub type WatchedDaemons = Vec<(EngineStage, Arc<Supervised>)>;

#[derive(Debug)]
struct Tracked {
    /// `None` until the start-up has succeeded or failed.
    settled: Option<EngineState>,
    daemons: WatchedDaemons,
}

/// Shared engine state; see the module documentation.
#[derive(Debug)]
pub struct EngineMonitor {
    tracked: Mutex<Tracked>,
    settled: Condvar,
}

impl EngineMonitor {
    /// An engine still starting.
    pub fn starting() -> Arc<Self> {
        Arc::new(Self {
            tracked: Mutex::new(Tracked {
                settled: None,
                daemons: Vec::new(),
            }),
            settled: Condvar::new(),
        })
    }

    /// An engine whose state is known from the start (`Absent`, or a failed root).
    pub fn settled(state: EngineState) -> Arc<Self> {
        let monitor = Self::starting();
        monitor.settle(state, Vec::new());
        monitor
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.tracked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the outcome of the start-up and wakes whoever waits for it. `daemons` are
    /// watched from then on (a death turns `Up` into `Failed`).
    pub fn settle(&self, state: EngineState, daemons: WatchedDaemons) {
        let mut tracked = self.lock();
        tracked.settled = Some(state);
        tracked.daemons = daemons;
        self.settled.notify_all();
    }

    /// Blocks until the start-up has succeeded or failed.
    pub fn wait_settled(&self) -> EngineState {
        let mut tracked = self.lock();
        loop {
            if tracked.settled.is_some() {
                drop(tracked);
                return self.current();
            }
            tracked = self
                .settled
                .wait_timeout(tracked, Duration::from_secs(1))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The state now, from what is cached: an `Up` engine stays `Up` only while its daemons
    /// run. No request is made to the engine, so this costs microseconds on a resume.
    pub fn current(&self) -> EngineState {
        let tracked = self.lock();
        let Some(settled) = &tracked.settled else {
            return EngineState::failed(EngineStage::Timeout, "the engine is still starting");
        };
        if matches!(settled, EngineState::Up { .. }) {
            for (stage, daemon) in &tracked.daemons {
                if let Some(detail) = not_running(daemon) {
                    return EngineState::failed(*stage, &detail);
                }
            }
        }
        settled.clone()
    }
}

/// Why `daemon` is not running, if it is not.
fn not_running(daemon: &Supervised) -> Option<String> {
    let name = daemon.name();
    match daemon.status() {
        DaemonStatus::Running { .. } => None,
        DaemonStatus::Starting => Some(format!("{name} is being restarted")),
        DaemonStatus::Restarting { attempt, last } => Some(format!(
            "{name} {last}; restart {attempt} in a row is pending"
        )),
        DaemonStatus::Stopped(last) => Some(format!("{name} {last}")),
        DaemonStatus::GaveUp { restarts, last } => Some(format!(
            "{name} {last}; gave up after {restarts} restarts in a row"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_state_is_reported_as_settled() {
        let monitor = EngineMonitor::settled(EngineState::Absent);
        assert_eq!(monitor.wait_settled(), EngineState::Absent);
        assert_eq!(monitor.current(), EngineState::Absent);
    }

    #[test]
    fn waiting_ends_when_the_start_up_settles() {
        let monitor = EngineMonitor::starting();
        assert!(matches!(
            monitor.current(),
            EngineState::Failed {
                stage: EngineStage::Timeout,
                ..
            }
        ));
        let waiter = {
            let monitor = Arc::clone(&monitor);
            std::thread::spawn(move || monitor.wait_settled())
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        let failed = EngineState::failed(EngineStage::Dockerd, "dockerd exited with code 1");
        monitor.settle(failed.clone(), Vec::new());
        assert_eq!(waiter.join().unwrap(), failed);
    }
}
