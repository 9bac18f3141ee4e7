//! The table behind [`super::NodeMap`]: what each guest node id and file handle means (the
//! inner file system's id, the guest's and the inner lookup counts, the node's name and host
//! identity), and the bookkeeping each request does to it. No I/O here: the caller holds the
//! table's lock only around these calls.

use super::resume::MAX_DEPTH;
use crate::saved::{SavedHandle, SavedNode, SavedState, ROOT};
use fuse_backend_rs::abi::fuse_abi::stat64;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The first guest node id given out (1 is the root).
const FIRST_NODE: u64 = 2;
/// The first guest file handle given out (0 means "none" to the kernel).
const FIRST_HANDLE: u64 = 1;

/// The host's identity of a file: the same file is the same `(st_dev, st_ino, type)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub file_type: u32,
}

impl Identity {
    pub fn of(attr: &stat64) -> Self {
        Self {
            dev: attr.st_dev,
            ino: attr.st_ino,
            file_type: attr.st_mode & libc::S_IFMT,
        }
    }
}

/// A name: the parent's guest node id and the name's bytes.
pub type Name = (u64, Vec<u8>);

/// One guest node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The inner file system's id; `None`: stale (not found again after a resume).
    pub inner: Option<u64>,
    /// Lookups the guest's kernel holds.
    pub guest_lookups: u64,
    /// Lookups this map holds on the inner id (forgotten at once when the guest's reach 0).
    pub inner_lookups: u64,
    /// Where it was last seen, if it is still there as far as the guest's requests tell.
    pub name: Option<Name>,
    pub identity: Identity,
}

/// One guest file handle.
#[derive(Debug, Clone, Copy)]
pub struct OpenHandle {
    /// The inner file system's handle; `None`: stale (not reopened after a resume).
    pub inner: Option<u64>,
    /// The guest node it was opened on.
    pub node: u64,
    /// The flags the inner handle was opened with (a reopen's, after a resume).
    pub flags: u32,
    pub is_dir: bool,
}

/// Every guest node and handle of the session being served.
#[derive(Debug)]
pub struct Table {
    /// The session's id; `None` when no session is served.
    pub session: Option<u64>,
    /// The kernel's `FsOptions` bits at INIT.
    pub capable: u64,
    pub next_node: u64,
    pub next_handle: u64,
    pub nodes: HashMap<u64, Node>,
    /// Guest node id by inner id (live nodes only).
    pub by_inner: HashMap<u64, u64>,
    /// Guest node id by name.
    pub by_name: HashMap<Name, u64>,
    pub handles: HashMap<u64, OpenHandle>,
}

impl Default for Table {
    fn default() -> Self {
        Self::new(None)
    }
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

fn estale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

impl Table {
    /// An empty table (the root alone) for `session`.
    pub fn new(session: Option<u64>) -> Self {
        let root = Node {
            inner: Some(ROOT),
            guest_lookups: 0,
            inner_lookups: 0,
            name: None,
            identity: Identity::default(),
        };
        Self {
            session,
            capable: 0,
            next_node: FIRST_NODE,
            next_handle: FIRST_HANDLE,
            nodes: HashMap::from([(ROOT, root)]),
            by_inner: HashMap::from([(ROOT, ROOT)]),
            by_name: HashMap::new(),
            handles: HashMap::new(),
        }
    }

    /// The inner id of guest node `node`: `EBADF` if unknown, `ESTALE` if stale.
    pub fn inner_node(&self, node: u64) -> io::Result<u64> {
        self.nodes
            .get(&node)
            .ok_or_else(ebadf)?
            .inner
            .ok_or_else(estale)
    }

    /// The inner handle of guest handle `fh`: `EBADF` if unknown, `ESTALE` if stale.
    pub fn inner_handle(&self, fh: u64) -> io::Result<u64> {
        self.handles
            .get(&fh)
            .ok_or_else(ebadf)?
            .inner
            .ok_or_else(estale)
    }

    /// The inner handle of guest handle `fh` and the flags the inner one was opened with.
    pub fn inner_handle_and_flags(&self, fh: u64) -> io::Result<(u64, u32)> {
        let handle = self.handles.get(&fh).ok_or_else(ebadf)?;
        Ok((handle.inner.ok_or_else(estale)?, handle.flags))
    }

    /// Takes one guest lookup of the node the inner file system answered with `inner` (its
    /// attributes `attr`) and gives its guest id, a new one if `inner` is not mapped yet.
    pub fn looked_up(&mut self, inner: u64, attr: &stat64) -> u64 {
        if let Some(&guest) = self.by_inner.get(&inner) {
            if let Some(node) = self.nodes.get_mut(&guest) {
                node.guest_lookups = node.guest_lookups.saturating_add(1);
                node.inner_lookups = node.inner_lookups.saturating_add(1);
                return guest;
            }
        }
        let guest = self.next_node;
        self.next_node = self.next_node.saturating_add(1);
        self.nodes.insert(
            guest,
            Node {
                inner: Some(inner),
                guest_lookups: 1,
                inner_lookups: 1,
                name: None,
                identity: Identity::of(attr),
            },
        );
        self.by_inner.insert(inner, guest);
        guest
    }

