//! Tests of response-head parsing and framing.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::*;

fn head(raw: &[u8]) -> ResponseHead {
    parse_response_head(raw).unwrap().expect("a complete head")
}

#[test]
fn the_status_and_framing_are_read() {
    let switched = head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nframes");
    assert_eq!(switched.status, 101);
    assert_eq!(switched.framing, BodyFraming::Length(0));
    assert!(switched.bytes.ends_with(b"websocket\r\n\r\n"));
    let sized = head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(sized.framing, BodyFraming::Length(2));
    let chunked = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(chunked.framing, BodyFraming::Chunked);
    let open = head(b"HTTP/1.0 200 OK\r\n\r\n");
    assert_eq!(open.framing, BodyFraming::UntilClose);
    let no_content = head(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
    assert_eq!(no_content.framing, BodyFraming::Length(0));
}

#[test]
fn bad_response_heads_are_refused() {
    assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent")
        .unwrap()
        .is_none());
    assert!(matches!(
        parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        Err(ResponseHeadError::AmbiguousBodyLength)
    ));
    assert!(matches!(
        parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        Err(ResponseHeadError::AmbiguousBodyLength)
    ));
    assert!(matches!(
        parse_response_head(b"NOT HTTP\r\n\r\n"),
        Err(ResponseHeadError::Malformed(_))
    ));
    let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    huge.extend(vec![b'a'; MAX_RESPONSE_HEAD]);
    assert!(matches!(
        parse_response_head(&huge),
        Err(ResponseHeadError::TooLarge)
    ));
}

#[tokio::test]
async fn a_head_is_read_from_a_stream_and_the_body_stays_buffered() {
    let mut reader = FramedReader::new(
        &b"Length: 2\r\n\r\nok+more"[..],
        b"HTTP/1.1 200 OK\r\nContent-".to_vec(),
    );
    let read = reader.read_response_head().await.unwrap();
    assert_eq!(read.framing, BodyFraming::Length(2));
    let mut out = Vec::new();
    let mut count = 0;
    reader
        .copy_body(read.framing, &mut out, &mut count)
        .await
        .unwrap();
    assert_eq!(out, b"ok");
    let mut closed = FramedReader::new(&b""[..], b"HTTP/1.1 200".to_vec());
    assert!(matches!(
        closed.read_response_head().await,
        Err(ResponseHeadError::Closed)
    ));
}
