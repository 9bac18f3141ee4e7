//! One intercepted connection: the guest's TLS is accepted with the sandbox CA's leaf for the
//! host, the upstream's TLS is verified against the web PKI, and the two plaintexts are relayed
//! — requests rewritten, responses copied and flushed as they arrive (so server-sent events are
//! never held back) while watched for the host's secret coming back, which cuts the connection.

use std::io;
use std::pin::pin;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use super::ca::SandboxCa;
use super::error::InterceptError;
use super::requests::forward_requests;
use crate::secrets::{Credentials, EchoScanner};

/// Size of one read from the upstream.
const RESPONSE_READ_SIZE: usize = 16 * 1024;

/// What an intercepted connection carried, in plaintext bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Written to the upstream.
    pub bytes_up: u64,
    /// Written to the guest.
    pub bytes_down: u64,
}

/// Terminates the guest's TLS for `host` (its ClientHello must name `host`), opens TLS to
/// `upstream` verified for `host` with `upstream_tls`, and relays HTTP/1.1 between them with
/// `credentials` applied to each request head. `client` is positioned at the start of the
/// guest's ClientHello; `upstream` is already connected to a checked address.
///
/// A request carrying a placeholder of another host's secret, or one of this host's outside
/// the place its secret goes, is answered `403 Forbidden` and ends the connection with
/// [`InterceptError::Leak`]; so is a request whose `Host` or target is not `host`
/// ([`InterceptError::Head`]). A failed upstream handshake is answered `502 Bad Gateway`. A
/// response carrying a secret of `host` back is cut before the secret's first byte reaches the
/// guest ([`InterceptError::SecretEchoed`]).
pub async fn intercept<C: AsyncRead + AsyncWrite + Unpin + Send>(
    client: C,
    host: &str,
    upstream: TcpStream,
    ca: &SandboxCa,
    creds: &Credentials,
    upstream_tls: Arc<rustls::ClientConfig>,
) -> Result<Transfer, InterceptError> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), client)
        .await
        .map_err(InterceptError::ClientTls)?;
    check_server_name(host, start.client_hello().server_name())?;
    let config = ca
        .server_config_for(host)
        .map_err(InterceptError::Certificate)?;
    let mut client = start
        .into_stream(config)
        .await
        .map_err(InterceptError::ClientTls)?;

    let upstream = match ServerName::try_from(host.to_owned()) {
        Ok(name) => {
            TlsConnector::from(upstream_tls)
                .connect(name, upstream)
                .await
        }
        Err(error) => Err(io::Error::new(io::ErrorKind::InvalidInput, error)),
    };
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(error) => {
            let body = format!("paddock: TLS to {host} failed: {error}\n");
            answer_and_close(&mut client, "502 Bad Gateway", &body).await;
            return Err(InterceptError::UpstreamTls(error));
        }
    };
    relay(client, upstream, host, creds).await
}

/// The guest's server name must be the host's (compared without case or trailing dot).
fn check_server_name(host: &str, offered: Option<&str>) -> Result<(), InterceptError> {
    let normal = |name: &str| name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    match offered {
        Some(name) if normal(name) == normal(host) => Ok(()),
        _ => Err(InterceptError::SniMismatch {
            expected: host.to_owned(),
            offered: offered.map(str::to_owned),
        }),
    }
}

/// Runs both directions until the upstream closes (or the guest closes and then the upstream),
/// answering a leak with 403.
async fn relay<C, U>(
    client: C,
    upstream: U,
    host: &str,
    credentials: &Credentials,
) -> Result<Transfer, InterceptError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (client_read, mut client_write) = tokio::io::split(client);
    let (upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut transfer = Transfer::default();
    let outcome = {
        let mut requests = pin!(forward_requests(
            client_read,
            &mut upstream_write,
            host,
            credentials,
            &mut transfer.bytes_up,
        ));
        let mut responses = pin!(copy_responses(
            upstream_read,
            &mut client_write,
            credentials.echo_scanner(host),
            &mut transfer.bytes_down
        ));
        let mut requests_done = false;
        loop {
            tokio::select! {
                result = &mut requests, if !requests_done => match result {
                    Ok(()) => requests_done = true,
                    Err(error) => break Err(error),
                },
                result = &mut responses => break result,
            }
        }
    };
    match outcome {
        Ok(()) => {
            let _ = client_write.shutdown().await;
            Ok(transfer)
        }
        Err(InterceptError::Leak { service }) => {
            let body = format!(
                "paddock: blocked a request to {host} carrying the placeholder of the {service} secret \
                 where it may not go: to another host, or anywhere but the whole value of the \
                 service's own header (`<placeholder>`, `Bearer <placeholder>`, `token <placeholder>`)\n"
            );
            answer_and_close(&mut client_write, "403 Forbidden", &body).await;
            Err(InterceptError::Leak { service })
        }
        Err(InterceptError::Head(error)) if error.is_wrong_host() => {
            tracing::warn!(host, %error, "blocked a request for another host");
            let body = format!("paddock: blocked a request on the connection to {host}: {error}\n");
            answer_and_close(&mut client_write, "403 Forbidden", &body).await;
            Err(InterceptError::Head(error))
        }
        Err(InterceptError::SecretEchoed { service }) => {
            tracing::warn!(host, %service, "cut a response carrying the secret back");
            // Cut, not closed cleanly: the guest must not take the response as complete.
            drop(client_write);
            Err(InterceptError::SecretEchoed { service })
        }
        Err(error) => {
            let _ = client_write.shutdown().await;
            Err(error)
        }
    }
}

/// Copies the upstream's bytes to the guest as they arrive, flushing after each read, except a
/// tail that could be the start of a secret (`scanner`); a whole secret ends the copy.
async fn copy_responses<R, W>(
    mut upstream: R,
    client: &mut W,
    mut scanner: EchoScanner,
    bytes_down: &mut u64,
) -> Result<(), InterceptError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; RESPONSE_READ_SIZE];
    let mut release = Vec::with_capacity(RESPONSE_READ_SIZE);
    loop {
        release.clear();
        let read = match upstream.read(&mut buffer).await {
            Ok(read) => read,
            // An upstream that closes without TLS close_notify: the end of its stream.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(error) => return Err(InterceptError::Io(error)),
        };
        if read == 0 {
            scanner.finish(&mut release);
            return write_down(client, &release, bytes_down).await;
        }
        scanner
            .scan(buffer.get(..read).unwrap_or_default(), &mut release)
            .map_err(|echoed| InterceptError::SecretEchoed {
                service: echoed.service,
            })?;
        write_down(client, &release, bytes_down).await?;
    }
}

/// Writes and flushes `bytes` to the guest (nothing for none), adding them to `bytes_down`.
async fn write_down<W: AsyncWrite + Unpin>(
    client: &mut W,
    bytes: &[u8],
    bytes_down: &mut u64,
) -> Result<(), InterceptError> {
    if bytes.is_empty() {
        return Ok(());
    }
    client.write_all(bytes).await.map_err(InterceptError::Io)?;
    client.flush().await.map_err(InterceptError::Io)?;
    *bytes_down += bytes.len() as u64;
    Ok(())
}

/// Sends a short plain-text answer with `Connection: close` and closes (errors ignored: the
/// connection is ending either way).
async fn answer_and_close<W: AsyncWrite + Unpin>(client: &mut W, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}
