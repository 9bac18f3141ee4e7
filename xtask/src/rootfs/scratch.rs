//! Removing scratch root trees safely: a tree that still has something mounted inside (a /dev
//! bind mount left by an interrupted mmdebstrap) is refused, because a recursive removal would
//! descend into the mount and delete the host's files.

use anyhow::{bail, Context, Result};
use paddock_protocol::mountinfo;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Removes `path` recursively (nothing to do when it is missing), unless a mount point lies
/// inside it.
pub fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let canonical = fs::canonicalize(path)?;
    let inside = mounts_inside(&mountinfo, &canonical);
    if !inside.is_empty() {
        bail!(
            "{} still has mounts inside ({}); unmount them (umount -R) and retry",
            path.display(),
            inside
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// The mount points of `mountinfo` (octal escapes decoded) at or below `root`.
fn mounts_inside(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(mountinfo::parse_line)
        .map(|mount| PathBuf::from(OsString::from_vec(mount.mount_point)))
        .filter(|mount_point| mount_point.starts_with(root))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 252:0 / / rw,relatime - ext4 /dev/vda rw
60 22 0:5 / /cache/work/k.1/tree/dev rw - devtmpfs udev rw
61 22 0:21 / /cache/work/k.1/my\\040tree/proc rw - proc proc rw
62 22 0:22 / /cache/work/k.10 rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_mounts_below_a_tree_only() {
        let found = mounts_inside(MOUNTINFO, Path::new("/cache/work/k.1"));
        assert_eq!(
            found,
            [
                PathBuf::from("/cache/work/k.1/tree/dev"),
                PathBuf::from("/cache/work/k.1/my tree/proc")
            ]
        );
        assert!(mounts_inside(MOUNTINFO, Path::new("/cache/other")).is_empty());
    }

    #[test]
    fn removes_an_unmounted_tree_and_tolerates_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("xtask-scratch-{}", std::process::id()));
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::write(dir.join("a/b/f"), b"x").unwrap();
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
        remove_tree(&dir).unwrap();
    }
}
