//! One connection to guest-init: simple requests (ping, resume, shutdown) or one exec.

use super::exec::{ExecError, RunningExec};
use super::{bounded_message, response_kind};
use paddock_protocol::workspace::WorkspaceChange;
use paddock_protocol::WorkspaceMode;
use paddock_protocol::{
    read_frame, write_frame, BootInfo, ExecRequest, FrameError, Request, Response, ShutdownAction,
    UnixTime,
};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A connection to a guest port, past the vsock handshake.
#[derive(Debug)]
pub struct Connection {
    pub(super) stream: UnixStream,
    host_port: Option<u32>,
}

impl Connection {
    /// A handle that ends this connection from another thread (both directions shut down):
    /// a caller blocked on it then sees the connection closed. For when the VM behind it ends
    /// without the guest closing it (a triple fault), in a process that keeps the VMM.
    pub fn closer(&self) -> io::Result<Closer> {
        self.stream.try_clone().map(Closer)
    }
}

/// Ends a [`Connection`] from another thread.
#[derive(Debug)]
pub struct Closer(UnixStream);

impl Closer {
    /// Shuts the connection down both ways.
    pub fn close(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Errors of [`Connection::ping`].
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("pong carried nonce {got}, expected {expected}")]
    WrongNonce { expected: u64, got: u64 },
    #[error("guest error: {0}")]
    Guest(String),
    #[error("unexpected {0} response to a ping")]
    Unexpected(&'static str),
}

/// Errors of [`Connection::resume`].
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("guest could not resume: {0}")]
    Guest(String),
    #[error("unexpected {0} response to a resume")]
    Unexpected(&'static str),
}

/// Errors of [`Connection::shutdown`].
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("guest refused to shut down: {0}")]
    Guest(String),
    #[error("unexpected {0} response to a shutdown")]
    Unexpected(&'static str),
}

/// Errors of [`Connection::mount_workspace`].
#[derive(Debug, thiserror::Error)]
pub enum MountWorkspaceError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the guest could not mount the workspace: {0}")]
    Guest(String),
    #[error("unexpected {0} response to a workspace request")]
    Unexpected(&'static str),
    #[error("the guest listed more than {MAX_CHANGES} workspace changes")]
    TooMany,
}

/// Most changes the host accepts in one listing (a guest could otherwise send batches without
/// end).
pub const MAX_CHANGES: usize = 1_000_000;

impl Connection {
    pub(super) fn from_handshake(stream: UnixStream, host_port: u32) -> Self {
        Self {
            stream,
            host_port: Some(host_port),
        }
    }

    /// Wraps a stream that already reaches guest-init (no handshake), e.g. in tests.
    pub fn from_stream(stream: UnixStream) -> Self {
        Self {
            stream,
            host_port: None,
        }
    }

    /// The host-side port the VMM assigned in its `OK` answer, if there was a handshake.
    pub fn host_port(&self) -> Option<u32> {
        self.host_port
    }

