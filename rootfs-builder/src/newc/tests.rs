//! Tests of the newc writer: a strict reader parses back what was written.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use super::*;

/// One member as parsed back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub name: String,
    pub inode: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

fn field(header: &[u8], index: usize) -> u32 {
    let start = 6 + index * 8;
    let text = std::str::from_utf8(&header[start..start + 8]).expect("header field is ASCII");
    assert!(
        text.bytes().all(|b| b.is_ascii_hexdigit()),
        "field {index} not hex: {text:?}"
    );
    u32::from_str_radix(text, 16).expect("hex field")
}

/// Parses a whole newc archive, asserting every alignment rule and that only zeros follow the trailer.
pub(crate) fn parse(archive: &[u8]) -> Vec<Member> {
    assert_eq!(archive.len() % 512, 0, "archive padded to 512-byte blocks");
    let mut members = Vec::new();
    let mut pos = 0usize;
    loop {
        assert_eq!(pos % 4, 0, "member header at {pos} is 4-byte aligned");
        let header = &archive[pos..pos + HEADER_LEN];
        assert_eq!(&header[..6], MAGIC, "magic at {pos}");
        let name_size = field(header, 11) as usize;
        let size = field(header, 6) as usize;
        let name_start = pos + HEADER_LEN;
        let name_bytes = &archive[name_start..name_start + name_size];
        assert_eq!(name_bytes.last(), Some(&0), "name is NUL-terminated");
        let name = String::from_utf8(name_bytes[..name_size - 1].to_vec()).expect("utf-8 name");
        let data_start = (name_start + name_size).next_multiple_of(4);
        assert!(
            archive[name_start + name_size..data_start]
                .iter()
                .all(|&b| b == 0),
            "name padding is zeros"
        );
        assert_eq!(field(header, 12), 0, "check field is 0");
        if name == TRAILER {
            assert_eq!(size, 0);
            assert!(
                archive[data_start..].iter().all(|&b| b == 0),
                "only zeros after the trailer"
            );
            return members;
        }
        let data = archive[data_start..data_start + size].to_vec();
        let next = (data_start + size).next_multiple_of(4);
        assert!(
            archive[data_start + size..next].iter().all(|&b| b == 0),
            "data padding is zeros"
        );
        members.push(Member {
            name,
            inode: field(header, 0),
            mode: field(header, 1),
            uid: field(header, 2),
            gid: field(header, 3),
            nlink: field(header, 4),
            mtime: field(header, 5),
            rdev: (field(header, 9), field(header, 10)),
            data,
        });
        pos = next;
    }
}

fn archive(build: impl FnOnce(&mut NewcWriter<Vec<u8>>) -> Result<(), NewcError>) -> Vec<u8> {
    let mut writer = NewcWriter::new(Vec::new());
    build(&mut writer).expect("members written");
    writer.finish().expect("archive finished")
}

#[test]
fn empty_archive_is_only_a_trailer() {
    let bytes = archive(|_| Ok(()));
    assert_eq!(bytes.len(), 512);
    assert!(bytes.starts_with(b"070701"));
    assert!(parse(&bytes).is_empty());
}

#[test]
fn alignment_for_every_name_length_and_small_size() {
    // Names of 1..=8 bytes and sizes 0..=5 cover every residue of both padding rules.
    let mut expected = Vec::new();
    let bytes = archive(|w| {
        for name_len in 1..=8usize {
            for size in 0..=5usize {
                let name: String =
                    std::iter::repeat_n(char::from(b'a' + size as u8), name_len).collect();
                let name = format!("{name}{size}");
                let data: Vec<u8> = (0..size)
                    .map(|i| (i as u8).wrapping_mul(37).wrapping_add(1))
                    .collect();
                w.file_bytes(&name, 0o644, &data)?;
                expected.push((name, data));
            }
        }
        Ok(())
    });
    let members = parse(&bytes);
    assert_eq!(members.len(), expected.len());
    for (member, (name, data)) in members.iter().zip(&expected) {
        assert_eq!(&member.name, name);
        assert_eq!(&member.data, data);
        assert_eq!(member.mode, 0o100_644);
        assert_eq!(member.nlink, 1);
    }
}

#[test]
fn single_char_names_shift_alignment() {
    // Header (110) + name "x\0" (2) = 112: already aligned, no name padding at all.
    let bytes = archive(|w| w.file_bytes("x", 0o600, b"abc"));
    assert_eq!(&bytes[110..112], b"x\0");
    assert_eq!(&bytes[112..115], b"abc");
    assert_eq!(bytes[115], 0, "data padded to 116");
    assert_eq!(&bytes[116..122], b"070701", "next header at 116");
}

