//! Intercepted connections end to end: guest TLS client, `intercept`, TLS upstream on loopback.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::{client, server};

use super::{connect_tls, pki, read_to_end_lenient, read_until, spawn_upstream, Pki, HOST, SECRET};
use crate::mitm::{intercept, upstream_client_config, InterceptError, Transfer};

const TIMEOUT: Duration = Duration::from_secs(10);

type GuestTls = std::io::Result<client::TlsStream<DuplexStream>>;

/// Runs `intercept` between a guest (connecting as `guest_name`, trusting the sandbox CA) and
/// a one-shot upstream for [`HOST`]; returns intercept's result, the guest's, the upstream's.
async fn intercepted<U, UF, G, GF>(
    pki: &Pki,
    upstream_tls: Arc<ClientConfig>,
    guest_name: ServerName<'static>,
    upstream: U,
    guest: G,
) -> (
    Result<Transfer, InterceptError>,
    GF::Output,
    Option<UF::Output>,
)
where
    U: FnOnce(server::TlsStream<TcpStream>) -> UF + Send + 'static,
    UF: Future + Send + 'static,
    UF::Output: Send + 'static,
    G: FnOnce(GuestTls) -> GF,
    GF: Future,
{
    let (dialed, upstream_task) = spawn_upstream(&pki.upstream_ca, HOST, upstream).await;
    let (guest_io, proxy_io) = tokio::io::duplex(64 * 1024);
    let proxy = intercept(
        proxy_io,
        HOST,
        dialed,
        &pki.sandbox_ca,
        &pki.credentials,
        upstream_tls,
    );
    let guest = async { guest(connect_tls(&pki.sandbox_ca, guest_name, guest_io).await).await };
    let (result, guest_output) =
        tokio::time::timeout(TIMEOUT, async { tokio::join!(proxy, guest) })
            .await
            .expect("the exchange finishes");
    let upstream_output = tokio::time::timeout(TIMEOUT, upstream_task)
        .await
        .expect("the upstream finishes")
        .expect("the upstream does not panic");
    (result, guest_output, upstream_output)
}

fn host_name() -> ServerName<'static> {
    ServerName::try_from(HOST).unwrap()
}

/// What the upstream receives for a guest's `head` holding the anthropic placeholder in its
/// slot: the secret in its place, `accept-encoding: identity` before the empty line.
fn as_sent_upstream(head: &str) -> String {
    let head = head.replace("paddock-placeholder-anthropic", SECRET);
    let without_end = head.strip_suffix("\r\n\r\n").expect("a CRLF head");
    format!("{without_end}\r\naccept-encoding: identity\r\n\r\n")
}

/// Writes `bytes` in two pieces (split inside), flushing each, so heads and bodies span reads.
async fn write_in_two<W: AsyncWriteExt + Unpin>(writer: &mut W, bytes: &[u8]) {
    let (first, second) = bytes.split_at(bytes.len() / 2);
    for piece in [first, second] {
        writer.write_all(piece).await.unwrap();
        writer.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
}

#[test]
fn intercept_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let pki = pki();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialed = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_, proxy_io) = tokio::io::duplex(1024);
        let future = intercept(
            proxy_io,
            HOST,
            dialed,
            &pki.sandbox_ca,
            &pki.credentials,
            pki.upstream_tls(),
        );
        assert_send(&future);
    });
}

