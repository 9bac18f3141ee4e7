//! Upper and lower layers built by hand (whiteouts and opaque marks need root: skipped
//! without it), read back as changes.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn layers() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
    std::fs::create_dir_all(lower.join("src")).unwrap();
    std::fs::create_dir_all(upper.join("src")).unwrap();
    std::fs::write(lower.join("README"), b"lower\n").unwrap();
    std::fs::write(lower.join("src/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(lower.join("same"), b"unchanged\n").unwrap();
    (dir, upper, lower)
}

fn summary(changes: &[WorkspaceChange]) -> Vec<(String, ChangeKind)> {
    changes
        .iter()
        .map(|c| (String::from_utf8_lossy(&c.path).into_owned(), c.kind))
        .collect()
}

fn root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn added_and_modified_files_are_listed_and_copies_of_the_lower_are_not() {
    let (_dir, upper, lower) = layers();
    std::fs::write(upper.join("README"), b"upper\n").unwrap();
    std::fs::write(upper.join("same"), b"unchanged\n").unwrap();
    std::fs::set_permissions(
        upper.join("same"),
        std::fs::metadata(lower.join("same")).unwrap().permissions(),
    )
    .unwrap();
    std::fs::write(upper.join("src/new.rs"), b"// new\n").unwrap();
    std::fs::create_dir_all(upper.join("docs/deep")).unwrap();
    std::fs::write(upper.join("docs/deep/guide.md"), b"# guide\n").unwrap();
    std::os::unix::fs::symlink("README", upper.join("link")).unwrap();
    let changes = list(&upper, &lower).unwrap();
    assert_eq!(
        summary(&changes),
        [
            ("README".into(), ChangeKind::Modified),
            ("docs".into(), ChangeKind::Added),
            ("docs/deep".into(), ChangeKind::Added),
            ("docs/deep/guide.md".into(), ChangeKind::Added),
            ("link".into(), ChangeKind::Added),
            ("src/new.rs".into(), ChangeKind::Added),
        ]
    );
    assert!(matches!(changes[0].node, ChangedNode::File { size: 6, .. }));
    assert_eq!(
        changes[4].node,
        ChangedNode::Symlink {
            target: b"README".to_vec()
        }
    );
}

#[test]
fn a_mode_change_alone_is_a_modification() {
    let (_dir, upper, lower) = layers();
    std::fs::write(upper.join("same"), b"unchanged\n").unwrap();
    std::fs::set_permissions(upper.join("same"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(lower.join("same"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let changes = list(&upper, &lower).unwrap();
    assert_eq!(summary(&changes), [("same".into(), ChangeKind::Modified)]);
    assert_eq!(
        changes[0].node,
        ChangedNode::File {
            mode: 0o755,
            size: 10
        }
    );
}

#[test]
fn whiteouts_are_deletions_and_opaque_directories_hide_the_lower() {
    if !root() {
        eprintln!("skipped: whiteouts and trusted xattrs need root");
        return;
    }
    let (_dir, upper, lower) = layers();
    let whiteout = |path: &Path| {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; makes a 0:0 character device, overlayfs's whiteout.
        let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(made, 0);
    };
    whiteout(&upper.join("README"));
    whiteout(&upper.join("never-in-lower"));
    // `src` removed and made anew with one file: the lower's main.rs is gone.
    std::fs::write(upper.join("src/lib.rs"), b"// lib\n").unwrap();
    let src = CString::new(upper.join("src").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a one-byte value.
    let set = unsafe {
        libc::lsetxattr(
            src.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(set, 0, "{}", io::Error::last_os_error());
    let changes = list(&upper, &lower).unwrap();
    assert_eq!(
        summary(&changes),
        [
            ("README".into(), ChangeKind::Deleted),
            ("src/main.rs".into(), ChangeKind::Deleted),
            ("src/lib.rs".into(), ChangeKind::Added),
        ]
    );
    assert!(matches!(changes[0].node, ChangedNode::File { size: 6, .. }));
}

#[test]
fn a_deep_tree_is_walked_in_order_on_a_small_stack() {
    const DEPTH: usize = 1000;
    /// Far less than a call per level would need.
    const STACK: usize = 64 * 1024;
    let (_dir, upper, lower) = layers();
    let chain = |levels: usize| "d/".repeat(levels);
    std::fs::create_dir_all(upper.join(chain(DEPTH))).unwrap();
    std::fs::write(upper.join(chain(DEPTH)).join("f"), b"deep\n").unwrap();
    // The lower has the upper half of the chain already.
    std::fs::create_dir_all(lower.join(chain(DEPTH / 2))).unwrap();
    let changes = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || list(&upper, &lower))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let added: Vec<_> = (DEPTH / 2 + 1..=DEPTH)
        .map(|levels| {
            (
                chain(levels).trim_end_matches('/').to_string(),
                ChangeKind::Added,
            )
        })
        .chain([(format!("{}f", chain(DEPTH)), ChangeKind::Added)])
        .collect();
    assert_eq!(summary(&changes), added);
}