    /// Limits how long reads and writes of the following requests may block (`None`: forever).
    /// An exec's [`RunningExec::wait`] lifts the read limit, commands may run for long.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    fn request(&mut self, request: &Request) -> Result<Response, FrameError> {
        write_frame(&mut self.stream, request)?;
        read_frame(&mut self.stream)
    }

    /// Checks that guest-init answers; returns the round-trip time.
    pub fn ping(&mut self, nonce: u64) -> Result<Duration, PingError> {
        let start = Instant::now();
        match self.request(&Request::Ping { nonce })? {
            Response::Pong { nonce: got } if got == nonce => Ok(start.elapsed()),
            Response::Pong { nonce: got } => Err(PingError::WrongNonce {
                expected: nonce,
                got,
            }),
            Response::Error { message, .. } => Err(PingError::Guest(bounded_message(message))),
            other => Err(PingError::Unexpected(response_kind(&other))),
        }
    }

    /// After a snapshot restore or reset: sets the guest's wall clock and reseeds its RNG with
    /// `entropy` (`RESUME_ENTROPY_MIN..=RESUME_ENTROPY_MAX` bytes).
    pub fn resume(
        &mut self,
        wall_clock: UnixTime,
        entropy: &[u8],
    ) -> Result<BootInfo, ResumeError> {
        self.send_resume(wall_clock, entropy)?;
        self.read_resumed()
    }

    /// The first half of [`Connection::resume`]: sends the request without waiting.
    pub fn send_resume(&mut self, wall_clock: UnixTime, entropy: &[u8]) -> Result<(), FrameError> {
        let request = Request::Resume {
            wall_clock,
            entropy: entropy.to_vec(),
        };
        write_frame(&mut self.stream, &request)
    }

    /// The second half of [`Connection::resume`]: reads the answer.
    pub fn read_resumed(&mut self) -> Result<BootInfo, ResumeError> {
        match read_frame(&mut self.stream)? {
            Response::Resumed(info) => Ok(info),
            Response::Error { message, .. } => Err(ResumeError::Guest(bounded_message(message))),
            other => Err(ResumeError::Unexpected(response_kind(&other))),
        }
    }

    /// Waits up to `timeout` for guest-init to send something (or the link to end); `false`
    /// when nothing came. Lets a caller watch the VM while it waits for an answer.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `poll` is one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        match ready {
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            0 => Ok(false),
            _ => Ok(true),
        }
    }

    /// Asks guest-init to mount the sandbox's workspace at `path` (served by the workspace
    /// server listening on the sandbox's workspace socket); returns once it is mounted, with
    /// whether the mount was there already (carried across a snapshot) rather than made now.
    pub fn mount_workspace(
        &mut self,
        path: &str,
        mode: WorkspaceMode,
    ) -> Result<bool, MountWorkspaceError> {
        let request = Request::MountWorkspace {
            path: path.to_string(),
            mode,
        };
        match self.request(&request)? {
            Response::WorkspaceMounted { carried } => Ok(carried),
            Response::Error { message, .. } => {
                Err(MountWorkspaceError::Guest(bounded_message(message)))
            }
            other => Err(MountWorkspaceError::Unexpected(response_kind(&other))),
        }
    }

    /// The changes of the copy-on-write workspace mounted at `path`, as guest-init lists them
    /// (at most [`MAX_CHANGES`]).
    pub fn workspace_changes(
        &mut self,
        path: &str,
    ) -> Result<Vec<WorkspaceChange>, MountWorkspaceError> {
        let request = Request::WorkspaceChanges {
            path: path.to_string(),
        };
        write_frame(&mut self.stream, &request)?;
        let mut all = Vec::new();
        loop {
            match read_frame(&mut self.stream)? {
                Response::WorkspaceChanges { changes, more } => {
                    all.extend(changes);
                    if all.len() > MAX_CHANGES {
                        return Err(MountWorkspaceError::TooMany);
                    }
                    if !more {
                        return Ok(all);
                    }
                }
                Response::Error { message, .. } => {
                    return Err(MountWorkspaceError::Guest(bounded_message(message)))
                }
                other => return Err(MountWorkspaceError::Unexpected(response_kind(&other))),
            }
        }
    }

    /// Asks the guest to power off or reboot; returns once guest-init acknowledged it.
    pub fn shutdown(mut self, action: ShutdownAction) -> Result<(), ShutdownError> {
        match self.request(&Request::Shutdown { action })? {
            Response::ShuttingDown => Ok(()),
            Response::Error { message, .. } => Err(ShutdownError::Guest(bounded_message(message))),
            other => Err(ShutdownError::Unexpected(response_kind(&other))),
        }
    }

    /// Starts a command; the connection becomes its session. Returns once it runs.
    pub fn start_exec(self, request: &ExecRequest) -> Result<RunningExec, ExecError> {
        RunningExec::start(self.stream, request)
    }
}
