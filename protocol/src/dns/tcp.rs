//! DNS over TCP: each message is preceded by its length as two bytes (RFC 1035 §4.2.2).

use super::{DnsError, HEADER_LEN};

/// Length of the prefix.
const PREFIX_LEN: usize = 2;

/// `message` with its two-byte length prefix, ready to write on a TCP stream.
pub fn tcp_frame(message: &[u8]) -> Result<Vec<u8>, DnsError> {
    let len = u16::try_from(message.len()).map_err(|_| DnsError::TooLong { len: message.len() })?;
    let mut out = Vec::with_capacity(PREFIX_LEN + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// The first complete message in `buffer` (bytes read from a TCP stream) and how many bytes it
/// takes with its prefix; `None` while it is incomplete. A prefix announcing fewer than
/// [`HEADER_LEN`] bytes is refused at once, so a reader never waits for a useless message.
/// The prefix bounds a message to [`MAX_TCP_MESSAGE`] bytes, so a reader needs at most that
/// plus two bytes of buffer (see [`MAX_TCP_MESSAGE`](super::MAX_TCP_MESSAGE)).
pub fn tcp_message(buffer: &[u8]) -> Result<Option<(&[u8], usize)>, DnsError> {
    let Some(&[high, low]) = buffer.first_chunk::<PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([high, low]));
    if len < HEADER_LEN {
        return Err(DnsError::TooShort { len });
    }
    let end = PREFIX_LEN.saturating_add(len);
    Ok(buffer.get(PREFIX_LEN..end).map(|message| (message, end)))
}
