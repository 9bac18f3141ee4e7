//! Tests of `testing`.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]
use super::*;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn localhost() -> IpAddr {
    Ipv4Addr::LOCALHOST.into()
}

async fn tls_connect(
    pki: &TestPki,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(pki.client_config())
        .connect(name, tcp)
        .await
}

/// A response as the test client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) {
    let mut block = vec![0; 64 * 1024];
    let read = stream.read(&mut block).await.unwrap();
    assert!(read > 0, "connection closed early");
    buf.extend_from_slice(&block[..read]);
}

/// Reads one response (Content-Length or chunked) from `stream`; `buf` keeps what was read
/// past it.
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Answer {
    let (status, headers, head_len) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(len) = response.parse(buf).unwrap() {
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect::<Vec<_>>();
            break (response.code.unwrap(), headers, len);
        }
        fill(stream, buf).await;
    };
    buf.drain(..head_len);
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if answer.header("transfer-encoding") == Some("chunked") {
        loop {
            let (line, size) = loop {
                match httparse::parse_chunk_size(buf).unwrap() {
                    httparse::Status::Complete(parsed) => break parsed,
                    httparse::Status::Partial => fill(stream, buf).await,
                }
            };
            let size = size as usize;
            while buf.len() < line + size + 2 {
                fill(stream, buf).await;
            }
            answer.body.extend_from_slice(&buf[line..line + size]);
            assert_eq!(&buf[line + size..line + size + 2], b"\r\n");
            buf.drain(..line + size + 2);
            if size == 0 {
                return answer;
            }
        }
    }
    let len: usize = answer
        .header("content-length")
        .map_or(0, |len| len.parse().unwrap());
    while buf.len() < len {
        fill(stream, buf).await;
    }
    answer.body = buf.drain(..len).collect();
    answer
}

/// Sends `request` and reads the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &str) -> Answer {
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(stream, &mut Vec::new()).await
}

/// Whether the peer has closed (end of stream or reset) within a second.
async fn closed<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn messages_request(body: &str) -> String {
    format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.anthropic.com\r\nX-Api-Key: sk-test-key\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn https_hello_answers_with_the_sni_on_a_kept_alive_connection() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["example.test", "other.test"], localhost());
    let mut tls = tls_connect(&pki, upstream.addr, "other.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut buf = Vec::new();
    for _ in 0..2 {
        tls.write_all(b"GET / HTTP/1.1\r\nHost: ignored.test\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut tls, &mut buf).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "hello from other.test\n");
    }
}

#[tokio::test]
async fn https_hello_certificate_is_only_valid_for_its_names() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["example.test"], localhost());
    assert!(tls_connect(&pki, upstream.addr, "evil.test").await.is_err());
    // Another root is not trusted either.
    assert!(tls_connect(&TestPki::new(), upstream.addr, "example.test")
        .await
        .is_err());
    assert!(tls_connect(&pki, upstream.addr, "example.test")
        .await
        .is_ok());
}

#[tokio::test]
async fn https_hello_serves_big_downloads() {
    let pki = TestPki::new();
    let upstream = https_hello(&pki, &["example.test"], localhost());
    let mut tls = tls_connect(&pki, upstream.addr, "example.test")
        .await
        .unwrap();
    let len = 3 * 1024 * 1024 + 17;
    let answer = exchange(
        &mut tls,
        &format!("GET /bytes/{len} HTTP/1.1\r\nHost: example.test\r\n\r\n"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), len);
    assert!(answer.body.iter().all(|byte| *byte == 0));
    let too_big = exchange(
        &mut tls,
        &format!("GET /bytes/{} HTTP/1.1\r\n\r\n", MAX_DOWNLOAD + 1),
    )
    .await;
    assert_eq!(too_big.status, 400);
}

