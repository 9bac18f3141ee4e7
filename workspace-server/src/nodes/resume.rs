//! Re-establishing a saved table after a restore: each saved node is found again by its path
//! from the root, one lookup per name, parents first, and is live only if the host's identity
//! of what is found there is the saved one (else it is stale: never another file); each saved
//! handle of a live node is opened again, under the guard's rules.

use super::table::{Identity, Node, OpenHandle, Table};
use super::NodeMap;
use crate::saved::{SavedNode, SavedState, ROOT};
use fuse_backend_rs::abi::fuse_abi::FsOptions;
use fuse_backend_rs::api::filesystem::{Context, FileSystem};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;

/// Deepest path resolved: a node further from the root is stale.
pub(super) const MAX_DEPTH: usize = 4096;
/// Open flags a reopen must not repeat: the file exists, and its data must not be cut again.
const NOT_REPEATED: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

/// What a resume found again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumption {
    pub live_nodes: usize,
    pub stale_nodes: usize,
    pub live_handles: usize,
    pub stale_handles: usize,
}

/// A node's resolution: its inner id (`None`: stale) and its depth below the root.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    inner: Option<u64>,
    depth: usize,
}

impl<F: FileSystem<Inode = u64, Handle = u64>> NodeMap<F> {
    /// Takes up `state` (a session this server's table saved, possibly in another process):
    /// the inner file system is initialised again with the kernel's saved options, and every
    /// node and handle is found or marked stale. The table is replaced only at the end, so its
    /// lock is never held across the inner file system's I/O. With `read_only`, no handle is
    /// reopened for writing.
    pub fn resume(&self, state: &SavedState, read_only: bool) -> io::Result<Resumption> {
        self.inner
            .init(FsOptions::from_bits_truncate(state.capable))?;
        let mut table = Table::new(Some(state.session));
        table.capable = state.capable;
        table.next_node = state.next_node;
        table.next_handle = state.next_handle;
        let saved: HashMap<u64, &SavedNode> = state.nodes.iter().map(|n| (n.id, n)).collect();
        let mut resolved = HashMap::from([(
            ROOT,
            Resolved {
                inner: Some(ROOT),
                depth: 0,
            },
        )]);
        let mut summary = Resumption::default();
        for node in &state.nodes {
            self.resolve(node.id, &saved, &mut resolved, &mut table);
            let inner = resolved.get(&node.id).and_then(|r| r.inner);
            let live = inner.is_some();
            table.nodes.insert(
                node.id,
                Node {
                    inner,
                    guest_lookups: node.lookups,
                    inner_lookups: u64::from(live),
                    name: None,
                    identity: identity(node),
                },
            );
            if let Some(inner) = inner {
                table.by_inner.insert(inner, node.id);
                table.name(node.id, (node.parent, node.name.clone()));
                summary.live_nodes += 1;
            } else {
                summary.stale_nodes += 1;
            }
        }
        for handle in &state.handles {
            let node = table.nodes.get(&handle.node).and_then(|n| n.inner);
            let flags = handle.flags & !NOT_REPEATED.cast_unsigned();
            let inner = node.and_then(|node| self.reopen(node, flags, handle.is_dir, read_only));
            if inner.is_some() {
                summary.live_handles += 1;
            } else {
                summary.stale_handles += 1;
            }
            table.handles.insert(
                handle.fh,
                OpenHandle {
                    inner,
                    node: handle.node,
                    flags,
                    is_dir: handle.is_dir,
                },
            );
        }
        *self.lock() = table;
        if let Some(watch) = &self.watch {
            watch.clear();
            watch.watch_root(ROOT);
        }
        Ok(summary)
    }

    /// Resolves `id` and every ancestor not resolved yet, parents first, into `resolved`.
    fn resolve(
        &self,
        id: u64,
        saved: &HashMap<u64, &SavedNode>,
        resolved: &mut HashMap<u64, Resolved>,
        table: &mut Table,
    ) {
        const STALE: Resolved = Resolved {
            inner: None,
            depth: 0,
        };
        // Up to the first ancestor resolved already.
        let mut chain = Vec::new();
        let mut seen = HashSet::new();
        let mut at = id;
        while !resolved.contains_key(&at) {
            let node = match saved.get(&at) {
                // A cycle, a path too deep, or a parent the state does not have.
                _ if !seen.insert(at) || chain.len() > MAX_DEPTH => None,
                Some(node) => Some(*node),
                None => None,
            };
            let Some(node) = node else {
                for id in chain {
                    resolved.insert(id, STALE);
                }
                return;
            };
            if node.name.is_empty() {
                resolved.insert(at, STALE);
                break;
            }
            chain.push(at);
            at = node.parent;
        }
        for id in chain.into_iter().rev() {
            let Some(node) = saved.get(&id) else {
                resolved.insert(id, STALE);
                continue;
            };
            let parent = resolved.get(&node.parent).copied().unwrap_or(STALE);
            let depth = parent.depth + 1;
            let inner = match parent.inner {
                Some(dir) if depth <= MAX_DEPTH => self.find(dir, node, table),
                _ => None,
            };
            resolved.insert(id, Resolved { inner, depth });
        }
    }

    /// The inner id of `node`'s name in inner directory `dir`, if what is there now is the
    /// saved file (and no other live node has it); else the lookup is forgotten again.
    fn find(&self, dir: u64, node: &SavedNode, table: &Table) -> Option<u64> {
        let name = CString::new(node.name.clone()).ok()?;
        let ctx = Context::new();
        let entry = self.inner.lookup(&ctx, dir, &name).ok()?;
        if entry.inode == 0 {
            return None;
        }
        if Identity::of(&entry.attr) == identity(node) && !table.by_inner.contains_key(&entry.inode)
        {
            Some(entry.inode)
        } else {
            self.inner.forget(&ctx, entry.inode, 1);
            None
        }
    }

    /// Opens inner node `node` again with `flags` (a saved handle's, less those not repeated),
    /// if the guard would let it be: directories as directories; files only if regular, and for
    /// writing only if singly linked and the share is not read-only.
    fn reopen(&self, node: u64, flags: u32, is_dir: bool, read_only: bool) -> Option<u64> {
        let ctx = Context::new();
        if is_dir {
            return self.inner.opendir(&ctx, node, flags).ok()?.0;
        }
        let (attr, _) = self.inner.getattr(&ctx, node, None).ok()?;
        let writes = flags & libc::O_ACCMODE.cast_unsigned() != libc::O_RDONLY.cast_unsigned();
        let regular = attr.st_mode & libc::S_IFMT == libc::S_IFREG;
        if !regular || (writes && (read_only || attr.st_nlink != 1)) {
            return None;
        }
        self.inner.open(&ctx, node, flags, 0).ok()?.0
    }
}

fn identity(node: &SavedNode) -> Identity {
    Identity {
        dev: node.dev,
        ino: node.ino,
        file_type: node.file_type,
    }
}
