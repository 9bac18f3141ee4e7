//! Reads a request head from a stream incrementally: never more than the byte limit is buffered
//! and the whole head must arrive before one deadline (a slow sender gains nothing).

use super::{parse_request_head_within, HeadStatus, HttpHeadError, RequestHead, MAX_HEAD};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Largest single read.
const READ_CHUNK: usize = 4096;

/// Reads until a complete request head: returns it with every byte read — the head followed by
/// any body bytes that arrived with it (`head.head_len` marks the split). At most
/// `limit.min(MAX_HEAD)` bytes are buffered: a head not complete by then is `TooLarge` at once,
/// whatever else the peer still sends. The whole head must arrive within `timeout`.
pub async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    timeout: Duration,
) -> Result<(RequestHead, Vec<u8>), HttpHeadError> {
    let limit = limit.min(MAX_HEAD);
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(limit.min(READ_CHUNK));
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let room = limit.saturating_sub(buf.len()).min(READ_CHUNK);
        if room == 0 {
            return Err(HttpHeadError::TooLarge { limit });
        }
        let window = chunk.get_mut(..room).unwrap_or(&mut []);
        let read = tokio::time::timeout_at(deadline, reader.read(window))
            .await
            .map_err(|_| HttpHeadError::Timeout { after: timeout })?
            .map_err(HttpHeadError::Io)?;
        if read == 0 {
            return Err(HttpHeadError::Closed {
                received: buf.len(),
            });
        }
        let new_bytes = window.get(..read).unwrap_or(&[]);
        buf.extend_from_slice(new_bytes);
        // A head ends with a line feed: parse again only when one arrived, so a byte-by-byte
        // sender costs no quadratic work. Also parse the first bytes (garbage such as a TLS
        // record is refused at once) and at the limit (to report TooLarge).
        let first_read = buf.len() == read;
        if first_read || new_bytes.contains(&b'\n') || buf.len() >= limit {
            if let HeadStatus::Complete(head) = parse_request_head_within(&buf, limit)? {
                return Ok((head, buf));
            }
        }
    }
}