#[tokio::test]
async fn http_hello_answers_with_the_host_and_reads_bodies_fully() {
    let upstream = http_hello(localhost());
    let mut tcp = TcpStream::connect(upstream.addr).await.unwrap();
    // Three pipelined requests: a chunked body, a Content-Length body, then a GET. Each answer
    // arrives in order only if every body was consumed.
    tcp.write_all(
        b"POST /a HTTP/1.1\r\nHost: one.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: two.test:8080\r\nContent-Length: 11\r\n\r\nhello world\
          GET /c HTTP/1.1\r\nHost: three.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for host in ["one.test", "two.test:8080", "three.test"] {
        let answer = read_answer(&mut tcp, &mut buf).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), format!("hello from {host}\n"));
    }
    assert!(buf.is_empty());
    assert!(closed(&mut tcp).await, "Connection: close is honoured");
}

#[tokio::test]
async fn expect_continue_is_answered_before_the_body() {
    let upstream = http_hello(localhost());
    let mut tcp = TcpStream::connect(upstream.addr).await.unwrap();
    tcp.write_all(
        b"PUT / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let interim = read_answer(&mut tcp, &mut buf).await;
    assert_eq!(interim.status, 100);
    tcp.write_all(b"body").await.unwrap();
    let answer = read_answer(&mut tcp, &mut buf).await;
    assert_eq!(answer.text(), "hello from a.test\n");
}

#[tokio::test]
async fn malformed_or_oversized_requests_get_400_and_close() {
    let upstream = http_hello(localhost());
    let bad_requests = [
        b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
        format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )
        .into_bytes(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n".to_vec(),
        format!("GET / HTTP/1.1\r\nX-Long: {}", "a".repeat(MAX_HEAD + 10)).into_bytes(),
    ];
    for request in bad_requests {
        let mut tcp = TcpStream::connect(upstream.addr).await.unwrap();
        tcp.write_all(&request).await.unwrap();
        let answer = read_answer(&mut tcp, &mut Vec::new()).await;
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&request));
        assert!(closed(&mut tcp).await);
    }
}

#[tokio::test]
async fn fake_anthropic_answers_json_and_records_requests() {
    let pki = TestPki::new();
    let (upstream, log) = fake_anthropic(&pki, localhost(), "The answer is 42.");
    let mut tls = tls_connect(&pki, upstream.addr, "api.anthropic.com")
        .await
        .unwrap();
    let body =
        r#"{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let answer = exchange(&mut tls, &messages_request(body)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let message = answer.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-x");
    assert_eq!(message["content"][0]["type"], "text");
    assert_eq!(message["content"][0]["text"], "The answer is 42.");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"]["output_tokens"], 4);
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));

    let recorded = log.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/messages?beta=true");
    assert_eq!(request.header("x-api-key"), Some("sk-test-key"));
    assert_eq!(request.header("authorization"), Some("Bearer tok"));
    assert!(request.headers.iter().any(|(name, _)| name == "x-api-key"));
    assert_eq!(request.body_len, body.len());
}

