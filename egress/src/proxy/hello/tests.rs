//! Tests of `hello`.
use tokio::io::AsyncWriteExt;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn hello_and_following_bytes_are_split() {
    let (mut guest, mut proxy) = tokio::io::duplex(1024);
    let mut sent = EgressHello::Proxy.encode();
    sent.extend_from_slice(b"CONNECT a.test:443 HTTP/1.1\r\n");
    guest.write_all(&sent).await.unwrap();
    let read = read_hello(&mut proxy, WAIT).await.unwrap();
    assert_eq!(read.hello, EgressHello::Proxy);
    assert_eq!(read.after, b"CONNECT a.test:443 HTTP/1.1\r\n");
}

#[tokio::test]
async fn hello_sent_byte_by_byte_is_read() {
    let (mut guest, mut proxy) = tokio::io::duplex(1024);
    let line = EgressHello::Resolve("example.com".into()).encode();
    let writer = tokio::spawn(async move {
        for byte in line {
            guest.write_all(&[byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        guest
    });
    let read = read_hello(&mut proxy, WAIT).await.unwrap();
    assert_eq!(read.hello, EgressHello::Resolve("example.com".into()));
    assert!(read.after.is_empty());
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn a_line_without_newline_stops_at_the_limit() {
    let (mut guest, mut proxy) = tokio::io::duplex(1 << 20);
    guest.write_all(&vec![b'x'; 1 << 20]).await.unwrap();
    assert!(matches!(
        read_hello(&mut proxy, WAIT).await,
        Err(HelloError::Line(EgressLineError::TooLong))
    ));
    // No more than one line's worth was taken from the stream.
    let mut rest = Vec::new();
    drop(guest);
    proxy.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest.len(), (1 << 20) - MAX_HELLO_LINE);
}

#[tokio::test]
async fn silence_times_out_and_bad_lines_are_refused() {
    let (_guest, mut proxy) = tokio::io::duplex(1024);
    assert!(matches!(
        read_hello(&mut proxy, Duration::from_millis(50)).await,
        Err(HelloError::Timeout { .. })
    ));
    let (mut guest, mut proxy) = tokio::io::duplex(1024);
    guest
        .write_all(b"PADDOCK-EGRESS/1 PROXY c=00000000\n")
        .await
        .unwrap();
    assert!(matches!(
        read_hello(&mut proxy, WAIT).await,
        Err(HelloError::Line(EgressLineError::Checksum))
    ));
    let (mut guest, mut proxy) = tokio::io::duplex(1024);
    guest.write_all(b"PADDOCK").await.unwrap();
    drop(guest);
    assert!(matches!(
        read_hello(&mut proxy, WAIT).await,
        Err(HelloError::Closed { received: 7 })
    ));
}
