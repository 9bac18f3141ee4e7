//! Tests of the `watcher` module.

use super::super::{PolicyFile, Preset, TrafficKind};
use super::*;

fn save(path: &Path, json: &str) {
    let policy: Policy = serde_json::from_str(json).unwrap();
    PolicyFile::new(path, policy).save().unwrap();
}

#[test]
fn missing_files_mean_balanced_without_rules() {
    let dir = tempfile::tempdir().unwrap();
    let watcher = PolicyWatcher::new(
        dir.path().join("global.json"),
        Some(dir.path().join("sandbox.json")),
    )
    .unwrap();
    assert_eq!(*watcher.current(), EffectivePolicy::default());
}

#[test]
fn a_change_to_either_file_applies_on_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.json");
    let sandbox = dir.path().join("sandbox.json");
    save(&global, r#"{"preset": "open"}"#);
    let watcher = PolicyWatcher::new(&global, Some(sandbox.clone())).unwrap();
    let first = watcher.current();
    assert_eq!(first.preset(), Preset::Open);
    assert!(
        Arc::ptr_eq(&first, &watcher.current()),
        "unchanged files are not reread"
    );

    save(&sandbox, r#"{"preset": "locked", "allow": ["a.com"]}"#);
    let policy = watcher.current();
    assert_eq!(policy.preset(), Preset::Locked);
    assert!(policy.check_name("a.com", 443, TrafficKind::Tls).allowed);

    save(&global, r#"{"deny": ["a.com"]}"#);
    assert!(
        !watcher
            .current()
            .check_name("a.com", 443, TrafficKind::Tls)
            .allowed
    );

    std::fs::remove_file(&sandbox).unwrap();
    assert_eq!(watcher.current().preset(), Preset::Balanced);
}

#[test]
fn an_edit_in_place_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.json");
    std::fs::write(&global, r#"{"preset": "open"}"#).unwrap();
    let watcher = PolicyWatcher::new(&global, None).unwrap();
    assert_eq!(watcher.current().preset(), Preset::Open);
    std::fs::write(&global, r#"{"preset": "locked"}"#).unwrap();
    assert_eq!(watcher.current().preset(), Preset::Locked);
}

#[test]
fn a_corrupt_file_keeps_the_last_good_policy_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.json");
    save(&global, r#"{"preset": "locked"}"#);
    let watcher = PolicyWatcher::new(&global, None).unwrap();

    std::fs::write(&global, "{broken").unwrap();
    assert!(matches!(
        watcher.refresh(),
        Err(PolicyFileError::Corrupt { path, .. }) if path == global
    ));
    assert_eq!(watcher.current().preset(), Preset::Locked);

    save(&global, r#"{"preset": "open"}"#);
    assert_eq!(watcher.current().preset(), Preset::Open);
}

#[test]
fn a_corrupt_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox.json");
    std::fs::write(&sandbox, r#"{"allow": ["not a rule"]}"#).unwrap();
    let error = PolicyWatcher::new(dir.path().join("global.json"), Some(sandbox.clone()))
        .expect_err("a corrupt sandbox file");
    assert!(matches!(error, PolicyFileError::Corrupt { path, .. } if path == sandbox));
}

#[test]
fn the_watcher_can_be_shared_between_connections() {
    fn shareable<T: Send + Sync>() {}
    shareable::<PolicyWatcher>();
    shareable::<Arc<EffectivePolicy>>();
}

#[test]
fn a_failed_read_is_retried_on_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.json");
    save(&global, r#"{"preset": "locked"}"#);
    let watcher = PolicyWatcher::new(&global, None).unwrap();
    assert_eq!(watcher.current().preset(), Preset::Locked);

    // The file changes, and the first read of it fails (as with EMFILE).
    save(&global, r#"{"preset": "open"}"#);
    let failed = watcher.refresh_with(|path, _| {
        Err(PolicyFileError::Read {
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::EMFILE),
        })
    });
    assert!(matches!(failed, Err(PolicyFileError::Read { .. })));
    // The file has not changed since, but the read is tried again and succeeds.
    assert_eq!(watcher.current().preset(), Preset::Open);
}

#[test]
fn a_directory_in_place_of_the_file_keeps_the_last_policy_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.json");
    save(&global, r#"{"preset": "locked"}"#);
    let watcher = PolicyWatcher::new(&global, None).unwrap();

    std::fs::remove_file(&global).unwrap();
    std::fs::create_dir(&global).unwrap();
    assert!(matches!(
        watcher.refresh(),
        Err(PolicyFileError::Read { path, .. }) if path == global
    ));
    // Not remembered as seen: the same unreadable file fails again rather than passing as
    // unchanged.
    assert!(matches!(
        watcher.refresh(),
        Err(PolicyFileError::Read { .. })
    ));
    assert_eq!(watcher.current().preset(), Preset::Locked);

    std::fs::remove_dir(&global).unwrap();
    save(&global, r#"{"preset": "open"}"#);
    assert_eq!(watcher.current().preset(), Preset::Open);
}

#[test]
fn a_corrupt_file_is_reported_once_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.json");
    save(&global, r#"{"preset": "locked"}"#);
    let watcher = PolicyWatcher::new(&global, None).unwrap();
    std::fs::write(&global, "{broken").unwrap();
    assert!(watcher.refresh().is_err());
    let again = watcher
        .refresh()
        .expect("an unchanged corrupt file is not reread");
    assert_eq!(again.preset(), Preset::Locked);
}
