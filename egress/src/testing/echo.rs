//! [`tcp_echo`]: a non-HTTP TCP server that sends back every byte it receives.

use super::server::{spawn_server, Bind, Upstream};
use tokio::io::AsyncWriteExt;

/// A TCP server that echoes each connection's bytes until the client closes its side.
///
/// # Panics
/// If the server cannot start.
pub fn tcp_echo(bind: impl Bind) -> Upstream {
    spawn_server("tcp-echo", bind, |mut tcp| async move {
        let (mut from_client, mut to_client) = tcp.split();
        if let Err(error) = tokio::io::copy(&mut from_client, &mut to_client).await {
            tracing::debug!(%error, "tcp_echo: connection failed");
            return;
        }
        let _ = to_client.shutdown().await;
    })
}