#[tokio::test]
async fn keep_alive_bodies_are_forwarded_byte_exact_with_only_heads_rewritten() {
    let pki = pki();
    let placeholder = "paddock-placeholder-anthropic";
    let mut body1 =
        format!("{{\"text\":\"x-api-key: {placeholder}\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n\"}}")
            .into_bytes();
    body1.extend(0u8..=255);
    let head1 = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: {placeholder}\r\nContent-Length: {}\r\n\r\n",
        body1.len()
    );
    let chunked_body =
        format!("5;ext=1\r\nhello\r\n1D\r\n{placeholder}\r\n0\r\nx-trailer: t\r\n\r\n");
    let head2 = format!(
        "POST /upload HTTP/1.1\r\nHost: api.anthropic.com\r\nAuthorization: Bearer {placeholder}\r\nAccept-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let head3 = format!("GET /v1/models?x=1 HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: {placeholder}\r\n\r\n");
    let requests: Vec<Vec<u8>> = vec![
        [head1.as_bytes(), &body1].concat(),
        [head2.as_bytes(), chunked_body.as_bytes()].concat(),
        head3.clone().into_bytes(),
    ];
    let expected: Vec<u8> = [
        as_sent_upstream(&head1).as_bytes(),
        &body1,
        as_sent_upstream(&head2.replace("Accept-Encoding: gzip\r\n", "")).as_bytes(),
        chunked_body.as_bytes(),
        as_sent_upstream(&head3).as_bytes(),
    ]
    .concat();
    let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();

    let upstream_response = response.clone();
    let (result, guest_saw, upstream_saw) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        move |mut tls| async move {
            let received = read_to_end_lenient(&mut tls).await;
            tls.write_all(&upstream_response).await.unwrap();
            tls.shutdown().await.unwrap();
            received
        },
        |tls| async move {
            let mut tls = tls.unwrap();
            for request in &requests {
                write_in_two(&mut tls, request).await;
            }
            tls.shutdown().await.unwrap();
            read_to_end_lenient(&mut tls).await
        },
    )
    .await;
    let upstream_saw = upstream_saw.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&upstream_saw),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(upstream_saw, expected);
    assert_eq!(guest_saw, response);
    let transfer = result.unwrap();
    assert_eq!(transfer.bytes_up, expected.len() as u64);
    assert_eq!(transfer.bytes_down, response.len() as u64);
}

#[tokio::test]
async fn server_sent_events_reach_the_guest_before_the_stream_ends() {
    let pki = pki();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (result, (first, rest), upstream_head) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        move |mut tls| async move {
            let head = read_until(&mut tls, b"\r\n\r\n").await;
            tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            // The second event is sent only once the guest has the first.
            release_rx.await.unwrap();
            tls.write_all(b"b\r\ndata: two\n\n\r\n0\r\n\r\n").await.unwrap();
            tls.flush().await.unwrap();
            read_to_end_lenient(&mut tls).await;
            let _ = tls.shutdown().await;
            head
        },
        |tls| async move {
            let mut tls = tls.unwrap();
            tls.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            let first = tokio::time::timeout(Duration::from_secs(5), read_until(&mut tls, b"data: one\n\n"))
                .await
                .expect("the first event arrives while the stream is still open");
            release_tx.send(()).unwrap();
            let rest = read_until(&mut tls, b"0\r\n\r\n").await;
            tls.shutdown().await.unwrap();
            read_to_end_lenient(&mut tls).await;
            (first, rest)
        },
    )
    .await;
    let first = String::from_utf8(first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(!first.contains("two"));
    assert!(String::from_utf8(rest).unwrap().contains("data: two"));
    let upstream_head = String::from_utf8(upstream_head.unwrap()).unwrap();
    assert!(
        upstream_head.contains(&format!("x-api-key: {SECRET}\r\n")),
        "{upstream_head}"
    );
    result.unwrap();
}

#[tokio::test]
async fn a_foreign_placeholder_is_answered_403_and_never_forwarded() {
    let pki = pki();
    let allowed =
        "GET /ok HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n";
    let leaking = "GET /leak HTTP/1.1\r\nHost: api.anthropic.com\r\nauthorization: Bearer paddock-placeholder-openai\r\n\r\n";
    let (result, guest_saw, upstream_saw) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        |mut tls| async move { read_to_end_lenient(&mut tls).await },
        |tls| async move {
            let mut tls = tls.unwrap();
            tls.write_all(allowed.as_bytes()).await.unwrap();
            tls.write_all(leaking.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            read_to_end_lenient(&mut tls).await
        },
    )
    .await;
    assert!(
        matches!(&result, Err(InterceptError::Leak { service }) if service == "openai"),
        "{result:?}"
    );
    let guest_saw = String::from_utf8(guest_saw).unwrap();
    assert!(
        guest_saw.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{guest_saw}"
    );
    assert!(guest_saw.contains("openai"));
    let upstream_saw = String::from_utf8(upstream_saw.unwrap()).unwrap();
    assert_eq!(upstream_saw, as_sent_upstream(allowed));
}

