//! The fixed 12-byte message header (RFC 1035 §4.1.1).

use super::{DnsError, Rcode, HEADER_LEN, MAX_TCP_MESSAGE};

const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;
const FLAG_RECURSION_AVAILABLE: u16 = 0x0080;
const OPCODE_SHIFT: u16 = 11;

/// The header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) id: u16,
    pub(super) flags: u16,
    pub(super) question_count: u16,
    pub(super) answer_count: u16,
    pub(super) authority_count: u16,
    pub(super) additional_count: u16,
}

impl Header {
    /// Reads the header of `message`, which must be between [`HEADER_LEN`] and
    /// [`MAX_TCP_MESSAGE`] bytes long.
    pub(super) fn parse(message: &[u8]) -> Result<Self, DnsError> {
        if message.len() > MAX_TCP_MESSAGE {
            return Err(DnsError::TooLong { len: message.len() });
        }
        let Some(&[id_h, id_l, f_h, f_l, qd_h, qd_l, an_h, an_l, ns_h, ns_l, ar_h, ar_l]) =
            message.first_chunk::<HEADER_LEN>()
        else {
            return Err(DnsError::TooShort { len: message.len() });
        };
        Ok(Header {
            id: u16::from_be_bytes([id_h, id_l]),
            flags: u16::from_be_bytes([f_h, f_l]),
            question_count: u16::from_be_bytes([qd_h, qd_l]),
            answer_count: u16::from_be_bytes([an_h, an_l]),
            authority_count: u16::from_be_bytes([ns_h, ns_l]),
            additional_count: u16::from_be_bytes([ar_h, ar_l]),
        })
    }

    pub(super) fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    pub(super) fn opcode(&self) -> u8 {
        ((self.flags >> OPCODE_SHIFT) & 0x0f) as u8
    }

    pub(super) fn recursion_desired(&self) -> bool {
        self.flags & FLAG_RECURSION_DESIRED != 0
    }

    pub(super) fn recursion_available(&self) -> bool {
        self.flags & FLAG_RECURSION_AVAILABLE != 0
    }

    pub(super) fn rcode(&self) -> Rcode {
        Rcode::from_wire((self.flags & 0x0f) as u8)
    }

    /// The header of a response to a query with `opcode` and `recursion_desired`: QR and RA set,
    /// AA, TC, AD and CD clear.
    pub(super) fn response(
        id: u16,
        opcode: u8,
        recursion_desired: bool,
        rcode: Rcode,
        question_count: u16,
        answer_count: u16,
    ) -> Self {
        let mut flags = FLAG_RESPONSE | FLAG_RECURSION_AVAILABLE;
        flags |= u16::from(opcode & 0x0f) << OPCODE_SHIFT;
        if recursion_desired {
            flags |= FLAG_RECURSION_DESIRED;
        }
        flags |= u16::from(rcode.to_wire());
        Header {
            id,
            flags,
            question_count,
            answer_count,
            authority_count: 0,
            additional_count: 0,
        }
    }

    /// Appends the 12 header bytes to `out`.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        for field in [
            self.id,
            self.flags,
            self.question_count,
            self.answer_count,
            self.authority_count,
            self.additional_count,
        ] {
            out.extend_from_slice(&field.to_be_bytes());
        }
    }
}
