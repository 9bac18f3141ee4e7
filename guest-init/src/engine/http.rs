//! A minimal HTTP/1.1 GET over a Unix socket, for the engine's API.
//!
//! Responses are read into a buffer bounded by [`MAX_RESPONSE`] and parsed with `httparse`
//! (status line, headers, chunk sizes); bodies are delimited by `Content-Length`, chunked
//! transfer coding, or the end of the stream. Anything larger, contradictory or malformed is
//! refused.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Largest response (headers and body) accepted.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Most headers a response may carry.
const MAX_HEADERS: usize = 32;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a response could not be understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the response exceeds {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error("the response ended early")]
    Truncated,
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("malformed chunked body: {0}")]
    ChunkSize(httparse::InvalidChunkSize),
    #[error("a chunk is not followed by CRLF")]
    ChunkTerminator,
    #[error("malformed or conflicting Content-Length")]
    ContentLength,
    #[error("unsupported transfer coding")]
    TransferEncoding,
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("cannot send the request: {0}")]
    Send(#[source] io::Error),
    #[error("cannot read the response: {0}")]
    Receive(#[source] io::Error),
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// Sends `GET path` to the server on the Unix socket `socket`; every read and write may take
/// at most `timeout`.
pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<HttpResponse, HttpError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| HttpError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(HttpError::Send)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(HttpError::Send)?;
    read_response(&mut stream)
}

/// Reads until a whole response has arrived (or the stream ends), then parses it.
pub fn read_response(reader: &mut impl Read) -> Result<HttpResponse, HttpError> {
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HttpError::Receive(e)),
        };
        if n == 0 {
            return parse_response(&raw, true)?.ok_or(ResponseError::Truncated.into());
        }
        if raw.len() + n > MAX_RESPONSE {
            return Err(ResponseError::TooLarge.into());
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(response) = parse_response(&raw, false)? {
            return Ok(response);
        }
    }
}

/// Parses `raw`: `Ok(None)` while more bytes are needed. `at_eof` says the stream has ended
/// (which completes a body without length).
pub fn parse_response(raw: &[u8], at_eof: bool) -> Result<Option<HttpResponse>, ResponseError> {
    if raw.len() > MAX_RESPONSE {
        return Err(ResponseError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(raw).map_err(ResponseError::Head)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if at_eof => return Err(ResponseError::Truncated),
        httparse::Status::Partial => return Ok(None),
    };
    let status = head.code.unwrap_or(0);
    let framing = body_framing(head.headers)?;
    let rest = &raw[head_len..];
    let body = if matches!(status, 100..=199 | 204 | 304) {
        Some(Vec::new())
    } else {
        match framing {
            Framing::Length(len) => (rest.len() >= len).then(|| rest[..len].to_vec()),
            Framing::Chunked => decode_chunked(rest)?,
            Framing::UntilEof => at_eof.then(|| rest.to_vec()),
        }
    };
    match body {
        Some(body) => Ok(Some(HttpResponse { status, body })),
        None if at_eof => Err(ResponseError::Truncated),
        None => Ok(None),
    }
}

enum Framing {
    Length(usize),
    Chunked,
    UntilEof,
}

fn body_framing(headers: &[httparse::Header<'_>]) -> Result<Framing, ResponseError> {
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(ResponseError::ContentLength)?;
            if value > MAX_RESPONSE || length.is_some_and(|seen| seen != value) {
                return Err(ResponseError::ContentLength);
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = std::str::from_utf8(header.value).unwrap_or("");
            if !value.trim().eq_ignore_ascii_case("chunked") {
                return Err(ResponseError::TransferEncoding);
            }
            chunked = true;
        }
    }
    match (chunked, length) {
        // Both at once is how responses get smuggled: refuse.
        (true, Some(_)) => Err(ResponseError::ContentLength),
        (true, None) => Ok(Framing::Chunked),
        (false, Some(len)) => Ok(Framing::Length(len)),
        (false, None) => Ok(Framing::UntilEof),
    }
}

/// Decodes a chunked body; `Ok(None)` while incomplete. Trailers are skipped.
fn decode_chunked(mut rest: &[u8]) -> Result<Option<Vec<u8>>, ResponseError> {
    let mut body = Vec::new();
    loop {
        let (size_len, size) =
            match httparse::parse_chunk_size(rest).map_err(ResponseError::ChunkSize)? {
                httparse::Status::Complete(parsed) => parsed,
                httparse::Status::Partial => return Ok(None),
            };
        rest = &rest[size_len..];
        if size == 0 {
            return Ok(skip_trailers(rest).map(|()| body));
        }
        // The size comes from the peer and may exceed usize: such a chunk is never complete.
        let size = match usize::try_from(size) {
            Ok(size) if size <= rest.len() => size,
            _ => return Ok(None),
        };
        let (data, after) = rest.split_at(size);
        match after {
            [b'\r', b'\n', ..] => {}
            [] | [b'\r'] => return Ok(None),
            _ => return Err(ResponseError::ChunkTerminator),
        }
        body.extend_from_slice(data);
        rest = &after[2..];
    }
}

/// `Some` once the trailer section (lines ending with an empty line) is complete.
fn skip_trailers(mut rest: &[u8]) -> Option<()> {
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        if end == 0 {
            return Some(());
        }
        rest = &rest[end + 2..];
    }
}

#[cfg(test)]
mod tests;
