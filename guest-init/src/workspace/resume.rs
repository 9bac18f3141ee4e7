//! Reconnecting a mount's relay to the host's workspace server after its connection broke
//! (a restore, reset or fork resets every vsock connection): [`RESUME_HELLO`] and the mount's
//! session id on a new connection, until the server answers or the time runs out.

use crate::sys::cvt;
use paddock_protocol::workspace::{RESUMED, RESUME_HELLO, SESSION_ID_LEN};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How often and how long to try.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    /// Pause between attempts.
    pub(crate) every: Duration,
    /// Time from the first attempt after which no new one starts.
    pub(crate) total: Duration,
}

/// After a restore the host's server may start a moment after the guest runs again.
pub(crate) const RECONNECT: Retry = Retry {
    every: Duration::from_millis(20),
    total: Duration::from_secs(30),
};

/// Why the relay could not carry on.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The server has no saved state for the mount's session.
    #[error("the host's workspace server cannot carry the mount on")]
    NotResumed,
    /// No attempt succeeded in time; the last one's error.
    #[error("the host's workspace server did not answer in time: {0}")]
    GaveUp(#[source] io::Error),
    /// The relay ended while reconnecting.
    #[error("the relay ended while reconnecting")]
    Ended,
}

/// Connects with `connect` and asks the server to carry session `session` on, retrying failed
/// attempts as `retry` says while `ended` is false; the new connection once the server
/// answered [`RESUMED`].
pub(crate) fn reconnect<S: Read + Write + AsFd>(
    connect: &impl Fn() -> io::Result<S>,
    session: u64,
    retry: Retry,
    ended: impl Fn() -> bool,
) -> Result<S, ResumeError> {
    let start = Instant::now();
    loop {
        if ended() {
            return Err(ResumeError::Ended);
        }
        let left = retry.total.saturating_sub(start.elapsed());
        match attempt(connect, session, left.max(retry.every)) {
            Ok(Some(stream)) => return Ok(stream),
            Ok(None) => return Err(ResumeError::NotResumed),
            Err(e) if start.elapsed() + retry.every >= retry.total => {
                return Err(ResumeError::GaveUp(e))
            }
            Err(_) => std::thread::sleep(retry.every),
        }
    }
}

/// One attempt: the stream when the server carries the session on, `None` when it refuses
/// (any answer but [`RESUMED`]); waits at most `wait` for the answer.
fn attempt<S: Read + Write + AsFd>(
    connect: &impl Fn() -> io::Result<S>,
    session: u64,
    wait: Duration,
) -> io::Result<Option<S>> {
    let mut stream = connect()?;
    let mut hello = [0u8; RESUME_HELLO.len() + SESSION_ID_LEN];
    hello[..RESUME_HELLO.len()].copy_from_slice(RESUME_HELLO);
    hello[RESUME_HELLO.len()..].copy_from_slice(&session.to_le_bytes());
    set_read_timeout(stream.as_fd(), Some(wait))?;
    stream.write_all(&hello)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer)?;
    set_read_timeout(stream.as_fd(), None)?;
    Ok((answer[0] == RESUMED).then_some(stream))
}

/// Bounds how long a read on socket `fd` waits (`None`: for ever).
fn set_read_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    // All zero is "no timeout"; a wanted one is at least a microsecond.
    let timeout = timeout.map_or(Duration::ZERO, |t| t.max(Duration::from_micros(1)));
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // Bounded: a timeval is 16 bytes.
    #[allow(clippy::cast_possible_truncation)]
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` is a valid timeval of `len` bytes for the call; `fd` is open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            len,
        )
    })
    .map(drop)
}
