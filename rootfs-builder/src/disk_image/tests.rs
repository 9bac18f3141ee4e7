//! Tests of the paddock image trailer: a round trip and every way a read or a verify fails.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

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
fn other_versions_are_unsupported_and_name_the_rebuild() {
    // 1: the format before the agent manifest; 3: a future one.
    for version in [1u32, FORMAT_VERSION + 1] {
        let (mut bytes, _) = image("agent");
        let at = bytes.len() - 4096 + OFF_VERSION;
        bytes[at..at + 4].copy_from_slice(&version.to_le_bytes());
        let err = read(bytes).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::UnsupportedVersion { found, supported: FORMAT_VERSION } if found == version
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cargo xtask rootfs --profile agent"),
            "{err}"
        );
    }
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
        (OFF_MANIFEST + 100, &[1], TrailerDefect::ReservedNotZero),
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

/// The manifest of a typical agent image.
fn agents() -> AgentManifest {
    let mut agents = AgentManifest::new();
    agents.push("claude", "claude", "2.1.332").unwrap();
    agents.push("gemini", "gemini", "0.61.0").unwrap();
    agents.push("codex", "codex", "0.171.0").unwrap();
    agents.push("shell", "bash", "5.2.15(1)-release").unwrap();
    agents
}

fn image_with_agents(agents: &AgentManifest) -> Vec<u8> {
    let mut file = Cursor::new(vec![7u8; 5000]);
    write_trailer_with_agents(&mut file, 5000, "agent", agents).unwrap();
    file.into_inner()
}

#[test]
fn the_agent_manifest_round_trips() {
    let bytes = image_with_agents(&agents());
    let trailer = read(bytes.clone()).unwrap();
    assert_eq!(trailer.agents(), &agents());
    let codex = trailer.agents().get("codex").unwrap();
    assert_eq!(
        (codex.command.as_str(), codex.version.as_str()),
        ("codex", "0.171.0")
    );
    let names: Vec<&str> = trailer
        .agents()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["claude", "gemini", "codex", "shell"], "order kept");
    verify_content(&mut Cursor::new(bytes), &trailer).unwrap();
    // Without agents, the manifest is empty and its length field zero.
    let (plain, _) = image("minimal");
    assert!(read(plain).unwrap().agents().is_empty());
}

#[test]
fn the_manifest_is_under_the_crc() {
    let mut bytes = image_with_agents(&agents());
    let at = bytes.len() - 4096 + OFF_MANIFEST + 2; // "claude" -> "clbude"
    bytes[at] ^= 0x03;
    assert!(matches!(
        read(bytes).unwrap_err(),
        ImageError::CorruptTrailer(TrailerDefect::Crc { .. })
    ));
}

#[test]
fn a_corrupt_manifest_with_a_valid_crc_is_refused() {
    fn start(bytes: &[u8]) -> usize {
        bytes.len() - 4096
    }
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Edit, TrailerDefect)> = vec![
        (
            // A length past the room there is.
            Box::new(|b: &mut Vec<u8>| {
                let at = start(b) + OFF_MANIFEST_LEN;
                b[at..at + 4].copy_from_slice(&5000u32.to_le_bytes());
            }),
            TrailerDefect::ManifestLength(5000),
        ),
        (
            // A length that cuts the last line short: no final newline.
            Box::new(|b: &mut Vec<u8>| {
                let at = start(b) + OFF_MANIFEST_LEN;
                let len = le_u32(b, at) - 1;
                b[at..at + 4].copy_from_slice(&len.to_le_bytes());
                let end = start(b) + OFF_MANIFEST + len as usize;
                b[end] = 0;
            }),
            TrailerDefect::Manifest(ManifestError::Malformed { line: 4 }),
        ),
        (
            // Data after the manifest.
            Box::new(|b: &mut Vec<u8>| {
                let at = start(b) + OFF_CRC - 1;
                b[at] = b'x';
            }),
            TrailerDefect::ReservedNotZero,
        ),
        (
            // Invalid UTF-8 inside.
            Box::new(|b: &mut Vec<u8>| {
                let at = start(b) + OFF_MANIFEST + 1;
                b[at] = 0xff;
            }),
            TrailerDefect::Manifest(ManifestError::NotUtf8),
        ),
        (
            // A separator gone: two fields on the first line.
            Box::new(|b: &mut Vec<u8>| {
                let at = start(b) + OFF_MANIFEST + "claude".len();
                b[at] = b'-';
            }),
            TrailerDefect::Manifest(ManifestError::Malformed { line: 1 }),
        ),
        (
            // The second name made equal to the first ("gemini" -> "claude").
            Box::new(|b: &mut Vec<u8>| {
                let at = start(b) + OFF_MANIFEST + "claude claude 2.1.332\n".len();
                b[at..at + 6].copy_from_slice(b"claude");
            }),
            TrailerDefect::Manifest(ManifestError::Duplicate {
                name: "claude".into(),
            }),
        ),
    ];
    for (edit, defect) in cases {
        let mut bytes = image_with_agents(&agents());
        edit(&mut bytes);
        fix_crc(&mut bytes);
        match read(bytes).unwrap_err() {
            ImageError::CorruptTrailer(found) => assert_eq!(found, defect),
            other => panic!("expected {defect:?}, got {other}"),
        }
    }
}

#[test]
fn manifest_entries_are_validated_when_added() {
    let mut agents = agents();
    let bad = [
        ("Claude", "claude", "1"),
        ("x", "", "1"),
        ("x", "a b", "1"),
        ("x", "x", "1 2"),
        ("x", "x", "1\n"),
    ];
    for (name, command, version) in bad {
        assert!(
            matches!(
                agents.push(name, command, version),
                Err(ManifestError::BadField { .. })
            ),
            "{name:?} {command:?} {version:?}"
        );
    }
    assert_eq!(
        agents.push("shell", "sh", "1"),
        Err(ManifestError::Duplicate {
            name: "shell".into()
        })
    );
    let mut full = AgentManifest::new();
    let version = "v".repeat(manifest::MAX_FIELD_LEN);
    let mut pushed = 0;
    let err = loop {
        match full.push(&format!("a{pushed}"), "cmd", &version) {
            Ok(()) => pushed += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ManifestError::TooLong { .. }), "{err}");
    assert!(full.encode().len() <= manifest::MAX_MANIFEST_LEN);
    // The fullest manifest still fits the trailer and reads back.
    let trailer = read(image_with_agents(&full)).unwrap();
    assert_eq!(trailer.agents().entries().len(), pushed);
}
