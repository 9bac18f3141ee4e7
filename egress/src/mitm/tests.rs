//! Tests of the interception module, over real TLS (rustls on both ends, loopback TCP to the
//! upstream): the guest trusts the sandbox CA, the upstream presents a certificate from a
//! second CA that the proxy's upstream configuration is given as an extra root.

mod ca;
mod framing;
mod intercept;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{server, TlsAcceptor, TlsConnector};

use super::{tls_provider, upstream_client_config, SandboxCa, CA_CERT_FILE};
use crate::secrets::{Credentials, SecretValue, Service};

/// The host the tests intercept.
const HOST: &str = "api.anthropic.com";
/// Its secret.
const SECRET: &str = "sk-ant-REAL-SECRET";

/// Two CAs (the sandbox's, and one standing in for the web PKI) and what the proxy holds.
struct Pki {
    _dirs: tempfile::TempDir,
    sandbox_ca: SandboxCa,
    upstream_ca: SandboxCa,
    upstream_ca_pem: PathBuf,
    credentials: Credentials,
}

fn pki() -> Pki {
    let dirs = tempfile::tempdir().unwrap();
    let sandbox_ca = SandboxCa::load_or_create(&dirs.path().join("sandbox")).unwrap();
    let upstream_dir = dirs.path().join("upstream");
    let upstream_ca = SandboxCa::load_or_create(&upstream_dir).unwrap();
    let credentials = Credentials::from_secrets([
        (
            Service::Anthropic,
            SecretValue::new(SECRET.to_owned()).unwrap(),
        ),
        (
            Service::Openai,
            SecretValue::new("sk-openai-REAL".to_owned()).unwrap(),
        ),
    ]);
    Pki {
        _dirs: dirs,
        sandbox_ca,
        upstream_ca,
        upstream_ca_pem: upstream_dir.join(CA_CERT_FILE),
        credentials,
    }
}

impl Pki {
    /// What the proxy verifies the upstream with: web PKI plus the stand-in CA.
    fn upstream_tls(&self) -> Arc<ClientConfig> {
        upstream_client_config(std::slice::from_ref(&self.upstream_ca_pem)).unwrap()
    }
}

/// A TLS client configuration trusting only `ca`, offering `alpn`.
fn client_trusting(ca: &SandboxCa, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}

/// Connects TLS over `io` to `name`, trusting only `ca`.
async fn connect_tls<IO>(
    ca: &SandboxCa,
    name: ServerName<'static>,
    io: IO,
) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    TlsConnector::from(client_trusting(ca, &[b"http/1.1"]))
        .connect(name, io)
        .await
}

/// A one-connection TLS upstream for `host` with a certificate from `ca`; returns the proxy's
/// dialed TCP stream to it and the handler's task (`None` if the handshake failed).
async fn spawn_upstream<F, Fut>(
    ca: &SandboxCa,
    host: &str,
    handler: F,
) -> (TcpStream, JoinHandle<Option<Fut::Output>>)
where
    F: FnOnce(server::TlsStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(ca.server_config_for(host).unwrap());
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(tls) => Some(handler(tls).await),
            Err(_) => None,
        }
    });
    let dialed = TcpStream::connect(address).await.unwrap();
    (dialed, task)
}

/// Reads until EOF (a missing close_notify counts as EOF).
async fn read_to_end_lenient<R: AsyncRead + Unpin>(reader: &mut R) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => return all,
            Ok(read) => all.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return all,
            Err(error) => panic!("read failed: {error}"),
        }
    }
}

/// Reads until `bytes` ends with `suffix` or EOF.
async fn read_until<R: AsyncRead + Unpin>(reader: &mut R, suffix: &[u8]) -> Vec<u8> {
    let mut all = Vec::new();
    let mut byte = [0u8; 1];
    while !all.ends_with(suffix) {
        match reader.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(_) => all.push(byte[0]),
        }
    }
    all
}
