//! The "hello" servers: [`https_hello`] (TLS, answers with the SNI it was reached by) and
//! [`http_hello`] (plain HTTP, answers with the Host header); both also serve `GET /bytes/N`.

use super::http::{serve_http, Request, Response};
use super::pki::TestPki;
use super::server::{spawn_server, Bind, Upstream};
use tokio_rustls::TlsAcceptor;

/// Largest download `GET /bytes/N` serves.
pub const MAX_DOWNLOAD: u64 = 4 << 30;

/// A TLS server with a certificate from `pki` for `names`. `GET /bytes/N` answers N zero bytes;
/// every other request `200` with body `hello from <SNI>\n` (the Host header if the client sent
/// no SNI). Keep-alive: every answer has a Content-Length.
///
/// # Panics
/// If a name is not a DNS name or IP address, or the server cannot start.
pub fn https_hello(pki: &TestPki, names: &[&str], bind: impl Bind) -> Upstream {
    let acceptor = TlsAcceptor::from(pki.server_config(names));
    spawn_server("https-hello", bind, move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%error, "https_hello: handshake failed");
                    return;
                }
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            serve_http(tls, |request| hello_answer(request, sni.as_deref())).await;
        }
    })
}

/// A plain HTTP server. `GET /bytes/N` answers N zero bytes; every other request `200` with
/// body `hello from <Host>\n` (the Host header as sent).
///
/// # Panics
/// If the server cannot start.
pub fn http_hello(bind: impl Bind) -> Upstream {
    spawn_server("http-hello", bind, |tcp| async move {
        serve_http(tcp, |request| hello_answer(request, None)).await;
    })
}

/// The answer of both hello servers; `name` overrides the Host header as who was asked for.
fn hello_answer(request: &Request, name: Option<&str>) -> Response {
    if let Some(count) = request.path().strip_prefix("/bytes/") {
        return match count.parse::<u64>() {
            Ok(len) if len <= MAX_DOWNLOAD => Response::Zeros { len },
            _ => Response::error(400, "expected /bytes/N with N at most 4 GiB"),
        };
    }
    let name = name.or(request.header("host")).unwrap_or("unknown");
    Response::text(format!("hello from {name}\n"))
}
