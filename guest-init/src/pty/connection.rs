//! A host connection to a terminal session: starting one (`Exec` with a `tty`), attaching to a
//! detached one (`Attach`), and serving the connection's requests while it is attached.

use super::pump::pump;
use super::session::{PtySession, Sink};
use super::table::{PtySessions, RegisterError};
use super::terminal::{attach_child, open_pty};
use crate::exec::{base_command, start_input_writer, CommandError};
use crate::reaper::Reaper;
use crate::service::{send, ServiceError, SharedWriter, Transport};
use paddock_protocol::{
    read_frame, ErrorKind, ExecRequest, FrameError, PtyConfig, Request, Response, WindowSize,
};
use std::fs::File;
use std::sync::Arc;

/// Errors of starting a terminal session (sent to the host as `Error`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("cannot allocate a terminal: {0}")]
    Terminal(#[source] std::io::Error),
    #[error("cannot run {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot start the session's threads: {0}")]
    Threads(#[source] std::io::Error),
}

/// Runs `request` (whose `tty` is `pty`) on a new terminal and serves the connection.
pub(crate) fn run_session<T: Transport>(
    request: ExecRequest,
    pty: PtyConfig,
    reaper: &Arc<Reaper>,
    sessions: &Arc<PtySessions>,
    reader: T,
    writer: SharedWriter<T>,
) -> Result<(), ServiceError> {
    let sink: Arc<dyn Sink> = writer.clone();
    let session = match start(&request, &pty, reaper, sessions, Arc::clone(&sink)) {
        Ok(session) => session,
        Err(e) => {
            let kind = match &e {
                StartError::Spawn { source, .. } => ErrorKind::of_spawn_failure(source),
                StartError::Command(_) => ErrorKind::CannotExecute,
                _ => ErrorKind::Other,
            };
            send(
                &writer,
                &Response::Error {
                    kind,
                    message: e.to_string(),
                },
            )?;
            return Ok(());
        }
    };
    serve_attached(&session, 1, reaper, sessions, reader, &writer)
}

/// Attaches the connection to a detached session (answering `Attached` or `Error`) and serves
/// it.
pub(crate) fn attach_session<T: Transport>(
    pid: Option<u32>,
    size: WindowSize,
    reaper: &Arc<Reaper>,
    sessions: &Arc<PtySessions>,
    reader: T,
    writer: SharedWriter<T>,
) -> Result<(), ServiceError> {
    let sink: Arc<dyn Sink> = writer.clone();
    match sessions.attach(pid, size, sink) {
        Ok((session, generation)) => {
            serve_attached(&session, generation, reaper, sessions, reader, &writer)
        }
        Err(e) => {
            send(
                &writer,
                &Response::Error {
                    kind: e.kind(),
                    message: e.to_string(),
                },
            )?;
            Ok(())
        }
    }
}

/// Spawns the command on a new terminal, registers the session, answers `Started` and starts
/// its threads (input writer, output pump).
fn start(
    request: &ExecRequest,
    pty: &PtyConfig,
    reaper: &Arc<Reaper>,
    sessions: &Arc<PtySessions>,
    sink: Arc<dyn Sink>,
) -> Result<Arc<PtySession>, StartError> {
    sessions.has_room()?;
    // `TERM` from the terminal's description; the request's own variables still win.
    let mut cmd = base_command(request, &[("TERM", &pty.term)])?;
    let pair = open_pty(pty.size).map_err(StartError::Terminal)?;
    attach_child(&mut cmd, &pair.slave).map_err(StartError::Terminal)?;
    let handle = File::from(pair.master);
    let reader_end = handle.try_clone().map_err(StartError::Terminal)?;
    let writer_end = handle.try_clone().map_err(StartError::Terminal)?;
    let (child, exit) = reaper.spawn(&mut cmd).map_err(|source| StartError::Spawn {
        program: request.argv[0].clone(),
        source,
    })?;
    // Our copies of the slave must go, or the master never reports the end of the output.
    drop(cmd);
    drop(pair.slave);
    drop(child);
    let pid = exit.pid();
    let kill = |e| {
        let _ = reaper.signal_group(pid, libc::SIGKILL);
        e
    };
    let input = if request.stdin {
        Some(start_input_writer(writer_end).map_err(|e| kill(StartError::Threads(e)))?)
    } else {
        None
    };
    let session = Arc::new(PtySession::new(pid, handle, input, Arc::clone(&sink)));
    sessions
        .insert(Arc::clone(&session))
        .map_err(|e| kill(StartError::Register(e)))?;
    // `Started` goes out before the pump can send any output. Should the host be gone, the
    // connection loop's read fails and hangs the session up.
    let _ = sink.send(&Response::Started { pid });
    let pumped = Arc::clone(&session);
    let table = Arc::clone(sessions);
    std::thread::Builder::new()
        .name(format!("pty-{pid}"))
        .spawn(move || pump(reader_end, exit, pumped, table))
        .map_err(|e| {
            sessions.remove(&session);
            kill(StartError::Threads(e))
        })?;
    Ok(session)
}

/// Serves requests of a connection attached to `session` (as attachment `generation`) until
/// it detaches, the session ends, or the host goes away (which hangs the session up).
fn serve_attached<T: Transport>(
    session: &Arc<PtySession>,
    generation: u64,
    reaper: &Arc<Reaper>,
    sessions: &Arc<PtySessions>,
    mut reader: T,
    writer: &SharedWriter<T>,
) -> Result<(), ServiceError> {
    loop {
        match read_frame::<_, Request>(&mut reader) {
            Ok(Request::Stdin { data }) => session.queue_input(data),
            Ok(Request::Resize { size }) => {
                // A failure leaves the old size; not worth ending the session over.
                let _ = session.resize(size);
            }
            Ok(Request::Signal { signal }) => {
                let _ = reaper.signal_group(session.pid(), signal);
            }
            Ok(Request::Detach) => {
                session.detach(generation, sessions.next_detach_mark());
                return Ok(());
            }
            Ok(_) => {
                // `StdinClose` (a terminal has no end of input but Ctrl-D, which the host
                // sends as a byte) and requests that do not belong here: ignored.
            }
            Err(e) => {
                if session.finished() {
                    return Ok(()); // our own shutdown after `Exited`
                }
                session.hang_up(generation, reaper);
                // Make sure the connection is closed even if the session still runs.
                let _ = Transport::shutdown(&*writer.lock().unwrap_or_else(|p| p.into_inner()));
                return match e {
                    FrameError::Closed => Ok(()),
                    e => Err(e.into()),
                };
            }
        }
    }
}
