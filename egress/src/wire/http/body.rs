//! HTTP/1.x message bodies copied exactly as framed (RFC 9112 §6): a `Content-Length` body or a
//! chunked one (bounded chunk-size and trailer lines), so the proxy forwards one message and
//! nothing after it. Bytes read past the end of the body are kept, never forwarded by the copy.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest chunk-size line (with extensions) or trailer line.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Longest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// Size of one read.
const READ_SIZE: usize = 16 * 1024;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding, then trailers.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// Why a body could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The sender closed before the body was complete.
    #[error("the body ended before its announced end")]
    Truncated,
    /// A chunk-size line is not hexadecimal digits (at most 16) and optional extensions.
    #[error("malformed chunk size")]
    BadChunkSize,
    /// A chunk's data is not followed by a line end.
    #[error("chunk data not followed by a line end")]
    BadChunkEnd,
    /// A chunk-size or trailer line is longer than allowed.
    #[error("chunk-size or trailer line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// The trailer section is larger than allowed.
    #[error("trailer section larger than {limit} bytes")]
    TrailersTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The caller's check refused the trailer section (nothing of it was written).
    #[error("trailer section refused")]
    TrailersRefused,
    /// Reading or writing failed.
    #[error("copying the body failed")]
    Io(#[source] io::Error),
}

/// A stream read message by message: bytes read ahead of what was consumed stay buffered.
#[derive(Debug)]
pub struct FramedReader<R> {
    reader: R,
    buffered: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FramedReader<R> {
    /// Reads `reader`, with `already_read` (bytes read from it before) first.
    pub fn new(reader: R, already_read: Vec<u8>) -> Self {
        FramedReader {
            reader,
            buffered: already_read,
        }
    }

    /// The stream and the bytes read from it but not consumed.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.reader, self.buffered)
    }

