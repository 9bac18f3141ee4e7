//! HTTP/1.1 request framing on the guest's side of an intercepted connection: reading one
//! request head at a time (bounded, and for the connection's host only) and copying its body to
//! the upstream exactly as framed by `Content-Length` or chunked transfer coding, so the next
//! request on the connection starts where this one ends.

use tokio::io::{AsyncRead, AsyncWrite};

use super::error::{HeadError, InterceptError};
use super::host_check::check_request_host;
pub(crate) use crate::wire::http::BodyFraming;
use crate::wire::http::{BodyError, FramedReader};

/// Longest request head.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;

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

/// The guest's plaintext, read one request at a time (bodies are copied by
/// [`FramedReader`], the framing the plain-HTTP forwarder uses too).
pub(crate) struct RequestReader<R> {
    framed: FramedReader<R>,
    /// The connection's host: every request's `Host` and target must name it.
    host: String,
}

impl<R: AsyncRead + Unpin> RequestReader<R> {
    /// Reads the requests of a connection to `host`.
    pub(crate) fn new(reader: R, host: &str) -> Self {
        RequestReader {
            framed: FramedReader::new(reader, Vec::new()),
            host: host.to_owned(),
        }
    }

    /// The next request head, or `None` if the guest closed the connection between requests.
    /// A head for another host than the connection's is refused.
    pub(crate) async fn next_head(&mut self) -> Result<Option<RequestHead>, InterceptError> {
        // How much of the buffer is known to hold no end of head: each byte is scanned once,
        // and the head is parsed once it is complete, however it is split into reads.
        let mut scanned = 0;
        loop {
            // Empty lines before a request line are ignored (RFC 9112 section 2.2).
            let blank = self
                .framed
                .buffered()
                .iter()
                .take_while(|&&byte| byte == b'\r' || byte == b'\n')
                .count();
            if blank > 0 {
                self.framed.consume(blank);
                scanned = 0;
            }
            let buffered = self.framed.buffered();
            if has_head_end(buffered, scanned) {
                if let Some(head) = parse_head(buffered, &self.host)? {
                    self.framed.consume(head.bytes.len());
                    return Ok(Some(head));
                }
            }
            scanned = buffered.len();
            if buffered.len() >= MAX_HEAD_LEN {
                return Err(InterceptError::Head(HeadError::TooLarge {
                    limit: MAX_HEAD_LEN,
                }));
            }
            if self.framed.fill().await.map_err(body_error)? == 0 {
                return match self.framed.buffered().is_empty() {
                    true => Ok(None),
                    false => Err(InterceptError::Head(HeadError::Truncated)),
                };
            }
        }
    }

    /// Copies the body framed by `framing` to `writer`, adding what was written to `count`.
    /// `foreign_placeholder` sees the trailer section of a chunked body before it is forwarded
    /// and names the service of a placeholder it must not carry.
    pub(crate) async fn copy_body<W: AsyncWrite + Unpin>(
        &mut self,
        framing: BodyFraming,
        writer: &mut W,
        count: &mut u64,
        foreign_placeholder: impl Fn(&[u8]) -> Option<String>,
    ) -> Result<(), InterceptError> {
        let mut leak = None;
        let copied = self
            .framed
            .copy_body_checked(framing, writer, count, |trailers| {
                leak = foreign_placeholder(trailers);
                leak.is_none()
            })
            .await;
        match (copied, leak) {
            (Err(BodyError::TrailersRefused), Some(service)) => {
                Err(InterceptError::Leak { service })
            }
            (result, _) => result.map_err(body_error),
        }
    }

    /// Copies everything the guest sends from now on, until it closes.
    pub(crate) async fn copy_rest<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        count: &mut u64,
    ) -> Result<(), InterceptError> {
        self.framed
            .copy_body(BodyFraming::UntilClose, writer, count)
            .await
            .map_err(body_error)
    }
}

/// A body copy's failure as the interception's: I/O errors stay I/O errors.
pub(crate) fn body_error(error: BodyError) -> InterceptError {
    match error {
        BodyError::Io(error) => InterceptError::Io(error),
        other => InterceptError::Body(other),
    }
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
