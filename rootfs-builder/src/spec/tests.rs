//! Tests of `ImageSpec`: path rules, layering, fingerprints and the archive it renders.

use super::*;
use crate::newc::tests::parse;

#[test]
fn parents_are_created_and_ordered_before_children() {
    let mut spec = ImageSpec::new();
    spec.bytes_file("/usr/bin/tool", 0o755, b"x".to_vec())
        .unwrap();
    spec.dir("/usr", 0o700).unwrap();
    spec.symlink("/usr-link", "usr").unwrap();
    let bytes = spec.write_newc(Vec::new()).unwrap();
    let members = parse(&bytes);
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["usr", "usr-link", "usr/bin", "usr/bin/tool"]);
    assert_eq!(
        members[0].mode, 0o040_700,
        "explicit dir sets the permissions of an implied one"
    );
    assert_eq!(members[2].mode, 0o040_755);
}

#[test]
fn invalid_paths_are_rejected() {
    let mut spec = ImageSpec::new();
    for path in [
        "", "/", "relative", "/a//b", "/a/./b", "/a/../b", "/a/", "/a\0b",
    ] {
        assert!(
            matches!(spec.dir(path, 0o755), Err(SpecError::InvalidPath(_))),
            "{path:?}"
        );
    }
}

#[test]
fn duplicates_and_non_directory_parents_are_rejected() {
    let mut spec = ImageSpec::new();
    spec.bytes_file("/etc/hostname", 0o644, b"a".to_vec())
        .unwrap();
    assert!(matches!(
        spec.bytes_file("/etc/hostname", 0o644, b"b".to_vec()),
        Err(SpecError::Duplicate(_))
    ));
    assert!(matches!(
        spec.dir("/etc/hostname", 0o755),
        Err(SpecError::Duplicate(_))
    ));
    assert!(matches!(
        spec.dir("/etc/hostname/x", 0o755),
        Err(SpecError::ParentNotDir { .. })
    ));
    spec.symlink("/sbin", "bin").unwrap();
    assert!(matches!(
        spec.symlink("/sbin/init", "x"),
        Err(SpecError::ParentNotDir { .. })
    ));
    spec.dir("/etc", 0o755).unwrap(); // re-adding a directory is fine
}

#[test]
fn extend_layers_specs() {
    let mut base = ImageSpec::new();
    base.dir("/tmp", 0o1777).unwrap();
    base.char_device("/dev/console", 0o600, 5, 1).unwrap();
    let mut top = ImageSpec::new();
    top.bytes_file("/init", 0o755, b"#!/bin/sh\n".to_vec())
        .unwrap();
    top.dir("/dev", 0o755).unwrap();
    top.extend(&base).unwrap();
    assert_eq!(
        top.get("/dev/console").unwrap().kind,
        EntryKind::Node {
            kind: NodeKind::Char,
            major: 5,
            minor: 1
        }
    );
    assert_eq!(top.get("/tmp").unwrap().perm, 0o1777);
    assert!(top.get("/init").is_some());
    assert!(
        matches!(top.extend(&base), Err(SpecError::Duplicate(_))),
        "the same node twice is a conflict"
    );
}

#[test]
fn host_files_are_streamed_into_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("blob");
    let content: Vec<u8> = (0..70_001u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&host, &content).unwrap();
    let mut spec = ImageSpec::new();
    spec.host_file("/blob", 0o644, &host).unwrap();
    let members = parse(&spec.write_newc(Vec::new()).unwrap());
    assert_eq!(members[0].data, content);
}

#[test]
fn missing_host_file_is_an_error() {
    let mut spec = ImageSpec::new();
    spec.host_file("/x", 0o644, "/nonexistent/paddock/file")
        .unwrap();
    assert!(matches!(
        spec.fingerprint(),
        Err(SpecError::HostFile { .. })
    ));
    assert!(matches!(
        spec.write_newc(Vec::new()),
        Err(SpecError::HostFile { .. })
    ));
}

#[test]
fn fingerprint_follows_content_not_host_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, b"same").unwrap();
    std::fs::write(&b, b"same").unwrap();
    let spec_at = |host: &std::path::Path| {
        let mut spec = ImageSpec::new();
        spec.host_file("/f", 0o644, host).unwrap();
        spec
    };
    let fa = spec_at(&a).fingerprint().unwrap();
    assert_eq!(fa.len(), 64);
    assert_eq!(
        fa,
        spec_at(&b).fingerprint().unwrap(),
        "same bytes, same fingerprint"
    );
    std::fs::write(&b, b"diff").unwrap();
    assert_ne!(
        fa,
        spec_at(&b).fingerprint().unwrap(),
        "content change changes the fingerprint"
    );
}

#[test]
fn fingerprint_covers_every_attribute() {
    let base = || {
        let mut spec = ImageSpec::new();
        spec.bytes_file("/f", 0o644, b"x".to_vec()).unwrap();
        spec
    };
    let reference = base().fingerprint().unwrap();
    let variants: [fn(&mut ImageSpec); 4] = [
        |s| {
            s.dir("/d", 0o755).unwrap();
        },
        |s| {
            s.symlink("/l", "f").unwrap();
        },
        |s| {
            s.char_device("/c", 0o600, 5, 1).unwrap();
        },
        |s| {
            s.block_device("/c", 0o600, 5, 1).unwrap();
        },
    ];
    let mut seen = vec![reference.clone()];
    for variant in variants {
        let mut spec = base();
        variant(&mut spec);
        let fp = spec.fingerprint().unwrap();
        assert!(!seen.contains(&fp), "variant fingerprint collides");
        seen.push(fp);
    }
    let mut perm = ImageSpec::new();
    perm.bytes_file("/f", 0o755, b"x".to_vec()).unwrap();
    assert_ne!(perm.fingerprint().unwrap(), reference, "permissions count");
    let mut renamed = ImageSpec::new();
    renamed.bytes_file("/g", 0o644, b"x".to_vec()).unwrap();
    assert_ne!(renamed.fingerprint().unwrap(), reference, "paths count");
}

#[test]
fn equal_specs_render_identical_archives() {
    let build = |order_reversed: bool| {
        let mut spec = ImageSpec::new();
        let mut adds: Vec<(&str, &[u8])> = vec![("/b/two", b"2"), ("/a/one", b"1"), ("/c", b"3")];
        if order_reversed {
            adds.reverse();
        }
        for (path, data) in adds {
            spec.bytes_file(path, 0o644, data.to_vec()).unwrap();
        }
        spec
    };
    let (first, second) = (build(false), build(true));
    assert_eq!(first.fingerprint().unwrap(), second.fingerprint().unwrap());
    assert_eq!(
        first.write_newc(Vec::new()).unwrap(),
        second.write_newc(Vec::new()).unwrap()
    );
}
