//! Parsing (and, for clients and tests, building) a query with one question.

use super::header::Header;
use super::name::{read_question_name, write_name};
use super::{DnsError, CLASS_IN, HEADER_LEN};

/// Opcode of a standard query.
const OPCODE_QUERY: u8 = 0;

/// A checked query: one question for a valid host name, class IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    id: u16,
    recursion_desired: bool,
    name: String,
    record_type: u16,
    /// The question as sent (name with its original letter case, type, class), echoed in
    /// answers so that resolvers checking the case (DNS 0x20) accept them.
    question: Vec<u8>,
}

impl DnsQuery {
    /// The query's ID, echoed in the answer.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Whether the client asked for recursion (echoed in the answer).
    pub fn recursion_desired(&self) -> bool {
        self.recursion_desired
    }

    /// The name asked about: lower case, no trailing dot.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The record type asked for ([`TYPE_A`](super::TYPE_A), [`TYPE_AAAA`](super::TYPE_AAAA)…).
    pub fn record_type(&self) -> u16 {
        self.record_type
    }

    /// The question section's bytes as sent.
    pub(super) fn question(&self) -> &[u8] {
        &self.question
    }
}

/// Parses a query message (UDP payload, or a TCP message without its length prefix): a query
/// (QR clear) with opcode QUERY, exactly one question, no answer or authority records; the
/// additional section (EDNS) is not read. The name must be a valid host name written with plain
/// labels (no compression pointer), the class IN.
pub fn parse_query(message: &[u8]) -> Result<DnsQuery, DnsError> {
    let header = Header::parse(message)?;
    if header.is_response() {
        return Err(DnsError::NotAQuery);
    }
    if header.opcode() != OPCODE_QUERY {
        return Err(DnsError::UnsupportedOpcode {
            opcode: header.opcode(),
        });
    }
    if header.question_count != 1 {
        return Err(DnsError::QuestionCount {
            count: header.question_count,
        });
    }
    if header.answer_count != 0 || header.authority_count != 0 {
        return Err(DnsError::UnexpectedRecords);
    }
    let (name, name_end) = read_question_name(message, HEADER_LEN)?;
    let question_end = name_end.saturating_add(4);
    let question = message
        .get(HEADER_LEN..question_end)
        .ok_or(DnsError::Truncated)?;
    let Some(&[type_h, type_l, class_h, class_l]) = question
        .get(name_end.saturating_sub(HEADER_LEN)..)
        .and_then(<[u8]>::first_chunk)
    else {
        return Err(DnsError::Truncated);
    };
    let class = u16::from_be_bytes([class_h, class_l]);
    if class != CLASS_IN {
        return Err(DnsError::UnsupportedClass { class });
    }
    Ok(DnsQuery {
        id: header.id,
        recursion_desired: header.recursion_desired(),
        name,
        record_type: u16::from_be_bytes([type_h, type_l]),
        question: question.to_vec(),
    })
}

/// Builds a query for `name` (class IN, recursion desired), as a stub resolver would send it.
pub fn encode_query(id: u16, name: &str, record_type: u16) -> Result<Vec<u8>, DnsError> {
    let mut message = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    Header {
        id,
        flags: 0x0100,
        question_count: 1,
        answer_count: 0,
        authority_count: 0,
        additional_count: 0,
    }
    .write(&mut message);
    write_name(name, &mut message)?;
    message.extend_from_slice(&record_type.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(message)
}
