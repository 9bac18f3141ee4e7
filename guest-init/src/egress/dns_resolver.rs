//! Asks the host whether a name may be used: one connection per question carrying
//! `RESOLVE name`, one answer line back (`A <stable address>` or `NXDOMAIN`), read with a
//! deadline and a length bound. Answers are cached (see [`AnswerCache`]).

use super::dns_cache::AnswerCache;
use super::upstream::{HostLink, OpenError, Upstream};
use paddock_protocol::egress::MAX_HELLO_LINE;
use paddock_protocol::{EgressHello, EgressLineError, ResolveAnswer};
use rustix::event::{PollFd, PollFlags};
use std::io::{self, ErrorKind, Read};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the host may take to answer (glibc's resolver gives up after 5 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);

/// Why the host gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("the host did not answer within {0:?}")]
    Timeout(Duration),
    #[error("waiting for the host's answer: {0}")]
    Poll(#[source] io::Error),
    #[error("reading the host's answer: {0}")]
    Read(#[source] io::Error),
    #[error("the host closed the connection without an answer")]
    Closed,
    #[error("the host's answer is not valid: {0}")]
    Answer(#[source] EgressLineError),
}

/// Asks the host, remembering its answers.
#[derive(Debug)]
pub struct HostResolver<U> {
    upstream: U,
    link: Arc<HostLink>,
    timeout: Duration,
    cache: Mutex<AnswerCache>,
}

impl<U: Upstream> HostResolver<U> {
    pub fn new(upstream: U, link: Arc<HostLink>, timeout: Duration, cache: AnswerCache) -> Self {
        Self {
            upstream,
            link,
            timeout,
            cache: Mutex::new(cache),
        }
    }

    fn cache(&self) -> MutexGuard<'_, AnswerCache> {
        // Every critical section is one lookup or insert: a poisoned cache is still consistent.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The answer for `name` (a normalized name: lower case, no trailing dot).
    pub fn resolve(&self, name: &str) -> Result<ResolveAnswer, ResolveError> {
        if let Some(answer) = self.cache().get(name, Instant::now()) {
            return Ok(answer);
        }
        let answer = self.ask(name)?;
        self.cache().insert(name, answer, Instant::now());
        Ok(answer)
    }

    /// Asks the host, without the cache.
    fn ask(&self, name: &str) -> Result<ResolveAnswer, ResolveError> {
        let deadline = Instant::now() + self.timeout;
        let hello = EgressHello::Resolve(name.to_string());
        let mut stream = self.link.open(&self.upstream, &hello)?;
        let line = read_line(&mut stream, deadline, self.timeout)?;
        ResolveAnswer::decode(&line).map_err(ResolveError::Answer)
    }
}

/// Reads up to and including the first newline, at most [`MAX_HELLO_LINE`] bytes, by
/// `deadline`.
fn read_line<S: Read + AsFd>(
    stream: &mut S,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, ResolveError> {
    let mut line = Vec::with_capacity(64);
    let mut chunk = [0u8; MAX_HELLO_LINE];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ResolveError::Timeout(timeout));
        }
        let wait = super::poll_timeout(left);
        let mut fds = [PollFd::new(stream, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(ResolveError::Poll(e.into())),
        }
        // Never more than the line may still take: bytes after the newline are not ours.
        let room = MAX_HELLO_LINE.saturating_sub(line.len());
        let Some(buf) = chunk.get_mut(..room) else {
            return Err(ResolveError::Answer(EgressLineError::TooLong));
        };
        if buf.is_empty() {
            return Err(ResolveError::Answer(EgressLineError::TooLong));
        }
        match stream.read(buf) {
            Ok(0) => return Err(ResolveError::Closed),
            Ok(n) => {
                let read = buf.get(..n).unwrap_or_default();
                if let Some(newline) = read.iter().position(|&b| b == b'\n') {
                    line.extend_from_slice(read.get(..=newline).unwrap_or_default());
                    return Ok(line);
                }
                line.extend_from_slice(read);
            }
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
            Err(e) => return Err(ResolveError::Read(e)),
        }
    }
}
