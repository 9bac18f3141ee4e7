//! Tests of body framing: exact copies, nothing past the end, hostile chunk lines refused.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::*;

/// Copies the body framed by `framing` from `input`; the copy and the bytes left over.
async fn copy(input: &[u8], framing: BodyFraming) -> (Result<Vec<u8>, BodyError>, Vec<u8>) {
    let (start, rest) = input.split_at(input.len().min(3));
    let mut reader = FramedReader::new(rest, start.to_vec());
    let mut out = Vec::new();
    let mut count = 0;
    let copied = reader.copy_body(framing, &mut out, &mut count).await;
    if copied.is_ok() {
        assert_eq!(count, out.len() as u64);
    }
    let (rest, mut leftover) = reader.into_parts();
    leftover.extend_from_slice(rest);
    (copied.map(|()| out), leftover)
}

#[tokio::test]
async fn a_sized_body_is_copied_and_nothing_after_it() {
    let (copied, left) = copy(b"hello world GET / HTTP/1.1", BodyFraming::Length(11)).await;
    assert_eq!(copied.unwrap(), b"hello world");
    assert_eq!(left, b" GET / HTTP/1.1");
    let (copied, left) = copy(b"anything", BodyFraming::Length(0)).await;
    assert_eq!(copied.unwrap(), b"");
    assert_eq!(left, b"anything");
    let (copied, _) = copy(b"short", BodyFraming::Length(6)).await;
    assert!(matches!(copied, Err(BodyError::Truncated)));
}

#[tokio::test]
async fn a_chunked_body_is_copied_up_to_its_trailers_end() {
    let body = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Check: 1\r\n\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
    let (copied, left) = copy(&input, BodyFraming::Chunked).await;
    assert_eq!(copied.unwrap(), body);
    assert_eq!(left, b"GET /next HTTP/1.1\r\n\r\n");
    let (copied, _) = copy(b"0\n\n", BodyFraming::Chunked).await;
    assert_eq!(copied.unwrap(), b"0\n\n");
}

#[tokio::test]
async fn hostile_chunk_framing_is_refused() {
    for (input, expected) in [
        (&b"zz\r\n"[..], "size"),
        (b"\r\n", "size"),
        (b"11111111111111111\r\n", "size"),
        (b"5 x\r\nhello\r\n0\r\n\r\n", "size"),
        (b"5\r\nhelloXX0\r\n\r\n", "end"),
        (b"5\r\nhel", "truncated"),
    ] {
        let (copied, _) = copy(input, BodyFraming::Chunked).await;
        let matched = matches!(
            (&copied, expected),
            (Err(BodyError::BadChunkSize), "size")
                | (Err(BodyError::BadChunkEnd), "end")
                | (Err(BodyError::Truncated), "truncated")
        );
        assert!(matched, "{:?}: {copied:?}", String::from_utf8_lossy(input));
    }
    let long_line = vec![b'1'; MAX_CHUNK_LINE + 10];
    let (copied, _) = copy(&long_line, BodyFraming::Chunked).await;
    assert!(matches!(
        copied,
        Err(BodyError::BadChunkSize | BodyError::LineTooLong { .. })
    ));
    let mut long_extension = b"1;".to_vec();
    long_extension.extend(vec![b'x'; MAX_CHUNK_LINE]);
    long_extension.extend_from_slice(b"\r\n");
    let (copied, _) = copy(&long_extension, BodyFraming::Chunked).await;
    assert!(matches!(copied, Err(BodyError::LineTooLong { .. })));
    let mut many_trailers = b"0\r\n".to_vec();
    for _ in 0..(MAX_TRAILERS / 8 + 1) {
        many_trailers.extend_from_slice(b"X-a: 1\r\n");
    }
    many_trailers.extend_from_slice(b"\r\n");
    let (copied, _) = copy(&many_trailers, BodyFraming::Chunked).await;
    assert!(matches!(copied, Err(BodyError::TrailersTooLarge { .. })));
}

#[tokio::test]
async fn until_close_copies_everything() {
    let (copied, left) = copy(b"all of it", BodyFraming::UntilClose).await;
    assert_eq!(copied.unwrap(), b"all of it");
    assert!(left.is_empty());
}

#[tokio::test]
async fn the_rest_can_be_discarded() {
    let mut reader = FramedReader::new(&b"later bytes"[..], b"held ".to_vec());
    assert_eq!(reader.discard_rest().await.unwrap(), 16);
    assert!(reader.buffered().is_empty());
}
