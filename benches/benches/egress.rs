//! The egress proxy's cost on loopback: the same HTTPS upstream (`paddock_egress::testing`)
//! reached directly, through the proxy as a tunnel (`CONNECT`, TLS end to end), and through the
//! proxy intercepting (a host with a secret: TLS terminated with the sandbox CA and re-opened
//! to the upstream). The guest side is emulated: a client on the proxy's Unix socket writes the
//! `PROXY` hello line and a `CONNECT`, as guest-init's forwarder does over vsock.
//!
//! Figures: a small HTTPS request on a new connection (connect + TLS + GET), small requests per
//! second on a kept-alive connection, MB/s of a 64 MiB download, and connections per second
//! with 32 at once. No KVM needed: `cargo bench -p paddock-benches --bench egress`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use paddock_egress::mitm::SandboxCa;
use paddock_egress::proxy::{serve, ProxyConfig};
use paddock_egress::secrets::{Credentials, SecretValue, Service};
use paddock_egress::testing::{https_hello, TestPki, Upstream};
use paddock_protocol::egress::EgressHello;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

/// The upstream's name when the proxy only tunnels.
const TUNNELED: &str = "bench.test";
/// The upstream's name when the proxy intercepts (it has a secret there).
const INTERCEPTED: &str = "secret.bench.test";
/// Size of the download.
const DOWNLOAD: u64 = 64 << 20;
/// Connections opened at once in the connection-rate figure.
const CONCURRENT: usize = 32;

/// How the client reaches the upstream.
#[derive(Debug, Clone, Copy)]
enum Route {
    Direct,
    Proxy,
    ProxyIntercepting,
}

const ROUTES: [Route; 3] = [Route::Direct, Route::Proxy, Route::ProxyIntercepting];

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Proxy => "proxy",
            Route::ProxyIntercepting => "proxy_intercepting",
        }
    }

    fn host(self) -> &'static str {
        match self {
            Route::Direct | Route::Proxy => TUNNELED,
            Route::ProxyIntercepting => INTERCEPTED,
        }
    }
}

/// Any byte stream the client speaks TLS over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Everything a client needs to reach the upstream by any route.
#[derive(Clone)]
struct Dialer {
    upstream: SocketAddr,
    proxy_socket: PathBuf,
    /// Trusts only the test root: direct and tunneled connections.
    tls_end_to_end: Arc<ClientConfig>,
    /// Trusts only the sandbox CA: connections the proxy intercepts.
    tls_intercepted: Arc<ClientConfig>,
}

impl Dialer {
    /// A TLS connection to the upstream by `route`.
    async fn connect(&self, route: Route) -> tokio_rustls::client::TlsStream<Box<dyn Io>> {
        let transport: Box<dyn Io> = match route {
            Route::Direct => {
                let tcp = TcpStream::connect(self.upstream).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                Box::new(tcp)
            }
            Route::Proxy | Route::ProxyIntercepting => Box::new(self.tunnel(route.host()).await),
        };
        let name = ServerName::try_from(route.host()).unwrap().to_owned();
        let tls = match route {
            Route::Direct | Route::Proxy => &self.tls_end_to_end,
            Route::ProxyIntercepting => &self.tls_intercepted,
        };
        TlsConnector::from(tls.clone())
            .connect(name, transport)
            .await
            .unwrap()
    }

    /// A proxy connection as the guest's forwarder opens it: hello line, CONNECT, 200.
    async fn tunnel(&self, host: &str) -> UnixStream {
        let mut unix = UnixStream::connect(&self.proxy_socket).await.unwrap();
        let port = self.upstream.port();
        let mut request = EgressHello::Proxy.encode();
        request.extend_from_slice(
            format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
        );
        unix.write_all(&request).await.unwrap();
        // The proxy sends nothing after its answer until the client's TLS begins, so a read
        // cannot run past the head.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut block = [0u8; 512];
            let read = unix.read(&mut block).await.unwrap();
            assert!(read > 0, "proxy closed");
            head.extend_from_slice(&block[..read]);
            assert!(head.len() < 4096, "proxy answer too long");
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "CONNECT refused: {}",
            String::from_utf8_lossy(&head)
        );
        unix
    }
}

/// Sends `GET path` and reads the whole answer; returns the body's length.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, host: &str, path: &str) -> u64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let (head_len, body_len) = loop {
        let read = stream.read(&mut buf[filled..]).await.unwrap();
        assert!(read > 0, "connection closed before the answer");
        filled += read;
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(head_len) = response.parse(&buf[..filled]).unwrap() {
            assert_eq!(response.code, Some(200));
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .unwrap();
            break (head_len, length);
        }
    };
    let mut left = body_len - (filled - head_len) as u64;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = stream.read(&mut buf[..want]).await.unwrap();
        assert!(read > 0, "connection closed in the body");
        left -= read as u64;
    }
    body_len
}

