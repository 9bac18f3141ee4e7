//! The messages exchanged between the host and guest-init.
//!
//! A connection starts with one [`Request`] from the host. `Ping`, `Resume` and `Shutdown` are
//! answered with one [`Response`] each and the connection stays open for more. `Exec` turns the
//! connection into one exec session: the guest answers `Started` (or `Error`), then streams
//! `Stdout`/`Stderr` chunks and finally `Exited`; meanwhile the host may send `Stdin`,
//! `StdinClose` and `Signal`.
//!
//! An `Exec` with a `tty` runs on a pseudo-terminal (see [`crate::pty`]): output comes as
//! `Stdout` only, and the host may also send `Resize` and `Detach`. `Detach` is answered with
//! `Detached` and the guest closes the connection while the command keeps running; `Attach` on
//! a new connection is answered with `Attached`, the output kept while detached (as `Stdout`),
//! and the session goes on as after `Started`.

use crate::engine::EngineState;
use crate::pty::{PtyConfig, WindowSize};
use crate::workspace::{WorkspaceChange, WorkspaceMode};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest stdin/stdout/stderr chunk a sender puts into one frame.
pub const MAX_STREAM_CHUNK: usize = 64 * 1024;
/// Fewest entropy bytes a `Resume` must carry (256 bits fully seed the kernel CRNG).
pub const RESUME_ENTROPY_MIN: usize = 32;
/// Most entropy bytes a `Resume` may carry.
pub const RESUME_ENTROPY_MAX: usize = 512;

/// Host -> guest messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness check, answered with `Pong` carrying the same nonce.
    Ping { nonce: u64 },
    /// Run a command; the connection becomes its exec session.
    Exec(ExecRequest),
    /// Bytes for the running command's stdin (only if the exec asked for stdin).
    Stdin {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// End of the running command's stdin.
    StdinClose,
    /// Deliver a signal to the running command's process group.
    Signal { signal: i32 },
    /// Stop the guest. Acknowledged with `ShuttingDown` before it happens.
    Shutdown { action: ShutdownAction },
    /// Sent after a snapshot restore or reset: set the wall clock and reseed the kernel RNG.
    /// Answered with `Resumed` (or `Error`).
    Resume {
        wall_clock: UnixTime,
        /// Between [`RESUME_ENTROPY_MIN`] and [`RESUME_ENTROPY_MAX`] bytes, credited in full.
        #[serde(with = "crate::bytes")]
        entropy: Vec<u8>,
    },
    /// New window size of the running PTY command's terminal.
    Resize { size: WindowSize },
    /// Leave the running PTY command without the host; answered with `Detached`.
    Detach,
    /// Reattach to a detached PTY session: the one whose command has `pid`, or the most
    /// recently detached one. Answered with `Attached` (or `Error`); `size` is applied first.
    Attach { pid: Option<u32>, size: WindowSize },
    /// Mount the sandbox's workspace at `path` (absolute, the host's spelling): a FUSE mount
    /// served by the host's workspace server over [`crate::WORKSPACE_PORT`], as `mode` says.
    /// Answered with `WorkspaceMounted` (also when it is already mounted there) or `Error`.
    MountWorkspace { path: String, mode: WorkspaceMode },
    /// List the changes of the copy-on-write workspace mounted at `path`: answered with
    /// `WorkspaceChanges` responses until one has `more: false`, or `Error`.
    WorkspaceChanges { path: String },
}

/// What to run, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Variables added to (and overriding) guest-init's defaults (`PATH`, `HOME`).
    pub env: Vec<(String, String)>,
    /// Working directory; guest-init's own (`/`) when absent.
    pub cwd: Option<String>,
    /// Whether the host will stream stdin; otherwise the command reads `/dev/null` (without a
    /// terminal) or nothing arrives on its terminal.
    pub stdin: bool,
    /// Run the command on a pseudo-terminal of this size and `TERM` instead of pipes.
    pub tty: Option<PtyConfig>,
}

/// How the guest should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownAction {
    PowerOff,
    Reboot,
}

