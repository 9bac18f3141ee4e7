//! The workspace server's saved state, from any bytes (a corrupt or crafted state handed to
//! its control socket, or kept in a snapshot): the decoder never panics, and a state it accepts
//! is consistent (every handle on a node it lists, every name one path component) and encodes
//! back to the same bytes. Input: a flags byte (bit 0: fix the CRC so the payload reaches the
//! checks past it), then the state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_workspace::saved::SavedState;

/// Header length: magic, version, payload length, CRC32.
const HEADER_LEN: usize = 20;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let mut bytes = bytes.to_vec();
    if flags & 1 == 1 && bytes.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(state) = SavedState::decode(&bytes) else {
        return;
    };
    for handle in &state.handles {
        assert!(
            state.nodes.iter().any(|n| n.id == handle.node) || handle.node == 1,
            "handle {} on unknown node {}",
            handle.fh,
            handle.node
        );
    }
    for node in &state.nodes {
        assert!(!node.name.contains(&b'/') && !node.name.contains(&0));
    }
    let again = state.encode().expect("an accepted state encodes");
    assert_eq!(again, bytes, "an accepted state re-encodes to its bytes");
});
