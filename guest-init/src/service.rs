//! The control service: serves one host connection (vsock in the guest, any [`Transport`] in
//! tests), dispatching ping, resume, shutdown, exec (with pipes or on a terminal) and attach
//! requests, and mounts the workspace.

use crate::exec;
use crate::pty::{self, PtySessions};
use crate::reaper::Reaper;
use paddock_protocol::workspace::{ChangedNode, WorkspaceChange, MAX_CHANGES_BYTES};
use paddock_protocol::WorkspaceMode;
use paddock_protocol::{
    read_frame, write_frame, BootInfo, ErrorKind, FrameError, Request, Response, ShutdownAction,
    UnixTime, RESUME_ENTROPY_MAX, RESUME_ENTROPY_MIN,
};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// A connected byte stream the service can split into a reader and a writer half.
pub trait Transport: Read + Write + Send + Sized + 'static {
    /// A second handle on the same connection (e.g. a `dup`ed fd).
    fn try_clone(&self) -> io::Result<Self>;
    /// Shuts the connection down in both directions, waking any blocked reader.
    fn shutdown(&self) -> io::Result<()>;
}

impl Transport for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }

    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }
}

/// What the service needs from the machine it runs on. PID 1 implements it for real; tests
/// record the calls.
pub trait Platform: Send + Sync {
    fn boot_info(&self) -> BootInfo;
    /// Sets the wall clock and reseeds the kernel RNG after a snapshot restore or reset.
    fn resume(&self, wall_clock: UnixTime, entropy: &[u8]) -> io::Result<()>;
    /// Stops the machine; as PID 1 this does not return.
    fn shutdown(&self, action: ShutdownAction);
    /// Mounts the sandbox's workspace at `path`, or finds it carried across a restore (see
    /// [`crate::workspace::mount`]); a platform that cannot says so.
    fn mount_workspace(
        &self,
        _path: &str,
        _mode: WorkspaceMode,
    ) -> Result<crate::workspace::Mounted, crate::workspace::MountError> {
        Err(crate::workspace::MountError::Unsupported)
    }
    /// The changes of the copy-on-write workspace at `path` (see
    /// [`crate::workspace::changes`]); a platform that has none says so.
    fn workspace_changes(
        &self,
        _path: &str,
    ) -> Result<Vec<WorkspaceChange>, crate::workspace::ChangesError> {
        Err(crate::workspace::ChangesError::Unsupported)
    }
}

/// Errors that end serving a connection.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot set up the connection: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The writer half of a connection, shared by the threads of one session so frames never
/// interleave.
pub(crate) type SharedWriter<T> = Arc<Mutex<T>>;

/// Sends one response under the writer lock.
pub(crate) fn send<T: Transport>(
    writer: &SharedWriter<T>,
    response: &Response,
) -> Result<(), FrameError> {
    let mut guard = writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    write_frame(&mut *guard, response)
}

/// Sends `changes` in responses of at most [`MAX_CHANGES_BYTES`] of paths each, the last with
/// `more: false` (one, empty, when there are none).
fn send_changes<T: Transport>(
    writer: &SharedWriter<T>,
    changes: Vec<WorkspaceChange>,
) -> Result<(), FrameError> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for change in changes {
        let size = change.path.len() + node_size(&change.node);
        if !batch.is_empty() && bytes + size > MAX_CHANGES_BYTES {
            let changes = std::mem::take(&mut batch);
            send(
                writer,
                &Response::WorkspaceChanges {
                    changes,
                    more: true,
                },
            )?;
            bytes = 0;
        }
        bytes += size;
        batch.push(change);
    }
    send(
        writer,
        &Response::WorkspaceChanges {
            changes: batch,
            more: false,
        },
    )
}

/// Bytes a changed node adds to a response beyond its path (a link's target).
fn node_size(node: &ChangedNode) -> usize {
    match node {
        ChangedNode::Symlink { target } => target.len(),
        _ => 0,
    }
}

/// guest-init's control service.
pub struct ControlService {
    platform: Arc<dyn Platform>,
    reaper: Arc<Reaper>,
    /// Terminal sessions outlive their connections (detach, attach).
    ptys: Arc<PtySessions>,
}

