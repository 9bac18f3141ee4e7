//! Running a command in the guest: stdin forwarding, separate stdout/stderr, signals, status.

use super::connection::Connection;
use super::{bounded_message, response_kind};
use paddock_protocol::{
    read_frame, write_frame, ExecRequest, ExitStatus, FrameError, Request, Response,
    MAX_STREAM_CHUNK,
};
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Errors of an exec.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot set up the exec: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The guest refused or failed the request; `kind` says how.
    #[error("guest error: {message}")]
    Guest {
        kind: paddock_protocol::ErrorKind,
        message: String,
    },
    #[error("unexpected {0} message during an exec")]
    Unexpected(&'static str),
    #[error("the guest closed the connection before the command's exit status")]
    Disconnected,
    #[error("a stdin reader was given but the exec request did not ask for stdin")]
    StdinNotRequested,
    #[error("cannot write the command's output: {0}")]
    Output(#[source] io::Error),
}

/// Errors of [`Signaller::signal`].
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot send the signal: {0}")]
    Send(#[from] FrameError),
}

/// What [`Connection::exec_output`] collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How much of a command's stderr [`Connection::exec_streaming`] keeps (for an error message).
pub const KEPT_STDERR: usize = 64 * 1024;

/// What [`Connection::exec_streaming`] returns; the command's stdout went to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedExec {
    pub status: ExitStatus,
    /// The first [`KEPT_STDERR`] bytes of the command's stderr (the rest is dropped).
    pub stderr: Vec<u8>,
}

/// Keeps the first `limit` bytes written to it and drops the rest: however much the guest
/// writes, it takes no more memory than that.
#[derive(Debug)]
struct FirstBytes {
    kept: Vec<u8>,
    limit: usize,
}

impl Write for FirstBytes {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type SharedWriter = Arc<Mutex<UnixStream>>;

fn send(writer: &SharedWriter, request: &Request) -> Result<(), FrameError> {
    let mut stream = writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    write_frame(&mut *stream, request)
}

/// A command running in the guest.
#[derive(Debug)]
pub struct RunningExec {
    reader: UnixStream,
    writer: SharedWriter,
    pid: u32,
    stdin_requested: bool,
}

/// Sends signals to a running command's process group; cheap to clone, usable from any thread
/// (e.g. a Ctrl-C handler).
#[derive(Debug, Clone)]
pub struct Signaller {
    writer: SharedWriter,
}

impl Signaller {
    pub(super) fn new(writer: SharedWriter) -> Self {
        Self { writer }
    }

    pub fn signal(&self, signal: i32) -> Result<(), SignalError> {
        send(&self.writer, &Request::Signal { signal })?;
        Ok(())
    }
}

impl RunningExec {
    pub(super) fn start(mut stream: UnixStream, request: &ExecRequest) -> Result<Self, ExecError> {
        write_frame(&mut stream, &Request::Exec(request.clone()))?;
        let pid = match read_frame::<_, Response>(&mut stream) {
            Ok(Response::Started { pid }) => pid,
            Ok(Response::Error { kind, message }) => {
                return Err(ExecError::Guest {
                    kind,
                    message: bounded_message(message),
                })
            }
            Ok(other) => return Err(ExecError::Unexpected(response_kind(&other))),
            Err(FrameError::Closed) => return Err(ExecError::Disconnected),
            Err(e) => return Err(e.into()),
        };
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        Ok(Self {
            reader: stream,
            writer,
            pid,
            stdin_requested: request.stdin,
        })
    }

    /// The command's pid inside the guest.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A handle to signal the command while [`RunningExec::wait`] runs.
    pub fn signaller(&self) -> Signaller {
        Signaller {
            writer: Arc::clone(&self.writer),
        }
    }

