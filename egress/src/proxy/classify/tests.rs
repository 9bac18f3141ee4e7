//! Tests of `classify`.
use tokio::io::AsyncWriteExt;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

async fn classify_bytes(pieces: &[&[u8]]) -> (Result<TrafficKind, ClassifyError>, Vec<u8>) {
    let (mut guest, proxy) = tokio::io::duplex(1024);
    let pieces: Vec<Vec<u8>> = pieces.iter().map(|piece| piece.to_vec()).collect();
    let writer = tokio::spawn(async move {
        for piece in pieces {
            guest.write_all(&piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut stream = Prefixed::new(Vec::new(), proxy);
    let kind = classify(&mut stream, WAIT).await;
    writer.await.unwrap();
    let mut replay = vec![0u8; stream.unread_prefix().len()];
    stream.read_exact(&mut replay).await.unwrap();
    (kind, replay)
}

#[tokio::test]
async fn tls_http_and_other_tcp_are_told_apart() {
    let (kind, replay) = classify_bytes(&[b"\x16\x03\x01\x00\x05hello"]).await;
    assert_eq!(kind.unwrap(), TrafficKind::Tls);
    assert_eq!(replay, b"\x16\x03\x01\x00\x05hello");
    let (kind, replay) = classify_bytes(&[b"GET / HTTP/1.1\r\n"]).await;
    assert_eq!(kind.unwrap(), TrafficKind::Http);
    assert_eq!(replay, b"GET / HTTP/1.1\r\n");
    let (kind, _) = classify_bytes(&[b"SSH-2.0-OpenSSH_9.6\r\n"]).await;
    assert_eq!(kind.unwrap(), TrafficKind::OtherTcp);
    let (kind, _) = classify_bytes(&[b"\x00\x01binary"]).await;
    assert_eq!(kind.unwrap(), TrafficKind::OtherTcp);
}

#[tokio::test]
async fn a_method_arriving_byte_by_byte_is_waited_for() {
    let (kind, replay) = classify_bytes(&[b"P", b"O", b"S", b"T", b" ", b"/"]).await;
    assert_eq!(kind.unwrap(), TrafficKind::Http);
    assert!(replay.starts_with(b"POST "));
    let long = [b'A'; 40];
    let (kind, replay) = classify_bytes(&[&long]).await;
    assert_eq!(kind.unwrap(), TrafficKind::OtherTcp);
    assert_eq!(replay.len(), MAX_SNIFFED);
}

#[tokio::test]
async fn silence_and_early_close_are_errors() {
    let (_guest, proxy) = tokio::io::duplex(64);
    let mut stream = Prefixed::new(Vec::new(), proxy);
    assert!(matches!(
        classify(&mut stream, Duration::from_millis(30)).await,
        Err(ClassifyError::Timeout { .. })
    ));
    let (guest, proxy) = tokio::io::duplex(64);
    drop(guest);
    let mut stream = Prefixed::new(Vec::new(), proxy);
    assert!(matches!(
        classify(&mut stream, WAIT).await,
        Err(ClassifyError::Closed { received: 0 })
    ));
}
