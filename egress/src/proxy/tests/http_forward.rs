//! Plain HTTP forwarded by the proxy: exactly one request and its framed body reach the
//! upstream — never a request pipelined after it, nor one sent after a WebSocket handshake the
//! server did not accept — and only a `101` turns the connection into a raw two-way pipe.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_protocol::egress::{EgressHello, ResolveAnswer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::harness::*;

const ALLOW_WITH_LOOPBACK: &str =
    r#"{"preset": "locked", "allow": ["allowed.test", "127.0.0.1/32"]}"#;
/// What a second, smuggled request names.
const SMUGGLED_HOST: &str = "smuggled.test";
/// How long the upstream is watched for bytes that must not come.
const SETTLE: Duration = Duration::from_millis(300);

/// How the recording upstream answers the first request head.
#[derive(Clone, Copy)]
enum Answer {
    /// `200` with a two-byte body, then the connection stays open (ignoring `Connection: close`).
    OkKeepOpen,
    /// `101 Switching Protocols`, `hello` at once, then an echo of everything after the head.
    SwitchAndEcho,
}

/// A TCP upstream on loopback that records every byte it receives on its one connection.
struct Recorder {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    async fn start(answer: Answer) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&received);
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve_recording(stream, answer, record).await;
        });
        Recorder { port, received }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

async fn serve_recording(mut stream: TcpStream, answer: Answer, record: Arc<Mutex<Vec<u8>>>) {
    let mut answered = false;
    let mut chunk = [0u8; 4096];
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let after_head = {
            let mut all = record.lock().unwrap();
            all.extend_from_slice(&chunk[..read]);
            if answered {
                chunk[..read].to_vec()
            } else {
                match all.windows(4).position(|window| window == b"\r\n\r\n") {
                    Some(end) => all[end + 4..].to_vec(),
                    None => continue,
                }
            }
        };
        match (answer, answered) {
            (Answer::OkKeepOpen, false) => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
            (Answer::OkKeepOpen, true) => {}
            (Answer::SwitchAndEcho, false) => {
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
                    .await;
                let _ = stream.write_all(&after_head).await;
            }
            (Answer::SwitchAndEcho, true) => {
                let _ = stream.write_all(&after_head).await;
            }
        }
        answered = true;
    }
}

async fn proxy() -> Proxy {
    Setup::new(ALLOW_WITH_LOOPBACK, &[("allowed.test", localhost())])
        .start()
        .await
}

fn smuggled() -> String {
    format!("GET / HTTP/1.1\r\nHost: {SMUGGLED_HOST}\r\n\r\n")
}

/// Reads exactly `len` bytes.
async fn read_exactly<S: AsyncRead + Unpin>(stream: &mut S, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    tokio::time::timeout(WAIT, stream.read_exact(&mut bytes))
        .await
        .expect("the bytes arrive")
        .unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_after_a_sized_body_never_reaches_the_upstream() {
    let upstream = Recorder::start(Answer::OkKeepOpen).await;
    let proxy = proxy().await;
    let mut stream = proxy.open(&EgressHello::Proxy).await;
    let request = format!(
        "POST http://allowed.test:{}/upload HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n\r\nhello{}",
        upstream.port,
        smuggled()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_answer_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(read_exactly(&mut stream, 2).await, b"ok");
    tokio::time::sleep(SETTLE).await;
    let received = upstream.text();
    assert!(
        received.starts_with("POST /upload HTTP/1.1\r\n"),
        "{received}"
    );
    assert!(received.ends_with("\r\n\r\nhello"), "{received}");
    assert!(!received.contains(SMUGGLED_HOST), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_after_a_chunked_body_never_reaches_the_upstream() {
    let upstream = Recorder::start(Answer::OkKeepOpen).await;
    let proxy = proxy().await;
    let address = match proxy.resolve("allowed.test").await {
        ResolveAnswer::Address(address) => IpAddr::V4(address),
        ResolveAnswer::NxDomain => panic!("allowed.test got NXDOMAIN"),
    };
    // Through a captured connection this time: the tunnel's HTTP takes the same path.
    let hello = EgressHello::Transparent(SocketAddr::new(address, upstream.port));
    let mut stream = proxy.open(&hello).await;
    let body = "5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}{}",
        smuggled()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_answer_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    tokio::time::sleep(SETTLE).await;
    let received = upstream.text();
    assert!(received.ends_with(&format!("\r\n\r\n{body}")), "{received}");
    assert!(!received.contains(SMUGGLED_HOST), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_without_101_passes_no_second_request() {
    let upstream = Recorder::start(Answer::OkKeepOpen).await;
    let proxy = proxy().await;
    let mut stream = proxy.open(&EgressHello::Proxy).await;
    let request = format!(
        "GET http://allowed.test:{}/chat HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n{}",
        upstream.port,
        smuggled()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The refused upgrade's answer, then the proxy closes: the server kept the connection open.
    let answer = String::from_utf8(read_all(&mut stream).await).unwrap();
    assert_eq!(answer, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    // Bytes the guest sends now go nowhere either.
    let _ = stream.write_all(smuggled().as_bytes()).await;
    tokio::time::sleep(SETTLE).await;
    let received = upstream.text();
    assert!(received.starts_with("GET /chat HTTP/1.1\r\n"), "{received}");
    assert!(received.contains("Upgrade: websocket\r\n"), "{received}");
    assert!(!received.contains(SMUGGLED_HOST), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_101_bytes_flow_both_ways() {
    let upstream = Recorder::start(Answer::SwitchAndEcho).await;
    let proxy = proxy().await;
    let mut stream = proxy.open(&EgressHello::Proxy).await;
    let request = format!(
        "GET http://allowed.test:{}/chat HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly",
        upstream.port
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_answer_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // The server's first frame, then the guest's bytes sent with the handshake, echoed.
    assert_eq!(read_exactly(&mut stream, 10).await, b"helloearly");
    stream.write_all(b"frame").await.unwrap();
    assert_eq!(read_exactly(&mut stream, 5).await, b"frame");
    let received = upstream.text();
    assert!(received.ends_with("\r\n\r\nearlyframe"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transparent_refusal_does_not_name_the_mapped_host() {
    let upstream = Recorder::start(Answer::OkKeepOpen).await;
    let proxy = proxy().await;
    let address = match proxy.resolve("allowed.test").await {
        ResolveAnswer::Address(address) => IpAddr::V4(address),
        ResolveAnswer::NxDomain => panic!("allowed.test got NXDOMAIN"),
    };
    let hello = EgressHello::Transparent(SocketAddr::new(address, upstream.port));
    let mut stream = proxy.open(&hello).await;
    stream.write_all(smuggled().as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_all(&mut stream).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.contains("host-mismatch"), "{answer}");
    assert!(!answer.contains("allowed.test"), "{answer}");
    // The log, on the host, still names it.
    let entry = proxy.log_entry(|entry| entry["verdict"] == "deny").await;
    assert_eq!(entry["host"], "allowed.test");
    assert_eq!(entry["reason"], "host-mismatch");
}
