//! The host's control connection to the workspace server (`paddock_protocol::workspace`'s
//! `CONTROL_HELLO`): the VMM saves the mount's state while a snapshot's vCPUs are paused, and
//! loads it again before a restored guest resumes. One connection at a time, one command each;
//! anything malformed ends that connection alone.

use crate::session::WorkspaceServer;
use paddock_protocol::workspace::{
    CONTROL_HELLO, LOAD_STATE, MAX_STATE_BYTES, SAVE_STATE, STATE_LOADED, STATE_REFUSED,
};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{mpsc, Arc};

/// Why a control connection ended without its command done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the control connection did not start with the control hello")]
    Hello,
    #[error("unknown control command {0:#04x}")]
    Command(u8),
    #[error("a state of {0} bytes (at most {MAX_STATE_BYTES})")]
    TooLarge(usize),
    #[error("the control connection failed: {0}")]
    Io(#[from] io::Error),
}

impl WorkspaceServer {
    /// Starts the thread that answers control connections from `listener`, one at a time. The
    /// thread is running once this returns (past the syscalls a thread makes as it starts), so
    /// the process can then be confined to a filter that allows none.
    pub fn start_control(self: &Arc<Self>, listener: UnixListener) -> io::Result<()> {
        let server = self.clone();
        let (started, running) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("workspace-control".into())
            .spawn(move || {
                let _ = started.send(());
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = server.answer_control(stream) {
                                tracing::warn!("workspace control connection ended: {e}");
                            }
                        }
                        Err(e) if is_transient(&e) => {}
                        Err(e) => {
                            tracing::error!("workspace control: accepting failed: {e}");
                            return;
                        }
                    }
                }
            })?;
        running
            .recv()
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// Answers one control connection: the hello, one command.
    pub fn answer_control(&self, mut stream: UnixStream) -> Result<(), ControlError> {
        let mut hello = [0u8; CONTROL_HELLO.len()];
        stream
            .read_exact(&mut hello)
            .map_err(|_| ControlError::Hello)?;
        if &hello != CONTROL_HELLO {
            return Err(ControlError::Hello);
        }
        let mut command = [0u8; 1];
        stream.read_exact(&mut command)?;
        match command[0] {
            SAVE_STATE => {
                let state = self.save_state();
                // At most MAX_STATE_BYTES: `save_state` gives nothing past it.
                let len =
                    u32::try_from(state.len()).map_err(|_| ControlError::TooLarge(state.len()))?;
                stream.write_all(&len.to_le_bytes())?;
                stream.write_all(&state)?;
            }
            LOAD_STATE => {
                let mut len = [0u8; 4];
                stream.read_exact(&mut len)?;
                let len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
                if len > MAX_STATE_BYTES {
                    stream.write_all(&[STATE_REFUSED])?;
                    return Err(ControlError::TooLarge(len));
                }
                let mut state = vec![0u8; len];
                stream.read_exact(&mut state)?;
                let answer = match self.load_state(&state) {
                    Ok(()) => STATE_LOADED,
                    Err(e) => {
                        tracing::warn!("workspace state refused: {e}");
                        STATE_REFUSED
                    }
                };
                stream.write_all(&[answer])?;
            }
            other => return Err(ControlError::Command(other)),
        }
        Ok(())
    }
}

/// An accept error that concerns one connection, not the listener.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

#[cfg(test)]
mod tests;
