//! The capture port: TCP connections the capture rules redirected here (programs that ignore
//! the proxy settings, containers) are carried to the host as `TRANSPARENT ip:port` with the
//! destination they had before the redirect, from `SO_ORIGINAL_DST` (IPv4; the guest has no
//! IPv6). A connection made straight to the port was not redirected and is refused.

use super::forwarder::HelloSource;
use rustix::net::sockopt;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};

/// The port the capture rules redirect TCP to.
pub const CAPTURE_PORT: u16 = 3129;

/// Why a connection on the capture port has no destination to carry it to.
#[derive(Debug, thiserror::Error)]
pub enum OriginalDestinationError {
    #[error("cannot read the original destination: {0}")]
    Lookup(#[source] io::Error),
    #[error("the connection to {0} was not redirected")]
    NotRedirected(SocketAddrV4),
}

/// Where a redirected connection was going (conntrack's original destination).
pub fn original_destination(stream: &TcpStream) -> Result<SocketAddrV4, OriginalDestinationError> {
    let original =
        sockopt::ip_original_dst(stream).map_err(|e| OriginalDestinationError::Lookup(e.into()))?;
    check_redirected(original, stream.local_addr().ok())
}

/// A connection whose original destination is where it arrived was made straight to the
/// capture port.
pub fn check_redirected(
    original: SocketAddrV4,
    arrived_at: Option<SocketAddr>,
) -> Result<SocketAddrV4, OriginalDestinationError> {
    if arrived_at == Some(SocketAddr::V4(original)) {
        return Err(OriginalDestinationError::NotRedirected(original));
    }
    Ok(original)
}

/// The capture port's hello source.
pub const CAPTURED: HelloSource = HelloSource::Transparent(original_destination);

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn a_connection_made_straight_to_the_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        // Without conntrack there is no entry; with it, the entry names the port itself.
        assert!(original_destination(&accepted).is_err());
    }

    #[test]
    fn only_a_destination_other_than_the_arrival_counts_as_redirected() {
        let captured = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 7), 443);
        let arrival: SocketAddr = "127.0.0.1:3129".parse().unwrap();
        assert_eq!(check_redirected(captured, Some(arrival)).unwrap(), captured);
        assert_eq!(check_redirected(captured, None).unwrap(), captured);
        let direct = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3129);
        assert!(matches!(
            check_redirected(direct, Some(arrival)),
            Err(OriginalDestinationError::NotRedirected(addr)) if addr == direct
        ));
    }
}
