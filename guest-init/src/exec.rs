//! One exec session: runs a command and streams its I/O over the connection.
//!
//! Threads: the connection thread keeps reading requests (stdin, stdin close, signals); a
//! stdin thread (only when stdin was requested) feeds the child's stdin pipe; an output thread
//! polls stdout, stderr and the child's pidfd, forwards output in chunks of at most
//! [`MAX_STREAM_CHUNK`] bytes and finally sends `Exited`.
//!
//! End of a session: `Exited` goes out once both pipes reached EOF and the child was reaped.
//! A background grandchild may keep the pipes open forever, so once the child itself has
//! exited the remaining output is forwarded for at most [`EXIT_GRACE`]; then the pipes are
//! closed. After `Exited` the guest shuts the connection down.
//!
//! The command runs in its own session and process group (`setsid`): signals from the host go
//! to the whole group, like a terminal's, and if the host hangs up before the command ends the
//! group gets SIGHUP.

use crate::reaper::{ChildExit, Reaper};
use crate::service::{send, ServiceError, SharedWriter, Transport};
use paddock_protocol::{read_frame, ExecRequest, FrameError, Request, Response, MAX_STREAM_CHUNK};
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long output is still forwarded after the command exited while a descendant keeps its
/// stdout or stderr open.
pub const EXIT_GRACE: Duration = Duration::from_millis(100);
/// Stdin chunks queued for the child before the connection thread waits (bounds guest memory).
const STDIN_QUEUE_CHUNKS: usize = 16;
/// How often a connection thread blocked on a full stdin queue checks whether the session ended.
const STDIN_FULL_POLL: Duration = Duration::from_millis(2);
/// Environment every command starts from; the request's variables are added on top.
const DEFAULT_ENV: [(&str, &str); 2] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
];

/// Runs the session for `request` on the connection. Returns when the connection ends.
pub(crate) fn run_session<T: Transport>(
    request: ExecRequest,
    reaper: &Arc<Reaper>,
    mut reader: T,
    writer: SharedWriter<T>,
) -> Result<(), ServiceError> {
    let spawned = build_command(&request)
        .map_err(|message| (paddock_protocol::ErrorKind::CannotExecute, message))
        .and_then(|mut cmd| {
            reaper.spawn(&mut cmd).map_err(|e| {
                (
                    paddock_protocol::ErrorKind::of_spawn_failure(&e),
                    format!("cannot run {:?}: {e}", request.argv[0]),
                )
            })
        });
    let (mut child, exit) = match spawned {
        Ok(spawned) => spawned,
        Err((kind, message)) => {
            send(&writer, &Response::Error { kind, message })?;
            return Ok(());
        }
    };
    let pid = exit.pid();
    send(&writer, &Response::Started { pid })?;

    let finished = Arc::new(AtomicBool::new(false));
    let outputs = [
        child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
        child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
    ];
    let threads = child
        .stdin
        .take()
        .map(start_input_writer)
        .transpose()
        .and_then(|stdin_queue| {
            let writer = Arc::clone(&writer);
            let finished = Arc::clone(&finished);
            std::thread::Builder::new()
                .name(format!("exec-{pid}"))
                .spawn(move || forward_output(outputs, exit, writer, finished))?;
            Ok(stdin_queue)
        });
    let mut stdin_queue = match threads {
        Ok(queue) => queue,
        Err(e) => {
            // Nobody would forward its output or report its exit: stop the command.
            let _ = reaper.signal_group(pid, libc::SIGKILL);
            return Err(e.into());
        }
    };

    loop {
        match read_frame::<_, Request>(&mut reader) {
            Ok(Request::Stdin { data }) => {
                if let Some(queue) = &stdin_queue {
                    queue_stdin(queue, data, &finished);
                }
            }
            Ok(Request::StdinClose) => stdin_queue = None,
            Ok(Request::Signal { signal }) => {
                // An invalid number or an already reaped child is not worth failing over.
                let _ = reaper.signal_group(pid, signal);
            }
            Ok(_) => {
                // Another request on an exec connection: ignored, the session stays intact.
            }
            Err(e) => {
                if finished.load(Ordering::SeqCst) {
                    return Ok(()); // our own shutdown after `Exited`
                }
                // The host hung up (or garbled the stream) while the command runs.
                let _ = reaper.signal_group(pid, libc::SIGHUP);
                return match e {
                    FrameError::Closed => Ok(()),
                    e => Err(e.into()),
                };
            }
        }
    }
}

/// Errors of building a command from an exec request.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("exec needs a non-empty argv")]
    EmptyArgv,
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
}

