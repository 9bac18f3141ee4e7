//! Keeps an egress listener alive: each runs on a thread of its own that binds, serves until
//! the socket keeps failing, and binds again after a growing pause; one console line per
//! failure, never one per connection.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Consecutive accept (or receive) failures after which the socket is bound again.
pub const REBIND_AFTER_FAILURES: u32 = 20;
/// Pause after one such failure.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// Why a listener stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ListenerFailure {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("accept keeps failing: {0}")]
    Accept(#[source] io::Error),
    #[error("receive keeps failing: {0}")]
    Receive(#[source] io::Error),
}

/// Pauses between runs of a listener: doubling from `first` up to `max`; a run that lasted
/// `stable_after` starts over from `first`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    stable_after: Duration,
    next: Duration,
}

/// The egress listeners' pauses.
pub const LISTENER_BACKOFF: Backoff = Backoff::new(
    Duration::from_millis(100),
    Duration::from_secs(30),
    Duration::from_secs(60),
);

impl Backoff {
    pub const fn new(first: Duration, max: Duration, stable_after: Duration) -> Self {
        Self {
            first,
            max,
            stable_after,
            next: first,
        }
    }

    /// The pause after a run that lasted `ran_for`.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.stable_after {
            self.next = self.first;
        }
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        pause
    }
}

/// Runs `serve` (bind and serve until broken) on a thread named `name`, again and again.
pub fn spawn_supervised<F>(name: &'static str, mut serve: F) -> io::Result<()>
where
    F: FnMut() -> ListenerFailure + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut backoff = LISTENER_BACKOFF;
            loop {
                let started = Instant::now();
                let failure = serve();
                let pause = backoff.after_run(started.elapsed());
                crate::console_log!("egress: {name}: {failure}; again in {pause:?}");
                std::thread::sleep(pause);
            }
        })
        .map(drop)
}

/// Binds a TCP listener on `addr`.
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ListenerFailure> {
    TcpListener::bind(addr).map_err(|source| ListenerFailure::Bind { addr, source })
}

/// Hands every accepted connection to `serve` until accept fails
/// [`REBIND_AFTER_FAILURES`] times in a row.
pub fn accept_until_broken(
    listener: &TcpListener,
    mut serve: impl FnMut(TcpStream),
) -> ListenerFailure {
    let mut failures = 0u32;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                failures = 0;
                serve(stream);
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                failures += 1;
                if failures >= REBIND_AFTER_FAILURES {
                    return ListenerFailure::Accept(e);
                }
                // Out of fds or memory for a moment: give the open connections time to end.
                std::thread::sleep(FAILURE_PAUSE);
            }
        }
    }
}

/// Errors where the next accept or receive may well succeed.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::ECONNRESET | libc::EAGAIN)
    )
}

/// Spawns a thread for one connection (a small stack: the buffers live on the heap).
pub fn spawn_connection(name: &str, work: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(CONNECTION_STACK)
        .spawn(work)
        .map(drop)
}

/// Stack of a connection thread.
const CONNECTION_STACK: usize = 128 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_maximum_and_starts_over_after_a_stable_run() {
        let mut backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(350),
            Duration::from_secs(60),
        );
        let quick = Duration::from_millis(1);
        let pauses: Vec<_> = (0..4).map(|_| backoff.after_run(quick)).collect();
        assert_eq!(
            pauses,
            [100, 200, 350, 350].map(Duration::from_millis).to_vec()
        );
        assert_eq!(
            backoff.after_run(Duration::from_secs(60)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_taken_port_is_a_bind_failure() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let failure = bind_tcp(addr).unwrap_err();
        assert!(
            matches!(&failure, ListenerFailure::Bind { addr: a, source }
                if *a == addr && source.kind() == io::ErrorKind::AddrInUse),
            "{failure:?}"
        );
    }
}
