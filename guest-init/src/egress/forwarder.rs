//! The TCP listeners that carry guest connections out: the HTTP proxy port (programs that honour
//! `HTTP_PROXY`) and the capture port (connections redirected by the capture rules). Each
//! accepted connection gets a thread (at most [`MAX_CONNECTIONS`] per listener), a fresh
//! connection to the host's egress proxy opened with the connection's hello line, and the
//! bytes spliced both ways.

use super::limit::{Admission, ConnectionLimit};
use super::listener::{accept_until_broken, spawn_connection, ListenerFailure};
use super::splice::{splice, SpliceError, Spliced};
use super::transparent::OriginalDestinationError;
use super::upstream::{HostLink, OpenError, Upstream};
use paddock_protocol::EgressHello;
use rustix::net::sockopt;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The HTTP proxy port (`http_proxy=http://127.0.0.1:3128`).
pub const PROXY_PORT: u16 = 3128;
/// Open connections per listener; more are refused.
pub const MAX_CONNECTIONS: usize = 256;
/// A silent program connection is probed after this long, so a peer that vanished (a removed
/// container) frees its place: idle time, probe interval and unanswered probes.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(60), Duration::from_secs(10), 6);
/// The body a proxy client reads when the host's egress proxy cannot be reached.
const PROXY_UNREACHABLE: &str = "paddock: the host's egress proxy does not answer\n";

/// What a listener tells the host about each connection it accepted.
#[derive(Debug, Clone, Copy)]
pub enum HelloSource {
    /// The HTTP proxy port: the program's request head names the destination.
    Proxy,
    /// The capture port: the destination the connection had before it was redirected.
    Transparent(fn(&TcpStream) -> Result<SocketAddrV4, OriginalDestinationError>),
}

/// Why one connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    OriginalDestination(#[from] OriginalDestinationError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Splice(#[from] SpliceError),
}

/// One listener's connection handling.
#[derive(Debug)]
pub struct Forwarder<U> {
    name: &'static str,
    upstream: U,
    source: HelloSource,
    link: Arc<HostLink>,
    limit: Arc<ConnectionLimit>,
    spawn_failing: AtomicBool,
}

impl<U: Upstream> Forwarder<U> {
    pub fn new(
        name: &'static str,
        upstream: U,
        source: HelloSource,
        link: Arc<HostLink>,
        max_connections: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            upstream,
            source,
            link,
            limit: ConnectionLimit::new(max_connections),
            spawn_failing: AtomicBool::new(false),
        })
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.limit.active()
    }

    /// Serves `listener` until accept keeps failing.
    pub fn serve(self: &Arc<Self>, listener: &TcpListener) -> ListenerFailure {
        accept_until_broken(listener, |stream| self.admit(stream))
    }

    /// Binds `addr` and serves it until accept keeps failing.
    pub fn bind_and_serve(self: &Arc<Self>, addr: SocketAddr) -> ListenerFailure {
        match super::listener::bind_tcp(addr) {
            Ok(listener) => self.serve(&listener),
            Err(failure) => failure,
        }
    }

    /// Starts a thread for `stream`, or refuses it (closes it) when the listener is full.
    fn admit(self: &Arc<Self>, stream: TcpStream) {
        let slot = match self.limit.try_acquire() {
            Admission::Admitted(slot) => slot,
            Admission::Refused { first } => {
                if first {
                    crate::console_log!(
                        "egress: {}: {} connections open, refusing new ones",
                        self.name,
                        self.limit.max()
                    );
                }
                return;
            }
        };
        let forwarder = Arc::clone(self);
        let spawned = spawn_connection(self.name, move || {
            let _slot = slot;
            // How a connection ended is the host's to log; the guest logs only failures of
            // the link itself (in `HostLink`).
            let _ = forwarder.forward(stream);
        });
        match spawned {
            Ok(()) => self.spawn_failing.store(false, Ordering::SeqCst),
            Err(e) => {
                if !self.spawn_failing.swap(true, Ordering::SeqCst) {
                    crate::console_log!("egress: {}: cannot start a thread: {e}", self.name);
                }
            }
        }
    }

    /// Carries one accepted connection to the host and splices it until both sides are done.
    pub fn forward(&self, mut program: TcpStream) -> Result<Spliced, ForwardError> {
        let hello = match self.source {
            HelloSource::Proxy => EgressHello::Proxy,
            HelloSource::Transparent(original_destination) => {
                let destination = original_destination(&program)?;
                EgressHello::Transparent(SocketAddr::V4(destination))
            }
        };
        keep_alive(&program);
        let mut host = match self.link.open(&self.upstream, &hello) {
            Ok(host) => host,
            Err(e) => {
                if matches!(self.source, HelloSource::Proxy) {
                    let _ = program.write_all(&bad_gateway(PROXY_UNREACHABLE));
                }
                return Err(e.into());
            }
        };
        Ok(splice(&mut program, &mut host)?)
    }
}

/// A complete `502 Bad Gateway` response with `body`.
fn bad_gateway(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Turns on TCP keepalive probes for a program connection (best effort).
fn keep_alive(stream: &TcpStream) {
    let (idle, interval, count) = KEEPALIVE;
    let _ = sockopt::set_socket_keepalive(stream, true)
        .and_then(|()| sockopt::set_tcp_keepidle(stream, idle))
        .and_then(|()| sockopt::set_tcp_keepintvl(stream, interval))
        .and_then(|()| sockopt::set_tcp_keepcnt(stream, count));
}

#[cfg(test)]
mod tests;