#[tokio::test]
async fn fake_anthropic_reads_chunked_bodies() {
    let pki = TestPki::new();
    let (upstream, log) = fake_anthropic(&pki, localhost(), "ok");
    let mut tls = tls_connect(&pki, upstream.addr, "127.0.0.1").await.unwrap();
    let (first, second) = (r#"{"model":"m","#, r#""max_tokens":1}"#);
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    let answer = exchange(&mut tls, &request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["content"][0]["text"], "ok");
    assert_eq!(log.lock().unwrap()[0].body_len, first.len() + second.len());
}

#[tokio::test]
async fn fake_anthropic_streams_events_one_by_one() {
    let pki = TestPki::new();
    let answer_text = "streamed in four words";
    let (upstream, _log) = fake_anthropic(&pki, localhost(), answer_text);
    let mut tls = tls_connect(&pki, upstream.addr, "api.anthropic.com")
        .await
        .unwrap();
    let body = r#"{"model":"claude-s","stream":true,"messages":[]}"#;
    tls.write_all(messages_request(body).as_bytes())
        .await
        .unwrap();

    // Read raw, noting when each event's name line first arrived.
    let mut raw = Vec::new();
    let mut arrivals = Vec::new();
    while !raw.ends_with(b"0\r\n\r\n") {
        fill(&mut tls, &mut raw).await;
        let now = Instant::now();
        let seen = raw.windows(7).filter(|w| w == b"event: ").count();
        arrivals.resize(seen, now);
    }
    let answer = read_answer(&mut raw.as_slice(), &mut Vec::new()).await;
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    let events: Vec<(String, Value)> = answer
        .text()
        .split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (name, data)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    assert_eq!(events[0].1["message"]["model"], "claude-s");
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| data["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, answer_text);
    assert_eq!(events[8].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[8].1["usage"]["output_tokens"], 4);

    // The server pauses 20 ms before each event after the first: 9 pauses, 180 ms.
    assert_eq!(EVENT_PAUSE, Duration::from_millis(20));
    assert_eq!(arrivals.len(), events.len());
    let spread = arrivals[arrivals.len() - 1] - arrivals[0];
    assert!(
        spread >= Duration::from_millis(120),
        "events arrived within {spread:?}"
    );
    let distinct = arrivals.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(distinct >= 6, "events arrived in {distinct} groups");
}

#[tokio::test]
async fn fake_anthropic_answers_other_paths_harmlessly() {
    let pki = TestPki::new();
    let (upstream, log) = fake_anthropic(&pki, localhost(), "x");
    let mut tls = tls_connect(&pki, upstream.addr, "localhost").await.unwrap();
    let count = exchange(
        &mut tls,
        "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(count.json(), serde_json::json!({"input_tokens": 1}));
    let hello = exchange(&mut tls, "GET /api/hello HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!((hello.status, hello.json()), (200, serde_json::json!({})));
    let not_json = exchange(&mut tls, &messages_request("not json")).await;
    assert_eq!(not_json.status, 400);
    let paths: Vec<String> = log.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1/messages/count_tokens",
            "/api/hello",
            "/v1/messages?beta=true"
        ]
    );
}

#[tokio::test]
async fn tcp_echo_echoes() {
    let upstream = tcp_echo(localhost());
    let mut tcp = TcpStream::connect(upstream.addr).await.unwrap();
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut reader, mut writer) = tcp.split();
    let (_, received) = tokio::join!(
        async {
            writer.write_all(&sent).await.unwrap();
            writer.shutdown().await.unwrap();
        },
        async {
            let mut received = Vec::new();
            reader.read_to_end(&mut received).await.unwrap();
            received
        }
    );
    assert_eq!(received, sent);
}

#[tokio::test]
async fn dropping_an_upstream_stops_it() {
    let pki = TestPki::new();
    let upstreams = [
        https_hello(&pki, &["example.test"], localhost()),
        http_hello(localhost()),
        fake_anthropic(&pki, localhost(), "x").0,
        tcp_echo(localhost()),
    ];
    for upstream in upstreams {
        let addr = upstream.addr;
        let mut open = TcpStream::connect(addr).await.unwrap();
        drop(upstream);
        assert!(closed(&mut open).await, "{addr}: open connection closed");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "{addr}: new connections refused"
        );
    }
}

#[test]
fn servers_work_without_a_runtime_and_write_their_root() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    pki.write_root(&path).unwrap();
    let pem = std::fs::read(&path).unwrap();
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs, [pki.root_der()]);
    assert_eq!(pki.root_pem().as_bytes(), pem.as_slice());

    // A blocking client against a server started outside any runtime.
    let upstream = http_hello(localhost());
    let mut tcp = std::net::TcpStream::connect(upstream.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut tcp, b"GET / HTTP/1.0\r\nHost: sync.test\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut tcp, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nhello from sync.test\n"),
        "{answer}"
    );
}
