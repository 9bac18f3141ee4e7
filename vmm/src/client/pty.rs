//! A command on a terminal in the guest: typed input, window sizes, output, detach and attach.

use super::connection::Connection;
use super::exec::Signaller;
use super::{bounded_message, response_kind};
use paddock_protocol::{
    read_frame, write_frame, ErrorKind, ExecRequest, ExitStatus, FrameError, Request, Response,
    WindowSize, MAX_STREAM_CHUNK,
};
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Errors of a terminal session.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("cannot set up the terminal session: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The guest refused or failed the request; `kind` says how.
    #[error("guest error: {message}")]
    Guest { kind: ErrorKind, message: String },
    #[error("unexpected {0} message during a terminal session")]
    Unexpected(&'static str),
    #[error("the guest closed the connection before the command's exit status")]
    Disconnected,
    #[error("the exec request asks for no terminal")]
    NoTerminalRequested,
    #[error("cannot write the command's output: {0}")]
    Output(#[source] io::Error),
}

/// How an attached terminal session ended for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtyEnd {
    /// The command ended.
    Exited(ExitStatus),
    /// The session goes on in the guest without us (`paddock attach` comes back to it).
    Detached,
}

type SharedWriter = Arc<Mutex<UnixStream>>;

/// A connection attached to a terminal session in the guest.
#[derive(Debug)]
pub struct PtySession {
    reader: UnixStream,
    writer: SharedWriter,
    pid: u32,
}

/// Drives an attached session from other threads (typed input, window sizes, detaching);
/// cheap to clone.
#[derive(Debug, Clone)]
pub struct PtyControl {
    writer: SharedWriter,
}

impl PtyControl {
    fn send(&self, request: &Request) -> Result<(), FrameError> {
        let mut stream = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        write_frame(&mut *stream, request)
    }

    /// Typed bytes for the terminal (Ctrl-C, Ctrl-Z, Ctrl-D included: the guest's terminal
    /// turns them into signals or end of input).
    pub fn input(&self, data: &[u8]) -> Result<(), FrameError> {
        for chunk in data.chunks(MAX_STREAM_CHUNK) {
            self.send(&Request::Stdin {
                data: chunk.to_vec(),
            })?;
        }
        Ok(())
    }

    /// The host's window changed size.
    pub fn resize(&self, size: WindowSize) -> Result<(), FrameError> {
        self.send(&Request::Resize { size })
    }

    /// Leaves the session running in the guest; [`PtySession::wait`] then returns
    /// [`PtyEnd::Detached`].
    pub fn detach(&self) -> Result<(), FrameError> {
        self.send(&Request::Detach)
    }

    /// Closes the connection without detaching: the guest hangs the session up (SIGHUP), as
    /// when a terminal is closed, and [`PtySession::wait`] returns.
    pub fn hang_up(&self) {
        let stream = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = stream.shutdown(Shutdown::Both);
    }
}

impl PtySession {
    fn from_stream(stream: UnixStream, pid: u32) -> Result<Self, PtyError> {
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        Ok(Self {
            reader: stream,
            writer,
            pid,
        })
    }

    /// The pid of the session's command inside the guest.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn control(&self) -> PtyControl {
        PtyControl {
            writer: Arc::clone(&self.writer),
        }
    }

    /// Signals the command's process group (e.g. SIGKILL for a timeout).
    pub fn signaller(&self) -> Signaller {
        Signaller::new(Arc::clone(&self.writer))
    }

    /// Writes the terminal's output to `output` until the command exits or the session is
    /// detached.
    pub fn wait(mut self, output: &mut dyn Write) -> Result<PtyEnd, PtyError> {
        self.reader.set_read_timeout(None)?;
        let result = self.pump(output);
        let _ = self.reader.shutdown(Shutdown::Both);
        result
    }

    fn pump(&mut self, output: &mut dyn Write) -> Result<PtyEnd, PtyError> {
        loop {
            match read_frame::<_, Response>(&mut self.reader) {
                Ok(Response::Stdout { data }) => output
                    .write_all(&data)
                    .and_then(|()| output.flush())
                    .map_err(PtyError::Output)?,
                Ok(Response::Exited { status }) => return Ok(PtyEnd::Exited(status)),
                Ok(Response::Detached { .. }) => return Ok(PtyEnd::Detached),
                Ok(Response::Error { kind, message }) => {
                    return Err(PtyError::Guest {
                        kind,
                        message: bounded_message(message),
                    })
                }
                Ok(other) => return Err(PtyError::Unexpected(response_kind(&other))),
                Err(FrameError::Closed) => return Err(PtyError::Disconnected),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Reads the answer to a start or attach: the pid from `Started` or `Attached`.
fn read_answer(stream: &mut UnixStream) -> Result<u32, PtyError> {
    match read_frame::<_, Response>(stream) {
        Ok(Response::Started { pid } | Response::Attached { pid }) => Ok(pid),
        Ok(Response::Error { kind, message }) => Err(PtyError::Guest {
            kind,
            message: bounded_message(message),
        }),
        Ok(other) => Err(PtyError::Unexpected(response_kind(&other))),
        Err(FrameError::Closed) => Err(PtyError::Disconnected),
        Err(e) => Err(e.into()),
    }
}

impl Connection {
    /// Starts a command on a terminal in the guest (`request.tty` must be set); the connection
    /// becomes attached to its session.
    pub fn start_pty(mut self, request: &ExecRequest) -> Result<PtySession, PtyError> {
        if request.tty.is_none() {
            return Err(PtyError::NoTerminalRequested);
        }
        write_frame(&mut self.stream, &Request::Exec(request.clone()))?;
        let pid = read_answer(&mut self.stream)?;
        PtySession::from_stream(self.stream, pid)
    }

    /// Attaches to a detached terminal session: the one whose command has `pid`, or the most
    /// recently detached. `size` is applied and the command is told to redraw; the output kept
    /// while detached comes first from [`PtySession::wait`].
    pub fn attach(mut self, pid: Option<u32>, size: WindowSize) -> Result<PtySession, PtyError> {
        write_frame(&mut self.stream, &Request::Attach { pid, size })?;
        let pid = read_answer(&mut self.stream)?;
        PtySession::from_stream(self.stream, pid)
    }
}
