//! Names on the wire (RFC 1035 §3.1, §4.1.4): read a question name (plain labels only), skip a
//! record name (labels ending in a pointer allowed, never followed), encode a name.

use super::{DnsError, MAX_LABEL, MAX_WIRE_NAME};
use crate::egress::normalize_name;

const POINTER_BITS: u8 = 0xc0;

/// Reads the question name starting at `start`: returns it normalized (lower case, no trailing
/// dot) and the offset just after it. Compression pointers and reserved label types are refused.
pub(super) fn read_question_name(
    message: &[u8],
    start: usize,
) -> Result<(String, usize), DnsError> {
    let mut text = String::new();
    let mut offset = start;
    loop {
        let &len_byte = message.get(offset).ok_or(DnsError::Truncated)?;
        match len_byte & POINTER_BITS {
            0 => {}
            POINTER_BITS => return Err(DnsError::CompressedName),
            _ => return Err(DnsError::ReservedLabelType { byte: len_byte }),
        }
        let label_start = offset.saturating_add(1);
        let label_end = label_start.saturating_add(usize::from(len_byte));
        if label_end.saturating_sub(start) > MAX_WIRE_NAME {
            return Err(DnsError::NameTooLong);
        }
        if len_byte == 0 {
            let name = normalize_name(&text).map_err(DnsError::BadName)?;
            return Ok((name, label_start));
        }
        let label = message
            .get(label_start..label_end)
            .ok_or(DnsError::Truncated)?;
        if label.iter().any(|&b| b == b'.' || !b.is_ascii()) {
            return Err(DnsError::UnprintableLabel);
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.extend(label.iter().map(|&b| char::from(b)));
        offset = label_end;
    }
}

/// Skips a record name starting at `start` (plain labels, possibly ending in a compression
/// pointer, which is not followed): returns the offset just after it.
pub(super) fn skip_record_name(message: &[u8], start: usize) -> Result<usize, DnsError> {
    let mut offset = start;
    loop {
        let &len_byte = message.get(offset).ok_or(DnsError::Truncated)?;
        match len_byte & POINTER_BITS {
            0 => {}
            POINTER_BITS => {
                let end = offset.saturating_add(2);
                return if end <= message.len() {
                    Ok(end)
                } else {
                    Err(DnsError::Truncated)
                };
            }
            _ => return Err(DnsError::ReservedLabelType { byte: len_byte }),
        }
        let next = offset
            .saturating_add(1)
            .saturating_add(usize::from(len_byte));
        if next.saturating_sub(start) > MAX_WIRE_NAME {
            return Err(DnsError::NameTooLong);
        }
        if len_byte == 0 {
            return Ok(next);
        }
        offset = next;
    }
}

/// Appends `name` (checked with [`normalize_name`], case kept) in wire form to `out`.
pub(super) fn write_name(name: &str, out: &mut Vec<u8>) -> Result<(), DnsError> {
    normalize_name(name).map_err(DnsError::BadName)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    for label in name.split('.') {
        // normalize_name bounds every label to MAX_LABEL bytes.
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&len| usize::from(len) <= MAX_LABEL)
            .ok_or(DnsError::NameTooLong)?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}
