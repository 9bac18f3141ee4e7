//! The listeners as [`start_listeners`] wires them, on their real ports, in a network namespace
//! of the test's own (ports 53, 3128 and 3129 are free there), with a fake host behind them.

use super::test_host::FakeHost;
use super::test_netns::in_new_net_namespace;
use super::*;
use paddock_protocol::dns::{encode_query, parse_response, Rcode, TYPE_A};
use paddock_protocol::{EgressHello, ResolveAnswer};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Connects, retrying while the listener thread has not bound yet.
fn connect(port: u16) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                return stream;
            }
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "port {port}: {e}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn the_listeners_answer_on_their_ports() {
    in_new_net_namespace("listeners", || {
        crate::pid1::loopback::bring_up_loopback().unwrap();
        let allowed = Ipv4Addr::new(198, 18, 0, 9);
        let host = FakeHost::start(&[("allowed.test", ResolveAnswer::Address(allowed))]);
        let link = Arc::new(HostLink::default());
        assert!(start_listeners(host.upstream(), &link, true).is_empty());

        // The HTTP proxy port.
        let mut proxy = connect(PROXY_PORT);
        proxy
            .write_all(b"GET http://allowed.test/ HTTP/1.1\r\n\r\n")
            .unwrap();
        proxy.shutdown(Shutdown::Write).unwrap();
        let mut echo = Vec::new();
        proxy.read_to_end(&mut echo).unwrap();
        assert_eq!(echo, b"GET http://allowed.test/ HTTP/1.1\r\n\r\n");

        // The DNS stub over UDP and TCP.
        let query = encode_query(3, "allowed.test", TYPE_A).unwrap();
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        let start = Instant::now();
        let len = loop {
            // Until the UDP listener thread has bound (a datagram before that is lost).
            client
                .send_to(&query, (Ipv4Addr::LOCALHOST, DNS_PORT))
                .unwrap();
            if let Ok((len, _)) = client.recv_from(&mut buf) {
                break len;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no UDP answer");
        };
        let answer = parse_response(&buf[..len]).unwrap();
        assert_eq!(
            (answer.rcode, answer.addresses),
            (Rcode::NoError, vec![allowed])
        );
        let mut tcp = connect(DNS_PORT);
        let framed =
            paddock_protocol::dns::tcp_frame(&encode_query(4, "denied.test", TYPE_A).unwrap())
                .unwrap();
        tcp.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).unwrap();
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut message).unwrap();
        assert_eq!(parse_response(&message).unwrap().rcode, Rcode::NxDomain);

        // The capture port listens, and closes a connection made straight to it.
        let mut direct = connect(CAPTURE_PORT);
        direct.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = direct.read_to_end(&mut rest);
        assert!(rest.is_empty());

        let hellos = host.seen().hellos.clone();
        assert_eq!(hellos.first(), Some(&EgressHello::Proxy));
        assert!(hellos.contains(&EgressHello::Resolve("allowed.test".into())));
        assert!(hellos.contains(&EgressHello::Resolve("denied.test".into())));
        assert!(
            !hellos
                .iter()
                .any(|h| matches!(h, EgressHello::Transparent(_))),
            "{hellos:?}"
        );
        assert!(!link.is_failing());
    });
}

#[test]
fn a_captured_connection_reaches_the_host_with_its_original_destination() {
    in_new_net_namespace("capture", || {
        let Some(kind) = super::test_netns::interface_kind() else {
            println!("capture: skipped (no dummy or ifb interfaces)");
            return;
        };
        crate::pid1::loopback::bring_up_loopback().unwrap();
        let setup = CaptureSetup {
            kind: kind.to_string(),
            ..CaptureSetup::guest()
        };
        let reaper = crate::reaper::Reaper::new(crate::reaper::ReapMode::PerChild);
        match setup.install(&reaper) {
            Ok(CaptureOutcome::Installed) => {}
            Ok(CaptureOutcome::NoIptables) => {
                println!("capture: skipped (no iptables-restore on this machine)");
                return;
            }
            Err(e) => panic!("{e}"),
        }
        let host = FakeHost::start(&[]);
        let link = Arc::new(HostLink::default());
        assert!(start_listeners(host.upstream(), &link, true).is_empty());

        // A program that ignores every proxy setting connects to an outside address.
        let outside: std::net::SocketAddr = "203.0.113.9:9".parse().unwrap();
        let start = Instant::now();
        let mut program = loop {
            match TcpStream::connect_timeout(&outside, Duration::from_secs(1)) {
                Ok(stream) => break stream,
                // Until the capture listener thread has bound.
                Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "{e}"),
            }
        };
        program
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        program.write_all(b"raw bytes").unwrap();
        program.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        program.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "got 9\n");
        assert_eq!(
            host.seen().hellos,
            [EgressHello::Transparent(outside)],
            "the host was not told the original destination"
        );
    });
}
