//! The host directories of a live share watched for changes (inotify): one watch on each
//! directory the guest holds a node of, each tied to that node, so a change the host makes there
//! reaches the guest as notifications at once (see [`crate::nodes::NodeMap::host_changed`])
//! and what the guest caches beneath a watched directory can be trusted for long
//! ([`WATCHED_TIMEOUT`]) instead of being asked for again every second.
//!
//! A watch is added by path (inotify has no call that takes a descriptor) and kept only if the
//! directory found there is the node's own file (device and inode as the guest was told); the
//! server serves requests one at a time, so the guest cannot move names meanwhile, and its
//! process sees the shared directory alone. A directory that cannot be watched (the user's
//! watch limit reached) keeps the short timeout: slower, never stale for longer.

use crate::nodes::Identity;
use inotify::{Inotify, WatchDescriptor, WatchMask};
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long the guest may trust names and attributes beneath a watched directory. Changes come
/// as notifications, so this bounds only how long a change no watch sees stays unseen (a write
/// through a shared mapping; files with more than one link keep the short timeout).
pub const WATCHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Directories one share watches at most: inotify watches come out of the host user's own
/// budget (`fs.inotify.max_user_watches`, shared with their editors and tools), and each pins
/// its directory's inode in memory. Past this, a directory is polled.
pub const MAX_WATCHES: usize = 8192;

/// What is watched: a change of a name, of a file's data or attributes, of the directory itself.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

/// File systems whose files other machines change without this kernel seeing it (inotify
/// reports only this kernel's changes): NFS, SMB/CIFS, FUSE (sshfs and the like), 9p, Ceph,
/// AFS, GlusterFS over FUSE, Lustre. A share there is polled.
const REMOTE_FILE_SYSTEMS: [i64; 9] = [
    0x6969,      // NFS
    0x517B,      // SMB
    0xFF53_4D42, // CIFS
    0xFE53_4D42, // SMB2
    0x6573_5546, // FUSE
    0x0102_1997, // 9p
    0x00C3_6400, // Ceph
    0x5346_414F, // AFS
    0x0BD0_0BD0, // Lustre
];

/// Whether `dir` is on a file system other machines may change (see [`REMOTE_FILE_SYSTEMS`]);
/// an error reads as yes.
pub fn changed_elsewhere(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `fs` a valid statfs to fill; the result is checked.
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0 {
        return true;
    }
    REMOTE_FILE_SYSTEMS.contains(&fs.f_type)
}

/// The watches of one share, by guest node and by watch.
#[derive(Debug)]
pub struct HostWatch {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    watches: inotify::Watches,
    by_node: HashMap<u64, WatchDescriptor>,
    by_watch: HashMap<WatchDescriptor, u64>,
}

impl HostWatch {
    /// Watches for the share of `root` (absolute), and the inotify instance their events are
    /// read from.
    pub fn new(root: &Path) -> io::Result<(Self, Inotify)> {
        let inotify = Inotify::init()?;
        let watch = Self {
            root: root.to_path_buf(),
            state: Mutex::new(State {
                watches: inotify.watches(),
                by_node: HashMap::new(),
                by_watch: HashMap::new(),
            }),
        };
        Ok((watch, inotify))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_watched(&self, node: u64) -> bool {
        self.lock().by_node.contains_key(&node)
    }

    /// Watches directory node `node`, found at `relative` beneath the root, if the directory
    /// there is `identity`; whether it is watched now.
    pub fn watch(&self, node: u64, relative: &Path, identity: Identity) -> bool {
        let mut state = self.lock();
        if state.by_node.contains_key(&node) {
            return true;
        }
        if state.by_node.len() >= MAX_WATCHES {
            return false;
        }
        let path = self.root.join(relative);
        let wd = match state.watches.add(&path, mask()) {
            Ok(wd) => wd,
            Err(e) => {
                tracing::debug!("not watching {}: {e}", path.display());
                return false;
            }
        };
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_dir() && m.dev() == identity.dev && m.ino() == identity.ino);
        // One directory, one watch: another node on it means the first is not that file now.
        if !same || state.by_watch.contains_key(&wd) {
            if !state.by_watch.contains_key(&wd) {
                let _ = state.watches.remove(wd);
            }
            return false;
        }
        state.by_node.insert(node, wd.clone());
        state.by_watch.insert(wd, node);
        true
    }

    /// Watches the share's root, as node `node`.
    pub fn watch_root(&self, node: u64) {
        let mut state = self.lock();
        if state.by_node.contains_key(&node) {
            return;
        }
        match state.watches.add(&self.root, mask()) {
            Ok(wd) => {
                state.by_node.insert(node, wd.clone());
                state.by_watch.insert(wd, node);
            }
            Err(e) => tracing::warn!("not watching {}: {e}", self.root.display()),
        }
    }

    /// Stops watching node `node` (a node the guest forgot).
    pub fn unwatch(&self, node: u64) {
        let mut state = self.lock();
        if let Some(wd) = state.by_node.remove(&node) {
            state.by_watch.remove(&wd);
            let _ = state.watches.remove(wd);
        }
    }

    /// Stops every watch (the session ended).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.by_watch.clear();
        let nodes: Vec<WatchDescriptor> = state.by_node.drain().map(|(_, wd)| wd).collect();
        for wd in nodes {
            let _ = state.watches.remove(wd);
        }
    }

    /// The identity of the file at `relative` beneath the root now (not following a last
    /// symbolic link), if there is one.
    pub fn identity_at(&self, relative: &Path) -> Option<Identity> {
        let meta = std::fs::symlink_metadata(self.root.join(relative)).ok()?;
        Some(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            file_type: meta.mode() & libc::S_IFMT,
        })
    }

    /// The node watch `wd` is on.
    pub fn node_of(&self, wd: &WatchDescriptor) -> Option<u64> {
        self.lock().by_watch.get(wd).copied()
    }

    /// The kernel ended watch `wd` itself (its directory is gone).
    pub fn ended(&self, wd: &WatchDescriptor) {
        let mut state = self.lock();
        if let Some(node) = state.by_watch.remove(wd) {
            state.by_node.remove(&node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_directory_is_watched_and_one_that_cannot_be_read_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!changed_elsewhere(dir.path()));
        assert!(changed_elsewhere(&dir.path().join("missing")));
    }
}