    /// Forwards `stdin` (on a background thread, so it may block, e.g. on a terminal), writes
    /// the command's stdout and stderr chunks to `stdout` and `stderr` as they arrive, and
    /// returns its exit status. Without `stdin`, the command's stdin is closed at once (if it
    /// was requested at all). The stdin thread may outlive this call while it waits for input;
    /// it ends at its next read.
    pub fn wait(
        mut self,
        stdin: Option<Box<dyn Read + Send>>,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<ExitStatus, ExecError> {
        match stdin {
            Some(_) if !self.stdin_requested => return Err(ExecError::StdinNotRequested),
            Some(input) => start_stdin_forwarder(input, Arc::clone(&self.writer))?,
            None if self.stdin_requested => send(&self.writer, &Request::StdinClose)?,
            None => {}
        }
        self.reader.set_read_timeout(None)?;
        let result = self.pump_output(stdout, stderr);
        // Ends the stdin forwarder's writes and tells the guest we are done either way.
        let _ = self.reader.shutdown(Shutdown::Both);
        result
    }

    fn pump_output(
        &mut self,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<ExitStatus, ExecError> {
        loop {
            match read_frame::<_, Response>(&mut self.reader) {
                Ok(Response::Stdout { data }) => deliver(stdout, &data)?,
                Ok(Response::Stderr { data }) => deliver(stderr, &data)?,
                Ok(Response::Exited { status }) => return Ok(status),
                Ok(Response::Error { kind, message }) => {
                    return Err(ExecError::Guest {
                        kind,
                        message: bounded_message(message),
                    })
                }
                Ok(other) => return Err(ExecError::Unexpected(response_kind(&other))),
                Err(FrameError::Closed) => return Err(ExecError::Disconnected),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn deliver(out: &mut dyn Write, data: &[u8]) -> Result<(), ExecError> {
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(ExecError::Output)
}

fn start_stdin_forwarder(input: Box<dyn Read + Send>, writer: SharedWriter) -> io::Result<()> {
    std::thread::Builder::new()
        .name("exec-stdin".into())
        .spawn(move || forward_stdin(input, &writer))?;
    Ok(())
}

fn forward_stdin(mut input: Box<dyn Read + Send>, writer: &SharedWriter) {
    let mut buf = vec![0u8; MAX_STREAM_CHUNK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let data = buf[..n].to_vec();
                if send(writer, &Request::Stdin { data }).is_err() {
                    return; // the exec is over
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("reading stdin for the guest command failed: {e}");
                break;
            }
        }
    }
    let _ = send(writer, &Request::StdinClose);
}

impl Connection {
    /// Runs a command to completion: see [`RunningExec::wait`].
    pub fn exec(
        self,
        request: &ExecRequest,
        stdin: Option<Box<dyn Read + Send>>,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<ExitStatus, ExecError> {
        self.start_exec(request)?.wait(stdin, stdout, stderr)
    }

    /// Runs a command with `stdin` as its input (sent only if the request asks for stdin) and
    /// collects its output in memory.
    pub fn exec_output(self, request: &ExecRequest, stdin: &[u8]) -> Result<ExecOutput, ExecError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = self.exec(request, stdin_of(request, stdin), &mut stdout, &mut stderr)?;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Runs a command with `stdin` as its input (sent only if the request asks for stdin),
    /// writing its stdout to `stdout` as it arrives (never held whole in memory) and keeping
    /// only the start of its stderr. A failing write to `stdout` ends the command's exec with
    /// [`ExecError::Output`].
    pub fn exec_streaming(
        self,
        request: &ExecRequest,
        stdin: &[u8],
        stdout: &mut dyn Write,
    ) -> Result<StreamedExec, ExecError> {
        let mut stderr = FirstBytes {
            kept: Vec::new(),
            limit: KEPT_STDERR,
        };
        let status = self.exec(request, stdin_of(request, stdin), stdout, &mut stderr)?;
        Ok(StreamedExec {
            status,
            stderr: stderr.kept,
        })
    }
}

/// `stdin` as the command's input, when the request asks for one.
fn stdin_of(request: &ExecRequest, stdin: &[u8]) -> Option<Box<dyn Read + Send>> {
    request
        .stdin
        .then(|| Box::new(io::Cursor::new(stdin.to_vec())) as Box<dyn Read + Send>)
}