    /// Undoes one [`Self::looked_up`] whose answer never reached the guest (the inner file
    /// system forgets its own lookup itself).
    pub fn not_delivered(&mut self, guest: u64) {
        let Some(node) = self.nodes.get_mut(&guest) else {
            return;
        };
        node.guest_lookups = node.guest_lookups.saturating_sub(1);
        node.inner_lookups = node.inner_lookups.saturating_sub(1);
        if node.guest_lookups == 0 && guest != ROOT {
            self.remove(guest);
        }
    }

    /// The guest forgets `count` lookups of `guest`; at zero the node goes, and the inner
    /// lookups to forget are returned (none for a stale node or the root).
    pub fn forget(&mut self, guest: u64, count: u64) -> Option<(u64, u64)> {
        if guest == ROOT {
            return None;
        }
        let node = self.nodes.get_mut(&guest)?;
        node.guest_lookups = node.guest_lookups.saturating_sub(count);
        if node.guest_lookups > 0 {
            return None;
        }
        let node = self.remove(guest)?;
        node.inner
            .filter(|_| node.inner_lookups > 0)
            .map(|inner| (inner, node.inner_lookups))
    }

    fn remove(&mut self, guest: u64) -> Option<Node> {
        let node = self.nodes.remove(&guest)?;
        if let Some(inner) = node.inner {
            if self.by_inner.get(&inner) == Some(&guest) {
                self.by_inner.remove(&inner);
            }
        }
        if let Some(name) = &node.name {
            if self.by_name.get(name) == Some(&guest) {
                self.by_name.remove(name);
            }
        }
        Some(node)
    }

    /// `guest` is now known by `name` (instead of any name it had); a node known by that name
    /// before loses it.
    pub fn name(&mut self, guest: u64, name: Name) {
        if guest == ROOT || !self.nodes.contains_key(&guest) {
            return;
        }
        self.unname_at(&name);
        if let Some(node) = self.nodes.get_mut(&guest) {
            if let Some(old) = node.name.replace(name.clone()) {
                if self.by_name.get(&old) == Some(&guest) {
                    self.by_name.remove(&old);
                }
            }
        }
        self.by_name.insert(name, guest);
    }

    /// Names `guest` only if it has no name (a new hard link leaves the known name be).
    pub fn name_if_none(&mut self, guest: u64, name: Name) {
        if self.nodes.get(&guest).is_some_and(|n| n.name.is_none()) {
            self.name(guest, name);
        }
    }

    /// Where `guest` is beneath the root as far as its names tell (the root: an empty path);
    /// `None` for a node with no name, or one more than [`MAX_DEPTH`] names deep.
    pub fn path_of(&self, guest: u64) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut at = guest;
        while at != ROOT {
            if names.len() >= MAX_DEPTH {
                return None;
            }
            let (parent, name) = self.nodes.get(&at)?.name.as_ref()?;
            names.push(name.as_slice());
            at = *parent;
        }
        Some(names.iter().rev().map(|n| OsStr::from_bytes(n)).collect())
    }

    /// The node known by `name` (if any) is no longer there.
    pub fn unname_at(&mut self, name: &Name) {
        if let Some(guest) = self.by_name.remove(name) {
            if let Some(node) = self.nodes.get_mut(&guest) {
                node.name = None;
            }
        }
    }

    /// `from` was renamed to `to`; with `exchange` the two swapped.
    pub fn renamed(&mut self, from: Name, to: Name, exchange: bool) {
        let moved = self.by_name.get(&from).copied();
        let other = self.by_name.get(&to).copied();
        self.unname_at(&from);
        self.unname_at(&to);
        if let Some(guest) = moved {
            self.name(guest, to);
        }
        if let (true, Some(guest)) = (exchange, other) {
            self.name(guest, from);
        }
    }

    /// Records an open handle and gives its guest id.
    pub fn opened(&mut self, inner: u64, node: u64, flags: u32, is_dir: bool) -> u64 {
        let fh = self.next_handle;
        self.next_handle = self.next_handle.saturating_add(1);
        self.handles.insert(
            fh,
            OpenHandle {
                inner: Some(inner),
                node,
                flags,
                is_dir,
            },
        );
        fh
    }

    /// The table as a saved state (`None` when no session is served). Nodes without a name or
    /// stale ones are saved without a name (they cannot be found again); stale handles are not
    /// saved (after the next resume they are unknown: `EBADF`, never reopened).
    pub fn save(&self, read_only: bool) -> Option<SavedState> {
        let session = self.session?;
        let nodes = self
            .nodes
            .iter()
            .filter(|(&id, node)| id != ROOT && node.guest_lookups > 0)
            .map(|(&id, node)| {
                let (parent, name) = match (&node.name, node.inner) {
                    (Some((parent, name)), Some(_)) => (*parent, name.clone()),
                    _ => (ROOT, Vec::new()),
                };
                SavedNode {
                    id,
                    parent,
                    name,
                    lookups: node.guest_lookups,
                    dev: node.identity.dev,
                    ino: node.identity.ino,
                    file_type: node.identity.file_type,
                }
            })
            .collect();
        let handles = self
            .handles
            .iter()
            .filter(|(_, h)| h.inner.is_some() && self.nodes.contains_key(&h.node))
            .map(|(&fh, h)| SavedHandle {
                fh,
                node: h.node,
                flags: h.flags,
                is_dir: h.is_dir,
            })
            .collect();
        Some(SavedState {
            session,
            capable: self.capable,
            read_only,
            next_node: self.next_node,
            next_handle: self.next_handle,
            nodes,
            handles,
        })
    }
}
