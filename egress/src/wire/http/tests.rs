//! Tests of request-head parsing, rewriting and reading, hostile inputs included.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn complete(buf: &[u8]) -> RequestHead {
    match parse_request_head(buf) {
        Ok(HeadStatus::Complete(head)) => head,
        other => panic!(
            "expected a complete head for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn malformed(buf: &[u8]) -> MalformedHead {
    match parse_request_head(buf) {
        Err(HttpHeadError::Malformed(reason)) => reason,
        other => panic!(
            "expected malformed for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn name(host: &str) -> Host {
    Host::Name(host.to_owned())
}

fn header<'a>(head: &'a RequestHead, wanted: &'a str) -> Vec<&'a [u8]> {
    head.header_values(wanted).collect()
}

#[test]
fn connect_targets_are_parsed_and_normalized() {
    let raw = b"CONNECT Api.Anthropic.COM:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n";
    let head = complete(raw);
    assert!(head.is_connect());
    assert_eq!(head.version, HttpVersion::Http11);
    assert_eq!(
        head.target,
        RequestTarget::Authority {
            host: name("api.anthropic.com"),
            port: 443
        }
    );
    assert_eq!(head.head_len, raw.len());
    assert_eq!(
        head.host_header(),
        Some((name("api.anthropic.com"), Some(443)))
    );

    let v6 = complete(b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n");
    let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(
        v6.target,
        RequestTarget::Authority {
            host: Host::Ip(IpAddr::V6(ip)),
            port: 8443
        }
    );
    let v4 = complete(b"CONNECT 10.1.2.3:22 HTTP/1.0\r\n\r\n");
    assert_eq!(v4.version, HttpVersion::Http10);
    assert_eq!(
        v4.target.host_port(),
        Some((&Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))), 22))
    );
}

#[test]
fn bad_connect_targets_are_refused() {
    let cases: &[(&[u8], MalformedHead)] = &[
        (
            b"CONNECT example.com HTTP/1.1\r\n\r\n",
            MalformedHead::MissingPort,
        ),
        (
            b"CONNECT example.com:443/x HTTP/1.1\r\n\r\n",
            MalformedHead::TargetForm,
        ),
        (
            b"CONNECT http://example.com/ HTTP/1.1\r\n\r\n",
            MalformedHead::TargetForm,
        ),
        (
            b"CONNECT u:p@example.com:443 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::UserInfo),
        ),
        (
            b"CONNECT example.com:0 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadPort),
        ),
        (
            b"CONNECT example.com:65536 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadPort),
        ),
        (
            b"CONNECT example.com:+443 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadPort),
        ),
        (
            b"CONNECT example.com: HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadPort),
        ),
        (
            b"CONNECT 127.1:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::AmbiguousNumeric),
        ),
        (
            b"CONNECT 0x7f.0.0.1:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::AmbiguousNumeric),
        ),
        (
            b"CONNECT 010.0.0.1:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::AmbiguousNumeric),
        ),
        (
            b"CONNECT ::1:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::UnbracketedIpv6),
        ),
        (
            b"CONNECT [::1:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadIpv6Literal),
        ),
        (
            b"CONNECT [::1]x:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadIpv6Literal),
        ),
        (
            b"CONNECT [zz]:80 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadIpv6Literal),
        ),
        (
            b"CONNECT :443 HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::Empty),
        ),
    ];
    for (raw, expected) in cases {
        assert_eq!(
            &malformed(raw),
            expected,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert!(matches!(
        malformed(b"CONNECT a..b:443 HTTP/1.1\r\n\r\n"),
        MalformedHead::Host(HostError::BadName(_))
    ));
    assert!(matches!(
        malformed(b"CONNECT exa%6dple.com:443 HTTP/1.1\r\n\r\n"),
        MalformedHead::Host(HostError::BadName(_))
    ));
}

#[test]
fn absolute_targets_get_scheme_default_ports_and_a_path() {
    let cases: &[(&[u8], Scheme, Host, u16, &str)] = &[
        (
            b"GET http://Example.com/a?b=1 HTTP/1.1\r\n\r\n",
            Scheme::Http,
            name("example.com"),
            80,
            "/a?b=1",
        ),
        (
            b"GET https://example.com/ HTTP/1.1\r\n\r\n",
            Scheme::Https,
            name("example.com"),
            443,
            "/",
        ),
        (
            b"GET HTTP://example.com:8080/x HTTP/1.1\r\n\r\n",
            Scheme::Http,
            name("example.com"),
            8080,
            "/x",
        ),
        (
            b"GET http://example.com HTTP/1.1\r\n\r\n",
            Scheme::Http,
            name("example.com"),
            80,
            "/",
        ),
        (
            b"GET http://example.com?q HTTP/1.1\r\n\r\n",
            Scheme::Http,
            name("example.com"),
            80,
            "/?q",
        ),
        (
            b"GET http://[::1]:81/ HTTP/1.1\r\n\r\n",
            Scheme::Http,
            Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            81,
            "/",
        ),
    ];
    for (raw, scheme, host, port, path) in cases {
        let head = complete(raw);
        assert_eq!(
            head.target,
            RequestTarget::Absolute {
                scheme: *scheme,
                host: host.clone(),
                port: *port,
                path_and_query: (*path).to_owned()
            }
        );
    }
    let refused: &[(&[u8], MalformedHead)] = &[
        (
            b"GET ftp://example.com/ HTTP/1.1\r\n\r\n",
            MalformedHead::UnsupportedScheme,
        ),
        (
            b"GET http://example.com/#top HTTP/1.1\r\n\r\n",
            MalformedHead::Fragment,
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            MalformedHead::TargetForm,
        ),
        (
            b"GET example.com/ HTTP/1.1\r\n\r\n",
            MalformedHead::TargetForm,
        ),
        (
            b"GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::UserInfo),
        ),
        (
            b"GET http:///path HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::Empty),
        ),
        (
            b"GET http://example.com:99999/ HTTP/1.1\r\n\r\n",
            MalformedHead::Host(HostError::BadPort),
        ),
    ];
    for (raw, expected) in refused {
        assert_eq!(
            &malformed(raw),
            expected,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn origin_targets_take_their_host_from_the_host_header() {
    let head =
        complete(b"GET /index.html HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n\r\n");
    assert_eq!(head.target, RequestTarget::Origin("/index.html".into()));
    assert_eq!(head.target.host_port(), None);
    assert_eq!(head.host_header(), Some((name("example.com"), Some(8080))));
    assert_eq!(complete(b"GET / HTTP/1.1\r\n\r\n").host_header(), None);
    assert_eq!(
        malformed(b"GET / HTTP/1.1\r\nHost: a.test\r\nhost: b.test\r\n\r\n"),
        MalformedHead::DuplicateHost
    );
    assert_eq!(
        malformed(b"GET / HTTP/1.1\r\nHost: a.test@b.test\r\n\r\n"),
        MalformedHead::Host(HostError::UserInfo)
    );
    assert_eq!(
        malformed(b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n"),
        MalformedHead::Host(HostError::NotText)
    );
    assert_eq!(
        malformed(b"GET / HTTP/1.1\r\nHost: \r\n\r\n"),
        MalformedHead::Host(HostError::Empty)
    );
}

#[test]
fn every_prefix_of_a_head_is_partial_and_body_bytes_are_left_alone() {
    let head_bytes = b"POST http://a.test/up HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    let mut buf = head_bytes.to_vec();
    buf.extend_from_slice(b"hello");
    for cut in 0..head_bytes.len() {
        assert_eq!(
            parse_request_head(&buf[..cut]).unwrap(),
            HeadStatus::Partial,
            "cut at {cut}"
        );
    }
    let head = complete(&buf);
    assert_eq!(head.head_len, head_bytes.len());
    assert_eq!(&buf[head.head_len..], b"hello");
    assert_eq!(header(&head, "content-length"), [b"5"]);
}

#[test]
fn heads_are_bounded_in_bytes_and_headers() {
    let mut endless = b"GET / HTTP/1.1\r\nX-Fill: ".to_vec();
    endless.resize(MAX_HEAD + 10, b'a');
    assert!(matches!(
        parse_request_head(&endless),
        Err(HttpHeadError::TooLarge { limit: MAX_HEAD })
    ));
    // Exactly at the limit is too large too, while one byte short is still partial.
    assert!(matches!(
        parse_request_head(&endless[..MAX_HEAD]),
        Err(HttpHeadError::TooLarge { .. })
    ));
    assert_eq!(
        parse_request_head(&endless[..MAX_HEAD - 1]).unwrap(),
        HeadStatus::Partial
    );

    // A head that ends inside the bound is fine even when more bytes follow it.
    let mut fits = b"GET / HTTP/1.1\r\nX-Fill: ".to_vec();
    fits.resize(MAX_HEAD - 4, b'a');
    fits.extend_from_slice(b"\r\n\r\n");
    fits.extend_from_slice(&[b'b'; 1000]);
    assert_eq!(complete(&fits).head_len, MAX_HEAD);

    let with_headers = |count: usize| {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for index in 0..count {
            raw.extend_from_slice(format!("X-{index}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw
    };
    assert_eq!(
        complete(&with_headers(MAX_HEADERS)).headers.len(),
        MAX_HEADERS
    );
    assert!(matches!(
        parse_request_head(&with_headers(MAX_HEADERS + 1)),
        Err(HttpHeadError::TooManyHeaders)
    ));
}

#[test]
fn broken_syntax_is_refused() {
    for raw in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: v\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
        b"G\xc3\xa9T / HTTP/1.1\r\n\r\n",
    ] {
        assert!(
            matches!(malformed(raw), MalformedHead::Syntax(_)),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn ambiguous_body_lengths_are_refused() {
    for raw in [
        &b"POST /u HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST /u HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST /u HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
        b"POST /u HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /u HTTP/1.1\r\nContent-Length: \r\n\r\n",
        b"POST /u HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(
            malformed(raw),
            MalformedHead::AmbiguousBodyLength,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    complete(b"POST /u HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
    complete(b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
}

#[test]
fn a_transfer_coding_not_ending_in_chunked_is_refused() {
    for raw in [
        &b"POST /u HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(
            malformed(raw),
            MalformedHead::UnsupportedTransferEncoding,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    let head = complete(b"POST /u HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(head.body_framing(), BodyFraming::Chunked);
}

#[test]
fn the_body_framing_follows_the_head() {
    let sized = complete(b"POST /u HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
    assert_eq!(sized.body_framing(), BodyFraming::Length(12));
    let none = complete(b"GET /u HTTP/1.1\r\n\r\n");
    assert_eq!(none.body_framing(), BodyFraming::Length(0));
    // 20 digits could overflow: refused at parse time.
    assert_eq!(
        malformed(b"POST /u HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        MalformedHead::AmbiguousBodyLength
    );
}

#[test]
fn rewrite_produces_an_origin_form_head_without_hop_by_hop_headers() {
    let head = complete(
        b"POST http://API.test:8080/v1/x?k=v HTTP/1.1\r\n\
          Host: evil.test\r\n\
          Proxy-Connection: keep-alive\r\n\
          Proxy-Authorization: Basic Zm9v\r\n\
          Connection: keep-alive, X-Drop, Host, Content-Length\r\n\
          Keep-Alive: timeout=5\r\n\
          TE: trailers\r\n\
          Trailer: X-T\r\n\
          Upgrade: h2c\r\n\
          X-Drop: secret\r\n\
          Content-Length: 2\r\n\
          X-Api-Key: paddock-placeholder-anthropic\r\n\r\nhi",
    );
    let rewritten = rewrite_absolute_to_origin(&head).unwrap();
    assert_eq!(
        String::from_utf8(rewritten.clone()).unwrap(),
        "POST /v1/x?k=v HTTP/1.1\r\n\
         Host: api.test:8080\r\n\
         Content-Length: 2\r\n\
         X-Api-Key: paddock-placeholder-anthropic\r\n\
         Connection: close\r\n\r\n"
    );
    let again = complete(&rewritten);
    assert_eq!(again.target, RequestTarget::Origin("/v1/x?k=v".into()));
    assert_eq!(again.host_header(), Some((name("api.test"), Some(8080))));
    assert_eq!(again.head_len, rewritten.len());
}

#[test]
fn rewrite_keeps_default_ports_implicit_and_brackets_ipv6() {
    let https = complete(b"GET https://a.test:443/ HTTP/1.0\r\n\r\n");
    assert_eq!(
        rewrite_absolute_to_origin(&https).unwrap(),
        b"GET / HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    );
    let v6 = complete(b"GET http://[2001:db8::2]:8000/p HTTP/1.1\r\n\r\n");
    assert_eq!(
        rewrite_absolute_to_origin(&v6).unwrap(),
        b"GET /p HTTP/1.1\r\nHost: [2001:db8::2]:8000\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn rewrite_keeps_a_websocket_upgrade_and_the_origin_host() {
    let websocket = complete(
        b"GET http://ws.test/chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: abc\r\n\r\n",
    );
    assert_eq!(
        rewrite_absolute_to_origin(&websocket).unwrap(),
        b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc\r\n\
          Connection: Upgrade\r\n\r\n"
    );
    // Upgrade without Connection: upgrade is not a handshake: dropped.
    let stray = complete(b"GET http://ws.test/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(
        rewrite_absolute_to_origin(&stray).unwrap(),
        b"GET / HTTP/1.1\r\nHost: ws.test\r\nConnection: close\r\n\r\n"
    );
    let origin = complete(b"GET /x HTTP/1.1\r\nHost: o.test\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        rewrite_absolute_to_origin(&origin).unwrap(),
        b"GET /x HTTP/1.1\r\nHost: o.test\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn rewrite_refuses_connect_and_edited_heads_that_would_inject_lines() {
    let connect = complete(b"CONNECT a.test:443 HTTP/1.1\r\n\r\n");
    assert_eq!(
        rewrite_absolute_to_origin(&connect),
        Err(RewriteError::Connect)
    );
    let mut edited = complete(b"GET http://a.test/ HTTP/1.1\r\n\r\n");
    edited
        .headers
        .push(("X-Evil".into(), b"a\r\nHost: b.test".to_vec()));
    assert_eq!(
        rewrite_absolute_to_origin(&edited),
        Err(RewriteError::InvalidHeader {
            name: "X-Evil".into()
        })
    );
    let mut edited = complete(b"GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n");
    edited.target = RequestTarget::Origin("/a HTTP/1.1\r\nX: y".into());
    assert_eq!(
        rewrite_absolute_to_origin(&edited),
        Err(RewriteError::InvalidRequestLine)
    );
}

#[tokio::test]
async fn read_head_returns_the_head_and_the_body_bytes_read_with_it() {
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    client
        .write_all(b"POST http://a.test/ HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody")
        .await
        .unwrap();
    let (head, bytes) = read_head(&mut server, MAX_HEAD, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&bytes[head.head_len..], b"body");
    assert_eq!(head.target.host_port(), Some((&name("a.test"), 80)));
}

#[tokio::test]
async fn read_head_handles_a_head_sent_byte_by_byte() {
    let (mut client, mut server) = tokio::io::duplex(16);
    let raw = b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nUser-Agent: x\r\n\r\n";
    let writer = tokio::spawn(async move {
        for byte in raw {
            client.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let (head, bytes) = read_head(&mut server, MAX_HEAD, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(bytes, raw);
    assert_eq!(
        head.target,
        RequestTarget::Authority {
            host: name("a.test"),
            port: 443
        }
    );
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn a_one_mib_connect_line_is_refused_at_the_bound_without_reading_further() {
    let mut line = b"CONNECT ".to_vec();
    line.resize(1 << 20, b'a');
    let mut remaining: &[u8] = &line;
    let error = read_head(&mut remaining, usize::MAX, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, HttpHeadError::TooLarge { limit: MAX_HEAD }),
        "{error:?}"
    );
    assert_eq!(
        line.len() - remaining.len(),
        MAX_HEAD,
        "read exactly up to the bound"
    );

    let mut remaining: &[u8] = &line;
    let error = read_head(&mut remaining, 1000, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, HttpHeadError::TooLarge { limit: 1000 }),
        "{error:?}"
    );
    assert_eq!(line.len() - remaining.len(), 1000);
}

#[tokio::test]
async fn a_slow_sender_hits_one_deadline_for_the_whole_head() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let writer = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nHost: a.test\r\n"
            .iter()
            .cycle()
            .take(400)
        {
            if client.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let started = std::time::Instant::now();
    let error = read_head(&mut server, MAX_HEAD, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(error, HttpHeadError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(server);
    writer.await.unwrap();
}

#[tokio::test]
async fn read_head_reports_a_close_before_the_head_ends() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let partial = b"GET / HTTP/1.1\r\nHost: a";
    client.write_all(partial).await.unwrap();
    drop(client);
    let error = read_head(&mut server, MAX_HEAD, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, HttpHeadError::Closed { received } if received == partial.len()),
        "{error:?}"
    );
}

#[tokio::test]
async fn read_head_refuses_garbage_at_the_first_bytes_without_waiting_for_a_line() {
    // The peer keeps the connection open and sends no line feed: still refused at once.
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"\x16\x03\x01\x02\x00\x01").await.unwrap();
    let error = read_head(&mut server, MAX_HEAD, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(error, HttpHeadError::Malformed(MalformedHead::Syntax(_))),
        "{error:?}"
    );
    drop(client);
}

/// From the fuzz target `http_head`: an absolute-form head with exactly [`MAX_HEADERS`] headers
/// is accepted, and its rewrite adds `Host` and `Connection`, going past this parser's own
/// header limit (the origin server applies its own). The rewrite keeps the request the same:
/// method, target and body framing.
#[test]
fn a_head_at_the_header_limit_is_rewritten_with_host_and_connection_added() {
    let mut raw = b"POST http://example.com/e HTTP/1.1\r\nContent-Length: 3\r\n".to_vec();
    for i in 1..MAX_HEADERS {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let head = complete(&raw);
    assert_eq!(head.headers.len(), MAX_HEADERS);
    let rewritten = rewrite_absolute_to_origin(&head).unwrap();
    let text = String::from_utf8(rewritten.clone()).unwrap();
    assert!(
        text.starts_with("POST /e HTTP/1.1\r\nHost: example.com\r\n"),
        "{text}"
    );
    assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
    assert_eq!(text.matches("\r\n").count(), 1 + MAX_HEADERS + 2 + 1);
    assert!(matches!(
        parse_request_head(&rewritten),
        Err(HttpHeadError::TooManyHeaders)
    ));
    // With room for the two added headers, the same request parses back unchanged.
    raw.drain(raw.len() - 2 - "X-63: v\r\nX-62: v\r\n".len()..);
    raw.extend_from_slice(b"\r\n");
    let head = complete(&raw);
    let again = complete(&rewrite_absolute_to_origin(&head).unwrap());
    assert_eq!(again.method, "POST");
    assert_eq!(again.body_framing(), BodyFraming::Length(3));
    assert_eq!(again.headers.len(), MAX_HEADERS);
}
