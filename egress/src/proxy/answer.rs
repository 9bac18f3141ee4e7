//! The proxy's own HTTP answers to the guest: `200 Connection established`, and short plain-text
//! refusals (`403` with `X-Paddock-Egress: denied`, `400`, `502`) that close the connection.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::log::EgressPath;
use super::route::Target;
use super::shared::DenyReason;

/// The answer to an accepted CONNECT.
pub(crate) const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// A refusal: status line, headers and a one-line body.
pub(crate) fn refusal(status: &str, denied: bool, body: &str) -> Vec<u8> {
    let marker = if denied {
        "X-Paddock-Egress: denied\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status}\r\n{marker}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `403 Forbidden` naming the host and why.
pub(crate) fn forbidden(host: &str, port: u16, reason: DenyReason) -> Vec<u8> {
    let body = format!(
        "paddock egress: {host}:{port} denied ({}): {}\n",
        reason.as_str(),
        reason.describe()
    );
    refusal("403 Forbidden", true, &body)
}

/// `403 Forbidden` for `target`. On the transparent path the host is not named: a stable
/// address may stand for a name another sandbox resolved, and the answer must not tell it.
pub(crate) fn forbidden_to(target: &Target, reason: DenyReason) -> Vec<u8> {
    match target.path {
        EgressPath::Transparent => {
            let body = format!(
                "paddock egress: denied ({}): {}\n",
                reason.as_str(),
                reason.describe()
            );
            refusal("403 Forbidden", true, &body)
        }
        _ => forbidden(&target.host_text(), target.port, reason),
    }
}

/// `502 Bad Gateway` for `target`, not naming the host on the transparent path.
pub(crate) fn bad_gateway_to(target: &Target) -> Vec<u8> {
    match target.path {
        EgressPath::Transparent => refusal(
            "502 Bad Gateway",
            false,
            "paddock egress: cannot reach the upstream\n",
        ),
        _ => bad_gateway(&target.host_text(), target.port),
    }
}

/// `400 Bad Request` saying what the proxy serves.
pub(crate) fn bad_request(what: &str) -> Vec<u8> {
    refusal(
        "400 Bad Request",
        false,
        &format!("paddock egress: {what}\n"),
    )
}

/// `502 Bad Gateway` for an upstream that could not be reached.
pub(crate) fn bad_gateway(host: &str, port: u16) -> Vec<u8> {
    refusal(
        "502 Bad Gateway",
        false,
        &format!("paddock egress: cannot reach {host}:{port}\n"),
    )
}

/// Writes `answer` and closes the write side; errors are ignored (the connection ends anyway).
pub(crate) async fn send_and_close<W: AsyncWrite + Unpin>(stream: &mut W, answer: &[u8]) {
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
}
