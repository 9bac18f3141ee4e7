//! Tests of `splice`.
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn prefix_is_read_first_then_the_stream() {
    let (mut near, far) = tokio::io::duplex(64);
    near.write_all(b" world").await.unwrap();
    drop(near);
    let mut stream = Prefixed::new(b"hello".to_vec(), far);
    let mut small = [0u8; 3];
    stream.read_exact(&mut small).await.unwrap();
    assert_eq!(&small, b"hel");
    assert_eq!(stream.unread_prefix(), b"lo");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"lo world");
}

#[tokio::test]
async fn unread_bytes_come_back_before_the_rest() {
    let (mut near, far) = tokio::io::duplex(64);
    near.write_all(b"3").await.unwrap();
    drop(near);
    let mut stream = Prefixed::new(b"12".to_vec(), far);
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await.unwrap();
    stream.unread(&first);
    stream.unread(b"0");
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"0123");
}

#[tokio::test]
async fn writes_reach_the_stream() {
    let (mut near, far) = tokio::io::duplex(64);
    let mut stream = Prefixed::new(b"ignored".to_vec(), far);
    stream.write_all(b"out").await.unwrap();
    let mut got = [0u8; 3];
    near.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"out");
}

#[tokio::test]
async fn splice_moves_and_counts_both_ways() {
    let (mut guest_end, guest_proxy_end) = tokio::io::duplex(1024);
    let (upstream_proxy_end, mut upstream_end) = tokio::io::duplex(1024);
    let proxy = tokio::spawn(async move {
        let mut guest = Prefixed::new(b"GET".to_vec(), guest_proxy_end);
        let mut upstream = upstream_proxy_end;
        splice(&mut guest, &mut upstream).await
    });
    guest_end.write_all(b" /\r\n").await.unwrap();
    guest_end.shutdown().await.unwrap();
    let mut request = Vec::new();
    upstream_end.read_to_end(&mut request).await.unwrap();
    assert_eq!(request, b"GET /\r\n");
    // Far more than the pipes hold: the answer streams through, it is not buffered whole.
    let body = vec![7u8; 100_000];
    let sent = body.clone();
    let upstream = tokio::spawn(async move {
        upstream_end.write_all(&sent).await.unwrap();
        upstream_end.shutdown().await.unwrap();
    });
    let mut answer = Vec::new();
    guest_end.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, body);
    upstream.await.unwrap();
    let (counts, error) = proxy.await.unwrap();
    assert!(error.is_none());
    assert_eq!(
        counts,
        Spliced {
            bytes_up: 7,
            bytes_down: 100_000
        }
    );
}
