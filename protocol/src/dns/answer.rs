//! Answers to a parsed query: the header echoes the ID, opcode and RD flag and sets QR and RA;
//! the question is echoed as sent. Every answer is at most 12 + 259 + 16 bytes, well within
//! [`MAX_UDP_MESSAGE`](super::MAX_UDP_MESSAGE).

use super::header::Header;
use super::{DnsError, DnsQuery, Rcode, CLASS_IN, HEADER_LEN, TYPE_A};
use std::net::Ipv4Addr;

/// A compression pointer to the question name, which always starts right after the header.
// Bounded: HEADER_LEN is 12.
#[allow(clippy::cast_possible_truncation)]
const POINTER_TO_QUESTION: [u8; 2] = [0xc0, HEADER_LEN as u8];

/// NOERROR with one A record for the question's name (by a pointer to the question).
pub fn answer_a(query: &DnsQuery, address: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut out = start_answer(query, Rcode::NoError, 1);
    out.extend_from_slice(&POINTER_TO_QUESTION);
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&address.octets());
    out
}

/// NXDOMAIN: the name does not exist (or may not be used).
pub fn answer_nxdomain(query: &DnsQuery) -> Vec<u8> {
    start_answer(query, Rcode::NxDomain, 0)
}

/// NOERROR without records (NODATA): the name exists but has no record of this type (AAAA and
/// other types of an allowed name).
pub fn answer_empty(query: &DnsQuery) -> Vec<u8> {
    start_answer(query, Rcode::NoError, 0)
}

/// SERVFAIL: the answer could not be found out (host unreachable).
pub fn answer_servfail(query: &DnsQuery) -> Vec<u8> {
    start_answer(query, Rcode::ServFail, 0)
}

/// REFUSED: the server will not answer this query.
pub fn answer_refused(query: &DnsQuery) -> Vec<u8> {
    start_answer(query, Rcode::Refused, 0)
}

/// A header-only reply to a message [`parse_query`](super::parse_query) refused with `error`:
/// NOTIMP for another opcode, REFUSED for another class, FORMERR otherwise. `None` when there is
/// nothing to answer: no complete header, or the message is itself a response (answering those
/// could loop).
pub fn reply_to_invalid(message: &[u8], error: &DnsError) -> Option<Vec<u8>> {
    let header = Header::parse(message).ok()?;
    if header.is_response() || matches!(error, DnsError::NotAQuery | DnsError::TooLong { .. }) {
        return None;
    }
    let rcode = match error {
        DnsError::UnsupportedOpcode { .. } => Rcode::NotImp,
        DnsError::UnsupportedClass { .. } => Rcode::Refused,
        _ => Rcode::FormErr,
    };
    let mut out = Vec::with_capacity(HEADER_LEN);
    Header::response(
        header.id,
        header.opcode(),
        header.recursion_desired(),
        rcode,
        0,
        0,
    )
    .write(&mut out);
    Some(out)
}

/// The header and echoed question of an answer with `answer_count` records to follow.
fn start_answer(query: &DnsQuery, rcode: Rcode, answer_count: u16) -> Vec<u8> {
    let question = query.question();
    let mut out = Vec::with_capacity(HEADER_LEN + question.len() + 16);
    Header::response(
        query.id(),
        0,
        query.recursion_desired(),
        rcode,
        1,
        answer_count,
    )
    .write(&mut out);
    out.extend_from_slice(question);
    out
}
