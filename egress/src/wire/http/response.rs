//! An upstream's response head, read under a byte bound: its status and how its body is framed
//! (RFC 9112 §6.3), so the proxy can relay exactly one response.

use std::io;

use tokio::io::AsyncRead;

use super::body::{BodyError, BodyFraming, FramedReader};
use super::MAX_HEADERS;

/// Largest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// How the body that follows is delimited.
    pub framing: BodyFraming,
    /// The head's bytes as received, status line to the empty line.
    pub bytes: Vec<u8>,
}

/// Why no response head was read.
#[derive(Debug, thiserror::Error)]
pub enum ResponseHeadError {
    /// No complete head within [`MAX_RESPONSE_HEAD`] bytes.
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    /// Not an HTTP/1.x response head.
    #[error("malformed response head")]
    Malformed(#[source] httparse::Error),
    /// `Content-Length` is not one number, or is given with `Transfer-Encoding`.
    #[error("ambiguous response body length")]
    AmbiguousBodyLength,
    /// The upstream closed before the head was complete.
    #[error("the upstream closed before its response head was complete")]
    Closed,
    /// Reading failed.
    #[error("reading the response head failed")]
    Io(#[source] io::Error),
}

impl<R: AsyncRead + Unpin> FramedReader<R> {
    /// Reads the next response head (consumed from the buffer; body bytes stay buffered).
    pub async fn read_response_head(&mut self) -> Result<ResponseHead, ResponseHeadError> {
        loop {
            if let Some(head) = parse_response_head(self.buffered())? {
                self.consume(head.bytes.len());
                return Ok(head);
            }
            if self.buffered().len() >= MAX_RESPONSE_HEAD {
                return Err(ResponseHeadError::TooLarge);
            }
            match self.fill().await {
                Ok(0) => return Err(ResponseHeadError::Closed),
                Ok(_) => {}
                Err(BodyError::Io(error)) => return Err(ResponseHeadError::Io(error)),
                Err(_) => return Err(ResponseHeadError::Closed),
            }
        }
    }
}

/// The response head at the start of `buffered`, if it is complete.
pub fn parse_response_head(buffered: &[u8]) -> Result<Option<ResponseHead>, ResponseHeadError> {
    let window = buffered.get(..MAX_RESPONSE_HEAD).unwrap_or(buffered);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let head_len = match response.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= MAX_RESPONSE_HEAD => {
            return Err(ResponseHeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ResponseHeadError::Malformed(error)),
    };
    let Some(status) = response.code else {
        return Err(ResponseHeadError::Malformed(httparse::Error::Status));
    };
    let framing = response_framing(status, response.headers)?;
    Ok(Some(ResponseHead {
        status,
        framing,
        bytes: window.get(..head_len).unwrap_or_default().to_vec(),
    }))
}

/// How the body of a response with this status and these headers is delimited (to a request
/// other than HEAD).
fn response_framing(
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<BodyFraming, ResponseHeadError> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyFraming::Length(0));
    }
    let mut length: Option<u64> = None;
    let mut last_coding: Option<String> = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(header.value)
                .ok()
                .map(|text| text.trim_matches([' ', '\t']))
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or(ResponseHeadError::AmbiguousBodyLength)?;
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(ResponseHeadError::AmbiguousBodyLength);
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let text = String::from_utf8_lossy(header.value);
            if let Some(last) = text
                .rsplit(',')
                .map(|coding| coding.trim_matches([' ', '\t']).to_ascii_lowercase())
                .find(|coding| !coding.is_empty())
            {
                last_coding = Some(last);
            }
        }
    }
    match (last_coding, length) {
        (Some(_), Some(_)) => Err(ResponseHeadError::AmbiguousBodyLength),
        (Some(last), None) if last == "chunked" => Ok(BodyFraming::Chunked),
        (Some(_), None) => Ok(BodyFraming::UntilClose),
        (None, Some(length)) => Ok(BodyFraming::Length(length)),
        (None, None) => Ok(BodyFraming::UntilClose),
    }
}

#[cfg(test)]
mod tests;
