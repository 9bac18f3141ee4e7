//! The DNS stub's sockets, UDP and TCP on port 53: a thread per query (UDP) or connection
//! (TCP), each bounded, since an answer may wait for the host.

use super::dns_stub::DnsStub;
use super::limit::{Admission, ConnectionLimit};
use super::listener::{
    accept_until_broken, bind_tcp, is_transient, spawn_connection, ListenerFailure,
    REBIND_AFTER_FAILURES,
};
use super::upstream::Upstream;
use paddock_protocol::dns::{tcp_frame, tcp_message};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// Queries (UDP) or connections (TCP) answered at once; more UDP queries are dropped (the
/// client asks again), more connections refused.
pub const MAX_PENDING_QUERIES: usize = 64;
/// Largest datagram read; a longer one arrives cut and is answered FORMERR.
const MAX_DATAGRAM: usize = 4096;
/// Largest query taken over TCP (a query is one question: a few hundred bytes).
const MAX_TCP_QUERY: usize = 4096;
/// A TCP connection that sends nothing for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Binds `addr` and serves UDP queries until receiving keeps failing.
pub fn serve_udp<U: Upstream>(stub: &Arc<DnsStub<U>>, addr: SocketAddr) -> ListenerFailure {
    match UdpSocket::bind(addr) {
        Ok(socket) => serve_udp_socket(stub, socket),
        Err(source) => ListenerFailure::Bind { addr, source },
    }
}

/// Serves UDP queries on `socket` until receiving keeps failing.
pub fn serve_udp_socket<U: Upstream>(stub: &Arc<DnsStub<U>>, socket: UdpSocket) -> ListenerFailure {
    let socket = Arc::new(socket);
    let limit = ConnectionLimit::new(MAX_PENDING_QUERIES);
    let mut failures = 0u32;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if is_transient(&e) || e.raw_os_error() == Some(libc::ECONNREFUSED) => continue,
            Err(e) => {
                failures += 1;
                if failures >= REBIND_AFTER_FAILURES {
                    return ListenerFailure::Receive(e);
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        failures = 0;
        let Admission::Admitted(slot) = limit.try_acquire() else {
            continue;
        };
        let query = buf.get(..len).unwrap_or_default().to_vec();
        let (stub, socket) = (Arc::clone(stub), Arc::clone(&socket));
        let _ = spawn_connection("egress-dns", move || {
            let _slot = slot;
            if let Some(reply) = stub.reply(&query) {
                let _ = socket.send_to(&reply, peer);
            }
        });
    }
}

/// Binds `addr` and serves TCP connections until accept keeps failing.
pub fn serve_tcp<U: Upstream>(stub: &Arc<DnsStub<U>>, addr: SocketAddr) -> ListenerFailure {
    match bind_tcp(addr) {
        Ok(listener) => serve_tcp_listener(stub, &listener),
        Err(failure) => failure,
    }
}

/// Serves TCP connections on `listener` until accept keeps failing.
pub fn serve_tcp_listener<U: Upstream>(
    stub: &Arc<DnsStub<U>>,
    listener: &TcpListener,
) -> ListenerFailure {
    let limit = ConnectionLimit::new(MAX_PENDING_QUERIES);
    accept_until_broken(listener, |stream| {
        let Admission::Admitted(slot) = limit.try_acquire() else {
            return;
        };
        let stub = Arc::clone(stub);
        let _ = spawn_connection("egress-dns-tcp", move || {
            let _slot = slot;
            serve_tcp_connection(&stub, stream);
        });
    })
}

/// Answers the queries of one connection, in order, until it ends, idles or misbehaves.
fn serve_tcp_connection<U: Upstream>(stub: &DnsStub<U>, mut stream: TcpStream) {
    if stream.set_read_timeout(Some(TCP_IDLE)).is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        // Answer every complete query already read.
        loop {
            let (reply, used) = match tcp_message(&pending) {
                Ok(Some((message, used))) => (stub.reply(message), used),
                Ok(None) => break,
                Err(_) => return,
            };
            if let Some(reply) = reply {
                let Ok(frame) = tcp_frame(&reply) else { return };
                if stream.write_all(&frame).is_err() {
                    return;
                }
            }
            pending.drain(..used.min(pending.len()));
        }
        if pending.len() >= MAX_TCP_QUERY + 2 {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Idle (the read timeout) or broken.
            Err(_) => return,
        }
    }
}
