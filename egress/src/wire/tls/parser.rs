//! Reassembles the ClientHello handshake message from TLS records fed in arbitrary pieces,
//! checking each record header as soon as it is complete.

use super::client_hello::parse_client_hello;
use super::{
    ClientHelloInfo, HelloStatus, TlsHelloError, MAX_CLIENT_HELLO, MAX_CLIENT_HELLO_WIRE,
    MAX_RECORD_PAYLOAD,
};

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Incremental ClientHello parser: [`push`](Self::push) bytes as they arrive until it says
/// `Done`. It keeps at most [`MAX_CLIENT_HELLO_WIRE`] bytes.
#[derive(Debug, Default)]
pub struct ClientHelloParser {
    /// Bytes pushed so far (at most [`MAX_CLIENT_HELLO_WIRE`]).
    wire: Vec<u8>,
    /// How much of `wire` has been consumed as complete records.
    records_end: usize,
    /// The handshake message bytes gathered from those records.
    message: Vec<u8>,
    /// Where the parser stands.
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Reading,
    Done(ClientHelloInfo),
    Failed,
}

impl ClientHelloParser {
    /// A parser that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the connection. Bytes after the end of the ClientHello are
    /// ignored (the caller keeps them to replay). After `Done`, pushing returns `Done` again;
    /// after an error, [`TlsHelloError::AlreadyFailed`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<HelloStatus, TlsHelloError> {
        match &self.state {
            State::Reading => {}
            State::Done(info) => return Ok(HelloStatus::Done(info.clone())),
            State::Failed => return Err(TlsHelloError::AlreadyFailed),
        }
        let room = MAX_CLIENT_HELLO_WIRE.saturating_sub(self.wire.len());
        self.wire
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
        let status = match self.consume_records() {
            Ok(HelloStatus::NeedMore) if self.wire.len() >= MAX_CLIENT_HELLO_WIRE => {
                Err(TlsHelloError::TooLarge {
                    limit: MAX_CLIENT_HELLO_WIRE,
                })
            }
            other => other,
        };
        self.state = match &status {
            Ok(HelloStatus::NeedMore) => State::Reading,
            Ok(HelloStatus::Done(info)) => State::Done(info.clone()),
            Err(_) => State::Failed,
        };
        status
    }

    /// Consumes every complete record in `wire`; checks a partial record's header as far as it
    /// goes so that garbage is refused at its first byte.
    fn consume_records(&mut self) -> Result<HelloStatus, TlsHelloError> {
        loop {
            let pending = self.wire.get(self.records_end..).unwrap_or(&[]);
            let payload_len = check_record_header(pending)?;
            let Some(payload_len) = payload_len else {
                return Ok(HelloStatus::NeedMore);
            };
            let record_end = RECORD_HEADER_LEN.saturating_add(payload_len);
            let Some(payload) = pending.get(RECORD_HEADER_LEN..record_end) else {
                return Ok(HelloStatus::NeedMore);
            };
            self.message.extend_from_slice(payload);
            self.records_end = self.records_end.saturating_add(record_end);
            if let Some(info) = self.complete_message()? {
                return Ok(HelloStatus::Done(info));
            }
        }
    }

    /// The ClientHello once the gathered handshake bytes hold all of it.
    fn complete_message(&self) -> Result<Option<ClientHelloInfo>, TlsHelloError> {
        let Some(&[message_type, len_high, len_mid, len_low]) =
            self.message.first_chunk::<HANDSHAKE_HEADER_LEN>()
        else {
            return Ok(None);
        };
        if message_type != HANDSHAKE_CLIENT_HELLO {
            return Err(TlsHelloError::NotClientHello { message_type });
        }
        let body_len =
            usize::from(len_high) << 16 | usize::from(len_mid) << 8 | usize::from(len_low);
        if body_len.saturating_add(HANDSHAKE_HEADER_LEN) > MAX_CLIENT_HELLO {
            return Err(TlsHelloError::TooLarge {
                limit: MAX_CLIENT_HELLO,
            });
        }
        let body_end = HANDSHAKE_HEADER_LEN.saturating_add(body_len);
        match self.message.get(HANDSHAKE_HEADER_LEN..body_end) {
            Some(body) => parse_client_hello(body).map(Some),
            None => Ok(None),
        }
    }
}

/// Checks the record header at the start of `pending` as far as it has arrived: the payload
/// length once all five bytes are there, `None` before.
fn check_record_header(pending: &[u8]) -> Result<Option<usize>, TlsHelloError> {
    if let Some(&content_type) = pending.first() {
        if content_type != CONTENT_TYPE_HANDSHAKE {
            return Err(TlsHelloError::NotHandshake { content_type });
        }
    }
    if let Some(&major) = pending.get(1) {
        if major != 3 {
            let minor = pending.get(2).copied().unwrap_or(0);
            return Err(TlsHelloError::RecordVersion {
                version: u16::from_be_bytes([major, minor]),
            });
        }
    }
    let Some(&[_, _, _, len_high, len_low]) = pending.first_chunk::<RECORD_HEADER_LEN>() else {
        return Ok(None);
    };
    let length = u16::from_be_bytes([len_high, len_low]);
    if length == 0 || usize::from(length) > MAX_RECORD_PAYLOAD {
        return Err(TlsHelloError::RecordLength { length });
    }
    Ok(Some(usize::from(length)))
}
