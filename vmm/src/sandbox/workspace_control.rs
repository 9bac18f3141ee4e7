//! The host side of the workspace server's control socket (`paddock_protocol::workspace`,
//! [`CONTROL_HELLO`]): saving the server's state (which node id and file handle of the guest's
//! FUSE mount mean which file) while the VMM is paused for a snapshot, and loading a snapshot's
//! state before the guest carries on from it. The guest cannot reach this socket: its
//! connections land on the other one.

use super::paths::SandboxPaths;
use crate::companion::Companion;
use paddock_protocol::workspace::{
    CONTROL_HELLO, LOAD_STATE, MAX_STATE_BYTES, SAVE_STATE, STATE_LOADED, STATE_REFUSED,
};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the server may take to answer (it answers from memory).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// The companion's name in snapshots.
pub const COMPANION_NAME: &str = "workspace";

/// Why the server's state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No server listens (the sandbox shares no workspace, or its server has ended).
    #[error("no workspace server listens on {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("talking to the workspace server: {0}")]
    Io(#[from] std::io::Error),
    /// The server announced a state larger than any it makes.
    #[error("the workspace server announced a state of {0} bytes (at most {MAX_STATE_BYTES})")]
    TooLarge(u64),
    /// The server refused the state (not one it made, or another mode's).
    #[error("the workspace server refused the saved state")]
    Refused,
    /// The server answered something else.
    #[error("the workspace server answered {0:#04x}")]
    Unexpected(u8),
}

/// The control socket of the sandbox at `paths`.
pub fn socket(paths: &SandboxPaths) -> PathBuf {
    paths.dir.join("workspace-control.sock")
}

fn connect(socket: &Path, command: u8) -> Result<UnixStream, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ControlError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let mut hello = Vec::with_capacity(CONTROL_HELLO.len() + 1);
    hello.extend_from_slice(CONTROL_HELLO);
    hello.push(command);
    stream.write_all(&hello)?;
    Ok(stream)
}

/// The server's state now (`None`: it serves no mount).
pub fn save(socket: &Path) -> Result<Option<Vec<u8>>, ControlError> {
    let mut stream = connect(socket, SAVE_STATE)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    let size = usize::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_STATE_BYTES)
        .ok_or(ControlError::TooLarge(u64::from(len)))?;
    if size == 0 {
        return Ok(None);
    }
    let mut state = vec![0u8; size];
    stream.read_exact(&mut state)?;
    Ok(Some(state))
}

/// Gives the server the state the guest's mount carries on from (`None`: the guest's mount, if
/// it has one, is not to be carried on).
pub fn load(socket: &Path, state: Option<&[u8]>) -> Result<(), ControlError> {
    let state = state.unwrap_or_default();
    let len = u32::try_from(state.len())
        .ok()
        .filter(|_| state.len() <= MAX_STATE_BYTES)
        .ok_or(ControlError::TooLarge(state.len() as u64))?;
    let mut stream = connect(socket, LOAD_STATE)?;
    let mut message = Vec::with_capacity(4 + state.len());
    message.extend_from_slice(&len.to_le_bytes());
    message.extend_from_slice(state);
    stream.write_all(&message)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer)?;
    match answer[0] {
        STATE_LOADED => Ok(()),
        STATE_REFUSED => Err(ControlError::Refused),
        other => Err(ControlError::Unexpected(other)),
    }
}

/// The workspace server as the VMM's companion: its state goes into every snapshot and comes
/// back on every reset. Without a server (no workspace shared) there is nothing to keep.
#[derive(Debug)]
pub struct WorkspaceCompanion {
    socket: PathBuf,
}

impl WorkspaceCompanion {
    /// The companion of the sandbox at `paths`.
    pub fn new(paths: &SandboxPaths) -> Self {
        Self {
            socket: socket(paths),
        }
    }
}

impl Companion for WorkspaceCompanion {
    fn name(&self) -> &'static str {
        COMPANION_NAME
    }

    fn save(&self) -> Option<Vec<u8>> {
        if !self.socket.exists() {
            return None;
        }
        match save(&self.socket) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(
                    "the workspace mount is not kept in this snapshot (a restore mounts it anew): {e}"
                );
                None
            }
        }
    }

    fn restore(&self, saved: Option<&[u8]>) -> bool {
        if !self.socket.exists() {
            return false;
        }
        if let Err(e) = load(&self.socket, saved) {
            tracing::warn!(
                "the workspace mount is not carried across this reset (it is mounted anew): {e}"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests;
