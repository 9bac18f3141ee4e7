//! The egress log: one JSON line per decision, appended (`O_APPEND`, one write per line) to the
//! sandbox's log file, rotated to `<log>.1` at 64 MiB. Allowed connections are logged when they end, with their byte counts;
//! denials at once, at most 20 a second (the rest summed up in one `rate-limited` line, see
//! `denial_limit`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::denial_limit::DenialLimiter;

/// How the connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressPath {
    /// `CONNECT host:port` through the guest's HTTP proxy.
    Connect,
    /// An absolute-form plain HTTP request through the guest's HTTP proxy.
    Http,
    /// A connection captured on its way out.
    Transparent,
    /// A `RESOLVE` question from the guest's DNS stub.
    Dns,
    /// Refused before its hello was read (connection limit).
    Accept,
}

/// Whether the connection was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let through (or, for `dns`, answered with an address).
    Allow,
    /// Refused.
    Deny,
}

/// One decision, as logged (the time is added when it is written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressLogEntry {
    /// The sandbox's name.
    pub sandbox: String,
    /// The target name (or literal address) the guest asked for; empty if none was read.
    pub host: String,
    /// The target port (0 for `dns`, or if none was read).
    pub port: u16,
    /// How the connection came.
    pub path: EgressPath,
    /// The policy rule that decided, if one did.
    pub rule: Option<String>,
    /// Allowed or denied.
    pub verdict: Verdict,
    /// Why (a short fixed word such as `policy`, `address`, `sni-mismatch`), if denied or failed.
    pub reason: Option<String>,
    /// The address dialed (or, for `dns`, the stable address answered).
    pub address: Option<String>,
    /// Bytes from the guest to the upstream.
    pub bytes_up: u64,
    /// Bytes from the upstream to the guest.
    pub bytes_down: u64,
    /// On a `rate-limited` summary line only: how many denial lines it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

impl EgressLogEntry {
    /// An entry with no rule, reason, address or bytes yet.
    pub fn new(sandbox: &str, path: EgressPath, host: &str, port: u16, verdict: Verdict) -> Self {
        EgressLogEntry {
            sandbox: sandbox.to_string(),
            host: host.to_string(),
            port,
            path,
            rule: None,
            verdict,
            reason: None,
            address: None,
            bytes_up: 0,
            bytes_down: 0,
            suppressed: None,
        }
    }

    /// Sets the dialed address.
    pub fn with_address(mut self, address: SocketAddr) -> Self {
        self.address = Some(address.to_string());
        self
    }
}

/// The line as written: the entry with its time first.
#[derive(Serialize)]
struct TimedEntry<'a> {
    time: String,
    #[serde(flatten)]
    entry: &'a EgressLogEntry,
}

/// One log line for `entry` at `at`, newline included.
pub fn egress_log_line(entry: &EgressLogEntry, at: SystemTime) -> String {
    let timed = TimedEntry {
        time: rfc3339_utc(at),
        entry,
    };
    // Serializing plain strings and numbers cannot fail; an empty object is the fallback anyway.
    let mut line = serde_json::to_string(&timed).unwrap_or_else(|_| "{}".to_string());
    line.push('\n');
    line
}

/// Why the log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("opening egress log {path}: {source}")]
pub struct LogOpenError {
    /// The log file.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// Size at which the log is rotated: it becomes `<log>.1` (replacing an older one) and a new
/// log is started, so a guest opening connections without end fills at most twice this.
pub const LOG_ROTATE_BYTES: u64 = 64 << 20;

/// The sandbox's egress log file, opened for appending.
#[derive(Debug)]
pub struct EgressLog {
    state: Mutex<LogState>,
}

/// The file and the denial counts, under one lock.
#[derive(Debug)]
struct LogState {
    file: File,
    path: PathBuf,
    rotate_at: u64,
    denials: DenialLimiter,
}

/// The previous log, once rotated: `<log>.1`.
pub fn rotated_log(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl EgressLog {
    /// Opens (creating, 0600) `path` for appending; rotated at [`LOG_ROTATE_BYTES`].
    pub fn open(path: &Path) -> Result<Self, LogOpenError> {
        Self::open_rotating_at(path, LOG_ROTATE_BYTES)
    }

    /// [`EgressLog::open`] with the size the log is rotated at.
    pub fn open_rotating_at(path: &Path, rotate_at: u64) -> Result<Self, LogOpenError> {
        let file = open_append(path).map_err(|source| LogOpenError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(EgressLog {
            state: Mutex::new(LogState {
                file,
                path: path.to_path_buf(),
                rotate_at,
                denials: DenialLimiter::default(),
            }),
        })
    }

    /// Appends one line for `entry` (a denial only while the second's budget lasts), preceded by
    /// the summary of an earlier second's suppressed denials; a failed write is reported through
    /// `tracing` only (a full disk must not take the sandbox's network down).
    pub fn record(&self, entry: &EgressLogEntry) {
        self.record_at(entry, Instant::now());
    }

    fn record_at(&self, entry: &EgressLogEntry, now: Instant) {
        let wall_time = SystemTime::now();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut lines = state
            .denials
            .close_passed(now)
            .map(|summary| egress_log_line(&summary, wall_time))
            .unwrap_or_default();
        if state.denials.admit(entry, now) {
            lines.push_str(&egress_log_line(entry, wall_time));
        }
        state.write(&lines);
    }
}

impl LogState {
    fn write(&mut self, lines: &str) {
        if lines.is_empty() {
            return;
        }
        // Checked before writing: a proxy whose file another proxy has rotated away writes to
        // the new log, not after the limit.
        let full = self
            .file
            .metadata()
            .is_ok_and(|meta| meta.len() >= self.rotate_at);
        if full {
            if let Err(error) = self.rotate() {
                tracing::warn!(%error, "rotating the egress log");
            }
        }
        if let Err(error) = self.file.write_all(lines.as_bytes()) {
            tracing::warn!(%error, "writing the egress log");
        }
    }

    /// Moves the full log to `<log>.1` and starts a new one. Every sandbox's proxy appends to
    /// the same log: under an exclusive lock on the full file, only the first proxy to find the
    /// log's path still naming it renames it; the others just reopen the path.
    fn rotate(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let fd = self.file.as_raw_fd();
        // SAFETY: flock on a descriptor this state owns; it only takes an advisory lock.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let ours = self.file.metadata()?;
        let still_named = std::fs::metadata(&self.path)
            .is_ok_and(|named| (named.dev(), named.ino()) == (ours.dev(), ours.ino()));
        let renamed = if still_named {
            std::fs::rename(&self.path, rotated_log(&self.path))
        } else {
            Ok(())
        };
        // SAFETY: as above; unlocking cannot fail in a way that matters (closing would drop it).
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        renamed?;
        self.file = open_append(&self.path)?;
        Ok(())
    }
}

impl Drop for EgressLog {
    /// Writes the summary of denials still suppressed.
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(summary) = state.denials.take_summary() {
            let line = egress_log_line(&summary, SystemTime::now());
            state.write(&line);
        }
    }
}

/// `at` as RFC 3339 in UTC with seconds: `2025-01-31T23:59:59Z` (times before 1970 clamp to it).
pub fn rfc3339_utc(at: SystemTime) -> String {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Year, month, day of the day `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
