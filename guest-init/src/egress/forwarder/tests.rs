//! The listeners end to end: real TCP clients, the real accept loop and connection threads,
//! a fake host egress proxy on a Unix socket in place of vsock.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use super::*;
use crate::egress::test_host::{unreachable_host, FakeHost};
use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown};
use std::time::Instant;

fn listen<U: Upstream>(forwarder: &Arc<Forwarder<U>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let forwarder = Arc::clone(forwarder);
    std::thread::spawn(move || forwarder.serve(&listener));
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

type Destination = Result<SocketAddrV4, OriginalDestinationError>;

fn original_destination_9(_: &TcpStream) -> Destination {
    Ok(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 7), 9))
}

fn original_destination_13(_: &TcpStream) -> Destination {
    Ok(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 13))
}

fn no_original_destination(_: &TcpStream) -> Destination {
    Err(OriginalDestinationError::Lookup(
        io::Error::from_raw_os_error(libc::ENOENT),
    ))
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_proxy_port_says_proxy_and_carries_a_mebibyte_each_way() {
    let host = FakeHost::start(&[]);
    let link = Arc::new(HostLink::default());
    let forwarder = Forwarder::new("test-proxy", host.upstream(), HelloSource::Proxy, link, 8);
    let mut client = connect(listen(&forwarder));
    let mut request = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n".to_vec();
    request.extend((0..1 << 20).map(|i: u32| (i % 251) as u8));
    let writer = {
        let (mut client, request) = (client.try_clone().unwrap(), request.clone());
        std::thread::spawn(move || {
            client.write_all(&request).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    // The fake host echoes: everything comes back, then its EOF.
    assert!(read_all(&mut client) == request, "echo differs");
    writer.join().unwrap();
    assert_eq!(host.seen().hellos, [EgressHello::Proxy]);
    wait_until("the connection's place is freed", || {
        forwarder.active() == 0
    });
}

#[test]
fn the_capture_port_names_the_original_destination_and_passes_eof_on() {
    let host = FakeHost::start(&[]);
    let link = Arc::new(HostLink::default());
    let forwarder = Forwarder::new(
        "test-capture",
        host.upstream(),
        HelloSource::Transparent(original_destination_9),
        link,
        8,
    );
    let mut client = connect(listen(&forwarder));
    client.write_all(&[7u8; 100_000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // The host answers only after our EOF reached it.
    assert_eq!(read_all(&mut client), b"got 100000\n");
    assert_eq!(
        host.seen().hellos,
        [EgressHello::Transparent("198.18.0.7:9".parse().unwrap())]
    );
}

#[test]
fn the_hosts_eof_reaches_the_program_which_may_still_send() {
    let host = FakeHost::start(&[]);
    let link = Arc::new(HostLink::default());
    let forwarder = Forwarder::new(
        "test-capture",
        host.upstream(),
        HelloSource::Transparent(original_destination_13),
        link,
        8,
    );
    let mut client = connect(listen(&forwarder));
    let mut greeting = [0u8; 9];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"greeting\n");
    let mut end = [0u8; 1];
    assert_eq!(
        client.read(&mut end).unwrap(),
        0,
        "no EOF after the greeting"
    );
    client.write_all(&[1u8; 5000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    wait_until("the host counted the late bytes", || {
        host.seen().counted == [5000]
    });
    assert_eq!(
        host.seen().hellos,
        [EgressHello::Transparent("203.0.113.5:13".parse().unwrap())]
    );
}

#[test]
fn without_an_original_destination_nothing_reaches_the_host() {
    let host = FakeHost::start(&[]);
    let link = Arc::new(HostLink::default());
    let forwarder = Forwarder::new(
        "test-capture",
        host.upstream(),
        HelloSource::Transparent(no_original_destination),
        link,
        8,
    );
    let mut client = connect(listen(&forwarder));
    assert_eq!(read_all(&mut client), b"");
    assert!(host.seen().hellos.is_empty());
}

#[test]
fn a_proxy_client_learns_that_the_host_is_unreachable() {
    let link = Arc::new(HostLink::default());
    let forwarder = Forwarder::new(
        "test-proxy",
        unreachable_host(),
        HelloSource::Proxy,
        Arc::clone(&link),
        8,
    );
    let mut client = connect(listen(&forwarder));
    let answer = String::from_utf8(read_all(&mut client)).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{answer}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(link.is_failing());

    // A captured connection is just closed.
    let captured = Forwarder::new(
        "test-capture",
        unreachable_host(),
        HelloSource::Transparent(original_destination_9),
        Arc::clone(&link),
        8,
    );
    let mut client = connect(listen(&captured));
    assert_eq!(read_all(&mut client), b"");
}

#[test]
fn connections_beyond_the_bound_are_refused_and_the_others_keep_working() {
    let host = FakeHost::start(&[]);
    let link = Arc::new(HostLink::default());
    let forwarder = Forwarder::new("test-proxy", host.upstream(), HelloSource::Proxy, link, 2);
    let addr = listen(&forwarder);
    // Two open connections (the echo keeps them open until their EOF).
    let mut open: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for (i, client) in open.iter_mut().enumerate() {
        client.write_all(&[i as u8]).unwrap();
        let mut echo = [0u8; 1];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(echo, [i as u8]);
    }
    assert_eq!(forwarder.active(), 2);
    let mut refused = connect(addr);
    let mut buf = [0u8; 1];
    let refused_read = refused.read(&mut buf);
    assert!(
        matches!(refused_read, Ok(0)) || refused_read.is_err(),
        "{refused_read:?}"
    );
    assert_eq!(
        host.seen().hellos.len(),
        2,
        "the refused one reached the host"
    );
    // The admitted ones still work; once one ends, a new one is admitted.
    open[0].write_all(b"x").unwrap();
    open[0].read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"x");
    open.remove(0).shutdown(Shutdown::Both).unwrap();
    wait_until("a place is freed", || forwarder.active() == 1);
    let mut later = connect(addr);
    later.write_all(b"y").unwrap();
    later.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"y");
}

#[test]
fn the_bad_gateway_answer_is_well_formed() {
    let answer = String::from_utf8(bad_gateway("down\n")).unwrap();
    assert_eq!(
        answer,
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
         Connection: close\r\n\r\ndown\n"
    );
}
