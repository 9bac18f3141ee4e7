//! A bound on the connections (and threads) one listener has open at once: beyond it new ones
//! are refused, so a guest program cannot make PID 1 spawn threads without end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts open connections of one listener.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    active: AtomicUsize,
    refusing: AtomicBool,
}

/// One open connection; frees its place when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limit: Arc<ConnectionLimit>,
}

/// What [`ConnectionLimit::try_acquire`] decided.
#[derive(Debug)]
pub enum Admission {
    Admitted(ConnectionSlot),
    /// Full; `first` when this is the first refusal since the last admission (worth a log line).
    Refused {
        first: bool,
    },
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            active: AtomicUsize::new(0),
            refusing: AtomicBool::new(false),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Takes a place if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Admission {
        let taken = self
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |active| {
                (active < self.max).then_some(active + 1)
            });
        match taken {
            Ok(_) => {
                self.refusing.store(false, Ordering::SeqCst);
                Admission::Admitted(ConnectionSlot {
                    limit: Arc::clone(self),
                })
            }
            Err(_) => Admission::Refused {
                first: !self.refusing.swap(true, Ordering::SeqCst),
            },
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limit.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_bound_and_frees_places_on_drop() {
        let limit = ConnectionLimit::new(2);
        let Admission::Admitted(a) = limit.try_acquire() else {
            panic!("first refused")
        };
        let Admission::Admitted(_b) = limit.try_acquire() else {
            panic!("second refused")
        };
        assert_eq!(limit.active(), 2);
        assert!(matches!(
            limit.try_acquire(),
            Admission::Refused { first: true }
        ));
        assert!(matches!(
            limit.try_acquire(),
            Admission::Refused { first: false }
        ));
        drop(a);
        assert_eq!(limit.active(), 1);
        assert!(matches!(limit.try_acquire(), Admission::Admitted(_)));
        assert_eq!(limit.active(), 1, "the dropped slot freed its place");
    }
}
