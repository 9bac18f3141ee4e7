//! The snapshot state file's envelope: magic, version, payload length and CRC32, then bincode.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Identifies a paddock snapshot state file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"PDKSNAP\0";
/// Bumped on any change to the state layout, or to what the guest inside must do after a
/// restore. 2: guest-init re-announces itself after the transport reset (protocol 2).
/// 3: the virtio devices are a list of (slot, kind-tagged state) entries.
/// 4: vsock keeps guest-init's link (its credit counters) and lists the connections to reset one
///    by one; no transport reset (protocol 7).
pub const SNAPSHOT_VERSION: u32 = 4;
/// magic (8) + version (4) + payload length (8) + CRC32 (4).
pub const HEADER_LEN: usize = 24;
/// Largest state payload accepted (vCPU and device state is a few hundred KiB at most; a
/// companion's state up to 64 MiB).
pub const MAX_STATE_BYTES: u64 = 80 << 20;
/// [`MAX_STATE_BYTES`] as bincode's limit.
// Bounded: 64 MiB fits every usize.
#[allow(clippy::cast_possible_truncation)]
const MAX_STATE_LEN: usize = MAX_STATE_BYTES as usize;

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not a paddock snapshot.
    #[error("not a paddock snapshot (bad magic)")]
    BadMagic,
    /// Written by another format version.
    #[error("snapshot format version {found} is not supported (this paddock reads version {SNAPSHOT_VERSION})")]
    Version { found: u32 },
    /// Shorter than its header says.
    #[error("snapshot state is truncated ({have} of {want} bytes)")]
    Truncated { have: u64, want: u64 },
    /// Larger than any real state.
    #[error("snapshot state claims {0} bytes, over the {MAX_STATE_BYTES}-byte limit")]
    TooLarge(u64),
    /// The payload does not match its checksum.
    #[error("snapshot state checksum mismatch (file corrupted)")]
    Checksum,
    /// The payload does not decode.
    #[error("snapshot state does not decode: {0}")]
    Decode(String),
    /// The state could not be encoded.
    #[error("encoding snapshot state failed: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    // The limit makes bincode refuse a length prefix larger than a state could be before it
    // reserves memory for it (a crafted state with a valid checksum found by the fuzzer
    // `snapshot_state` otherwise panicked with a capacity overflow).
    bincode::config::standard()
        .with_limit::<MAX_STATE_LEN>()
        .with_little_endian()
        .with_fixed_int_encoding()
}

/// Encodes `state` with its header.
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, FormatError> {
    let payload = bincode::serde::encode_to_vec(state, config())
        .map_err(|e| FormatError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Checks the header of `bytes` and decodes the payload.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    if bytes.len() < HEADER_LEN {
        if !bytes.is_empty() && !SNAPSHOT_MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            return Err(FormatError::BadMagic);
        }
        return Err(FormatError::Truncated {
            have: bytes.len() as u64,
            want: HEADER_LEN as u64,
        });
    }
    let (header, rest) = bytes.split_at(HEADER_LEN);
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let field = |range: std::ops::Range<usize>| {
        header[range]
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let field_u32 = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let version = field_u32(8);
    if version != SNAPSHOT_VERSION {
        return Err(FormatError::Version { found: version });
    }
    let len = field(12..20);
    if len > MAX_STATE_BYTES {
        return Err(FormatError::TooLarge(len));
    }
    let Some(payload) = usize::try_from(len).ok().and_then(|len| rest.get(..len)) else {
        return Err(FormatError::Truncated {
            have: rest.len() as u64,
            want: len,
        });
    };
    if crc32fast::hash(payload) != field_u32(20) {
        return Err(FormatError::Checksum);
    }
    let (state, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| FormatError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(FormatError::Decode(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Sample {
        a: u64,
        b: Vec<u8>,
    }

    fn sample() -> Vec<u8> {
        encode(&Sample {
            a: 7,
            b: vec![1, 2, 3],
        })
        .unwrap()
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            decode::<Sample>(&sample()).unwrap(),
            Sample {
                a: 7,
                b: vec![1, 2, 3]
            }
        );
    }

    /// Found by the fuzz target `snapshot_state`: a payload with a valid checksum whose string
    /// length prefix is near `u64::MAX` is a decode error, not a panic or a huge allocation.
    #[test]
    fn a_huge_length_prefix_behind_a_valid_checksum_is_a_decode_error() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct WithString {
            count: u8,
            text: String,
        }
        for prefix in [u64::MAX - 68, u64::MAX, MAX_STATE_BYTES + 1, 1 << 40] {
            let mut payload = vec![2u8];
            payload.extend_from_slice(&prefix.to_le_bytes());
            payload.extend_from_slice(&[0xbb; 32]);
            let mut file = Vec::new();
            file.extend_from_slice(&SNAPSHOT_MAGIC);
            file.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
            file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            file.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            file.extend_from_slice(&payload);
            assert!(
                matches!(decode::<WithString>(&file), Err(FormatError::Decode(_))),
                "prefix {prefix:#x}"
            );
        }
    }

    #[test]
    fn refuses_every_kind_of_damage() {
        let good = sample();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            decode::<Sample>(&bad_magic),
            Err(FormatError::BadMagic)
        ));
        let mut bad_version = good.clone();
        bad_version[8] = 99;
        assert!(matches!(
            decode::<Sample>(&bad_version),
            Err(FormatError::Version { found: 99 })
        ));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        assert!(matches!(
            decode::<Sample>(&flipped),
            Err(FormatError::Checksum)
        ));
        assert!(matches!(
            decode::<Sample>(&good[..good.len() - 1]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode::<Sample>(&good[..10]),
            Err(FormatError::Truncated { .. })
        ));
        let mut huge = good.clone();
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Sample>(&huge),
            Err(FormatError::TooLarge(_))
        ));
        assert!(matches!(
            decode::<Sample>(b"garbage"),
            Err(FormatError::BadMagic)
        ));
    }
}
