//! The DNS stub against a fake host egress proxy: the answers, the cache, and the UDP and TCP
//! servers with real sockets.

use super::*;
use crate::egress::dns_cache::AnswerCache;
use crate::egress::dns_server::{serve_tcp_listener, serve_udp_socket};
use crate::egress::test_host::{unreachable_host, FakeHost};
use crate::egress::upstream::HostLink;
use paddock_protocol::dns::{encode_query, parse_response, DnsResponse, Rcode, TYPE_AAAA};
use paddock_protocol::EgressHello;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALLOWED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
const TYPE_MX: u16 = 15;

fn stub_for<U: Upstream>(upstream: U) -> DnsStub<U> {
    let resolver = HostResolver::new(
        upstream,
        Arc::new(HostLink::default()),
        Duration::from_millis(500),
        AnswerCache::default(),
    );
    DnsStub::new(resolver)
}

fn fake_host() -> FakeHost {
    FakeHost::start(&[("allowed.test", ResolveAnswer::Address(ALLOWED))])
}

fn ask<U: Upstream>(stub: &DnsStub<U>, name: &str, record_type: u16) -> DnsResponse {
    let query = encode_query(0x1234, name, record_type).unwrap();
    let reply = stub.reply(&query).expect("no reply");
    let response = parse_response(&reply).unwrap();
    assert_eq!(response.id, 0x1234);
    assert_eq!(response.question, Some((name.to_string(), record_type)));
    response
}

#[test]
fn an_allowed_name_gets_its_stable_address_for_a_and_nodata_for_other_types() {
    let host = fake_host();
    let stub = stub_for(host.upstream());
    let a = ask(&stub, "allowed.test", TYPE_A);
    assert_eq!(a.rcode, Rcode::NoError);
    assert_eq!(a.addresses, [ALLOWED]);
    for other in [TYPE_AAAA, TYPE_MX] {
        let nodata = ask(&stub, "allowed.test", other);
        assert_eq!(nodata.rcode, Rcode::NoError);
        assert_eq!(nodata.answer_count, 0);
    }
    assert_eq!(
        host.seen().hellos,
        [EgressHello::Resolve("allowed.test".into())],
        "the cache answered the later questions"
    );
}

#[test]
fn the_ttl_is_sixty_seconds() {
    let host = fake_host();
    let stub = stub_for(host.upstream());
    let query = encode_query(7, "allowed.test", TYPE_A).unwrap();
    let reply = stub.reply(&query).unwrap();
    // The record: pointer, type, class, then the TTL; the address closes the message.
    let ttl_at = reply.len() - 4 - 2 - 4;
    assert_eq!(reply[ttl_at..ttl_at + 4], ANSWER_TTL.to_be_bytes());
    assert_eq!(ANSWER_TTL, 60);
}

#[test]
fn a_denied_name_is_nxdomain_for_every_type() {
    let host = fake_host();
    let stub = stub_for(host.upstream());
    for record_type in [TYPE_A, TYPE_AAAA] {
        let response = ask(&stub, "denied.test", record_type);
        assert_eq!(response.rcode, Rcode::NxDomain);
        assert!(response.addresses.is_empty());
    }
}

#[test]
fn no_usable_answer_from_the_host_is_servfail() {
    let stub = stub_for(unreachable_host());
    assert_eq!(ask(&stub, "allowed.test", TYPE_A).rcode, Rcode::ServFail);

    let host = fake_host();
    let stub = stub_for(host.upstream());
    let started = Instant::now();
    assert_eq!(ask(&stub, "slow.test", TYPE_A).rcode, Rcode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited past the timeout"
    );
    assert_eq!(ask(&stub, "garbage.test", TYPE_A).rcode, Rcode::ServFail);
    // Failures are not cached: the host is asked again.
    assert_eq!(ask(&stub, "garbage.test", TYPE_A).rcode, Rcode::ServFail);
    let asked = host
        .seen()
        .hellos
        .iter()
        .filter(|h| **h == EgressHello::Resolve("garbage.test".into()))
        .count();
    assert_eq!(asked, 2);
}

