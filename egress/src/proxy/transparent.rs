//! `TRANSPARENT ip:port` connections, captured on their way out of the guest: a stable address
//! stands for the name it was handed out for; any other address is a literal target, which only
//! address rules (or the `open` preset) allow.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::Host;

use super::log::EgressPath;
use super::names::is_stable;
use super::route::Target;
use super::shared::Shared;
use super::splice::Prefixed;
use super::tunnel::{open_tunnel, Answers};

/// Serves one captured connection to `destination`; `stream` is positioned at its first byte.
pub(crate) async fn serve_transparent<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    stream: Prefixed<S>,
    destination: SocketAddr,
) {
    let host = match destination.ip() {
        IpAddr::V4(v4) if is_stable(destination.ip()) => match shared.stable_name(v4).await {
            Some(name) => Host::Name(name),
            // An address nobody handed out: a literal target in the deny set.
            None => Host::Ip(destination.ip()),
        },
        ip => Host::Ip(ip),
    };
    let target = Target {
        path: EgressPath::Transparent,
        host,
        port: destination.port(),
    };
    open_tunnel(shared, stream, target, Answers::Silent).await;
}
