//! The VMM process's control socket: how `paddock snapshot|reset|stop|ls` reach a running
//! sandbox. Messages travel in the same checksummed frames as the guest protocol.

use paddock_protocol::{read_frame, write_frame, FrameError};
use serde::{Deserialize, Serialize};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Requests to a sandbox's VMM process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Is it alive, and what is it.
    Status,
    /// Write a snapshot to `dir`; stop the sandbox afterwards if `stop`.
    Snapshot { dir: PathBuf, stop: bool },
    /// Reset in place to the origin snapshot or `to`.
    Reset { to: Option<PathBuf> },
    /// Stop the sandbox.
    Stop,
}

/// Answers from a sandbox's VMM process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Status.
    Status {
        pid: u32,
        origin_snapshot: Option<PathBuf>,
        rss_bytes: u64,
    },
    /// A snapshot was written.
    Snapshotted { paused_ms: f64, memory_written: u64 },
    /// The reset finished and guest-init answered.
    Reset { reset_ms: f64, ready_ms: f64 },
    /// The VMM is stopping.
    Stopping,
    /// The request failed.
    Error { message: String },
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The VMM process is not there (stopped or crashed).
    #[error("the sandbox is not running (cannot reach {path}: {source})")]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The exchange itself failed.
    #[error("talking to the sandbox's VMM failed: {0}")]
    Frame(#[from] FrameError),
    /// Setting socket options failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The VMM reported an error.
    #[error("{0}")]
    Remote(String),
}

/// Sends one request to the control socket at `path` and returns the answer.
pub fn request(
    path: &Path,
    req: &ControlRequest,
    timeout: Duration,
) -> Result<ControlResponse, ControlError> {
    let mut stream = UnixStream::connect(path).map_err(|source| ControlError::NotRunning {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write_frame(&mut stream, req)?;
    match read_frame(&mut stream)? {
        ControlResponse::Error { message } => Err(ControlError::Remote(message)),
        other => Ok(other),
    }
}
