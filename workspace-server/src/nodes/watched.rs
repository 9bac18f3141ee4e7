//! The node map's side of the host watch (`crate::watch`, live shares): which directories are
//! watched (each directory node the guest holds, and the root), how long what the guest caches
//! beneath them may be trusted, and the notifications a host change turns into.

use super::{NodeMap, Table};
use crate::notify::Notifications;
use crate::saved::ROOT;
use crate::watch::WATCHED_TIMEOUT;
use fuse_backend_rs::abi::fuse_abi::{stat64, OpenOptions};
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};
use inotify::{EventMask, WatchDescriptor};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

fn is_directory(attr: &stat64) -> bool {
    attr.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// A change of a name in a directory (not only of the file behind it).
fn names_changed() -> EventMask {
    EventMask::CREATE | EventMask::DELETE | EventMask::MOVED_FROM | EventMask::MOVED_TO
}

impl<F> NodeMap<F> {
    /// Watches directory node `guest` (attributes `attr`) unless it is watched already.
    pub(super) fn watch_if_directory(&self, table: &Table, guest: u64, attr: &stat64) {
        let Some(watch) = &self.watch else { return };
        if !is_directory(attr) || watch.is_watched(guest) {
            return;
        }
        if let Some(path) = table.path_of(guest) {
            watch.watch(guest, &path, super::Identity::of(attr));
        }
    }

    /// Stops watching `guest` if the table no longer has it.
    pub(super) fn unwatch_if_gone(&self, table: &Table, guest: u64) {
        if let Some(watch) = &self.watch {
            if !table.nodes.contains_key(&guest) {
                watch.unwatch(guest);
            }
        }
    }

    /// The long timeout for an entry or attributes (`attr`) under directory node `parent`, if
    /// a change there reaches the guest: the directory is watched, and the file is a directory
    /// or has one link (a change through another link is not seen here).
    pub(super) fn watched_timeout(&self, parent: u64, attr: &stat64) -> Option<Duration> {
        let watch = self.watch.as_ref()?;
        let one_name = is_directory(attr) || attr.st_nlink == 1;
        (one_name && watch.is_watched(parent)).then_some(WATCHED_TIMEOUT)
    }

    /// How the guest's kernel may cache the listing of directory node `guest`: kept across
    /// opens (`CACHE_DIR`, `KEEP_CACHE`) if the directory is watched. A name added or removed
    /// there drops its attributes; the kernel's next listing from the start then finds its
    /// modification time changed (`AUTO_INVAL_DATA`) and reads it again.
    pub(super) fn listing_cache(&self, guest: u64) -> OpenOptions {
        match &self.watch {
            Some(watch) if watch.is_watched(guest) => {
                OpenOptions::CACHE_DIR | OpenOptions::KEEP_CACHE
            }
            _ => OpenOptions::empty(),
        }
    }

    /// How the guest's kernel may cache the data of file node `guest` (inner node `inner`)
    /// it opens: kept across opens (`KEEP_CACHE`) if a change to it reaches the guest (a
    /// regular file with one link, in a watched directory): a host write drops its attributes,
    /// and the next read finds its size or time changed and drops the pages (`AUTO_INVAL_DATA`).
    /// Otherwise each open drops them (close-to-open).
    pub(super) fn data_cache(&self, ctx: &Context, guest: u64, inner: u64) -> OpenOptions
    where
        F: FileSystem<Inode = u64, Handle = u64>,
    {
        if self.watch.is_none() {
            return OpenOptions::empty();
        }
        let Ok((attr, _)) = self.inner.getattr(ctx, inner, None) else {
            return OpenOptions::empty();
        };
        let regular = attr.st_mode & libc::S_IFMT == libc::S_IFREG;
        let parent = {
            let table = self.lock();
            let node = table.nodes.get(&guest);
            node.and_then(|n| n.name.as_ref().map(|(parent, _)| *parent))
        };
        let reached = parent.is_some_and(|p| self.watched_timeout(p, &attr).is_some());
        if regular && reached {
            OpenOptions::KEEP_CACHE
        } else {
            OpenOptions::empty()
        }
    }

    /// The answer to a lookup of a name directory node `parent` does not have: a negative
    /// entry the guest may cache for long if the directory is watched (a name the host adds
    /// there expires it), else none (`ENOENT`, asked again each time).
    pub(super) fn absent(&self, parent: u64) -> Option<Entry> {
        let watch = self.watch.as_ref()?;
        watch.is_watched(parent).then(|| Entry {
            entry_timeout: WATCHED_TIMEOUT,
            ..Entry::default()
        })
    }

    /// How long the guest may trust the attributes `attr` of node `guest`: long if a change
    /// reaches it (see [`Self::watched_timeout`]), else `default`.
    pub(super) fn attr_timeout(&self, guest: u64, attr: &stat64, default: Duration) -> Duration {
        if self.watch.is_none() {
            return default;
        }
        let parent = if guest == ROOT {
            Some(ROOT)
        } else {
            let table = self.lock();
            table
                .nodes
                .get(&guest)
                .and_then(|n| n.name.as_ref().map(|(parent, _)| *parent))
        };
        parent
            .and_then(|parent| self.watched_timeout(parent, attr))
            .unwrap_or(default)
    }

    /// What the guest must be told of a change the host made (an inotify event of watch `wd`:
    /// `mask`, and the name in the watched directory it concerns, if any): the directory's
    /// attributes dropped if names changed there, and the name's entry expired unless it leads
    /// to the file the guest has for it; the named node's attributes dropped. An
    /// overflowed event queue drops everything the guest caches. The caller holds the
    /// connection between replies meanwhile: a lookup's reply and the expiry of what it found
    /// go in that order.
    pub fn host_changed(
        &self,
        wd: &WatchDescriptor,
        mask: EventMask,
        name: Option<&[u8]>,
        notes: &mut Notifications,
    ) {
        let Some(watch) = &self.watch else { return };
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.everything_changed(notes);
            return;
        }
        let Some(dir) = watch.node_of(wd) else { return };
        if mask.contains(EventMask::IGNORED) {
            watch.ended(wd);
            notes.attributes(dir);
            return;
        }
        let table = self.lock();
        if !table.nodes.contains_key(&dir) {
            watch.unwatch(dir);
            return;
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            notes.attributes(dir);
            return;
        };
        let child = table.by_name.get(&(dir, name.to_vec())).copied();
        if mask.intersects(names_changed()) {
            notes.attributes(dir);
            // The guest's entry is right if the name leads to the file the guest has for it
            // (the guest's own creates and renames come back as events too); otherwise it may
            // hold a negative entry for a name the host added, or the host's file replaced or
            // removed the one it has.
            if child.is_none_or(|child| !self.host_still_has(&table, dir, name, child)) {
                notes.entry(dir, name);
            }
        }
        if let Some(child) = child {
            notes.attributes(child);
        }
    }

    /// Whether `name` in directory node `dir` is, on the host now, the file node `child` is.
    fn host_still_has(&self, table: &Table, dir: u64, name: &[u8], child: u64) -> bool {
        let (Some(watch), Some(node)) = (&self.watch, table.nodes.get(&child)) else {
            return false;
        };
        let Some(path) = table.path_of(dir) else {
            return false;
        };
        let path = path.join(std::ffi::OsStr::from_bytes(name));
        watch.identity_at(&path) == Some(node.identity)
    }

    /// Every node's attributes and every named node's entry dropped: what the guest may have
    /// cached is not known to be current (a resume after a snapshot, an overflowed watch).
    pub fn everything_changed(&self, notes: &mut Notifications) {
        let table = self.lock();
        for (&id, node) in &table.nodes {
            notes.attributes(id);
            if let Some((parent, name)) = &node.name {
                notes.entry(*parent, name);
            }
        }
    }
}
