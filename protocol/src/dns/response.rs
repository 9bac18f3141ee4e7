//! Reads the gist of a response — ID, code, question, A addresses — for clients of the stub and
//! for tests. Record names are skipped, never followed, so pointers cannot loop.

use super::header::Header;
use super::name::{read_question_name, skip_record_name};
use super::{DnsError, Rcode, CLASS_IN, HEADER_LEN, TYPE_A};
use std::net::Ipv4Addr;

/// What a response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsResponse {
    /// The ID of the query answered.
    pub id: u16,
    /// The response code.
    pub rcode: Rcode,
    /// The RD flag echoed from the query.
    pub recursion_desired: bool,
    /// The RA flag.
    pub recursion_available: bool,
    /// The question's name and type, if the response has a question.
    pub question: Option<(String, u16)>,
    /// The number of answer records.
    pub answer_count: u16,
    /// The addresses of the answer section's A records (class IN).
    pub addresses: Vec<Ipv4Addr>,
}

/// Parses a response with at most one question (plain labels) and reads its answer section.
pub fn parse_response(message: &[u8]) -> Result<DnsResponse, DnsError> {
    let header = Header::parse(message)?;
    if !header.is_response() {
        return Err(DnsError::NotAResponse);
    }
    let mut offset = HEADER_LEN;
    let question = match header.question_count {
        0 => None,
        1 => {
            let (name, name_end) = read_question_name(message, offset)?;
            let record_type = read_u16(message, name_end)?;
            offset = name_end.saturating_add(4);
            if offset > message.len() {
                return Err(DnsError::Truncated);
            }
            Some((name, record_type))
        }
        count => return Err(DnsError::QuestionCount { count }),
    };
    let mut addresses = Vec::new();
    for _ in 0..header.answer_count {
        let name_end = skip_record_name(message, offset)?;
        let record_type = read_u16(message, name_end)?;
        let class = read_u16(message, name_end.saturating_add(2))?;
        let data_len = read_u16(message, name_end.saturating_add(8))?;
        let data_start = name_end.saturating_add(10);
        let data_end = data_start.saturating_add(usize::from(data_len));
        let data = message
            .get(data_start..data_end)
            .ok_or(DnsError::Truncated)?;
        if let (TYPE_A, CLASS_IN, Ok(octets)) = (record_type, class, <[u8; 4]>::try_from(data)) {
            addresses.push(Ipv4Addr::from(octets));
        }
        offset = data_end;
    }
    Ok(DnsResponse {
        id: header.id,
        rcode: header.rcode(),
        recursion_desired: header.recursion_desired(),
        recursion_available: header.recursion_available(),
        question,
        answer_count: header.answer_count,
        addresses,
    })
}

fn read_u16(message: &[u8], offset: usize) -> Result<u16, DnsError> {
    message
        .get(offset..)
        .and_then(<[u8]>::first_chunk::<2>)
        .map(|&bytes| u16::from_be_bytes(bytes))
        .ok_or(DnsError::Truncated)
}
