//! Tests of the paddock image trailer: a round trip and every way a read or a verify fails.

use super::*;
use std::io::Cursor;

/// A paddock image of a 10000-byte pseudo-filesystem for `profile`.
fn image(profile: &str) -> (Vec<u8>, Trailer) {
    let fs: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = Cursor::new(fs);
    let trailer = write_trailer(&mut file, 10_000, profile).unwrap();
    (file.into_inner(), trailer)
}

/// Rewrites the CRC so a deliberately edited trailer passes the CRC check.
fn fix_crc(bytes: &mut [u8]) {
    let start = bytes.len() - BLOCK_SIZE as usize;
    let crc = crc32fast::hash(&bytes[start..start + OFF_CRC]);
    bytes[start + OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
}

fn read(bytes: Vec<u8>) -> Result<Trailer, ImageError> {
    read_trailer(&mut Cursor::new(bytes))
}

#[test]
fn round_trip() {
    let (bytes, written) = image("agent");
    assert_eq!(bytes.len(), 12_288 + 4096, "padded to 3 blocks + trailer");
    assert_eq!(written.fs_len(), 12_288);
    assert!(
        bytes[10_000..12_288].iter().all(|&b| b == 0),
        "zero padding"
    );
    assert_eq!(&bytes[12_288..12_296], b"PDKIMAGE");

    let mut file = Cursor::new(bytes.clone());
    let read_back = read_trailer(&mut file).unwrap();
    assert_eq!(read_back, written);
    assert_eq!(read_back.profile(), "agent");
    assert!(read_back.creator().starts_with("rootfs-builder "));
    let expected: [u8; 32] = Sha256::digest(&bytes[..12_288]).into();
    assert_eq!(read_back.fs_sha256(), &expected);
    assert_eq!(read_back.digest_hex().len(), 64);
    assert_eq!(
        read_back.digest_hex(),
        expected
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    verify_content(&mut file, &read_back).unwrap();
}

#[test]
fn aligned_filesystem_gets_no_padding() {
    let mut file = Cursor::new(vec![0xa5u8; 8192]);
    let trailer = write_trailer(&mut file, 8192, "minimal").unwrap();
    assert_eq!(trailer.fs_len(), 8192);
    assert_eq!(file.into_inner().len(), 8192 + 4096);
}

#[test]
fn a_profile_name_of_32_bytes_fits_exactly() {
    let name = "p".repeat(MAX_PROFILE_LEN);
    let (bytes, _) = image(&name);
    assert_eq!(read(bytes).unwrap().profile(), name);
}

#[test]
fn bad_profile_names_are_refused() {
    for name in ["", "with\0nul", &"p".repeat(MAX_PROFILE_LEN + 1)] {
        let err = write_trailer(&mut Cursor::new(vec![0u8; 10]), 10, name).unwrap_err();
        assert!(matches!(err, WriteTrailerError::ProfileName(_)), "{err}");
    }
}

#[test]
fn writing_twice_is_refused() {
    let (bytes, trailer) = image("agent");
    let err = write_trailer(&mut Cursor::new(bytes), trailer.fs_len(), "agent").unwrap_err();
    assert!(
        matches!(
            err,
            WriteTrailerError::LengthMismatch {
                expected: 12_288,
                actual: 16_384
            }
        ),
        "{err}"
    );
}

#[test]
fn shorter_than_a_trailer_is_too_short() {
    let err = read(vec![0u8; 4095]).unwrap_err();
    assert!(matches!(err, ImageError::TooShort { len: 4095 }), "{err}");
}

#[test]
fn other_files_are_not_paddock_images() {
    let err = read(vec![0u8; 3 * 4096]).unwrap_err();
    assert!(matches!(err, ImageError::NotPaddockImage), "{err}");
    let (mut bytes, _) = image("agent");
    let trailer_start = bytes.len() - 4096;
    bytes[trailer_start] = b'X';
    assert!(matches!(
        read(bytes).unwrap_err(),
        ImageError::NotPaddockImage
    ));
}

#[test]
fn a_newer_version_is_unsupported() {
    let (mut bytes, _) = image("agent");
    let at = bytes.len() - 4096 + OFF_VERSION;
    bytes[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let err = read(bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::UnsupportedVersion {
                found: 2,
                supported: FORMAT_VERSION
            }
        ),
        "{err}"
    );
}

#[test]
fn a_flipped_trailer_bit_fails_the_crc() {
    let (mut bytes, _) = image("agent");
    let at = bytes.len() - 4096 + OFF_SHA256 + 3;
    bytes[at] ^= 0x10;
    let err = read(bytes).unwrap_err();
    assert!(
        matches!(err, ImageError::CorruptTrailer(TrailerDefect::Crc { .. })),
        "{err}"
    );
}

#[test]
fn invalid_fields_with_a_valid_crc_are_corrupt() {
    let edits: [(usize, &[u8], TrailerDefect); 5] = [
        (
            OFF_BLOCK_SIZE,
            &512u32.to_le_bytes(),
            TrailerDefect::BlockSize(512),
        ),
        (
            OFF_FS_LEN,
            &12_289u64.to_le_bytes(),
            TrailerDefect::UnalignedFsLen(12_289),
        ),
        (OFF_ZERO + 100, &[1], TrailerDefect::ReservedNotZero),
        (OFF_PROFILE, &[0, b'x'], TrailerDefect::ProfileName),
        (OFF_CREATOR, &[0xff], TrailerDefect::Creator),
    ];
    for (offset, value, defect) in edits {
        let (mut bytes, _) = image("agent");
        let at = bytes.len() - 4096 + offset;
        bytes[at..at + value.len()].copy_from_slice(value);
        fix_crc(&mut bytes);
        match read(bytes).unwrap_err() {
            ImageError::CorruptTrailer(found) => assert_eq!(found, defect),
            other => panic!("expected {defect:?}, got {other}"),
        }
    }
}

#[test]
fn a_file_missing_filesystem_blocks_is_truncated() {
    let (bytes, _) = image("agent");
    // Drop the first filesystem block: the trailer is intact but the file is short.
    let err = read(bytes[4096..].to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Truncated {
                expected: 16_384,
                actual: 12_288
            }
        ),
        "{err}"
    );
}

#[test]
fn a_file_with_data_before_the_trailer_has_extra_data() {
    let (bytes, _) = image("agent");
    let mut longer = vec![0u8; 4096];
    longer.extend_from_slice(&bytes);
    let err = read(longer).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::ExtraData {
                expected: 16_384,
                actual: 20_480
            }
        ),
        "{err}"
    );
}

#[test]
fn a_changed_filesystem_byte_fails_verification() {
    let (mut bytes, _) = image("agent");
    bytes[5000] ^= 1;
    let mut file = Cursor::new(bytes);
    let trailer = read_trailer(&mut file).unwrap();
    let err = verify_content(&mut file, &trailer).unwrap_err();
    assert!(matches!(err, ImageError::ContentMismatch { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn verifying_a_short_file_reports_truncation() {
    let (bytes, _) = image("agent");
    let trailer = read(bytes.clone()).unwrap();
    let err = verify_content(&mut Cursor::new(bytes[..5000].to_vec()), &trailer).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Truncated {
                expected: 16_384,
                actual: 5000
            }
        ),
        "{err}"
    );
}
