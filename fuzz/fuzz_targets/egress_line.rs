//! The first line of a guest connection to the egress port (`PADDOCK-EGRESS/1 PROXY`,
//! `TRANSPARENT addr`, `RESOLVE name`) and the host's answer line, from any bytes: a line that
//! decodes encodes back to the same value. Input: a flags byte (bit 0: fix the line's CRC so
//! the fields behind it are reached), then the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_protocol::egress::normalize_name;
use paddock_protocol::{EgressHello, ResolveAnswer};

/// Rewrites the CRC after the last ` c=` to match the bytes before it.
fn fix_crc(line: &mut [u8]) {
    let Some(at) = line.windows(3).rposition(|w| w == b" c=") else {
        return;
    };
    let crc = format!("{:08x}", crc32fast::hash(&line[..at]));
    let digits = &mut line[at + 3..];
    let n = digits.len().min(8);
    digits[..n].copy_from_slice(&crc.as_bytes()[..n]);
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, line)) = input.split_first() else {
        return;
    };
    let mut line = line.to_vec();
    if flags & 1 == 1 {
        fix_crc(&mut line);
    }
    let data = &line[..];
    if let Ok(hello) = EgressHello::decode(data) {
        assert_eq!(EgressHello::decode(&hello.encode()).ok(), Some(hello));
    }
    if let Ok(answer) = ResolveAnswer::decode(data) {
        assert_eq!(ResolveAnswer::decode(&answer.encode()).ok(), Some(answer));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(name) = normalize_name(text) {
            assert_eq!(normalize_name(&name).as_deref(), Ok(name.as_str()));
        }
    }
});
