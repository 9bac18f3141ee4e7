//! The VMM process's control socket: how `paddock snapshot|reset|stop|ls` reach a running
//! sandbox. Messages travel in the same checksummed frames as the guest protocol. A request
//! that names a directory (a snapshot's destination, a reset target) is followed by one byte
//! carrying that directory, open, as `SCM_RIGHTS`: the VMM's jail does not see the host's paths,
//! and the VMM uses only what the caller could open.

use paddock_protocol::{read_frame, write_frame, FrameError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Requests to a sandbox's VMM process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Is it alive, and what is it.
    Status,
    /// Write a snapshot to `dir` (its path, for messages; the directory itself follows the
    /// frame); stop the sandbox afterwards if `stop`.
    Snapshot { dir: PathBuf, stop: bool },
    /// Reset in place to the origin snapshot or `to` (which then follows the frame, as with
    /// `Snapshot`).
    Reset { to: Option<PathBuf> },
    /// Stop the sandbox.
    Stop,
    /// The first exec since the snapshot's first restore has ended: record the working set
    /// again, now through that exec (done once; a no-op after a reset or when not pending).
    RecordWorkingSet,
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
    Reset {
        reset_ms: f64,
        ready_ms: f64,
        /// Where the time went (docs/BENCHMARKS.md).
        spans: Vec<crate::timings::Span>,
    },
    /// The VMM is stopping.
    Stopping,
    /// The working set was recorded again (its pages), or was not pending (`None`).
    WorkingSetRecorded { pages: Option<u64> },
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

impl ControlRequest {
    /// The directory this request names, which follows its frame as a descriptor.
    pub fn directory(&self) -> Option<&Path> {
        match self {
            ControlRequest::Snapshot { dir, .. } => Some(dir),
            ControlRequest::Reset { to } => to.as_deref(),
            ControlRequest::Status | ControlRequest::Stop | ControlRequest::RecordWorkingSet => {
                None
            }
        }
    }
}

/// Sends the directory a request names after its frame.
pub fn send_directory(stream: &UnixStream, dir: &File) -> std::io::Result<()> {
    stream
        .send_with_fd(&[0u8][..], dir.as_raw_fd())
        .map(drop)
        .map_err(std::io::Error::from)
}

/// Receives the directory a request names (see [`send_directory`]).
pub fn receive_directory(stream: &UnixStream) -> std::io::Result<File> {
    let mut byte = [0u8; 1];
    match stream.recv_with_fd(&mut byte) {
        Ok((1, Some(dir))) => Ok(dir),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the request's directory did not come with it",
        )),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Sends one request to the control socket at `path` and returns the answer. `dir` is the
/// directory the request names, open (it must be given exactly when the request names one).
pub fn request(
    path: &Path,
    req: &ControlRequest,
    dir: Option<&File>,
    timeout: Duration,
) -> Result<ControlResponse, ControlError> {
    let mut stream = UnixStream::connect(path).map_err(|source| ControlError::NotRunning {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write_frame(&mut stream, req)?;
    if let Some(dir) = dir {
        send_directory(&stream, dir)?;
    }
    match read_frame(&mut stream)? {
        ControlResponse::Error { message } => Err(ControlError::Remote(message)),
        other => Ok(other),
    }
}