/// A wall-clock instant as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixTime {
    pub secs: u64,
    /// Always below 1_000_000_000 in a valid value.
    pub nanos: u32,
}

impl UnixTime {
    /// The current wall-clock time of this machine.
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            secs: since_epoch.as_secs(),
            nanos: since_epoch.subsec_nanos(),
        }
    }

    /// Whether the nanosecond field is in range.
    pub fn is_valid(&self) -> bool {
        self.nanos < 1_000_000_000
    }
}

/// What kind of failure a [`Response::Error`] reports: the host decides on this, never on the
/// message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// `Attach` without a pid, and no terminal session is detached.
    NoDetachedSession,
    /// `Attach` named a pid that has no terminal session.
    NoSuchSession,
    /// `Attach` named a session another connection is attached to.
    AlreadyAttached,
    /// The command to run was not found (or its working directory does not exist).
    CommandNotFound,
    /// The command was found but could not be started (permissions, format, ...).
    CannotExecute,
    /// `MountWorkspace` failed: a path that is not absolute or cannot be made, or the host's
    /// workspace server cannot be reached.
    Workspace,
    /// Any other failure (a command that cannot start, a malformed request, ...).
    Other,
}

impl ErrorKind {
    /// The kind of a failure to start a command with `error`.
    pub fn of_spawn_failure(error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::CommandNotFound
        } else {
            ErrorKind::CannotExecute
        }
    }
}

impl Response {
    /// A [`Response::Error`] of kind [`ErrorKind::Other`].
    pub fn error(message: impl Into<String>) -> Self {
        Response::Error {
            kind: ErrorKind::Other,
            message: message.into(),
        }
    }
}

/// Guest -> host messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Pong {
        nonce: u64,
    },
    /// Sent once per boot on a connection to the host's [`crate::READY_PORT`].
    Ready(BootInfo),
    /// The exec'd command is running with this pid.
    Started {
        pid: u32,
    },
    /// A chunk of the command's stdout (at most [`MAX_STREAM_CHUNK`] bytes).
    Stdout {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// A chunk of the command's stderr (at most [`MAX_STREAM_CHUNK`] bytes).
    Stderr {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// The command ended; the last message of an exec session.
    Exited {
        status: ExitStatus,
    },
    /// The request failed (e.g. the command could not be started): `kind` is what the host
    /// acts on, `message` is for people.
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// The clock was set and the RNG reseeded after a `Resume`.
    Resumed(BootInfo),
    /// Acknowledges `Shutdown`; the guest stops right after.
    ShuttingDown,
    /// The PTY session of the command with this pid goes on without the host; the guest closes
    /// the connection right after.
    Detached {
        pid: u32,
    },
    /// The connection is attached to the PTY session of the command with this pid.
    Attached {
        pid: u32,
    },
    /// The workspace is mounted and served. `carried`: the mount was there already (one a
    /// snapshot held, served on across the restore or reset), not made by this request.
    WorkspaceMounted {
        carried: bool,
    },
    /// Some of the copy-on-write workspace's changes (paths' bytes at most
    /// [`crate::workspace::MAX_CHANGES_BYTES`]); more follow while `more`.
    WorkspaceChanges {
        changes: Vec<WorkspaceChange>,
        more: bool,
    },
}

/// Facts about the running guest, sent with `Ready` and `Resumed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootInfo {
    /// Guest `CLOCK_BOOTTIME` when the message was built, in nanoseconds.
    pub uptime_ns: u64,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// Version of guest-init.
    pub init_version: String,
    /// The container engine: `Ready` is sent only once it is up or has failed; `Resumed`
    /// reports it as it is after the restore or reset.
    pub engine: EngineState,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Normal exit with this code.
    Code(i32),
    /// Terminated by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// True for `Code(0)`.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The status as a shell reports it in `$?`: the code, or 128 + signal number.
    pub fn shell_code(&self) -> i32 {
        match *self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
        }
    }
}

#[cfg(test)]
mod tests;
