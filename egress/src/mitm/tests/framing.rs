//! Request framing: chunk sizes, body framing rules, head limits, the host of each request.

use crate::mitm::framing::{parse_head, BodyFraming};
use crate::mitm::{HeadError, InterceptError, MAX_HEAD_LEN};
use crate::wire::http::body::parse_chunk_size;

/// The connection's host in these tests.
const HOST: &str = "x.example";

/// The framing of `head` with `Host: x.example` added after its request line.
fn framing(head: &str) -> Result<Option<BodyFraming>, InterceptError> {
    let head = match head.split_once("\r\n") {
        Some((line, rest)) => format!("{line}\r\nHost: {HOST}\r\n{rest}"),
        None => head.to_owned(),
    };
    parse_head(head.as_bytes(), HOST).map(|head| head.map(|head| head.framing))
}

/// Why `head` was refused on a connection to [`HOST`].
fn refused_head(head: &str) -> HeadError {
    match parse_head(head.as_bytes(), HOST) {
        Err(InterceptError::Head(error)) => error,
        other => panic!("{head:?} gave {other:?}"),
    }
}

#[test]
fn chunk_sizes_are_hex_with_optional_extensions() {
    assert_eq!(parse_chunk_size(b"0\r\n").ok(), Some(0));
    assert_eq!(parse_chunk_size(b"1a\r\n").ok(), Some(26));
    assert_eq!(parse_chunk_size(b"FF;name=value\r\n").ok(), Some(255));
    assert_eq!(parse_chunk_size(b"10 \t;x\n").ok(), Some(16));
    assert_eq!(
        parse_chunk_size(b"ffffffffffffffff\r\n").ok(),
        Some(u64::MAX)
    );
    for bad in [
        &b"\r\n"[..],
        b"x\r\n",
        b"-1\r\n",
        b"1 2\r\n",
        b"10000000000000000\r\n",
        b"5",
    ] {
        assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn body_framing_follows_rfc_9112() {
    assert_eq!(
        framing("GET / HTTP/1.1\r\n\r\n").unwrap(),
        Some(BodyFraming::Length(0))
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").unwrap(),
        Some(BodyFraming::Length(12))
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\ncontent-length: 12\r\nContent-Length: 12\r\n\r\n").unwrap(),
        Some(BodyFraming::Length(12))
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").unwrap(),
        Some(BodyFraming::Chunked)
    );
    assert_eq!(
        framing("POST / HTTP/1.1\r\nContent-Length: 1").unwrap(),
        None,
        "partial"
    );
    let refused = |head: &str| match framing(head) {
        Err(InterceptError::Head(error)) => error,
        other => panic!("{head:?} gave {other:?}"),
    };
    assert!(matches!(
        refused("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        HeadError::BadContentLength
    ));
    assert!(matches!(
        refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        HeadError::BadContentLength
    ));
    assert!(matches!(
        refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        HeadError::BadContentLength
    ));
    assert!(matches!(
        refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HeadError::LengthAndEncoding
    ));
    assert!(matches!(
        refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        HeadError::BadTransferEncoding
    ));
    assert!(matches!(
        refused(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        HeadError::BadTransferEncoding
    ));
    assert!(matches!(
        refused("NOT HTTP\r\n\r\n"),
        HeadError::Malformed(_)
    ));
    let folded = "GET / HTTP/1.1\r\nx-a: b\r\n c\r\n\r\n";
    assert!(matches!(refused(folded), HeadError::Malformed(_)));
}

#[test]
fn http_10_may_not_use_a_transfer_coding() {
    assert_eq!(
        framing("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n").unwrap(),
        Some(BodyFraming::Length(3))
    );
    for head in [
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        assert!(
            matches!(
                framing(head),
                Err(InterceptError::Head(HeadError::EncodingInHttp10))
            ),
            "{head}"
        );
    }
}

#[test]
fn each_request_must_name_the_connections_host() {
    let accepted = |head: &str| parse_head(head.as_bytes(), HOST).unwrap().is_some();
    for head in [
        "GET / HTTP/1.1\r\nHost: x.example\r\n\r\n",
        "GET / HTTP/1.1\r\nhost:  X.Example.:443 \r\n\r\n",
        "GET / HTTP/1.0\r\nHost: x.example:8443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x.example\r\n\r\n",
        "GET https://X.EXAMPLE/a?b HTTP/1.1\r\nHost: x.example\r\n\r\n",
        "GET http://x.example:443?b HTTP/1.1\r\nHost: x.example\r\n\r\n",
        "CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n",
    ] {
        assert!(accepted(head), "{head}");
    }
    let wrong_host = |head: &str| {
        let error = refused_head(head);
        assert!(error.is_wrong_host(), "{head}: {error:?}");
        error
    };
    assert!(matches!(
        wrong_host("GET / HTTP/1.0\r\n\r\n"),
        HeadError::MissingHost
    ));
    assert!(matches!(
        wrong_host("GET / HTTP/1.1\r\nx-a: 1\r\n\r\n"),
        HeadError::MissingHost
    ));
    assert!(matches!(
        wrong_host("GET / HTTP/1.1\r\nHost: x.example\r\nhost: x.example\r\n\r\n"),
        HeadError::RepeatedHost { count: 2 }
    ));
    for host in [
        "other.example",
        "x.example.evil",
        "evil.x.example",
        "x.example:",
        "x.example:99999",
        "x.example:1:2",
        "user@x.example",
        "",
    ] {
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert!(
            matches!(wrong_host(&head), HeadError::HostMismatch { found, .. } if found == host),
            "{host}"
        );
    }
    for target in [
        "https://other.example/v1",
        "http://other.example",
        "https://x.example@other.example/",
        "https://other.example?x.example",
        "ftp://x.example/",
        "other.example:443",
        "x.example.evil:443",
        "mailto:x.example",
    ] {
        let head = format!("GET {target} HTTP/1.1\r\nHost: x.example\r\n\r\n");
        assert!(
            matches!(wrong_host(&head), HeadError::TargetMismatch { found, .. } if found == target),
            "{target}"
        );
    }
    // What a guest sent is cut in the error.
    let long = "a".repeat(1000);
    let head = format!("GET / HTTP/1.1\r\nHost: {long}\r\n\r\n");
    assert!(
        matches!(wrong_host(&head), HeadError::HostMismatch { found, .. } if found.len() == 256)
    );
    // Framing errors are not about the host.
    assert!(!refused_head(
        "POST / HTTP/1.0\r\nHost: x.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .is_wrong_host());
}

#[test]
fn connect_and_upgrade_switch_protocols() {
    let switches = |head: &str| {
        parse_head(head.as_bytes(), HOST)
            .unwrap()
            .unwrap()
            .switches_protocol
    };
    assert!(switches(
        "CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n"
    ));
    assert!(switches(
        "GET /ws HTTP/1.1\r\nHost: x.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    ));
    assert!(!switches("GET / HTTP/1.1\r\nHost: x.example\r\n\r\n"));
}

#[tokio::test]
async fn heads_are_bounded() {
    use crate::mitm::framing::RequestReader;
    let mut huge = b"GET / HTTP/1.1\r\nx-filler: ".to_vec();
    huge.resize(MAX_HEAD_LEN + 10, b'a');
    let mut reader = RequestReader::new(&huge[..], HOST);
    assert!(matches!(
        reader.next_head().await,
        Err(InterceptError::Head(HeadError::TooLarge { .. }))
    ));
    let mut truncated = RequestReader::new(&b"GET / HTTP/1.1\r\nHost: x"[..], HOST);
    assert!(matches!(
        truncated.next_head().await,
        Err(InterceptError::Head(HeadError::Truncated))
    ));
    let mut empty = RequestReader::new(&b"\r\n"[..], HOST);
    assert!(matches!(empty.next_head().await, Ok(None)));
}

#[tokio::test]
async fn trailers_carrying_a_foreign_placeholder_are_refused_before_they_are_written() {
    use crate::mitm::framing::RequestReader;
    let request = b"POST / HTTP/1.1\r\nHost: x.example\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\nx-note: paddock-placeholder-openai\r\n\r\n";
    let mut reader = RequestReader::new(&request[..], HOST);
    let head = reader.next_head().await.unwrap().unwrap();
    assert_eq!(head.framing, BodyFraming::Chunked);
    let (mut sent, mut count) = (Vec::new(), 0);
    let result = reader
        .copy_body(head.framing, &mut sent, &mut count, |trailers| {
            std::str::from_utf8(trailers)
                .ok()
                .filter(|t| t.contains("paddock-placeholder-openai"))
                .map(|_| "openai".to_string())
        })
        .await;
    assert!(
        matches!(&result, Err(InterceptError::Leak { service }) if service == "openai"),
        "{result:?}"
    );
    // The last-chunk line goes out; nothing of the trailer section does.
    assert_eq!(sent, b"5\r\nhello\r\n0\r\n");
    assert_eq!(count, sent.len() as u64);
}

/// A reader that hands out one byte per read, as a guest sending one TLS record per byte.
struct OneByteAtATime<'a>(&'a [u8]);

impl tokio::io::AsyncRead for OneByteAtATime<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some((first, rest)) = self.0.split_first() {
            buf.put_slice(&[*first]);
            self.0 = rest;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn heads_split_into_single_bytes_are_found_with_either_line_ending() {
    use crate::mitm::framing::RequestReader;
    let stream = b"\r\nGET /a HTTP/1.1\r\nHost: x.example\r\n\r\nGET /b HTTP/1.1\nHost: X.example\n\nGET /c HTTP/1.1\r\nHost:x.example\r\n\n";
    let mut reader = RequestReader::new(OneByteAtATime(stream), HOST);
    let mut heads = Vec::new();
    while let Some(head) = reader.next_head().await.unwrap() {
        heads.push(String::from_utf8(head.bytes).unwrap());
    }
    assert_eq!(
        heads,
        [
            "GET /a HTTP/1.1\r\nHost: x.example\r\n\r\n",
            "GET /b HTTP/1.1\nHost: X.example\n\n",
            "GET /c HTTP/1.1\r\nHost:x.example\r\n\n"
        ]
    );
}
