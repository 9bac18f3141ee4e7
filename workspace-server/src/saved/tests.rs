//! The saved state's bytes: a round trip, and every way decoding refuses bytes.

use super::*;

fn state() -> SavedState {
    SavedState {
        session: 0x1122_3344_5566_7788,
        capable: 1 << 5 | 1 << 22,
        read_only: false,
        next_node: 10,
        next_handle: 4,
        nodes: vec![
            SavedNode {
                id: 2,
                parent: ROOT,
                name: b"dir".to_vec(),
                lookups: 3,
                dev: 0x803,
                ino: 77,
                file_type: libc::S_IFDIR,
            },
            SavedNode {
                id: 5,
                parent: 2,
                name: b"file".to_vec(),
                lookups: 1,
                dev: 0x803,
                ino: 78,
                file_type: libc::S_IFREG,
            },
            SavedNode {
                id: 7,
                parent: 2,
                name: Vec::new(),
                lookups: 2,
                dev: 0x803,
                ino: 79,
                file_type: libc::S_IFREG,
            },
        ],
        handles: vec![
            SavedHandle {
                fh: 1,
                node: 5,
                flags: 0o2,
                is_dir: false,
            },
            SavedHandle {
                fh: 3,
                node: ROOT,
                flags: 0,
                is_dir: true,
            },
        ],
    }
}

/// `bytes` with the checksum made right for its (possibly changed) payload.
fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The state's bytes with its payload made by `edit` (length and checksum fixed up).
fn with_payload(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let bytes = state().encode().unwrap();
    let mut payload = bytes[HEADER_LEN..].to_vec();
    edit(&mut payload);
    let mut out = bytes[..HEADER_LEN].to_vec();
    out[12..16].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&payload);
    resealed(out)
}

/// Where the first node's fields start in the payload: after session, capable, read_only,
/// next ids and the node count.
const FIRST_NODE: usize = 8 + 8 + 1 + 8 + 8 + 4;

#[test]
fn a_state_comes_back_as_it_was_saved() {
    let bytes = state().encode().unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    assert_eq!(SavedState::decode(&bytes), Ok(state()));
    let empty = SavedState {
        nodes: Vec::new(),
        handles: Vec::new(),
        read_only: true,
        ..state()
    };
    assert_eq!(SavedState::decode(&empty.encode().unwrap()), Ok(empty));
}

#[test]
fn any_flipped_byte_is_refused() {
    let bytes = state().encode().unwrap();
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(SavedState::decode(&bad).is_err(), "byte {at} flipped");
    }
    let mut bad = bytes.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(SavedState::decode(&bad), Err(DecodeError::Checksum));
}

#[test]
fn the_header_is_checked() {
    let bytes = state().encode().unwrap();
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(SavedState::decode(&bad), Err(DecodeError::BadMagic));
    let mut bad = bytes.clone();
    bad[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(SavedState::decode(&bad), Err(DecodeError::Version(2)));
    for cut in [0, 7, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
        assert_eq!(
            SavedState::decode(&bytes[..cut]),
            Err(DecodeError::Truncated),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        SavedState::decode(&longer),
        Err(DecodeError::TrailingBytes(1))
    );
    let huge = vec![0u8; MAX_STATE_BYTES + 1];
    assert_eq!(
        SavedState::decode(&huge),
        Err(DecodeError::TooLarge(MAX_STATE_BYTES + 1))
    );
}

#[test]
fn the_payload_is_checked_even_with_a_right_checksum() {
    // A payload cut short inside its last handle.
    let cut = with_payload(|p| {
        p.pop();
    });
    assert_eq!(SavedState::decode(&cut), Err(DecodeError::Truncated));
    // A byte past the last handle.
    let long = with_payload(|p| p.push(0));
    assert_eq!(
        SavedState::decode(&long),
        Err(DecodeError::TrailingBytes(1))
    );
    // read_only neither 0 nor 1.
    let bool2 = with_payload(|p| p[16] = 2);
    assert_eq!(SavedState::decode(&bool2), Err(DecodeError::BadBool(2)));
    // Counts past the bounds, or past what the payload holds.
    let many_nodes = with_payload(|p| p[FIRST_NODE - 4..FIRST_NODE].fill(0xFF));
    assert_eq!(
        SavedState::decode(&many_nodes),
        Err(DecodeError::TooManyNodes(u64::from(u32::MAX)))
    );
    let more_nodes_than_bytes = with_payload(|p| {
        p[FIRST_NODE - 4..FIRST_NODE].copy_from_slice(&1000u32.to_le_bytes());
    });
    assert_eq!(
        SavedState::decode(&more_nodes_than_bytes),
        Err(DecodeError::Truncated)
    );
    let many_handles = with_payload(|p| {
        let at = p.len() - 2 * HANDLE_LEN - 4;
        p[at..at + 4].fill(0xFF);
    });
    assert_eq!(
        SavedState::decode(&many_handles),
        Err(DecodeError::TooManyHandles(u64::from(u32::MAX)))
    );
    // A name length past MAX_NAME.
    let long_name = with_payload(|p| {
        let at = FIRST_NODE + 5 * 8 + 4;
        p[at..at + 2].copy_from_slice(&300u16.to_le_bytes());
    });
    assert_eq!(
        SavedState::decode(&long_name),
        Err(DecodeError::NameTooLong(2))
    );
}

#[test]
fn inconsistent_ids_are_refused() {
    let refused = |edit: &dyn Fn(&mut SavedState)| {
        let mut s = state();
        edit(&mut s);
        SavedState::decode(&s.encode().unwrap()).unwrap_err()
    };
    assert_eq!(
        refused(&|s| s.nodes[0].id = ROOT),
        DecodeError::BadNodeId(1)
    );
    assert_eq!(refused(&|s| s.nodes[0].id = 0), DecodeError::BadNodeId(0));
    assert_eq!(refused(&|s| s.nodes[1].id = 2), DecodeError::BadNodeId(2));
    assert_eq!(refused(&|s| s.nodes[1].id = 10), DecodeError::BadNodeId(10));
    assert_eq!(
        refused(&|s| s.nodes[1].lookups = 0),
        DecodeError::BadNode(5)
    );
    assert_eq!(refused(&|s| s.nodes[1].parent = 0), DecodeError::BadNode(5));
    for name in [&b"."[..], b"..", b"a/b", b"a\0b"] {
        assert_eq!(
            refused(&|s| s.nodes[1].name = name.to_vec()),
            DecodeError::BadName(5)
        );
    }
    assert_eq!(refused(&|s| s.handles[0].fh = 0), DecodeError::BadHandle(0));
    assert_eq!(refused(&|s| s.handles[0].fh = 4), DecodeError::BadHandle(4));
    assert_eq!(refused(&|s| s.handles[1].fh = 1), DecodeError::BadHandle(1));
    assert_eq!(
        refused(&|s| s.handles[0].node = 3),
        DecodeError::BadHandle(1)
    );
}

#[test]
fn a_state_that_does_not_fit_is_not_encoded() {
    let mut s = state();
    s.nodes[0].name = vec![b'a'; MAX_NAME + 1];
    assert_eq!(s.encode(), Err(EncodeError::NameTooLong(2)));
    let mut s = state();
    s.handles = vec![s.handles[0].clone(); MAX_HANDLES + 1];
    assert_eq!(
        s.encode(),
        Err(EncodeError::TooManyHandles(MAX_HANDLES + 1))
    );
}
