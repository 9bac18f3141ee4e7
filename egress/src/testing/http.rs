//! The server half of HTTP/1.1 the test upstreams share: request heads parsed with httparse,
//! bodies read fully (Content-Length or chunked, `Expect: 100-continue` honoured), every length
//! bounded, keep-alive unless the client asks to close; responses with a Content-Length or, for
//! event streams, chunked with each event flushed on its own.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest request body accepted (after de-chunking).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// A block of the zero bytes [`Response::Zeros`] sends.
static ZEROS: [u8; IO_BLOCK] = [0; IO_BLOCK];
/// Most header fields in one request head, and most trailer fields after a chunked body.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line or trailer line.
const MAX_CHUNK_LINE: usize = 1024;
/// How long a connection closed after a bad request still reads what the client sends.
const LINGER: Duration = Duration::from_secs(1);
/// How much it reads in that time at most.
const MAX_LINGER: usize = 1024 * 1024;
/// Size of each read from the stream and of each write of a generated body.
const IO_BLOCK: usize = 64 * 1024;

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The stream failed.
    #[error("reading the request failed")]
    Io(#[from] io::Error),
    /// The head is not HTTP/1.x.
    #[error("malformed request head")]
    Head(#[from] httparse::Error),
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("request head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    /// The body is longer than [`MAX_BODY`] bytes.
    #[error("request body longer than {MAX_BODY} bytes")]
    BodyTooLong,
    /// A Content-Length that is not a number, or two that disagree.
    #[error("invalid content-length")]
    BadContentLength,
    /// A chunk-size line that is not hexadecimal or too long.
    #[error("invalid chunk size line")]
    BadChunkSize,
    /// A chunk not followed by CRLF, or a trailer line too long.
    #[error("invalid chunk framing")]
    BadChunkFraming,
    /// The peer closed the stream in the middle of a request.
    #[error("connection closed in the middle of a request")]
    Truncated,
}

/// One request, read fully.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The request-target as sent (origin form `/path?query` or absolute form).
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    /// Header names lower-cased, values as sent (lossy UTF-8).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The request-target's path, without query; for an absolute-form target, the part after
    /// the authority.
    pub(crate) fn path(&self) -> &str {
        let target = self.target.as_str();
        let target = match target.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map_or("/", |slash| rest.get(slash..).unwrap_or("/")),
            None => target,
        };
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// Whether the connection ends after this request's response.
    fn closes_connection(&self) -> bool {
        let connection = self.header("connection").unwrap_or("");
        let has = |token: &str| {
            connection
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        };
        if self.minor_version == 0 {
            !has("keep-alive")
        } else {
            has("close")
        }
    }

    /// Whether a HEAD request: the response carries no body.
    fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) name: &'static str,
    pub(crate) data: String,
}

/// What a test server answers.
#[derive(Debug, Clone)]
pub(crate) enum Response {
    /// A whole body with its Content-Length.
    Full {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// `len` zero bytes (`application/octet-stream`), generated while written.
    Zeros { len: u64 },
    /// `text/event-stream`, chunked: one chunk per event, flushed, `pause` before each event
    /// after the first.
    EventStream {
        events: Vec<SseEvent>,
        pause: Duration,
    },
}

impl Response {
    /// A 200 `text/plain` answer.
    pub(crate) fn text(body: String) -> Self {
        Response::Full {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    /// A 200 `application/json` answer.
    pub(crate) fn json(value: &serde_json::Value) -> Self {
        Response::Full {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// A plain-text error answer.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        Response::Full {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n").into_bytes(),
        }
    }
}

/// Serves HTTP/1.1 requests on `stream` until the client closes, asks to close, or errs; each
/// request is answered with what `handler` returns. A request that cannot be read gets a 400
/// and the connection is closed.
pub(crate) async fn serve_http<S, F>(stream: S, mut handler: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(&Request) -> Response,
{
    let mut connection = HttpConnection::new(stream);
    loop {
        let request = match connection.read_request().await {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "test upstream: bad request");
                let answer = Response::error(400, &error.to_string());
                let _ = connection.write_response(answer, false, true).await;
                let _ = connection.stream.shutdown().await;
                // Unread bytes at close would make the kernel reset the connection, and the
                // client might lose the answer: read what it still sends, for a while.
                let _ = tokio::time::timeout(LINGER, connection.discard(MAX_LINGER)).await;
                return;
            }
        };
        let close = request.closes_connection();
        let answer = handler(&request);
        if let Err(error) = connection
            .write_response(answer, request.is_head(), close)
            .await
        {
            tracing::debug!(%error, "test upstream: writing the response failed");
            return;
        }
        if close {
            break;
        }
    }
    let _ = connection.stream.shutdown().await;
}

/// A stream with the bytes read past the current request.
struct HttpConnection<S> {
    stream: S,
    buffered: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> HttpConnection<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            buffered: Vec::new(),
        }
    }

