//! Tests of the `store` module.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use super::*;
use std::os::unix::fs::MetadataExt;

fn rule(text: &str) -> Rule {
    text.parse().unwrap()
}

#[test]
fn a_saved_policy_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress").join("policy.json");
    let mut file = PolicyFile::load_or_default(&path).unwrap();
    assert_eq!(file.policy(), &Policy::default());
    assert!(file.set_preset(Some(Preset::Locked)));
    assert!(!file.set_preset(Some(Preset::Locked)));
    assert!(file.add_allow(rule("**.github.com")));
    assert!(file.add_allow(rule("[2001:db8::7]:22")));
    assert!(file.add_deny(rule("gist.github.com")));
    file.save().unwrap();

    let loaded = PolicyFile::load(&path).unwrap();
    assert_eq!(loaded, file);
    assert_eq!(loaded.path(), path);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("policy.json")]);

    let mut edited = loaded;
    assert!(edited.remove(&rule("gist.github.com")));
    edited.save().unwrap();
    assert!(read_policy(&path).unwrap().unwrap().deny.is_empty());
}

#[test]
fn a_missing_file_is_the_default_or_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    assert_eq!(
        PolicyFile::load_or_default(&path).unwrap().into_policy(),
        Policy::default()
    );
    assert!(read_policy(&path).unwrap().is_none());
    match PolicyFile::load(&path) {
        Err(PolicyFileError::Read {
            path: named,
            source,
        }) => {
            assert_eq!(named, path);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    for corrupt in [
        "{not json",
        r#"{"allow": ["a.*.com"]}"#,
        r#"{"preset": "wide-open"}"#,
        r#"{"allow": ["a.com"], "alow": []}"#,
        "",
    ] {
        std::fs::write(&path, corrupt).unwrap();
        let error = PolicyFile::load_or_default(&path).unwrap_err();
        assert!(
            matches!(&error, PolicyFileError::Corrupt { path: named, .. } if *named == path),
            "{corrupt:?}: {error:?}"
        );
        assert!(error.to_string().contains(&path.display().to_string()));
    }
}

#[test]
fn an_oversized_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, vec![b' '; MAX_POLICY_FILE_LEN as usize + 1]).unwrap();
    assert!(matches!(
        read_policy(&path),
        Err(PolicyFileError::TooLarge { len, .. }) if len == MAX_POLICY_FILE_LEN + 1
    ));
}

#[test]
fn saving_where_no_file_can_be_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("policy.json");
    let error = PolicyFile::new(&path, Policy::default())
        .save()
        .unwrap_err();
    assert!(matches!(&error, PolicyFileError::Write { path: named, .. } if *named == path));
}

#[test]
fn saving_replaces_the_file_rather_than_rewriting_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    let mut file = PolicyFile::new(&path, Policy::default());
    file.save().unwrap();
    let first_inode = std::fs::metadata(&path).unwrap().ino();
    file.add_allow(rule("a.com"));
    file.save().unwrap();
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), first_inode);
}
