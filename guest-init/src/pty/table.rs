//! The terminal sessions of this guest, by the pid of their command.

use super::session::{AttachError, PtySession, Sink};
use super::MAX_PTY_SESSIONS;
use paddock_protocol::WindowSize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Errors of registering a new session.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("too many terminal sessions (at most {MAX_PTY_SESSIONS})")]
    TooMany,
}

/// Every live terminal session; bounded by [`MAX_PTY_SESSIONS`].
#[derive(Default)]
pub(crate) struct PtySessions {
    sessions: Mutex<HashMap<u32, Arc<PtySession>>>,
    /// Source of detach marks: later detaches get higher marks.
    detaches: AtomicU64,
}

impl PtySessions {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u32, Arc<PtySession>>> {
        // Critical sections are single inserts, removes and lookups.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether another session may start (checked before spawning its command).
    pub(super) fn has_room(&self) -> Result<(), RegisterError> {
        if self.table().len() >= MAX_PTY_SESSIONS {
            return Err(RegisterError::TooMany);
        }
        Ok(())
    }

    /// Registers a started session; refused beyond the bound (a race with other starts).
    pub(super) fn insert(&self, session: Arc<PtySession>) -> Result<(), RegisterError> {
        let mut table = self.table();
        if table.len() >= MAX_PTY_SESSIONS {
            return Err(RegisterError::TooMany);
        }
        table.insert(session.pid(), session);
        Ok(())
    }

    /// Forgets `session`, unless its pid already names a newer session (the pid was reaped
    /// before this, so it may have been reused).
    pub(super) fn remove(&self, session: &Arc<PtySession>) {
        let mut table = self.table();
        if table
            .get(&session.pid())
            .is_some_and(|known| Arc::ptr_eq(known, session))
        {
            table.remove(&session.pid());
        }
    }

    /// A mark for a detach happening now.
    pub(super) fn next_detach_mark(&self) -> u64 {
        self.detaches.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Attaches `sink` to the session of `pid`, or to the most recently detached one.
    pub(super) fn attach(
        &self,
        pid: Option<u32>,
        size: WindowSize,
        sink: Arc<dyn Sink>,
    ) -> Result<(Arc<PtySession>, u64), AttachError> {
        let session = match pid {
            Some(pid) => self
                .table()
                .get(&pid)
                .cloned()
                .ok_or(AttachError::NoSuchSession(pid))?,
            None => {
                let candidates: Vec<Arc<PtySession>> = self.table().values().cloned().collect();
                candidates
                    .into_iter()
                    .filter_map(|s| s.detached_mark().map(|mark| (mark, s)))
                    .max_by_key(|(mark, _)| *mark)
                    .map(|(_, s)| s)
                    .ok_or(AttachError::NoDetachedSession)?
            }
        };
        let generation = session.attach(sink, size)?;
        Ok((session, generation))
    }
}