#[tokio::test]
async fn expect_continue_passes_and_the_head_goes_before_the_body() {
    let pki = pki();
    let (result, guest_saw, upstream_saw) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        |mut tls| async move {
            let head = read_until(&mut tls, b"\r\n\r\n").await;
            tls.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
            tls.flush().await.unwrap();
            let mut body = [0u8; 5];
            tls.read_exact(&mut body).await.unwrap();
            tls.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            read_to_end_lenient(&mut tls).await;
            let _ = tls.shutdown().await;
            (head, body)
        },
        |tls| async move {
            let mut tls = tls.unwrap();
            tls.write_all(b"PUT /f HTTP/1.1\r\nHost: api.anthropic.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            let interim = read_until(&mut tls, b"\r\n\r\n").await;
            assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
            tls.write_all(b"hello").await.unwrap();
            tls.flush().await.unwrap();
            let last = read_until(&mut tls, b"\r\n\r\n").await;
            tls.shutdown().await.unwrap();
            read_to_end_lenient(&mut tls).await;
            last
        },
    )
    .await;
    assert!(guest_saw.starts_with(b"HTTP/1.1 201 Created"));
    let (head, body) = upstream_saw.unwrap();
    assert!(String::from_utf8(head).unwrap().contains(SECRET));
    assert_eq!(&body, b"hello");
    result.unwrap();
}

#[tokio::test]
async fn after_an_upgrade_bytes_are_spliced_raw() {
    let pki = pki();
    let raw = b"\x81\x05raw paddock-placeholder-openai not http\r\n\r\n";
    let (result, guest_saw, upstream_saw) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        |mut tls| async move {
            let head = read_until(&mut tls, b"\r\n\r\n").await;
            tls.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .await
                .unwrap();
            let echoed = read_to_end_lenient(&mut tls).await;
            tls.write_all(&echoed).await.unwrap();
            let _ = tls.shutdown().await;
            head
        },
        |tls| async move {
            let mut tls = tls.unwrap();
            tls.write_all(b"GET /ws HTTP/1.1\r\nHost: api.anthropic.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n")
                .await
                .unwrap();
            let switched = read_until(&mut tls, b"\r\n\r\n").await;
            assert!(switched.starts_with(b"HTTP/1.1 101"));
            tls.write_all(raw).await.unwrap();
            tls.shutdown().await.unwrap();
            read_to_end_lenient(&mut tls).await
        },
    )
    .await;
    assert_eq!(guest_saw, raw);
    assert!(String::from_utf8(upstream_saw.unwrap())
        .unwrap()
        .contains(SECRET));
    result.unwrap();
}

