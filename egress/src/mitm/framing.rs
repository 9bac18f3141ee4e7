//! HTTP/1.1 request framing on the guest's side of an intercepted connection: reading one
//! request head at a time (bounded, and for the connection's host only) and copying its body to
//! the upstream exactly as framed by `Content-Length` or chunked transfer coding, so the next
//! request on the connection starts where this one ends.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{BodyError, HeadError, InterceptError};
use super::host_check::check_request_host;

/// Longest request head.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) or trailer line.
pub const MAX_CHUNK_LINE_LEN: usize = 4 * 1024;
/// Longest trailer section.
pub const MAX_TRAILERS_LEN: usize = 64 * 1024;
/// Size of one read.
const READ_SIZE: usize = 16 * 1024;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding, then trailers.
    Chunked,
}

/// One request head as the guest sent it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    /// The head's bytes, request line to the empty line.
    pub(crate) bytes: Vec<u8>,
    /// How its body is delimited.
    pub(crate) framing: BodyFraming,
    /// A CONNECT or an `Upgrade` request: after it the connection is no longer HTTP.
    pub(crate) switches_protocol: bool,
}

/// The guest's plaintext, read one request at a time.
pub(crate) struct RequestReader<R> {
    reader: R,
    /// The connection's host: every request's `Host` and target must name it.
    host: String,
    /// Bytes read but not yet consumed.
    buffered: Vec<u8>,
}

impl<R: AsyncRead + Unpin> RequestReader<R> {
    /// Reads the requests of a connection to `host`.
    pub(crate) fn new(reader: R, host: &str) -> Self {
        RequestReader {
            reader,
            host: host.to_owned(),
            buffered: Vec::new(),
        }
    }

    /// The next request head, or `None` if the guest closed the connection between requests.
    /// A head for another host than the connection's is refused.
    pub(crate) async fn next_head(&mut self) -> Result<Option<RequestHead>, InterceptError> {
        // How much of `buffered` is known to hold no end of head: each byte is scanned once,
        // and the head is parsed once it is complete, however it is split into reads.
        let mut scanned = 0;
        loop {
            // Empty lines before a request line are ignored (RFC 9112 section 2.2).
            let blank = self
                .buffered
                .iter()
                .take_while(|&&byte| byte == b'\r' || byte == b'\n')
                .count();
            if blank > 0 {
                self.buffered.drain(..blank);
                scanned = 0;
            }
            if has_head_end(&self.buffered, scanned) {
                if let Some(head) = parse_head(&self.buffered, &self.host)? {
                    self.buffered.drain(..head.bytes.len());
                    return Ok(Some(head));
                }
            }
            scanned = self.buffered.len();
            if self.buffered.len() >= MAX_HEAD_LEN {
                return Err(InterceptError::Head(HeadError::TooLarge {
                    limit: MAX_HEAD_LEN,
                }));
            }
            if self.fill().await? == 0 {
                return match self.buffered.is_empty() {
                    true => Ok(None),
                    false => Err(InterceptError::Head(HeadError::Truncated)),
                };
            }
        }
    }

    /// Copies the body framed by `framing` to `writer`, adding what was written to `count`.
    /// `check_trailers` sees the trailer section of a chunked body before it is forwarded.
    pub(crate) async fn copy_body<W: AsyncWrite + Unpin>(
        &mut self,
        framing: BodyFraming,
        writer: &mut W,
        count: &mut u64,
        check_trailers: impl Fn(&[u8]) -> Result<(), InterceptError>,
    ) -> Result<(), InterceptError> {
        match framing {
            BodyFraming::Length(length) => self.copy_exact(length, writer, count).await,
            BodyFraming::Chunked => self.copy_chunked(writer, count, check_trailers).await,
        }
    }

    /// Copies everything the guest sends from now on, until it closes.
    pub(crate) async fn copy_rest<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        count: &mut u64,
    ) -> Result<(), InterceptError> {
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
        check_trailers: impl Fn(&[u8]) -> Result<(), InterceptError>,
    ) -> Result<(), InterceptError> {
        loop {
            let size_line = self.read_line(MAX_CHUNK_LINE_LEN).await?;
            let size = parse_chunk_size(&size_line)?;
            write_counted(writer, &size_line, count).await?;
            if size == 0 {
                break;
            }
            self.copy_exact(size, writer, count).await?;
            let end = self.read_line(2).await?;
            if end != b"\r\n" && end != b"\n" {
                return Err(InterceptError::Body(BodyError::BadChunkEnd));
            }
            write_counted(writer, &end, count).await?;
        }
        let mut trailers = Vec::new();
        loop {
            let line = self.read_line(MAX_CHUNK_LINE_LEN).await?;
            let last = line == b"\r\n" || line == b"\n";
            trailers.extend_from_slice(&line);
            if trailers.len() > MAX_TRAILERS_LEN {
                return Err(InterceptError::Body(BodyError::TrailersTooLarge {
                    limit: MAX_TRAILERS_LEN,
                }));
            }
            if last {
                break;
            }
        }
        check_trailers(&trailers)?;
        write_counted(writer, &trailers, count).await
    }

    /// Copies exactly `length` bytes.
    async fn copy_exact<W: AsyncWrite + Unpin>(
        &mut self,
        mut length: u64,
        writer: &mut W,
        count: &mut u64,
    ) -> Result<(), InterceptError> {
        while length > 0 {
            if self.buffered.is_empty() && self.fill().await? == 0 {
                return Err(InterceptError::Body(BodyError::Truncated));
            }
            let take = usize::try_from(length).map_or(self.buffered.len(), |length| {
                length.min(self.buffered.len())
            });
            let piece: Vec<u8> = self.buffered.drain(..take).collect();
            write_counted(writer, &piece, count).await?;
            length -= piece.len() as u64;
        }
        Ok(())
    }

    /// One line, `\n` included, of at most `limit` bytes.
    async fn read_line(&mut self, limit: usize) -> Result<Vec<u8>, InterceptError> {
        loop {
            if let Some(newline) = self.buffered.iter().position(|&byte| byte == b'\n') {
                if newline >= limit {
                    return Err(InterceptError::Body(BodyError::LineTooLong { limit }));
                }
                return Ok(self.buffered.drain(..=newline).collect());
            }
            if self.buffered.len() >= limit {
                return Err(InterceptError::Body(BodyError::LineTooLong { limit }));
            }
            if self.fill().await? == 0 {
                return Err(InterceptError::Body(BodyError::Truncated));
            }
        }
    }

    /// Reads once more from the guest; 0 at the end of its stream.
    async fn fill(&mut self) -> Result<usize, InterceptError> {
        let start = self.buffered.len();
        self.buffered.resize(start + READ_SIZE, 0);
        let spare = self.buffered.get_mut(start..).unwrap_or_default();
        let result = self.reader.read(spare).await;
        let read = match result {
            Ok(read) => read.min(READ_SIZE),
            // A peer that closes without TLS close_notify: the end of its stream.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(error) => {
                self.buffered.truncate(start);
                return Err(InterceptError::Io(error));
            }
        };
        self.buffered.truncate(start + read);
        Ok(read)
    }
}

