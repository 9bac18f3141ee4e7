//! One terminal session: the command's terminal, who is attached to it, and what it printed
//! while nobody was.

use super::ring::OutputRing;
use super::terminal;
use crate::exec::queue_stdin;
use crate::reaper::Reaper;
use crate::service::Transport;
use paddock_protocol::{
    write_frame, ErrorKind, FrameError, Response, WindowSize, DETACHED_OUTPUT_BUFFER,
    MAX_STREAM_CHUNK,
};
use rustix::process::Signal;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where an attached session's responses go: the writer half of the host's connection.
pub(crate) trait Sink: Send + Sync {
    fn send(&self, response: &Response) -> Result<(), FrameError>;
    /// Shuts the connection down, waking its reader.
    fn close(&self);
}

impl<T: Transport> Sink for Mutex<T> {
    fn send(&self, response: &Response) -> Result<(), FrameError> {
        let mut stream = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        write_frame(&mut *stream, response)
    }

    fn close(&self) {
        let stream = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = stream.shutdown();
    }
}

/// Errors of attaching a connection to a session.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no detached terminal session")]
    NoDetachedSession,
    #[error("no terminal session of pid {0}")]
    NoSuchSession(u32),
    #[error("terminal session {0} is attached to another connection")]
    AlreadyAttached(u32),
    #[error("cannot set the window size: {0}")]
    Resize(#[source] std::io::Error),
    #[error(transparent)]
    Send(#[from] FrameError),
}

impl AttachError {
    /// What the host is told this failure is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AttachError::NoDetachedSession => ErrorKind::NoDetachedSession,
            AttachError::NoSuchSession(_) => ErrorKind::NoSuchSession,
            AttachError::AlreadyAttached(_) => ErrorKind::AlreadyAttached,
            AttachError::Resize(_) | AttachError::Send(_) => ErrorKind::Other,
        }
    }
}

/// Who the session talks to, under one lock so output, detach and attach never interleave.
struct Attachment {
    /// The attached connection, if any.
    sink: Option<Arc<dyn Sink>>,
    /// Counts attachments; a connection acts on the session only while it is the current one.
    generation: u64,
    /// Output produced while nobody was attached.
    kept: OutputRing,
    /// Orders detached sessions: the most recently detached has the highest mark.
    detached_mark: u64,
    /// The command exited and its output was drained; the session is over.
    ended: bool,
    /// Its host went away without detaching: the command was sent SIGHUP and is ending, so
    /// it is not there to attach to.
    hung_up: bool,
}

/// A command running on a pseudo-terminal.
pub(crate) struct PtySession {
    pid: u32,
    /// A handle on the master for window sizes and the foreground group (the pump reads its
    /// own).
    master: File,
    /// Input for the command's terminal, written by a thread of its own; `None` when the host
    /// did not ask for stdin.
    input: Option<SyncSender<Vec<u8>>>,
    attachment: Mutex<Attachment>,
    /// Set once the session ended (read without the lock by input backpressure).
    finished: AtomicBool,
}

impl PtySession {
    pub(super) fn new(
        pid: u32,
        master: File,
        input: Option<SyncSender<Vec<u8>>>,
        sink: Arc<dyn Sink>,
    ) -> Self {
        Self {
            pid,
            master,
            input,
            attachment: Mutex::new(Attachment {
                sink: Some(sink),
                generation: 1,
                kept: OutputRing::new(DETACHED_OUTPUT_BUFFER),
                detached_mark: 0,
                ended: false,
                hung_up: false,
            }),
            finished: AtomicBool::new(false),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn lock(&self) -> MutexGuard<'_, Attachment> {
        // Every critical section leaves the state consistent; a panic elsewhere must not wedge
        // the session.
        self.attachment
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// When detached and still running: the detach order mark (higher is more recent).
    pub(super) fn detached_mark(&self) -> Option<u64> {
        let state = self.lock();
        (state.sink.is_none() && !state.ended && !state.hung_up).then_some(state.detached_mark)
    }

    /// Queues input for the terminal, waiting while the queue is full unless the session ended.
    pub(super) fn queue_input(&self, data: Vec<u8>) {
        if let Some(queue) = &self.input {
            queue_stdin(queue, data, &self.finished);
        }
    }

    pub(super) fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        terminal::set_window_size(&self.master, size)
    }

    /// Output from the pump: to the attached host, else into the kept buffer.
    pub(super) fn output(&self, data: &[u8]) {
        let mut state = self.lock();
        if let Some(sink) = &state.sink {
            let response = Response::Stdout {
                data: data.to_vec(),
            };
            if sink.send(&response).is_ok() {
                return;
            }
            // The host is gone; its connection thread hangs the session up.
            state.sink = None;
        }
        state.kept.push(data);
    }

    /// The command exited and its output is drained: tells the attached host, if any.
    pub(super) fn end(&self, last: Response) {
        let mut state = self.lock();
        state.ended = true;
        self.finished.store(true, Ordering::SeqCst);
        if let Some(sink) = state.sink.take() {
            let _ = sink.send(&last);
            sink.close();
        }
    }

    /// Detaches the connection of `generation`: answers `Detached` and closes it. False if it
    /// was no longer attached (the session ended, or it was hung up).
    pub(super) fn detach(&self, generation: u64, mark: u64) -> bool {
        let mut state = self.lock();
        if state.generation != generation {
            return false;
        }
        let Some(sink) = state.sink.take() else {
            return false;
        };
        state.detached_mark = mark;
        let _ = sink.send(&Response::Detached { pid: self.pid });
        sink.close();
        true
    }

    /// Attaches `sink`: applies `size` (signalling SIGWINCH even if it did not change, so the
    /// screen is redrawn), answers `Attached`, replays the kept output. Returns the attachment's
    /// generation.
    pub(super) fn attach(&self, sink: Arc<dyn Sink>, size: WindowSize) -> Result<u64, AttachError> {
        let mut state = self.lock();
        if state.ended || state.hung_up {
            return Err(AttachError::NoSuchSession(self.pid));
        }
        if state.sink.is_some() {
            return Err(AttachError::AlreadyAttached(self.pid));
        }
        let unchanged = terminal::window_size(&self.master).is_ok_and(|now| now == size);
        terminal::set_window_size(&self.master, size).map_err(AttachError::Resize)?;
        if unchanged {
            terminal::signal_foreground(&self.master, Signal::WINCH);
        }
        sink.send(&Response::Attached { pid: self.pid })?;
        let kept = state.kept.contents();
        for chunk in kept.chunks(MAX_STREAM_CHUNK) {
            sink.send(&Response::Stdout {
                data: chunk.to_vec(),
            })?;
        }
        state.kept.clear();
        state.sink = Some(sink);
        state.generation += 1;
        Ok(state.generation)
    }

    /// The connection of `generation` went away without detaching: hang the session up (SIGHUP,
    /// then SIGCONT for a stopped job, to the terminal's foreground group; SIGHUP to the
    /// command's group), as a closed terminal does.
    pub(super) fn hang_up(&self, generation: u64, reaper: &Reaper) {
        let mut state = self.lock();
        if state.generation != generation || state.ended {
            return;
        }
        state.sink = None;
        state.hung_up = true;
        drop(state);
        terminal::signal_foreground(&self.master, Signal::HUP);
        terminal::signal_foreground(&self.master, Signal::CONT);
        let _ = reaper.signal_group(self.pid, libc::SIGHUP);
    }
}
