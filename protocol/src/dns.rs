//! DNS messages for the guest's DNS stub (RFC 1035): parses a query with exactly one question
//! and builds the few answers the stub gives — an A record, NXDOMAIN, an empty NOERROR (NODATA),
//! SERVFAIL, REFUSED — echoing the question as sent. Pure and synchronous (guest-init links it
//! statically); every length is bounded and no input makes it panic.
//!
//! Queries may carry an EDNS OPT record in the additional section; it is ignored and answers
//! carry none, which keeps them within the classic 512-byte UDP limit.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod answer;
mod header;
mod name;
mod query;
mod response;
mod tcp;
#[cfg(test)]
mod tests;

pub use answer::{
    answer_a, answer_empty, answer_nxdomain, answer_refused, answer_servfail, reply_to_invalid,
};
pub use query::{encode_query, parse_query, DnsQuery};
pub use response::{parse_response, DnsResponse};
pub use tcp::{tcp_frame, tcp_message};

use crate::egress::EgressLineError;

/// Largest DNS message over UDP without EDNS (RFC 1035 §4.2.1); every answer built here fits.
pub const MAX_UDP_MESSAGE: usize = 512;
/// Largest DNS message over TCP (the two-byte length prefix, RFC 1035 §4.2.2).
pub const MAX_TCP_MESSAGE: usize = 65535;
/// Length of the fixed message header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length bytes and the final zero included (RFC 1035 §3.1).
pub const MAX_WIRE_NAME: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;
/// Record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN (the Internet).
pub const CLASS_IN: u16 = 1;

/// A response code (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// 0: no error.
    NoError,
    /// 1: the query could not be interpreted.
    FormErr,
    /// 2: the server failed.
    ServFail,
    /// 3: the name does not exist.
    NxDomain,
    /// 4: the kind of query is not supported.
    NotImp,
    /// 5: refused for policy reasons.
    Refused,
    /// Any other 4-bit code.
    Other(u8),
}

impl Rcode {
    /// The code for its 4-bit wire value (higher bits ignored).
    pub fn from_wire(value: u8) -> Self {
        match value & 0x0f {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            other => Rcode::Other(other),
        }
    }

    /// The 4-bit wire value.
    pub fn to_wire(self) -> u8 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::Other(value) => value & 0x0f,
        }
    }
}

/// Why a DNS message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than its fixed header.
    #[error("DNS message of {len} bytes is shorter than its header")]
    TooShort {
        /// The message length.
        len: usize,
    },
    /// Longer than [`MAX_TCP_MESSAGE`].
    #[error("DNS message of {len} bytes is longer than {MAX_TCP_MESSAGE}")]
    TooLong {
        /// The message length.
        len: usize,
    },
    /// A response where a query was expected.
    #[error("DNS message is a response, not a query")]
    NotAQuery,
    /// A query where a response was expected.
    #[error("DNS message is a query, not a response")]
    NotAResponse,
    /// An opcode other than QUERY.
    #[error("DNS opcode {opcode} is not supported")]
    UnsupportedOpcode {
        /// The opcode.
        opcode: u8,
    },
    /// Not exactly one question (or, in a response, more than one).
    #[error("DNS message has {count} questions")]
    QuestionCount {
        /// The QDCOUNT field.
        count: u16,
    },
    /// Answer or authority records in a query.
    #[error("DNS query carries answer or authority records")]
    UnexpectedRecords,
    /// A name, question or record runs past the end of the message.
    #[error("DNS message is truncated")]
    Truncated,
    /// A compression pointer in a question name (never needed: nothing precedes it).
    #[error("compression pointer in a question name")]
    CompressedName,
    /// A label type other than a plain label or pointer (RFC 6891 §5).
    #[error("reserved DNS label type {byte:#04x}")]
    ReservedLabelType {
        /// The label's first byte.
        byte: u8,
    },
    /// A name longer than [`MAX_WIRE_NAME`] bytes on the wire.
    #[error("DNS name longer than {MAX_WIRE_NAME} bytes")]
    NameTooLong,
    /// A label holding a dot or a byte that is not ASCII: it cannot be written as a name.
    #[error("DNS label cannot be written as text")]
    UnprintableLabel,
    /// The name is not a valid host name (or is the root).
    #[error("not a valid host name")]
    BadName(#[source] EgressLineError),
    /// A class other than IN.
    #[error("DNS class {class} is not supported")]
    UnsupportedClass {
        /// The QCLASS field.
        class: u16,
    },
}
