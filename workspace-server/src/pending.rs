//! The state the next resume carries on from: loaded by the host over the control connection,
//! taken by the guest's `RESUME_HELLO` connection, which may come first and then waits for it a
//! while (on a restore the guest can reconnect a moment before the host has loaded the state).
//! The host may also say that no state comes (a snapshot whose mount is not to be carried on):
//! a resume is then refused at once instead of after the wait.

use crate::saved::SavedState;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What the host has said about the next resume.
#[derive(Debug, Default)]
enum Next {
    /// Nothing yet: a resume waits.
    #[default]
    Unknown,
    /// No state comes: a resume is refused.
    NoneComing,
    /// This state.
    Loaded(SavedState),
}

/// At most one loaded state, waiting for its resume.
#[derive(Debug, Default)]
pub struct PendingState {
    next: Mutex<Next>,
    told: Condvar,
}

impl PendingState {
    fn lock(&self) -> MutexGuard<'_, Next> {
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `state` the pending one (`None`: none comes), waking a resume that waits.
    pub fn put(&self, state: Option<SavedState>) {
        *self.lock() = match state {
            Some(state) => Next::Loaded(state),
            None => Next::NoneComing,
        };
        self.told.notify_all();
    }

    /// Takes the pending state, waiting up to `wait` for the host to load one or say none
    /// comes. Either way the next resume starts from nothing said.
    pub fn take_within(&self, wait: Duration) -> Option<SavedState> {
        let guard = self.lock();
        let (mut guard, _) = self
            .told
            .wait_timeout_while(guard, wait, |next| matches!(next, Next::Unknown))
            .unwrap_or_else(|p| p.into_inner());
        match std::mem::take(&mut *guard) {
            Next::Loaded(state) => Some(state),
            Next::Unknown | Next::NoneComing => None,
        }
    }

    /// Whether a state is pending.
    pub fn is_loaded(&self) -> bool {
        matches!(*self.lock(), Next::Loaded(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn word_that_none_comes_ends_a_waiting_resume_at_once() {
        let pending = Arc::new(PendingState::default());
        let waiter = {
            let pending = pending.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (
                    pending.take_within(Duration::from_secs(30)).is_none(),
                    started.elapsed(),
                )
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        pending.put(None);
        let (refused, waited) = waiter.join().unwrap();
        assert!(refused);
        assert!(waited < Duration::from_secs(10), "waited {waited:?}");
        // Taken: the next resume waits again (and, told nothing, is refused after the wait).
        let started = Instant::now();
        assert!(pending.take_within(Duration::from_millis(100)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
