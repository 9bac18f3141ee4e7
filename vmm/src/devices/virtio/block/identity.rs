//! Who the disk is: the serial number the guest reads with `VIRTIO_BLK_T_GET_ID`, and the
//! backing image's content identity that the wiring layer supplies and the device carries into
//! its snapshot state.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Length of a virtio-blk device ID (`VIRTIO_BLK_ID_BYTES`).
pub const SERIAL_LEN: usize = virtio_bindings::virtio_blk::VIRTIO_BLK_ID_BYTES as usize;

/// The 20-byte device ID returned by `VIRTIO_BLK_T_GET_ID`: shorter IDs are NUL-padded, a full
/// 20-byte ID has no terminator (virtio 1.x §5.2.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSerial([u8; SERIAL_LEN]);

/// A serial longer than [`SERIAL_LEN`] bytes.
#[derive(Debug, thiserror::Error)]
#[error("disk serial has {0} bytes, at most {SERIAL_LEN} fit")]
pub struct SerialTooLong(pub usize);

impl DiskSerial {
    /// A serial from caller-chosen bytes (at most [`SERIAL_LEN`]), NUL-padded.
    pub fn new(id: &[u8]) -> Result<Self, SerialTooLong> {
        let mut bytes = [0u8; SERIAL_LEN];
        bytes
            .get_mut(..id.len())
            .ok_or(SerialTooLong(id.len()))?
            .copy_from_slice(id);
        Ok(Self(bytes))
    }

    /// A serial derived from an image's content digest: the hex of its first 10 bytes, so the
    /// same image always shows the guest the same ID.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; SERIAL_LEN];
        for (pair, byte) in bytes.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        Self(bytes)
    }

    /// The 20 bytes the guest reads.
    pub fn as_bytes(&self) -> &[u8; SERIAL_LEN] {
        &self.0
    }
}

/// The content identity of a disk image, filled in by the layer that opened it (the device only
/// carries it, so a restore or reset can check it is given the same disk).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIdentity {
    /// Where the image was opened from.
    pub path: PathBuf,
    /// SHA-256 of the image's contents, when the caller computed it.
    pub digest: Option<[u8; 32]>,
    /// The image file's length in bytes (including any trailer the guest does not see).
    pub len: u64,
    /// Whether the image is served read-only.
    pub read_only: bool,
}

impl DiskIdentity {
    /// Whether `other` names the same disk: by content where both carry a digest (a moved copy
    /// of an image is the same disk), else by path (a scratch disk has no fixed content).
    pub fn same_disk(&self, other: &DiskIdentity) -> bool {
        let same_place = match (self.digest, other.digest) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.path == other.path,
            _ => false,
        };
        same_place && self.len == other.len && self.read_only == other.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_serial_is_nul_padded() {
        let s = DiskSerial::new(b"rootfs").unwrap();
        assert_eq!(&s.as_bytes()[..6], b"rootfs");
        assert!(s.as_bytes()[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn full_length_serial_is_kept_and_longer_is_refused() {
        let full = [b'x'; SERIAL_LEN];
        assert_eq!(DiskSerial::new(&full).unwrap().as_bytes(), &full);
        assert!(matches!(
            DiskSerial::new(&[b'x'; SERIAL_LEN + 1]),
            Err(SerialTooLong(21))
        ));
    }

    #[test]
    fn digest_serial_is_hex_of_the_digest_prefix() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[9] = 0x01;
        digest[10] = 0xff; // beyond the 10 bytes that fit
        let s = DiskSerial::from_digest(&digest);
        assert_eq!(s.as_bytes(), b"ab000000000000000001");
    }

    #[test]
    fn same_disk_goes_by_content_where_known_else_by_path() {
        let image = DiskIdentity {
            path: "/a/img".into(),
            digest: Some([1; 32]),
            len: 8192,
            read_only: true,
        };
        let moved = DiskIdentity {
            path: "/b/img".into(),
            ..image.clone()
        };
        assert!(image.same_disk(&moved));
        let changed = DiskIdentity {
            digest: Some([2; 32]),
            ..image.clone()
        };
        assert!(!image.same_disk(&changed));
        let scratch = DiskIdentity {
            path: "/s".into(),
            digest: None,
            len: 512,
            read_only: false,
        };
        assert!(scratch.same_disk(&scratch.clone()));
        assert!(!scratch.same_disk(&DiskIdentity {
            path: "/t".into(),
            ..scratch.clone()
        }));
        assert!(!image.same_disk(&DiskIdentity {
            digest: None,
            ..image.clone()
        }));
    }
}