#[test]
fn malformed_messages_get_formerr_or_nothing() {
    let host = fake_host();
    let stub = stub_for(host.upstream());
    assert_eq!(stub.reply(b""), None);
    assert_eq!(stub.reply(b"\x12\x34\x01"), None);
    // A response is never answered (two stubs could loop).
    let mut response = encode_query(1, "allowed.test", TYPE_A).unwrap();
    response[2] |= 0x80;
    assert_eq!(stub.reply(&response), None);
    // Two questions: FORMERR.
    let mut two = encode_query(9, "allowed.test", TYPE_A).unwrap();
    two[5] = 2;
    let reply = parse_response(&stub.reply(&two).unwrap()).unwrap();
    assert_eq!((reply.id, reply.rcode), (9, Rcode::FormErr));
    // A name that is no host name: FORMERR, and the host is never asked.
    let mut bad = encode_query(10, "allowed.test", TYPE_A).unwrap();
    bad[13] = b'/';
    let reply = parse_response(&stub.reply(&bad).unwrap()).unwrap();
    assert_eq!(reply.rcode, Rcode::FormErr);
    assert!(host.seen().hellos.is_empty());
}

#[test]
fn the_udp_server_answers_and_survives_garbage() {
    let host = fake_host();
    let stub = Arc::new(stub_for(host.upstream()));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = socket.local_addr().unwrap();
    std::thread::spawn(move || serve_udp_socket(&stub, socket));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1024];
    client.send_to(b"\xff\xfe", server).unwrap();
    assert!(client.recv_from(&mut buf).is_err(), "garbage was answered");
    client.send_to(&[0u8; 4000], server).unwrap();
    let (len, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(parse_response(&buf[..len]).unwrap().rcode, Rcode::FormErr);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for (id, name) in [(1u16, "allowed.test"), (2, "denied.test")] {
        let query = encode_query(id, name, TYPE_A).unwrap();
        client.send_to(&query, server).unwrap();
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, server);
        let response = parse_response(&buf[..len]).unwrap();
        assert_eq!(response.id, id);
        let expected = if id == 1 {
            Rcode::NoError
        } else {
            Rcode::NxDomain
        };
        assert_eq!(response.rcode, expected);
    }
}

#[test]
fn the_tcp_server_answers_queries_in_order_and_drops_bad_framing() {
    let host = fake_host();
    let stub = Arc::new(stub_for(host.upstream()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    std::thread::spawn(move || serve_tcp_listener(&stub, &listener));

    let mut client = TcpStream::connect(server).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Two queries in one write, the second split across two.
    let first = paddock_protocol::dns::tcp_frame(&encode_query(1, "allowed.test", TYPE_A).unwrap())
        .unwrap();
    let second =
        paddock_protocol::dns::tcp_frame(&encode_query(2, "denied.test", TYPE_AAAA).unwrap())
            .unwrap();
    let (head, tail) = second.split_at(5);
    client
        .write_all(&[first.as_slice(), head].concat())
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.write_all(tail).unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut len = [0u8; 2];
        client.read_exact(&mut len).unwrap();
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        client.read_exact(&mut message).unwrap();
        answers.push(parse_response(&message).unwrap());
    }
    assert_eq!((answers[0].id, answers[0].rcode), (1, Rcode::NoError));
    assert_eq!(answers[0].addresses, [ALLOWED]);
    assert_eq!((answers[1].id, answers[1].rcode), (2, Rcode::NxDomain));

    // A length prefix too short for a header ends the connection.
    let mut bad = TcpStream::connect(server).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(&[0, 3, 1, 2, 3]).unwrap();
    let mut rest = Vec::new();
    assert_eq!(bad.read_to_end(&mut rest).unwrap(), 0);
    // So does a query announced longer than a query can be, once that much has come.
    let mut long = TcpStream::connect(server).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut oversized = vec![0xff, 0xff];
    oversized.extend(std::iter::repeat_n(0u8, 5000));
    let _ = long.write_all(&oversized);
    let mut rest = Vec::new();
    assert!(matches!(long.read_to_end(&mut rest), Ok(0) | Err(_)));
}