/// Writes and flushes `bytes`, adding their length to `count`.
pub(crate) async fn write_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    count: &mut u64,
) -> Result<(), InterceptError> {
    writer.write_all(bytes).await.map_err(InterceptError::Io)?;
    writer.flush().await.map_err(InterceptError::Io)?;
    *count += bytes.len() as u64;
    Ok(())
}

/// Whether `buffered` holds the empty line that ends a head (`\n\n` or `\n\r\n`), looking
/// only past the first `scanned` bytes (less two, for an ending split across reads).
fn has_head_end(buffered: &[u8], scanned: usize) -> bool {
    let unscanned = buffered
        .get(scanned.saturating_sub(2)..)
        .unwrap_or_default();
    unscanned.windows(2).any(|pair| pair == b"\n\n")
        || unscanned.windows(3).any(|triple| triple == b"\n\r\n")
}

/// The head at the start of `buffered`, if it is complete; refused unless it is for `host`.
pub(super) fn parse_head(
    buffered: &[u8],
    host: &str,
) -> Result<Option<RequestHead>, InterceptError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buffered) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(InterceptError::Head(HeadError::Malformed(error))),
    };
    if head_len > MAX_HEAD_LEN {
        return Err(InterceptError::Head(HeadError::TooLarge {
            limit: MAX_HEAD_LEN,
        }));
    }
    let http_10 = request.version == Some(0);
    let framing = body_framing(request.headers, http_10).map_err(InterceptError::Head)?;
    check_request_host(host, request.path.unwrap_or_default(), request.headers)
        .map_err(InterceptError::Head)?;
    let switches_protocol = request.method.is_some_and(|method| method == "CONNECT")
        || request
            .headers
            .iter()
            .any(|header| header.name.eq_ignore_ascii_case("upgrade"));
    Ok(Some(RequestHead {
        bytes: buffered.get(..head_len).unwrap_or_default().to_vec(),
        framing,
        switches_protocol,
    }))
}

/// How the body of a request with these headers is delimited (RFC 9112 section 6.3); an
/// HTTP/1.0 request (`http_10`) may not use a transfer coding.
fn body_framing(headers: &[httparse::Header<'_>], http_10: bool) -> Result<BodyFraming, HeadError> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .map_err(|_| HeadError::BadContentLength)?
                .trim_matches([' ', '\t']);
            let valid =
                !value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit());
            let parsed: u64 = match valid {
                true => value.parse().map_err(|_| HeadError::BadContentLength)?,
                false => return Err(HeadError::BadContentLength),
            };
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(HeadError::BadContentLength);
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let value =
                std::str::from_utf8(header.value).map_err(|_| HeadError::BadTransferEncoding)?;
            codings.extend(
                value
                    .split(',')
                    .map(|coding| coding.trim_matches([' ', '\t']).to_ascii_lowercase())
                    .filter(|coding| !coding.is_empty()),
            );
        }
    }
    if codings.is_empty() {
        return Ok(BodyFraming::Length(length.unwrap_or(0)));
    }
    if http_10 {
        return Err(HeadError::EncodingInHttp10);
    }
    if length.is_some() {
        return Err(HeadError::LengthAndEncoding);
    }
    let chunked_last_only = codings.last().is_some_and(|last| last == "chunked")
        && codings.iter().filter(|coding| *coding == "chunked").count() == 1;
    match chunked_last_only {
        true => Ok(BodyFraming::Chunked),
        false => Err(HeadError::BadTransferEncoding),
    }
}

/// The size in a chunk-size line: hexadecimal digits, then optional whitespace and extensions.
pub(super) fn parse_chunk_size(line: &[u8]) -> Result<u64, InterceptError> {
    let bad = || InterceptError::Body(BodyError::BadChunkSize);
    let digits_len = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    let (digits, rest) = line.split_at(digits_len);
    if digits.is_empty() || digits.len() > 16 {
        return Err(bad());
    }
    let rest_ok = match rest.iter().position(|&byte| !matches!(byte, b' ' | b'\t')) {
        None => false,
        Some(first) => matches!(rest.get(first..), Some([b';', ..] | b"\r\n" | b"\n")),
    };
    if !rest_ok {
        return Err(bad());
    }
    let text = std::str::from_utf8(digits).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}
