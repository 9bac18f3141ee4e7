//! A proxy served on the test's runtime from a temporary directory, and the clients the tests
//! use against it: hello lines, CONNECT, TLS through a tunnel, and the decision log.

use std::future::Future as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use paddock_protocol::egress::{EgressHello, ResolveAnswer};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::policy::{Policy, PolicyFile};
use crate::proxy::{serve, ProxyConfig, ServeError};

/// Patience for anything that should happen.
pub(super) const WAIT: Duration = Duration::from_secs(10);

pub(super) fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// A directory with a proxy's files, and a configuration pointing at them.
pub(super) struct Setup {
    pub(super) dir: tempfile::TempDir,
    pub(super) config: ProxyConfig,
}

impl Setup {
    /// A proxy whose global policy is `policy` (JSON) and that resolves `overrides` itself.
    pub(super) fn new(policy: &str, overrides: &[(&str, IpAddr)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ProxyConfig::new(
            "test-box",
            dir.path().join("vsock.sock_1080"),
            dir.path().join("policy.json"),
            dir.path().join("egress.log"),
            dir.path().join("names.json"),
        );
        config.resolve_overrides = overrides
            .iter()
            .map(|(name, ip)| (name.to_string(), *ip))
            .collect();
        write_policy(&config.global_policy, policy);
        Setup { dir, config }
    }

    /// Starts serving.
    pub(super) async fn start(self) -> Proxy {
        let socket = self.config.listen.clone();
        let log = self.config.log.clone();
        let policy = self.config.global_policy.clone();
        let names = self.config.names.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(self.config, async move {
            let _ = stopped.await;
        }));
        let deadline = tokio::time::Instant::now() + WAIT;
        while !socket.exists() {
            assert!(!task.is_finished(), "the proxy stopped: {:?}", task.await);
            assert!(
                tokio::time::Instant::now() < deadline,
                "the socket never appeared"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Proxy {
            _dir: self.dir,
            socket,
            log,
            policy,
            names,
            stop: Some(stop),
            task,
        }
    }
}

/// A running proxy.
pub(super) struct Proxy {
    _dir: tempfile::TempDir,
    pub(super) socket: PathBuf,
    pub(super) log: PathBuf,
    pub(super) policy: PathBuf,
    pub(super) names: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Proxy {
    /// A connection that has sent `hello`.
    pub(super) async fn open(&self, hello: &EgressHello) -> UnixStream {
        let mut stream = UnixStream::connect(&self.socket).await.unwrap();
        stream.write_all(&hello.encode()).await.unwrap();
        stream
    }

    /// The answer to `RESOLVE name`.
    pub(super) async fn resolve(&self, name: &str) -> ResolveAnswer {
        let mut stream = self.open(&EgressHello::Resolve(name.into())).await;
        let answer = read_all(&mut stream).await;
        ResolveAnswer::decode(&answer).unwrap()
    }

    /// Sends `CONNECT authority` and returns the stream and the proxy's answer head.
    pub(super) async fn connect(&self, authority: &str) -> (UnixStream, String) {
        let mut stream = self.open(&EgressHello::Proxy).await;
        let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_answer_head(&mut stream).await;
        (stream, head)
    }

    /// Replaces the global policy file.
    pub(super) fn set_policy(&self, policy: &str) {
        write_policy(&self.policy, policy);
    }

    /// Every log line so far.
    pub(super) fn log_entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The first log entry for which `wanted` holds, waiting for it to be written.
    pub(super) async fn log_entry(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(entry) = self.log_entries().into_iter().find(|entry| wanted(entry)) {
                return entry;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such log entry in {:#?}",
                self.log_entries()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the proxy and returns what `serve` returned.
    pub(super) async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the proxy stops")
            .unwrap()
    }
}

/// Writes a policy file from its JSON text (atomically, as `paddock policy` does).
pub(super) fn write_policy(path: &Path, json: &str) {
    let policy: Policy = serde_json::from_str(json).unwrap();
    PolicyFile::new(path, policy).save().unwrap();
}

/// Whether a log entry has these field values.
pub(super) fn entry_is(entry: &Value, fields: &[(&str, Value)]) -> bool {
    fields.iter().all(|(name, value)| &entry[*name] == value)
}

/// Reads until the end of the stream (or an error, such as TLS without close_notify).
pub(super) async fn read_all<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(read)) => all.extend_from_slice(&chunk[..read]),
            Err(_) => panic!("the stream stayed open: {}", String::from_utf8_lossy(&all)),
        }
    }
}

/// Reads an HTTP answer head byte by byte (nothing after it is consumed).
pub(super) async fn read_answer_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// TLS to `server_name` over `stream`, trusting `config`'s roots.
pub(super) async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<S>> {
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    TlsConnector::from(config).connect(name, stream).await
}

/// `GET /` with `Connection: close` over `stream`; the whole answer.
pub(super) async fn get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, host: &str) -> String {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    String::from_utf8_lossy(&read_all(stream).await).into_owned()
}

/// A stream that writes its first `slow_bytes` bytes one at a time, a pause between each, so
/// the reader gets them in single-byte reads.
pub(super) struct Trickle<S> {
    inner: S,
    slow_bytes: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Trickle<S> {
    pub(super) fn new(inner: S, slow_bytes: usize) -> Self {
        Trickle {
            inner,
            slow_bytes,
            pause: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Trickle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.slow_bytes == 0 || buf.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(1))));
        if pause.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let written = Pin::new(&mut self.inner).poll_write(cx, &buf[..1]);
        if let Poll::Ready(Ok(_)) = written {
            self.slow_bytes -= 1;
            self.pause = None;
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