/// The proxy on its own thread and runtime, as in its own process; stopped when dropped.
struct RunningProxy {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// The upstream, the proxy in front of it, and what the client needs.
struct Lab {
    dialer: Dialer,
    _proxy: RunningProxy,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new();
        let upstream = https_hello(
            &pki,
            &[TUNNELED, INTERCEPTED],
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
        let root = dir.path().join("test-root.pem");
        pki.write_root(&root).unwrap();
        let policy = dir.path().join("policy.json");
        let allow = serde_json::json!({
            "preset": "locked",
            "allow": [TUNNELED, INTERCEPTED, "127.0.0.0/8"],
        });
        std::fs::write(&policy, allow.to_string()).unwrap();
        let ca = SandboxCa::load_or_create(&dir.path().join("ca")).unwrap();

        let tls_end_to_end = pki.client_config();
        let tls_intercepted = trusting(ca.cert_der().clone());

        let socket = dir.path().join("vsock.sock_1080");
        let mut config = ProxyConfig::new(
            "bench",
            &socket,
            &policy,
            dir.path().join("egress.log"),
            dir.path().join("names.json"),
        );
        config.resolve_overrides = vec![
            (TUNNELED.to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
            (INTERCEPTED.to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        config.extra_roots = vec![root];
        let service = Service::custom("bench", &[INTERCEPTED.to_owned()], "x-api-key").unwrap();
        let secret = SecretValue::new("bench-secret-value".to_owned()).unwrap();
        config.credentials = Credentials::from_secrets([(service, secret)]);
        config.ca = Some(ca);
        config.limits.max_connections = 4 * CONCURRENT;
        let proxy = start_proxy(config);

        let dialer = Dialer {
            upstream: upstream.addr,
            proxy_socket: socket,
            tls_end_to_end,
            tls_intercepted,
        };
        Lab {
            dialer,
            _proxy: proxy,
            _upstream: upstream,
            _dir: dir,
        }
    }
}

/// A client configuration trusting only `root`, ALPN `http/1.1`.
fn trusting(root: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(tls)
}

fn start_proxy(config: ProxyConfig) -> RunningProxy {
    let socket = config.listen.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(serve(config, async {
                let _ = stopped.await;
            }))
            .unwrap();
    });
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return RunningProxy {
                stop: Some(stop),
                thread: Some(thread),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the proxy did not listen on {}", socket.display());
}

fn egress(c: &mut Criterion) {
    let lab = Lab::start();
    let dialer = lab.dialer.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Every route answers before anything is measured (and each certificate check passing
    // shows the route: the test root's leaf end to end, the sandbox CA's when intercepted).
    for route in ROUTES {
        let body_len = runtime.block_on(async {
            let mut tls = dialer.connect(route).await;
            get(&mut tls, route.host(), "/").await
        });
        assert_eq!(
            body_len,
            format!("hello from {}\n", route.host()).len() as u64
        );
    }

    let mut g = c.benchmark_group("egress");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    g.throughput(Throughput::Elements(1));
    for route in ROUTES {
        g.bench_function(
            BenchmarkId::new("https_get_new_connection", route.label()),
            |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let mut tls = dialer.connect(route).await;
                        get(&mut tls, route.host(), "/").await
                    })
                })
            },
        );
    }
    for route in ROUTES {
        let mut tls = runtime.block_on(dialer.connect(route));
        g.bench_function(
            BenchmarkId::new("https_get_kept_alive", route.label()),
            |b| b.iter(|| runtime.block_on(get(&mut tls, route.host(), "/"))),
        );
    }

    g.throughput(Throughput::Bytes(DOWNLOAD));
    let path = format!("/bytes/{DOWNLOAD}");
    for route in ROUTES {
        let mut tls = runtime.block_on(dialer.connect(route));
        g.bench_function(BenchmarkId::new("download_64mib", route.label()), |b| {
            b.iter(|| {
                let got = runtime.block_on(get(&mut tls, route.host(), &path));
                assert_eq!(got, DOWNLOAD);
            })
        });
    }

    g.throughput(Throughput::Elements(CONCURRENT as u64));
    for route in ROUTES {
        g.bench_function(
            BenchmarkId::new(format!("connections_{CONCURRENT}_at_once"), route.label()),
            |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let mut connections = tokio::task::JoinSet::new();
                        for _ in 0..CONCURRENT {
                            let dialer = dialer.clone();
                            connections.spawn(async move {
                                let mut tls = dialer.connect(route).await;
                                get(&mut tls, route.host(), "/").await
                            });
                        }
                        while let Some(done) = connections.join_next().await {
                            done.unwrap();
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, egress);
criterion_main!(benches);