    /// The bytes read but not consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buffered
    }

    /// Drops `count` buffered bytes (at most as many as are buffered).
    pub fn consume(&mut self, count: usize) {
        self.buffered.drain(..count.min(self.buffered.len()));
    }

    /// Copies the body framed by `framing` to `writer`, adding what was written to `count`.
    /// Nothing past the body's end is written.
    pub async fn copy_body<W: AsyncWrite + Unpin>(
        &mut self,
        framing: BodyFraming,
        writer: &mut W,
        count: &mut u64,
    ) -> Result<(), BodyError> {
        self.copy_body_checked(framing, writer, count, |_| true)
            .await
    }

    /// [`copy_body`](Self::copy_body), giving a chunked body's whole trailer section to
    /// `trailers_ok` before any of it is written; a refusal is [`BodyError::TrailersRefused`].
    pub async fn copy_body_checked<W: AsyncWrite + Unpin>(
        &mut self,
        framing: BodyFraming,
        writer: &mut W,
        count: &mut u64,
        trailers_ok: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), BodyError> {
        match framing {
            BodyFraming::Length(length) => self.copy_exact(length, writer, count).await,
            BodyFraming::Chunked => self.copy_chunked(writer, count, trailers_ok).await,
            BodyFraming::UntilClose => self.copy_to_end(writer, count).await,
        }
    }

    /// Reads and drops everything until the end of the stream; returns how many bytes that was.
    pub async fn discard_rest(&mut self) -> Result<u64, BodyError> {
        let mut dropped = self.buffered.len() as u64;
        self.buffered.clear();
        let mut chunk = vec![0u8; READ_SIZE];
        loop {
            match self.reader.read(&mut chunk).await {
                Ok(0) => return Ok(dropped),
                Ok(read) => dropped = dropped.saturating_add(read as u64),
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(dropped),
                Err(error) => return Err(BodyError::Io(error)),
            }
        }
    }

    /// Reads once more; 0 at the end of the stream.
    pub async fn fill(&mut self) -> Result<usize, BodyError> {
        let start = self.buffered.len();
        self.buffered.resize(start.saturating_add(READ_SIZE), 0);
        let spare = self.buffered.get_mut(start..).unwrap_or_default();
        let read = match self.reader.read(spare).await {
            Ok(read) => read.min(READ_SIZE),
            // A TLS peer that closes without close_notify: the end of its stream.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(error) => {
                self.buffered.truncate(start);
                return Err(BodyError::Io(error));
            }
        };
        self.buffered.truncate(start.saturating_add(read));
        Ok(read)
    }

    async fn copy_to_end<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        count: &mut u64,
    ) -> Result<(), BodyError> {
        loop {
            if self.buffered.is_empty() && self.fill().await? == 0 {
                return Ok(());
            }
            write_counted(writer, &self.buffered, count).await?;
            self.buffered.clear();
        }
    }

    async fn copy_chunked<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        count: &mut u64,
        mut trailers_ok: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), BodyError> {
        loop {
            let size_line = self.read_line(MAX_CHUNK_LINE).await?;
            let size = parse_chunk_size(&size_line)?;
            write_counted(writer, &size_line, count).await?;
            if size == 0 {
                break;
            }
            self.copy_exact(size, writer, count).await?;
            let end = match self.read_line(2).await {
                Err(BodyError::LineTooLong { .. }) => return Err(BodyError::BadChunkEnd),
                other => other?,
            };
            if end != b"\r\n" && end != b"\n" {
                return Err(BodyError::BadChunkEnd);
            }
            write_counted(writer, &end, count).await?;
        }
        let mut trailers = Vec::new();
        loop {
            let line = self.read_line(MAX_CHUNK_LINE).await?;
            trailers.extend_from_slice(&line);
            if trailers.len() > MAX_TRAILERS {
                return Err(BodyError::TrailersTooLarge {
                    limit: MAX_TRAILERS,
                });
            }
            if line == b"\r\n" || line == b"\n" {
                break;
            }
        }
        if !trailers_ok(&trailers) {
            return Err(BodyError::TrailersRefused);
        }
        write_counted(writer, &trailers, count).await
    }

    /// Copies exactly `length` bytes.
    async fn copy_exact<W: AsyncWrite + Unpin>(
        &mut self,
        mut length: u64,
        writer: &mut W,
        count: &mut u64,
    ) -> Result<(), BodyError> {
        while length > 0 {
            if self.buffered.is_empty() && self.fill().await? == 0 {
                return Err(BodyError::Truncated);
            }
            let take = usize::try_from(length).map_or(self.buffered.len(), |length| {
                length.min(self.buffered.len())
            });
            let piece = self.buffered.get(..take).unwrap_or_default();
            write_counted(writer, piece, count).await?;
            self.buffered.drain(..take);
            length = length.saturating_sub(take as u64);
        }
        Ok(())
    }

    /// One line, `\n` included, of at most `limit` bytes.
    async fn read_line(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        let mut scanned = 0;
        loop {
            let unscanned = self.buffered.get(scanned..).unwrap_or_default();
            if let Some(offset) = unscanned.iter().position(|&byte| byte == b'\n') {
                let newline = scanned.saturating_add(offset);
                if newline >= limit {
                    return Err(BodyError::LineTooLong { limit });
                }
                return Ok(self.buffered.drain(..=newline).collect());
            }
            scanned = self.buffered.len();
            if self.buffered.len() >= limit {
                return Err(BodyError::LineTooLong { limit });
            }
            if self.fill().await? == 0 {
                return Err(BodyError::Truncated);
            }
        }
    }
}

/// Writes and flushes `bytes`, adding their length to `count`.
pub async fn write_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    count: &mut u64,
) -> Result<(), BodyError> {
    writer.write_all(bytes).await.map_err(BodyError::Io)?;
    writer.flush().await.map_err(BodyError::Io)?;
    *count = count.saturating_add(bytes.len() as u64);
    Ok(())
}

/// The size in a chunk-size line: hexadecimal digits, then optional whitespace and extensions,
/// then the line end.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits_len = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    let (digits, rest) = line.split_at(digits_len.min(line.len()));
    if digits.is_empty() || digits.len() > 16 {
        return Err(BodyError::BadChunkSize);
    }
    let rest_ok = match rest.iter().position(|&byte| !matches!(byte, b' ' | b'\t')) {
        None => false,
        Some(first) => matches!(rest.get(first..), Some([b';', ..] | b"\r\n" | b"\n")),
    };
    if !rest_ok {
        return Err(BodyError::BadChunkSize);
    }
    let text = std::str::from_utf8(digits).map_err(|_| BodyError::BadChunkSize)?;
    u64::from_str_radix(text, 16).map_err(|_| BodyError::BadChunkSize)
}

#[cfg(test)]
mod tests;
