//! Keeps cheap refusals from filling the shared decision log: at most
//! [`MAX_DENIALS_PER_WINDOW`] denial lines per [`DENIAL_WINDOW`]; the rest are counted and, once
//! the window has passed, summed up in one `rate-limited` line. Allowed connections are never
//! limited.

use std::time::{Duration, Instant};

use super::log::{EgressLogEntry, EgressPath, Verdict};

/// Denial lines written per window at most.
pub const MAX_DENIALS_PER_WINDOW: u32 = 20;
/// The window denial lines are counted in.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(1);
/// The `reason` of the summary line.
pub const RATE_LIMITED: &str = "rate-limited";

/// The current window's counts.
#[derive(Debug, Default)]
pub(crate) struct DenialLimiter {
    /// When the window began (its first denial); `None`: no window open.
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
    /// Sandbox and path of the last suppressed denial, for the summary line.
    last_suppressed: Option<(String, EgressPath)>,
}

impl DenialLimiter {
    /// The summary of a window that has passed by `now` (if it suppressed anything); the window
    /// is closed either way once it has passed.
    pub(crate) fn close_passed(&mut self, now: Instant) -> Option<EgressLogEntry> {
        let started = self.started?;
        if now.saturating_duration_since(started) < DENIAL_WINDOW {
            return None;
        }
        self.take_summary()
    }

    /// The summary of whatever is suppressed now, window passed or not (the log is closing).
    pub(crate) fn take_summary(&mut self) -> Option<EgressLogEntry> {
        let suppressed = std::mem::take(&mut self.suppressed);
        let last = self.last_suppressed.take();
        self.started = None;
        self.written = 0;
        let (sandbox, path) = last?;
        if suppressed == 0 {
            return None;
        }
        let mut summary = EgressLogEntry::new(&sandbox, path, "", 0, Verdict::Deny);
        summary.reason = Some(RATE_LIMITED.to_string());
        summary.suppressed = Some(suppressed);
        Some(summary)
    }

    /// Whether `entry` is written: always for an allowed one; for a denial, while the window has
    /// room (otherwise it is counted).
    pub(crate) fn admit(&mut self, entry: &EgressLogEntry, now: Instant) -> bool {
        if entry.verdict != Verdict::Deny {
            return true;
        }
        self.started.get_or_insert(now);
        if self.written < MAX_DENIALS_PER_WINDOW {
            self.written += 1;
            return true;
        }
        self.suppressed = self.suppressed.saturating_add(1);
        self.last_suppressed = Some((entry.sandbox.clone(), entry.path));
        false
    }
}

#[cfg(test)]
mod tests;
