//! The guest-to-upstream direction of an intercepted connection: each request head (for the
//! connection's host only) has its placeholders replaced in their one place (or is refused as a
//! leak), its body follows byte for byte, and a CONNECT or `Upgrade` request turns the rest of
//! the connection into a plain byte copy.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::error::InterceptError;
use super::framing::{body_error, RequestReader};
use crate::secrets::Credentials;
use crate::wire::http::body::write_counted;

/// Forwards the guest's requests to `upstream` until the guest closes, then shuts down the
/// upstream's write side. Adds the bytes written to `bytes_up`.
pub(crate) async fn forward_requests<R, W>(
    client: R,
    upstream: &mut W,
    host: &str,
    credentials: &Credentials,
    bytes_up: &mut u64,
) -> Result<(), InterceptError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut requests = RequestReader::new(client, host);
    while let Some(head) = requests.next_head().await? {
        let rewritten = credentials
            .rewrite_head(host, &head.bytes)
            .map_err(|leak| {
                tracing::warn!(host, error = %leak, "refused a request carrying a placeholder");
                InterceptError::Leak {
                    service: leak.service().to_owned(),
                }
            })?;
        write_counted(upstream, &rewritten, bytes_up)
            .await
            .map_err(body_error)?;
        if head.switches_protocol {
            requests.copy_rest(upstream, bytes_up).await?;
            break;
        }
        requests
            .copy_body(head.framing, upstream, bytes_up, |trailers| {
                credentials.contains_foreign_placeholder(host, trailers)
            })
            .await?;
    }
    upstream.shutdown().await.map_err(InterceptError::Io)
}