impl std::fmt::Debug for ControlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlService").finish_non_exhaustive()
    }
}

impl ControlService {
    pub fn new(platform: Arc<dyn Platform>, reaper: Arc<Reaper>) -> Self {
        Self {
            platform,
            reaper,
            ptys: PtySessions::new(),
        }
    }

    /// What guest-init reports about the machine (for its `Ready` announcement).
    pub fn boot_info(&self) -> BootInfo {
        self.platform.boot_info()
    }

    /// Serves one connection until the host closes it, an exec session on it ends, or the
    /// machine shuts down. A clean close by the host is `Ok`.
    pub fn serve<T: Transport>(&self, stream: T) -> Result<(), ServiceError> {
        let writer: SharedWriter<T> = Arc::new(Mutex::new(stream.try_clone()?));
        let mut reader = stream;
        loop {
            let request = match read_frame::<_, Request>(&mut reader) {
                Ok(request) => request,
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => {
                    // The stream may be out of step now; say why and hang up.
                    let _ = send(&writer, &Response::error(e.to_string()));
                    return Err(e.into());
                }
            };
            match request {
                Request::Ping { nonce } => send(&writer, &Response::Pong { nonce })?,
                Request::Resume {
                    wall_clock,
                    entropy,
                } => {
                    let response = match self.resume(wall_clock, &entropy) {
                        Ok(()) => Response::Resumed(self.platform.boot_info()),
                        Err(message) => Response::error(message),
                    };
                    send(&writer, &response)?;
                }
                Request::Shutdown { action } => {
                    send(&writer, &Response::ShuttingDown)?;
                    self.platform.shutdown(action);
                    return Ok(());
                }
                Request::WorkspaceChanges { path } => {
                    match self.platform.workspace_changes(&path) {
                        Ok(changes) => send_changes(&writer, changes)?,
                        Err(e) => send(
                            &writer,
                            &Response::Error {
                                kind: ErrorKind::Workspace,
                                message: e.to_string(),
                            },
                        )?,
                    }
                }
                Request::MountWorkspace { path, mode } => {
                    let response = match self.platform.mount_workspace(&path, mode) {
                        Ok(mounted) => Response::WorkspaceMounted {
                            carried: mounted == crate::workspace::Mounted::Carried,
                        },
                        Err(e) => Response::Error {
                            kind: ErrorKind::Workspace,
                            message: e.to_string(),
                        },
                    };
                    send(&writer, &response)?;
                }
                Request::Exec(mut exec) => {
                    return match exec.tty.take() {
                        Some(tty) => {
                            pty::run_session(exec, tty, &self.reaper, &self.ptys, reader, writer)
                        }
                        None => exec::run_session(exec, &self.reaper, reader, writer),
                    };
                }
                Request::Attach { pid, size } => {
                    return pty::attach_session(
                        pid,
                        size,
                        &self.reaper,
                        &self.ptys,
                        reader,
                        writer,
                    );
                }
                Request::Stdin { .. }
                | Request::StdinClose
                | Request::Signal { .. }
                | Request::Resize { .. }
                | Request::Detach => {
                    let message = "no command is running on this connection".to_string();
                    send(&writer, &Response::error(message))?;
                }
            }
        }
    }

    fn resume(&self, wall_clock: UnixTime, entropy: &[u8]) -> Result<(), String> {
        if !wall_clock.is_valid() {
            return Err(format!(
                "invalid wall clock nanoseconds {}",
                wall_clock.nanos
            ));
        }
        if !(RESUME_ENTROPY_MIN..=RESUME_ENTROPY_MAX).contains(&entropy.len()) {
            return Err(format!(
                "resume needs {RESUME_ENTROPY_MIN}..={RESUME_ENTROPY_MAX} entropy bytes, got {}",
                entropy.len()
            ));
        }
        self.platform
            .resume(wall_clock, entropy)
            .map_err(|e| format!("resume failed: {e}"))
    }
}

#[cfg(test)]
mod tests;
