//! Reads the hello line that opens every guest connection: at most [`MAX_HELLO_LINE`] bytes
//! within the handshake timeout. Bytes that arrived after the newline are handed back, to be
//! replayed in front of the stream.

use std::io;
use std::time::Duration;

use paddock_protocol::egress::{EgressHello, EgressLineError, MAX_HELLO_LINE};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Why no hello was read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The line did not arrive in time.
    #[error("no hello line within {after:?}")]
    Timeout {
        /// The time allowed.
        after: Duration,
    },
    /// The guest closed the connection before the newline.
    #[error("connection closed after {received} bytes, before the hello line ended")]
    Closed {
        /// Bytes received.
        received: usize,
    },
    /// The line is not a valid hello.
    #[error("bad hello line")]
    Line(#[source] EgressLineError),
    /// Reading failed.
    #[error("reading the hello line failed")]
    Io(#[source] io::Error),
}

/// A hello and the bytes that came after its newline in the same reads.
#[derive(Debug)]
pub struct ReadHello {
    /// The hello.
    pub hello: EgressHello,
    /// Bytes after the newline, to be read before the rest of the stream.
    pub after: Vec<u8>,
}

/// Reads one hello line from `stream` within `timeout`.
pub async fn read_hello<R: AsyncRead + Unpin>(
    stream: &mut R,
    timeout: Duration,
) -> Result<ReadHello, HelloError> {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; MAX_HELLO_LINE];
    let mut filled = 0;
    loop {
        let Some(room) = buffer.get_mut(filled..).filter(|room| !room.is_empty()) else {
            return Err(HelloError::Line(EgressLineError::TooLong));
        };
        let read = tokio::time::timeout_at(deadline, stream.read(room))
            .await
            .map_err(|_| HelloError::Timeout { after: timeout })?
            .map_err(HelloError::Io)?;
        if read == 0 {
            return Err(HelloError::Closed { received: filled });
        }
        let searched_from = filled;
        filled += read;
        let received = buffer.get(..filled).unwrap_or_default();
        let newline = received
            .get(searched_from..)
            .and_then(|new| new.iter().position(|&byte| byte == b'\n'))
            .map(|at| searched_from + at);
        if let Some(newline) = newline {
            let (line, after) = received.split_at(newline + 1);
            let hello = EgressHello::decode(line).map_err(HelloError::Line)?;
            return Ok(ReadHello {
                hello,
                after: after.to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
