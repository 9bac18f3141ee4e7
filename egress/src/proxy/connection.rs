//! One guest connection: its hello line says what it is, and it goes to the `RESOLVE`, `PROXY`
//! or `TRANSPARENT` handler with the bytes read past the hello put back in front.

use tokio::io::{AsyncRead, AsyncWrite};

use paddock_protocol::egress::EgressHello;

use super::dns::answer_resolve;
use super::hello::read_hello;
use super::proxied::serve_proxied;
use super::relay::error_chain;
use super::shared::Shared;
use super::splice::Prefixed;
use super::transparent::serve_transparent;

/// Serves one connection from the guest until it ends.
pub(crate) async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    mut stream: S,
) {
    let read = match read_hello(&mut stream, shared.limits.handshake_timeout).await {
        Ok(read) => read,
        Err(error) => {
            tracing::debug!(error = %error_chain(&error), "dropped a connection without a valid hello");
            return;
        }
    };
    let mut stream = Prefixed::new(read.after, stream);
    match read.hello {
        EgressHello::Resolve(name) => answer_resolve(shared, &mut stream, &name).await,
        EgressHello::Proxy => serve_proxied(shared, stream).await,
        EgressHello::Transparent(destination) => {
            serve_transparent(shared, stream, destination).await
        }
    }
}
