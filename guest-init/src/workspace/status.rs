//! Where a mount's relay stands — connected (in its n-th connection), reconnecting after its
//! host connection broke, or dead — for its own threads and for `mount`, which waits on it to
//! tell a mount carried across a reset from one to make anew.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A relay's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Relaying over a host connection.
    Connected,
    /// The host connection broke; reconnecting.
    Resuming,
    /// Over: the mount is not served any more.
    Dead,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Host connections the relay went on over after the first (it goes up on each resume).
    generation: u64,
}

/// What waiting for a relay to settle found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// It is connected, over a connection that is not known broken.
    Connected,
    /// It is dead.
    Dead,
    /// It was still reconnecting when the wait ran out.
    StillResuming,
}

/// A relay's phase, shared by its threads and the mount table.
#[derive(Debug)]
pub(crate) struct Status {
    inner: Mutex<Inner>,
    changed: Condvar,
    /// A duplicate of the current host connection, to see whether it is broken already.
    probe: Mutex<Option<OwnedFd>>,
}

impl Status {
    /// A connected relay; `probe` duplicates its host connection.
    pub(crate) fn new(probe: Option<OwnedFd>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                phase: Phase::Connected,
                generation: 0,
            }),
            changed: Condvar::new(),
            probe: Mutex::new(probe),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, inner: &mut Inner, phase: Phase) {
        inner.phase = phase;
        self.changed.notify_all();
    }

    /// The phase and generation now.
    pub(crate) fn now(&self) -> (Phase, u64) {
        let inner = self.lock();
        (inner.phase, inner.generation)
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.now().0 == Phase::Dead
    }

    /// The host connection broke: reconnecting (unless dead).
    pub(crate) fn resuming(&self) {
        let mut inner = self.lock();
        if inner.phase == Phase::Connected {
            self.set(&mut inner, Phase::Resuming);
        }
    }

    /// Carried on over a new host connection (`probe` duplicates it); false when the relay died
    /// meanwhile.
    pub(crate) fn carried_on(&self, probe: Option<OwnedFd>) -> bool {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = probe;
        let mut inner = self.lock();
        if inner.phase == Phase::Dead {
            return false;
        }
        inner.generation += 1;
        self.set(&mut inner, Phase::Connected);
        true
    }

    /// The relay is over; true for the call that ended it.
    pub(crate) fn die(&self) -> bool {
        let mut inner = self.lock();
        let first = inner.phase != Phase::Dead;
        self.set(&mut inner, Phase::Dead);
        first
    }

    /// Waits while reconnecting; whether the relay is connected (else it is dead).
    pub(crate) fn wait_connected(&self) -> bool {
        let mut inner = self.lock();
        while inner.phase == Phase::Resuming {
            inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        inner.phase == Phase::Connected
    }

    /// Waits up to `limit` for the relay to be connected or dead. A relay that says it is
    /// connected over a connection already broken (a restore reset it, and the relay has not
    /// read that yet) is reconnecting: it is connected once its generation goes up.
    pub(crate) fn settle(&self, limit: Duration) -> Settled {
        let deadline = Instant::now() + limit;
        let mut inner = self.lock();
        let broken_in =
            (inner.phase == Phase::Connected && self.probe_broken()).then_some(inner.generation);
        loop {
            match inner.phase {
                Phase::Dead => return Settled::Dead,
                Phase::Connected if broken_in.is_none_or(|g| inner.generation > g) => {
                    return Settled::Connected
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Settled::StillResuming;
            }
            inner = self
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether the current host connection is known broken (no probe: not known).
    fn probe_broken(&self) -> bool {
        let probe = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        probe.as_ref().is_some_and(|fd| is_broken(fd.as_fd()))
    }
}

/// Whether the stream socket `fd` is closed or reset, without waiting or consuming data: a
/// byte waiting, or none yet (`EAGAIN`), is a live connection; end of stream or an error is not.
pub(crate) fn is_broken(fd: BorrowedFd<'_>) -> bool {
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid one-byte buffer for the call; `fd` is open for its duration.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n > 0 {
        return false;
    }
    if n == 0 {
        return true;
    }
    !matches!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EINTR)
    )
}