#[tokio::test]
async fn a_hello_for_another_name_or_none_is_refused() {
    let pki = pki();
    let other = ServerName::try_from("api.openai.com").unwrap();
    let (result, guest, upstream) = intercepted(
        &pki,
        pki.upstream_tls(),
        other,
        |_tls| async {},
        |tls| async move { tls.is_err() },
    )
    .await;
    assert!(guest, "the guest's handshake fails");
    assert!(upstream.is_none(), "the upstream is never reached");
    assert!(
        matches!(&result, Err(InterceptError::SniMismatch { offered: Some(name), .. }) if name == "api.openai.com"),
        "{result:?}"
    );

    let by_address = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let (result, guest, _) = intercepted(
        &pki,
        pki.upstream_tls(),
        by_address,
        |_tls| async {},
        |tls| async move { tls.is_err() },
    )
    .await;
    assert!(guest);
    assert!(
        matches!(
            &result,
            Err(InterceptError::SniMismatch { offered: None, .. })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unverified_upstream_is_answered_502() {
    let pki = pki();
    let web_pki_only = upstream_client_config(&[]).unwrap();
    let (result, guest_saw, _) = intercepted(
        &pki,
        web_pki_only,
        host_name(),
        |_tls| async {},
        |tls| async move { read_to_end_lenient(&mut tls.unwrap()).await },
    )
    .await;
    assert!(
        matches!(result, Err(InterceptError::UpstreamTls(_))),
        "{result:?}"
    );
    let guest_saw = String::from_utf8(guest_saw).unwrap();
    assert!(
        guest_saw.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{guest_saw}"
    );
}

/// Sends `first` (forwarded) then `refused` on one connection; returns intercept's result, the
/// guest's answer, and what the upstream received.
async fn second_request_refused(
    first: &'static str,
    refused: String,
) -> (Result<Transfer, InterceptError>, String, String) {
    let pki = pki();
    let (result, guest_saw, upstream_saw) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        |mut tls| async move { read_to_end_lenient(&mut tls).await },
        |tls| async move {
            let mut tls = tls.unwrap();
            tls.write_all(first.as_bytes()).await.unwrap();
            tls.write_all(refused.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            read_to_end_lenient(&mut tls).await
        },
    )
    .await;
    (
        result,
        String::from_utf8(guest_saw).unwrap(),
        String::from_utf8(upstream_saw.unwrap()).unwrap(),
    )
}

const FIRST: &str = "GET /ok HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n";

#[tokio::test]
async fn the_own_placeholder_outside_its_header_is_answered_403_and_never_replaced() {
    for (name, value) in [
        ("Origin", "https://paddock-placeholder-anthropic.example"),
        ("Referer", "paddock-placeholder-anthropic"),
        ("x-echo-me", "Bearer paddock-placeholder-anthropic"),
    ] {
        let refused = format!(
            "GET /echo HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\n{name}: {value}\r\n\r\n"
        );
        let (result, guest_saw, upstream_saw) = second_request_refused(FIRST, refused).await;
        assert!(
            matches!(&result, Err(InterceptError::Leak { service }) if service == "anthropic"),
            "{name}: {result:?}"
        );
        assert!(
            guest_saw.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{guest_saw}"
        );
        assert!(!guest_saw.contains(SECRET));
        assert_eq!(upstream_saw, as_sent_upstream(FIRST), "{name}");
    }
    let in_query =
        "GET /echo?q=paddock-placeholder-anthropic HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n";
    let (result, _, upstream_saw) = second_request_refused(FIRST, in_query.to_owned()).await;
    assert!(
        matches!(result, Err(InterceptError::Leak { .. })),
        "{result:?}"
    );
    assert_eq!(upstream_saw, as_sent_upstream(FIRST));
}

#[tokio::test]
async fn a_request_for_another_host_is_answered_403_and_never_forwarded() {
    for refused in [
        "GET /v1 HTTP/1.1\r\nHost: tenant.example\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n",
        "GET /v1 HTTP/1.1\r\nHost: api.anthropic.com\r\nHost: tenant.example\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n",
        "GET https://tenant.example/v1 HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n",
        "GET /v1 HTTP/1.0\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n",
    ] {
        let (result, guest_saw, upstream_saw) =
            second_request_refused(FIRST, refused.to_owned()).await;
        assert!(
            matches!(&result, Err(InterceptError::Head(error)) if error.is_wrong_host()),
            "{refused}: {result:?}"
        );
        assert!(
            guest_saw.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{refused}: {guest_saw}"
        );
        assert_eq!(upstream_saw, as_sent_upstream(FIRST), "{refused}");
    }
}

#[tokio::test]
async fn a_response_carrying_the_secret_back_is_cut_before_any_of_it() {
    let pki = pki();
    let (prefix_seen_tx, prefix_seen_rx) = oneshot::channel::<()>();
    let (result, guest_saw, upstream_head) = intercepted(
        &pki,
        pki.upstream_tls(),
        host_name(),
        |mut tls| async move {
            let head = read_until(&mut tls, b"\r\n\r\n").await;
            let key = String::from_utf8_lossy(&head)
                .lines()
                .find_map(|line| line.strip_prefix("x-api-key: ").map(str::to_owned))
                .unwrap();
            // The echo comes in pieces, the secret split across them: the text before it (which
            // the guest gets), its first half, and a while later its second half.
            let (first, second) = key.split_at(key.len() / 2);
            let prefix = "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/event-stream\r\n\r\ndata: ok\n\ndata: your key is ";
            tls.write_all(prefix.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            prefix_seen_rx.await.unwrap();
            tls.write_all(first.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tls.write_all(format!("{second}\n\n").as_bytes()).await;
            let _ = tls.flush().await;
            head
        },
        |tls| async move {
            let mut tls = tls.unwrap();
            tls.write_all(b"GET /v1/me HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\nAccept-Encoding: gzip\r\n\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            let mut all = read_until(&mut tls, b"your key is ").await;
            prefix_seen_tx.send(()).unwrap();
            let mut buffer = [0u8; 4096];
            // The cut is not a clean close: a read fails or ends; the secret never arrives.
            while let Ok(read @ 1..) = tls.read(&mut buffer).await {
                all.extend_from_slice(&buffer[..read]);
            }
            all
        },
    )
    .await;
    assert!(
        matches!(&result, Err(InterceptError::SecretEchoed { service }) if service == "anthropic"),
        "{result:?}"
    );
    let guest_saw = String::from_utf8(guest_saw).unwrap();
    assert!(
        guest_saw.ends_with("data: ok\n\ndata: your key is "),
        "{guest_saw}"
    );
    assert!(
        !guest_saw.contains(&SECRET[..SECRET.len() / 2]),
        "{guest_saw}"
    );
    let upstream_head = String::from_utf8(upstream_head.unwrap()).unwrap();
    assert!(
        upstream_head.contains("\r\naccept-encoding: identity\r\n")
            && !upstream_head.contains("gzip"),
        "{upstream_head}"
    );
}
