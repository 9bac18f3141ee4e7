//! Tells what a tunnel or captured connection carries from its first bytes (TLS, HTTP or other
//! TCP), reading at most a method's length, and puts the bytes back for whoever reads next.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::policy::TrafficKind;
use crate::wire::sniff::MAX_SNIFFED_METHOD;
use crate::wire::{looks_like_http, looks_like_tls};

use super::splice::Prefixed;

/// Most bytes looked at: a method, its space, and one more.
const MAX_SNIFFED: usize = MAX_SNIFFED_METHOD + 2;

/// Why the traffic could not be classified.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClassifyError {
    /// Nothing (or too little) arrived in time.
    #[error("no first bytes within {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The guest closed before sending anything telling.
    #[error("closed after {received} bytes")]
    Closed {
        /// Bytes received.
        received: usize,
    },
    /// Reading failed.
    #[error("reading the first bytes failed")]
    Io(#[source] io::Error),
}

/// Reads the first bytes of `stream` (within `timeout`), decides, and unreads them.
pub(crate) async fn classify<S: AsyncRead + Unpin>(
    stream: &mut Prefixed<S>,
    timeout: Duration,
) -> Result<TrafficKind, ClassifyError> {
    let deadline = Instant::now() + timeout;
    let mut seen = [0u8; MAX_SNIFFED];
    let mut filled = 0;
    let outcome = loop {
        let seen_so_far = seen.get(..filled).unwrap_or_default();
        if let Some(kind) = decide(seen_so_far) {
            break Ok(kind);
        }
        let Some(room) = seen.get_mut(filled..) else {
            break Ok(TrafficKind::OtherTcp);
        };
        match tokio::time::timeout_at(deadline, stream.read(room)).await {
            Err(_) => break Err(ClassifyError::Timeout { after: timeout }),
            Ok(Err(error)) => break Err(ClassifyError::Io(error)),
            Ok(Ok(0)) => {
                break match filled {
                    0 => Err(ClassifyError::Closed { received: 0 }),
                    _ => Ok(TrafficKind::OtherTcp),
                }
            }
            Ok(Ok(read)) => filled += read,
        }
    };
    stream.unread(seen.get(..filled).unwrap_or_default());
    outcome
}

/// The kind, once the bytes seen tell it.
fn decide(seen: &[u8]) -> Option<TrafficKind> {
    let first = *seen.first()?;
    if looks_like_tls(first) {
        return Some(TrafficKind::Tls);
    }
    if looks_like_http(seen) {
        return Some(TrafficKind::Http);
    }
    let method_so_far = seen
        .iter()
        .all(|&byte| byte.is_ascii_uppercase() || byte == b'-' || byte == b'_');
    if method_so_far && seen.len() <= MAX_SNIFFED_METHOD {
        // Could still become `METHOD `: read on.
        return None;
    }
    Some(TrafficKind::OtherTcp)
}

#[cfg(test)]
mod tests;