/// The command of `request` without its stdio: argv, cwd, and the environment built from the
/// default variables, then `defaults`, then the request's own.
pub(crate) fn base_command(
    request: &ExecRequest,
    defaults: &[(&str, &str)],
) -> Result<Command, CommandError> {
    let (program, args) = request.argv.split_first().ok_or(CommandError::EmptyArgv)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(DEFAULT_ENV)
        .envs(defaults.iter().copied());
    for (key, value) in &request.env {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(CommandError::EnvName(key.clone()));
        }
        cmd.env(key, value);
    }
    if let Some(cwd) = &request.cwd {
        cmd.current_dir(cwd);
    }
    crate::sys::with_default_signals(&mut cmd);
    Ok(cmd)
}

/// Builds the command: argv, default + requested environment, cwd, piped stdio, own session.
fn build_command(request: &ExecRequest) -> Result<Command, String> {
    let mut cmd = base_command(request, &[]).map_err(|e| e.to_string())?;
    cmd.stdin(if request.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which
    // is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Starts the thread that writes queued input chunks to `input` (a child's stdin pipe, a
/// terminal's master); dropping the returned sender closes `input` once the queue is drained.
pub(crate) fn start_input_writer<W: Write + Send + 'static>(
    input: W,
) -> io::Result<SyncSender<Vec<u8>>> {
    let (queue, chunks) = sync_channel(STDIN_QUEUE_CHUNKS);
    std::thread::Builder::new()
        .name("exec-stdin".into())
        .spawn(move || write_stdin(input, chunks))?;
    Ok(queue)
}

/// Queues a stdin chunk, waiting while the queue is full (backpressure to the host) unless the
/// session has ended: a descendant may hold the child's stdin open without ever reading it.
pub(crate) fn queue_stdin(queue: &SyncSender<Vec<u8>>, data: Vec<u8>, finished: &AtomicBool) {
    let mut pending = data;
    loop {
        match queue.try_send(pending) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(back)) => {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                pending = back;
                std::thread::sleep(STDIN_FULL_POLL);
            }
        }
    }
}

fn write_stdin<W: Write>(mut pipe: W, chunks: Receiver<Vec<u8>>) {
    let mut broken = false;
    for chunk in chunks {
        // Once the child stopped reading (EPIPE), keep draining so the connection thread never
        // blocks on a full queue.
        if !broken && pipe.write_all(&chunk).is_err() {
            broken = true;
        }
    }
}

/// Output thread: forwards stdout/stderr until EOF (or the grace period after the child's exit),
/// then reports the exit status and closes the connection.
fn forward_output<T: Transport>(
    mut outputs: [Option<File>; 2],
    exit: ChildExit,
    writer: SharedWriter<T>,
    finished: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; MAX_STREAM_CHUNK];
    let mut host_gone = false;
    let mut exit_deadline: Option<Instant> = None;

    while outputs.iter().any(Option::is_some) {
        let timeout_ms = match exit_deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // Round up so we do not spin on sub-millisecond remainders.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        let mut sources: Vec<Option<usize>> = Vec::with_capacity(3);
        for (index, output) in outputs.iter().enumerate() {
            if let Some(file) = output {
                fds.push(pollfd(file.as_raw_fd()));
                sources.push(Some(index));
            }
        }
        if exit_deadline.is_none() {
            fds.push(pollfd(exit.pidfd().as_raw_fd()));
            sources.push(None);
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for (fd, source) in fds.iter().zip(&sources) {
            if fd.revents == 0 {
                continue;
            }
            match *source {
                None => exit_deadline = Some(Instant::now() + EXIT_GRACE),
                Some(index) => {
                    let Some(file) = outputs[index].as_mut() else {
                        continue;
                    };
                    match file.read(&mut buf) {
                        Ok(0) => outputs[index] = None,
                        Ok(n) => {
                            let data = buf[..n].to_vec();
                            let response = if index == 0 {
                                Response::Stdout { data }
                            } else {
                                Response::Stderr { data }
                            };
                            if !host_gone && send(&writer, &response).is_err() {
                                host_gone = true; // keep draining so the child never blocks
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::Interrupted | ErrorKind::WouldBlock
                            ) => {}
                        Err(_) => outputs[index] = None,
                    }
                }
            }
        }
    }
    drop(outputs);

    let last = match exit.wait() {
        Some(status) => Response::Exited { status },
        None => Response::error("the exit status of the command was lost"),
    };
    finished.store(true, Ordering::SeqCst);
    if !host_gone {
        let _ = send(&writer, &last);
    }
    let guard = writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = guard.shutdown();
}

fn pollfd(fd: libc::c_int) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