    /// Reads one more block into the buffer; the number of bytes read, 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buffered.reserve(IO_BLOCK);
        self.stream.read_buf(&mut self.buffered).await
    }

    /// Reads and drops up to `limit` bytes, until end of stream.
    async fn discard(&mut self, limit: usize) -> io::Result<()> {
        let mut discarded = 0;
        while discarded < limit {
            self.buffered.clear();
            match self.fill().await? {
                0 => break,
                read => discarded += read,
            }
        }
        Ok(())
    }

    /// Reads more, failing at end of stream.
    async fn fill_or_truncated(&mut self) -> Result<(), RequestError> {
        match self.fill().await? {
            0 => Err(RequestError::Truncated),
            _ => Ok(()),
        }
    }

    /// The next request with its body, or `None` if the client closed between requests.
    async fn read_request(&mut self) -> Result<Option<Request>, RequestError> {
        let mut request = loop {
            if let Some(request) = self.parse_head()? {
                break request;
            }
            if self.buffered.len() > MAX_HEAD {
                return Err(RequestError::HeadTooLong);
            }
            if self.fill().await? == 0 {
                return if self.buffered.is_empty() {
                    Ok(None)
                } else {
                    Err(RequestError::Truncated)
                };
            }
        };
        let framing = BodyFraming::of(&request)?;
        let expects_continue = request
            .header("expect")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("100-continue"));
        if expects_continue && framing != BodyFraming::Length(0) && self.buffered.is_empty() {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
            self.stream.flush().await?;
        }
        request.body = match framing {
            BodyFraming::Length(len) => self.read_exact_body(len).await?,
            BodyFraming::Chunked => self.read_chunked_body().await?,
        };
        Ok(Some(request))
    }

    /// Parses a complete head at the start of the buffer and removes it; `None` if incomplete.
    fn parse_head(&mut self) -> Result<Option<Request>, RequestError> {
        if self.buffered.is_empty() {
            return Ok(None);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut fields);
        let head_len = match parsed.parse(&self.buffered)? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return Ok(None),
        };
        let request = Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            target: parsed.path.unwrap_or_default().to_owned(),
            minor_version: parsed.version.unwrap_or(1),
            headers: parsed
                .headers
                .iter()
                .map(|field| {
                    (
                        field.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(field.value).into_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
        };
        self.buffered.drain(..head_len);
        Ok(Some(request))
    }

    async fn read_exact_body(&mut self, len: usize) -> Result<Vec<u8>, RequestError> {
        while self.buffered.len() < len {
            self.fill_or_truncated().await?;
        }
        Ok(self.buffered.drain(..len).collect())
    }

    async fn read_chunked_body(&mut self) -> Result<Vec<u8>, RequestError> {
        let mut body = Vec::new();
        loop {
            let (line_len, size) = loop {
                match httparse::parse_chunk_size(&self.buffered) {
                    Ok(httparse::Status::Complete(parsed)) => break parsed,
                    Ok(httparse::Status::Partial) if self.buffered.len() <= MAX_CHUNK_LINE => {
                        self.fill_or_truncated().await?;
                    }
                    _ => return Err(RequestError::BadChunkSize),
                }
            };
            self.buffered.drain(..line_len);
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(body);
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|size| body.len().saturating_add(*size) <= MAX_BODY)
                .ok_or(RequestError::BodyTooLong)?;
            let framed = size.saturating_add(2);
            while self.buffered.len() < framed {
                self.fill_or_truncated().await?;
            }
            let chunk: Vec<u8> = self.buffered.drain(..framed).collect();
            match chunk.strip_suffix(b"\r\n") {
                Some(data) => body.extend_from_slice(data),
                None => return Err(RequestError::BadChunkFraming),
            }
        }
    }

    /// Reads the trailer section after the last chunk, up to and including its empty line.
    async fn skip_trailers(&mut self) -> Result<(), RequestError> {
        let mut trailers = 0;
        loop {
            match self.buffered.windows(2).position(|pair| pair == b"\r\n") {
                Some(0) => {
                    self.buffered.drain(..2);
                    return Ok(());
                }
                Some(end) if end <= MAX_CHUNK_LINE && trailers < MAX_HEADERS => {
                    self.buffered.drain(..end + 2);
                    trailers += 1;
                }
                None if self.buffered.len() <= MAX_CHUNK_LINE => {
                    self.fill_or_truncated().await?;
                }
                _ => return Err(RequestError::BadChunkFraming),
            }
        }
    }

    /// Writes `response` (only its head if `head_only`), announcing `Connection: close` if
    /// `close`.
    async fn write_response(
        &mut self,
        response: Response,
        head_only: bool,
        close: bool,
    ) -> io::Result<()> {
        let connection = if close { "close" } else { "keep-alive" };
        match response {
            Response::Full {
                status,
                content_type,
                body,
            } => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                    reason(status),
                    body.len()
                );
                self.stream.write_all(head.as_bytes()).await?;
                if !head_only {
                    self.stream.write_all(&body).await?;
                }
            }
            Response::Zeros { len } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n"
                );
                self.stream.write_all(head.as_bytes()).await?;
                if !head_only {
                    self.write_zeros(len).await?;
                }
            }
            Response::EventStream { events, pause } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
                );
                self.stream.write_all(head.as_bytes()).await?;
                self.stream.flush().await?;
                if !head_only {
                    self.write_events(&events, pause).await?;
                }
            }
        }
        self.stream.flush().await
    }

    async fn write_zeros(&mut self, len: u64) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let now = usize::try_from(left).map_or(IO_BLOCK, |left| left.min(IO_BLOCK));
            self.stream
                .write_all(ZEROS.get(..now).unwrap_or_default())
                .await?;
            left = left.saturating_sub(now as u64);
        }
        Ok(())
    }

    async fn write_events(&mut self, events: &[SseEvent], pause: Duration) -> io::Result<()> {
        for (index, event) in events.iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(pause).await;
            }
            let text = format!("event: {}\ndata: {}\n\n", event.name, event.data);
            let chunk = format!("{:x}\r\n{text}\r\n", text.len());
            self.stream.write_all(chunk.as_bytes()).await?;
            self.stream.flush().await?;
        }
        self.stream.write_all(b"0\r\n\r\n").await
    }
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    Length(usize),
    Chunked,
}

impl BodyFraming {
    fn of(request: &Request) -> Result<Self, RequestError> {
        let chunked = request
            .headers
            .iter()
            .filter(|(name, _)| name == "transfer-encoding")
            .flat_map(|(_, value)| value.split(','))
            .next_back()
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        if chunked {
            return Ok(BodyFraming::Chunked);
        }
        let mut length = None;
        for (_, value) in request
            .headers
            .iter()
            .filter(|(name, _)| name == "content-length")
        {
            let value: usize = value
                .trim()
                .parse()
                .map_err(|_| RequestError::BadContentLength)?;
            if length.is_some_and(|seen| seen != value) {
                return Err(RequestError::BadContentLength);
            }
            length = Some(value);
        }
        match length {
            Some(len) if len > MAX_BODY => Err(RequestError::BodyTooLong),
            Some(len) => Ok(BodyFraming::Length(len)),
            None => Ok(BodyFraming::Length(0)),
        }
    }
}

/// The reason phrase of the statuses the test servers send.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Unknown",
    }
}