#[test]
fn directories_symlinks_and_nodes() {
    let bytes = archive(|w| {
        w.dir("dev", 0o755)?;
        w.node("dev/console", 0o600, NodeKind::Char, 5, 1)?;
        w.node("dev/vda", 0o660, NodeKind::Block, 254, 0)?;
        w.dir("tmp", 0o1777)?;
        w.symlink("bin/sh", "busybox")
    });
    let members = parse(&bytes);
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["dev", "dev/console", "dev/vda", "tmp", "bin/sh"]);
    assert_eq!(members[0].mode, 0o040_755);
    assert_eq!(members[0].nlink, 2);
    assert_eq!(members[1].mode, 0o020_600);
    assert_eq!(members[1].rdev, (5, 1));
    assert_eq!(members[1].data, b"");
    assert_eq!(members[2].mode, 0o060_660);
    assert_eq!(members[2].rdev, (254, 0));
    assert_eq!(members[3].mode, 0o041_777, "sticky bit kept");
    assert_eq!(members[4].mode, 0o120_777);
    assert_eq!(members[4].data, b"busybox");
}

#[test]
fn output_is_deterministic() {
    let build = |w: &mut NewcWriter<Vec<u8>>| {
        w.dir("etc", 0o755)?;
        w.file_bytes("etc/hostname", 0o644, b"paddock\n")
    };
    let first = archive(build);
    assert_eq!(first, archive(build));
    let members = parse(&first);
    assert_eq!(members.iter().map(|m| m.inode).collect::<Vec<_>>(), [1, 2]);
    assert!(members
        .iter()
        .all(|m| m.mtime == 0 && m.uid == 0 && m.gid == 0));
}

#[test]
fn permission_bits_are_masked_to_the_permission_range() {
    // A caller passing a full st_mode must not be able to change the file type.
    let bytes = archive(|w| w.file_bytes("f", 0o040_755, b""));
    assert_eq!(parse(&bytes)[0].mode, 0o100_755);
}

#[test]
fn streamed_file_reads_exactly_its_size() {
    let source = b"0123456789";
    let mut reader = &source[..];
    let bytes = archive(|w| w.file("f", 0o644, 4, &mut reader));
    assert_eq!(parse(&bytes)[0].data, b"0123");
    assert_eq!(reader, b"456789", "bytes beyond the size are not consumed");
}

#[test]
fn short_reader_is_an_error() {
    let mut writer = NewcWriter::new(Vec::new());
    let err = writer.file("f", 0o644, 10, &mut &b"abc"[..]).unwrap_err();
    assert!(
        matches!(
            err,
            NewcError::ShortRead {
                expected: 10,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn invalid_names_and_targets_are_rejected() {
    let mut writer = NewcWriter::new(Vec::new());
    for name in ["", "a\0b", TRAILER] {
        assert!(
            matches!(writer.dir(name, 0o755), Err(NewcError::InvalidName(_))),
            "{name:?}"
        );
    }
    let long = "n".repeat(MAX_NAME_LEN);
    assert!(matches!(
        writer.dir(&long, 0o755),
        Err(NewcError::InvalidName(_))
    ));
    assert!(matches!(
        writer.symlink("l", ""),
        Err(NewcError::InvalidSymlinkTarget { .. })
    ));
    assert!(matches!(
        writer.symlink("l", "a\0"),
        Err(NewcError::InvalidSymlinkTarget { .. })
    ));
}

#[test]
fn too_large_file_is_rejected_before_writing() {
    let mut writer = NewcWriter::new(Vec::new());
    let err = writer
        .file("big", 0o644, u64::from(u32::MAX) + 1, &mut io::empty())
        .unwrap_err();
    assert!(matches!(err, NewcError::TooLarge { .. }), "{err}");
    assert!(
        writer.out.is_empty(),
        "nothing written for a rejected member"
    );
}

/// Cross-checks with GNU cpio when it is installed (the reader above is the primary check).
#[test]
fn gnu_cpio_lists_the_archive() {
    let Ok(status) = std::process::Command::new("cpio").arg("--version").output() else {
        eprintln!("cpio not installed; skipping the GNU cpio cross-check");
        return;
    };
    assert!(status.status.success());
    let bytes = archive(|w| {
        w.dir("bin", 0o755)?;
        w.file_bytes("bin/tool", 0o755, b"#!/bin/sh\n")?;
        w.symlink("bin/sh", "tool")?;
        w.node("console", 0o600, NodeKind::Char, 5, 1)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.cpio");
    std::fs::write(&path, &bytes).expect("archive written");
    let out = std::process::Command::new("cpio")
        .args(["-itv", "--quiet", "-F"])
        .arg(&path)
        .output()
        .expect("cpio runs");
    assert!(
        out.status.success(),
        "cpio: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).expect("utf-8 listing");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(
        lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"),
        "{listing}"
    );
    assert!(
        lines[1].starts_with("-rwxr-xr-x")
            && lines[1].contains(" 10 ")
            && lines[1].ends_with(" bin/tool"),
        "{listing}"
    );
    assert!(
        lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with(" bin/sh -> tool"),
        "{listing}"
    );
    assert!(
        lines[3].starts_with("crw-------")
            && lines[3].contains("5,")
            && lines[3].ends_with(" console"),
        "{listing}"
    );
}
