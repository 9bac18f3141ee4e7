//! Applying changes to a host directory: those that need no guest (deletions, directories,
//! links), files from a stand-in guest, and the refusals that keep the host's own changes.

use super::super::workspace::WorkspaceMode;
use super::*;
use crate::client::fake_guest::fake_vm;

fn record(dir: &Path, mounted_ns: u64) -> WorkspaceRecord {
    WorkspaceRecord {
        dir: dir.to_path_buf(),
        server_pid: None,
        mode: WorkspaceMode::Cow,
        mounted_ns,
        applied: Vec::new(),
    }
}

fn file(mode: u32, size: u64) -> ChangedNode {
    ChangedNode::File { mode, size }
}

/// The record of a mount made after everything now in `dir` (later by more than the coarse
/// clock's slack).
fn mounted_after_its_contents(dir: &Path) -> WorkspaceRecord {
    std::thread::sleep(Duration::from_millis(50));
    record(dir, super::super::workspace::now_ns())
}

fn change(path: &str, kind: ChangeKind, node: ChangedNode) -> WorkspaceChange {
    WorkspaceChange {
        path: path.as_bytes().to_vec(),
        kind,
        node,
    }
}

/// A socket nobody listens on: a change that needs the guest fails there.
const NO_GUEST: &str = "/nonexistent/vsock.sock";

#[test]
fn deletions_directories_and_links_apply_when_the_host_left_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old"), b"x").unwrap();
    std::fs::create_dir_all(dir.path().join("tree/sub")).unwrap();
    std::fs::write(dir.path().join("tree/sub/f"), b"y").unwrap();
    let mut rec = mounted_after_its_contents(dir.path());
    let changes = [
        change("old", ChangeKind::Deleted, file(0o644, 1)),
        change(
            "tree",
            ChangeKind::Deleted,
            ChangedNode::Dir { mode: 0o755 },
        ),
        change(
            "new/dir",
            ChangeKind::Added,
            ChangedNode::Dir { mode: 0o700 },
        ),
        change(
            "link",
            ChangeKind::Added,
            ChangedNode::Symlink {
                target: b"new/dir".to_vec(),
            },
        ),
        change("gone-already", ChangeKind::Deleted, file(0o644, 1)),
    ];
    let outcomes = apply(Path::new(NO_GUEST), &mut rec, &changes);
    for o in &outcomes {
        assert!(
            o.result.is_ok(),
            "{}: {:?}",
            display_path(&o.change.path),
            o.result
        );
    }
    assert!(!dir.path().join("old").exists() && !dir.path().join("tree").exists());
    let meta = std::fs::metadata(dir.path().join("new/dir")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    assert_eq!(
        std::fs::read_link(dir.path().join("link")).unwrap(),
        Path::new("new/dir")
    );
    // What apply wrote is its own, not a host change: applying again is fine.
    let again = apply(Path::new(NO_GUEST), &mut rec, &changes[2..4]);
    assert!(again.iter().all(|o| o.result.is_ok()), "{again:?}");
}

#[test]
fn a_path_the_host_changed_after_the_mount_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = super::super::workspace::now_ns();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("edited"), b"the host's").unwrap();
    std::fs::create_dir_all(dir.path().join("tree")).unwrap();
    std::fs::write(dir.path().join("tree/f"), b"the host's").unwrap();
    let mut rec = record(dir.path(), mounted);
    let changes = [
        change("edited", ChangeKind::Deleted, file(0o644, 1)),
        change(
            "edited",
            ChangeKind::Added,
            ChangedNode::Symlink {
                target: b"x".to_vec(),
            },
        ),
        change(
            "tree",
            ChangeKind::Deleted,
            ChangedNode::Dir { mode: 0o755 },
        ),
        change(
            "missing",
            ChangeKind::Modified,
            ChangedNode::Symlink {
                target: b"x".to_vec(),
            },
        ),
    ];
    for o in apply(Path::new(NO_GUEST), &mut rec, &changes) {
        assert!(matches!(o.result, Err(Refusal::HostChanged)), "{o:?}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("edited")).unwrap(),
        b"the host's"
    );
    assert_eq!(
        std::fs::read(dir.path().join("tree/f")).unwrap(),
        b"the host's"
    );
    assert!(rec.applied.is_empty());
}

#[test]
fn a_file_change_needs_the_guest_and_fails_cleanly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = record(dir.path(), super::super::workspace::now_ns());
    let changes = [change("f", ChangeKind::Added, file(0o644, 3))];
    let outcomes = apply(Path::new(NO_GUEST), &mut rec, &changes);
    assert!(
        matches!(outcomes[0].result, Err(Refusal::Guest(_))),
        "{outcomes:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a temporary was left"
    );
}

#[test]
fn a_file_change_is_written_from_the_guest_beside_its_target_and_renamed_over_it() {
    let vm = fake_vm();
    // The stand-in guest runs on the host: its workspace is the host's directory itself.
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| i.to_le_bytes()[0]).collect();
    std::fs::write(dir.path().join("f"), &content).unwrap();
    let mut rec = mounted_after_its_contents(dir.path());
    let changes = [
        change("f", ChangeKind::Modified, file(0o600, 300_000)),
        change("not-in-the-guest", ChangeKind::Added, file(0o644, 3)),
    ];
    let outcomes = apply(&vm.uds, &mut rec, &changes);
    assert!(outcomes[0].result.is_ok(), "{outcomes:?}");
    assert!(
        matches!(
            &outcomes[1].result,
            Err(Refusal::Guest(GuestReadError::Failed { stderr, .. })) if stderr.contains("not-in-the-guest")
        ),
        "{outcomes:?}"
    );
    assert!(std::fs::read(dir.path().join("f")).unwrap() == content);
    let mode = std::fs::metadata(dir.path().join("f"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"], "a temporary was left");
    assert_eq!(rec.applied.len(), 1);
}

#[test]
fn selection_takes_a_path_and_what_lies_beneath_it() {
    let selected = vec![b"src".to_vec(), b"README".to_vec()];
    assert!(is_selected(b"src", &selected));
    assert!(is_selected(b"src/main.rs", &selected));
    assert!(is_selected(b"README", &selected));
    assert!(!is_selected(b"srcx/main.rs", &selected));
    assert!(!is_selected(b"README.md", &selected));
    assert!(is_selected(b"anything", &[]));
    assert_eq!(display_path(b"a/b\xffc"), "a/b\\xffc");
}
