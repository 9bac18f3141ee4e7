//! Reads a ClientHello from a stream under a deadline, keeping every byte read so the caller can
//! replay them upstream (or into its own TLS server).

use super::{ClientHelloInfo, ClientHelloParser, HelloStatus, TlsHelloError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Largest single read.
const READ_CHUNK: usize = 4096;

/// Reads from `reader` until a complete ClientHello: returns what it says and every byte read
/// (the ClientHello's records and anything that came with them in the same reads). The whole
/// ClientHello must arrive within `timeout`; at most
/// [`MAX_CLIENT_HELLO_WIRE`](super::MAX_CLIENT_HELLO_WIRE) bytes plus one read are buffered.
pub async fn peek_client_hello<R: AsyncRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
) -> Result<(ClientHelloInfo, Vec<u8>), TlsHelloError> {
    let deadline = Instant::now() + timeout;
    let mut parser = ClientHelloParser::new();
    let mut consumed = Vec::with_capacity(READ_CHUNK);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let read = tokio::time::timeout_at(deadline, reader.read(&mut chunk))
            .await
            .map_err(|_| TlsHelloError::Timeout { after: timeout })?
            .map_err(TlsHelloError::Io)?;
        if read == 0 {
            return Err(TlsHelloError::Closed {
                received: consumed.len(),
            });
        }
        let new_bytes = chunk.get(..read).unwrap_or(&[]);
        consumed.extend_from_slice(new_bytes);
        if let HelloStatus::Done(info) = parser.push(new_bytes)? {
            return Ok((info, consumed));
        }
    }
}
