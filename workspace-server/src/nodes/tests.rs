//! The node map over a scripted inner file system: the ids it gives, the lookups it forwards
//! and forgets, the names it tracks, and how a resume finds nodes again or marks them stale.

use super::resume::MAX_DEPTH;
use super::*;
use crate::saved::{SavedHandle, SavedNode, ROOT};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

const DIR: u32 = libc::S_IFDIR;
const REG: u32 = libc::S_IFREG;

/// `(parent, name)` → `(inner id, st_ino, type)`.
type Tree = HashMap<(u64, Vec<u8>), (u64, u64, u32)>;

/// An inner file system answering from a fixed tree: `(parent, name)` → `(inner id, st_ino,
/// type)`; it records every forget and release it is sent.
#[derive(Debug, Default)]
struct Scripted {
    tree: Mutex<Tree>,
    forgets: Mutex<Vec<(u64, u64)>>,
    released: Mutex<Vec<u64>>,
    next_handle: AtomicU64,
    /// Open answers with no handle.
    no_handles: bool,
    /// What readdirplus lists: `(name, entry inode)`; inode 0 gives a placeholder entry.
    listing: Vec<(&'static str, u64)>,
}

fn stat(ino: u64, file_type: u32) -> stat64 {
    // SAFETY: stat64 is plain data; all zeroes is a valid value.
    let mut st: stat64 = unsafe { std::mem::zeroed() };
    st.st_ino = ino;
    st.st_dev = 7;
    st.st_mode = file_type | 0o644;
    st.st_nlink = 1;
    st
}

fn entry(inode: u64, ino: u64, file_type: u32) -> Entry {
    Entry {
        inode,
        generation: 0,
        attr: stat(ino, file_type),
        attr_flags: 0,
        attr_timeout: Duration::ZERO,
        entry_timeout: Duration::ZERO,
    }
}

impl Scripted {
    fn with(files: &[(u64, &str, u64, u64, u32)]) -> Self {
        let tree = files
            .iter()
            .map(|&(parent, name, inner, ino, kind)| {
                ((parent, name.as_bytes().to_vec()), (inner, ino, kind))
            })
            .collect();
        Self {
            tree: Mutex::new(tree),
            next_handle: AtomicU64::new(100),
            ..Self::default()
        }
    }

    fn forgets(&self) -> Vec<(u64, u64)> {
        self.forgets.lock().unwrap().clone()
    }
}

impl FileSystem for Scripted {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, _capable: FsOptions) -> io::Result<FsOptions> {
        Ok(FsOptions::empty())
    }

    fn lookup(&self, _ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let tree = self.tree.lock().unwrap();
        let &(inner, ino, kind) = tree
            .get(&(parent, name.to_bytes().to_vec()))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        Ok(entry(inner, ino, kind))
    }

    fn forget(&self, _ctx: &Context, inode: u64, count: u64) {
        self.forgets.lock().unwrap().push((inode, count));
    }

    fn batch_forget(&self, _ctx: &Context, requests: Vec<(u64, u64)>) {
        self.forgets.lock().unwrap().extend(requests);
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _h: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        Ok((stat(inode, REG), Duration::ZERO))
    }

    fn open(
        &self,
        _ctx: &Context,
        _inode: u64,
        _flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let handle = (!self.no_handles).then(|| self.next_handle.fetch_add(1, Ordering::Relaxed));
        Ok((handle, OpenOptions::empty(), None))
    }

    fn opendir(
        &self,
        _ctx: &Context,
        _inode: u64,
        _flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        Ok((
            Some(self.next_handle.fetch_add(1, Ordering::Relaxed)),
            OpenOptions::empty(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        _ctx: &Context,
        _inode: u64,
        _flags: u32,
        handle: u64,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.released.lock().unwrap().push(handle);
        Ok(())
    }

    fn unlink(&self, _ctx: &Context, _parent: u64, _name: &CStr) -> io::Result<()> {
        Ok(())
    }

    fn rename(&self, _: &Context, _: u64, _: &CStr, _: u64, _: &CStr, _: u32) -> io::Result<()> {
        Ok(())
    }

    fn link(&self, _ctx: &Context, inode: u64, _parent: u64, _name: &CStr) -> io::Result<Entry> {
        Ok(entry(inode, inode, REG))
    }

    fn readdirplus(
        &self,
        _ctx: &Context,
        _inode: u64,
        _handle: u64,
        _size: u32,
        _offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        for &(name, inode) in &self.listing {
            let dir = DirEntry {
                ino: inode,
                offset: 0,
                type_: 0,
                name: name.as_bytes(),
            };
            if add_entry(dir, entry(inode, inode, REG))? == 0 {
                // As the passthrough does: the entry's lookup is its own to forget.
                if inode != 0 {
                    self.forget(&Context::new(), inode, 1);
                }
                break;
            }
        }
        Ok(())
    }
}

fn name(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

fn lookup(map: &NodeMap<Scripted>, parent: u64, n: &str) -> io::Result<u64> {
    map.lookup(&Context::new(), parent, &name(n))
        .map(|e| e.inode)
}

fn errno<T: std::fmt::Debug>(result: io::Result<T>) -> i32 {
    result.unwrap_err().raw_os_error().unwrap()
}

/// The saved names, by guest id.
fn names(map: &NodeMap<Scripted>) -> HashMap<u64, (u64, String)> {
    map.save(false)
        .unwrap()
        .nodes
        .into_iter()
        .map(|n| (n.id, (n.parent, String::from_utf8(n.name).unwrap())))
        .collect()
}

/// A tree: `a` (inner 10) and `b` (inner 11) under the root, `d` (inner 12, a directory) with
/// `c` (inner 13) in it.
fn tree() -> NodeMap<Scripted> {
    let map = NodeMap::new(Scripted::with(&[
        (ROOT, "a", 10, 110, REG),
        (ROOT, "b", 11, 111, REG),
        (ROOT, "d", 12, 112, DIR),
        (12, "c", 13, 113, REG),
        (ROOT, "..", ROOT, 1, DIR),
    ]));
    map.start_session(5);
    map
}

#[test]
fn guest_ids_start_at_two_and_one_inner_node_keeps_its_id() {
    let map = tree();
    assert_eq!(lookup(&map, ROOT, "a").unwrap(), 2);
    assert_eq!(lookup(&map, ROOT, "b").unwrap(), 3);
    assert_eq!(lookup(&map, ROOT, "a").unwrap(), 2);
    assert_eq!(lookup(&map, ROOT, "..").unwrap(), ROOT);
    let d = lookup(&map, ROOT, "d").unwrap();
    assert_eq!(lookup(&map, d, "c").unwrap(), 5);
    // An id never comes back, even after its node went.
    map.forget(&Context::new(), 3, 1);
    assert_eq!(lookup(&map, ROOT, "b").unwrap(), 6);
}

#[test]
fn a_node_goes_with_the_guests_last_lookup_and_one_inner_forget() {
    let map = tree();
    let ctx = Context::new();
    let a = lookup(&map, ROOT, "a").unwrap();
    lookup(&map, ROOT, "a").unwrap();
    lookup(&map, ROOT, "a").unwrap();
    map.forget(&ctx, a, 2);
    assert!(map.inner().forgets().is_empty());
    assert!(map.getattr(&ctx, a, None).is_ok());
    map.forget(&ctx, a, 1);
    assert_eq!(map.inner().forgets(), vec![(10, 3)]);
    assert_eq!(errno(map.getattr(&ctx, a, None)), libc::EBADF);
    // A forget of an unknown node, or of the root, forwards nothing.
    map.forget(&ctx, 999, 1);
    map.forget(&ctx, ROOT, 1);
    let b = lookup(&map, ROOT, "b").unwrap();
    let a = lookup(&map, ROOT, "a").unwrap();
    map.batch_forget(&ctx, vec![(a, 1), (b, 1), (777, 1)]);
    assert_eq!(map.inner().forgets(), vec![(10, 3), (10, 1), (11, 1)]);
}

#[test]
fn unknown_nodes_and_handles_are_ebadf() {
    let map = tree();
    let ctx = Context::new();
    assert_eq!(errno(lookup(&map, 42, "a")), libc::EBADF);
    assert_eq!(errno(map.getattr(&ctx, 42, None)), libc::EBADF);
    assert_eq!(map.mode_and_links(42), Err(libc::EBADF));
    let a = lookup(&map, ROOT, "a").unwrap();
    assert_eq!(errno(map.getattr(&ctx, a, Some(9))), libc::EBADF);
    assert_eq!(
        errno(map.release(&ctx, a, 0, 9, false, false, None)),
        libc::EBADF
    );
    assert_eq!(map.mode_and_links(a), Ok((REG | 0o644, 1)));
}

#[test]
fn handles_are_the_maps_own_and_go_on_release() {
    let map = tree();
    let ctx = Context::new();
    let a = lookup(&map, ROOT, "a").unwrap();
    let (first, _, _) = map.open(&ctx, a, 0, 0).unwrap();
    let (second, _, _) = map.open(&ctx, a, 0, 0).unwrap();
    assert_eq!((first, second), (Some(1), Some(2)));
    let (dir, _) = map.opendir(&ctx, ROOT, 0).unwrap();
    assert_eq!(dir, Some(3));
    // Released on the wrong node: refused, kept.
    assert_eq!(
        errno(map.release(&ctx, ROOT, 0, 1, false, false, None)),
        libc::EBADF
    );
    map.release(&ctx, a, 0, 1, false, false, None).unwrap();
    assert_eq!(*map.inner().released.lock().unwrap(), vec![100]);
    assert_eq!(
        errno(map.release(&ctx, a, 0, 1, false, false, None)),
        libc::EBADF
    );
    let saved = map.save(false).unwrap();
    let mut fhs: Vec<u64> = saved.handles.iter().map(|h| h.fh).collect();
    fhs.sort_unstable();
    assert_eq!(fhs, vec![2, 3]);
}

#[test]
fn an_open_with_no_inner_handle_records_none() {
    let map = NodeMap::new(Scripted {
        no_handles: true,
        ..Scripted::with(&[(ROOT, "a", 10, 110, REG)])
    });
    map.start_session(1);
    let a = lookup(&map, ROOT, "a").unwrap();
    let (handle, _, _) = map.open(&Context::new(), a, 0, 0).unwrap();
    assert_eq!(handle, None);
    assert!(map.save(false).unwrap().handles.is_empty());
}

#[test]
fn names_follow_lookups_renames_unlinks_and_links() {
    let map = tree();
    let ctx = Context::new();
    let a = lookup(&map, ROOT, "a").unwrap();
    let b = lookup(&map, ROOT, "b").unwrap();
    let d = lookup(&map, ROOT, "d").unwrap();
    assert_eq!(names(&map)[&a], (ROOT, "a".into()));
    // a over b: b loses its name.
    map.rename(&ctx, ROOT, &name("a"), d, &name("b"), 0)
        .unwrap();
    map.rename(&ctx, d, &name("b"), ROOT, &name("b"), 0)
        .unwrap();
    assert_eq!(names(&map)[&a], (ROOT, "b".into()));
    assert_eq!(names(&map)[&b], (ROOT, String::new()));
    // An exchange swaps.
    let c = lookup(&map, d, "c").unwrap();
    map.rename(&ctx, ROOT, &name("b"), d, &name("c"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(names(&map)[&a], (d, "c".into()));
    assert_eq!(names(&map)[&c], (ROOT, "b".into()));
    // An unlink takes the name; a link gives one only to a node without.
    map.unlink(&ctx, ROOT, &name("b")).unwrap();
    assert_eq!(names(&map)[&c], (ROOT, String::new()));
    map.link(&ctx, c, ROOT, &name("again")).unwrap();
    assert_eq!(names(&map)[&c], (ROOT, "again".into()));
    map.link(&ctx, c, d, &name("second")).unwrap();
    assert_eq!(names(&map)[&c], (ROOT, "again".into()));
    // `..` is looked up but never named.
    lookup(&map, ROOT, "..").unwrap();
    assert!(!names(&map).contains_key(&ROOT));
}

#[test]
fn readdirplus_translates_entries_passes_placeholders_and_undoes_undelivered_ones() {
    let map = NodeMap::new(Scripted {
        listing: vec![(".", 0), ("a", 10), ("b", 11)],
        ..Scripted::with(&[])
    });
    map.start_session(1);
    let ctx = Context::new();
    let (dir, _) = map.opendir(&ctx, ROOT, 0).unwrap();
    let mut seen = Vec::new();
    map.readdirplus(&ctx, ROOT, dir.unwrap(), 4096, 0, &mut |d, e| {
        seen.push((String::from_utf8(d.name.to_vec()).unwrap(), e.inode));
        // Room for two entries only.
        Ok(usize::from(seen.len() < 3))
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![(".".into(), 0), ("a".into(), 2), ("b".into(), 3)]
    );
    // b never reached the kernel: gone from the map, its inner lookup forgotten by the inner
    // file system alone.
    assert_eq!(map.inner().forgets(), vec![(11, 1)]);
    assert_eq!(errno(map.getattr(&ctx, 3, None)), libc::EBADF);
    assert_eq!(names(&map)[&2], (ROOT, "a".into()));
}

#[test]
fn destroy_clears_the_table_and_ends_the_session() {
    let map = tree();
    let a = lookup(&map, ROOT, "a").unwrap();
    map.destroy();
    assert_eq!(map.session(), None);
    assert!(map.save(false).is_none());
    assert_eq!(errno(map.getattr(&Context::new(), a, None)), libc::EBADF);
}

fn saved(id: u64, parent: u64, name: &str, ino: u64, file_type: u32) -> SavedNode {
    SavedNode {
        id,
        parent,
        name: name.as_bytes().to_vec(),
        lookups: 2,
        dev: 7,
        ino,
        file_type,
    }
}

fn state(nodes: Vec<SavedNode>, handles: Vec<SavedHandle>) -> SavedState {
    SavedState {
        session: 9,
        capable: 0,
        read_only: false,
        next_node: 50,
        next_handle: 50,
        nodes,
        handles,
    }
}

#[test]
fn a_resume_finds_nodes_by_path_and_identity_and_marks_the_rest_stale() {
    let map = NodeMap::new(Scripted::with(&[
        (ROOT, "d", 12, 112, DIR),
        (12, "c", 13, 113, REG),
        (ROOT, "swapped", 14, 999, REG),
    ]));
    let found = map
        .resume(
            &state(
                vec![
                    saved(20, 21, "c", 113, REG),
                    saved(21, ROOT, "d", 112, DIR),
                    // Another file at its name: stale, its lookup forgotten.
                    saved(22, ROOT, "swapped", 114, REG),
                    // No such name, no name, a parent the state lacks, a cycle.
                    saved(23, ROOT, "missing", 115, REG),
                    saved(24, ROOT, "", 116, REG),
                    saved(25, 40, "x", 117, REG),
                    saved(26, 27, "y", 118, DIR),
                    saved(27, 26, "z", 119, DIR),
                    // Under a stale parent.
                    saved(28, 22, "under", 120, REG),
                ],
                vec![
                    SavedHandle {
                        fh: 3,
                        node: 20,
                        flags: libc::O_RDONLY.cast_unsigned(),
                        is_dir: false,
                    },
                    SavedHandle {
                        fh: 4,
                        node: 22,
                        flags: 0,
                        is_dir: false,
                    },
                    SavedHandle {
                        fh: 5,
                        node: ROOT,
                        flags: 0,
                        is_dir: true,
                    },
                ],
            ),
            false,
        )
        .unwrap();
    assert_eq!(
        found,
        Resumption {
            live_nodes: 2,
            stale_nodes: 7,
            live_handles: 2,
            stale_handles: 1
        }
    );
    assert_eq!(map.inner().forgets(), vec![(14, 1)]);
    let ctx = Context::new();
    assert!(map.getattr(&ctx, 20, Some(3)).is_ok());
    for stale in 22..=28 {
        assert_eq!(
            errno(map.getattr(&ctx, stale, None)),
            libc::ESTALE,
            "node {stale}"
        );
    }
    assert_eq!(errno(lookup(&map, 22, "under")), libc::ESTALE);
    assert_eq!(errno(map.getattr(&ctx, 20, Some(4))), libc::ESTALE);
    // Saved again, a stale node has no name (it stays stale) and a stale handle is left out.
    let again = map.save(false).unwrap();
    let stale = again.nodes.iter().find(|n| n.id == 22).unwrap();
    assert!(stale.name.is_empty());
    let mut fhs: Vec<u64> = again.handles.iter().map(|h| h.fh).collect();
    fhs.sort_unstable();
    assert_eq!(fhs, vec![3, 5]);
    // A stale handle's release only forgets it.
    map.release(&ctx, 22, 0, 4, false, false, None).unwrap();
    assert!(map.inner().released.lock().unwrap().is_empty());
    // Counters carry on; a live node's lookups are the guest's, with one inner lookup.
    assert_eq!(map.session(), Some(9));
    let (fh, _, _) = map.open(&ctx, 20, 0, 0).unwrap();
    assert_eq!(fh, Some(50));
    map.forget(&ctx, 20, 1);
    assert_eq!(map.inner().forgets(), vec![(14, 1)]);
    map.forget(&ctx, 20, 1);
    assert_eq!(map.inner().forgets(), vec![(14, 1), (13, 1)]);
    // A stale node's forget only counts down.
    map.forget(&ctx, 22, 2);
    assert_eq!(map.inner().forgets(), vec![(14, 1), (13, 1)]);
    assert_eq!(errno(map.getattr(&ctx, 22, None)), libc::EBADF);
}

#[test]
fn a_path_deeper_than_the_bound_is_stale() {
    let depth = u64::try_from(MAX_DEPTH).unwrap() + 1;
    let files: Vec<(u64, String, u64, u64, u32)> = (0..depth)
        .map(|i| {
            (
                if i == 0 { ROOT } else { 100 + i - 1 },
                "n".to_string(),
                100 + i,
                100 + i,
                DIR,
            )
        })
        .collect();
    let files: Vec<(u64, &str, u64, u64, u32)> = files
        .iter()
        .map(|(p, n, i, o, k)| (*p, n.as_str(), *i, *o, *k))
        .collect();
    let map = NodeMap::new(Scripted::with(&files));
    let nodes = (0..depth)
        .map(|i| {
            saved(
                2 + i,
                if i == 0 { ROOT } else { 2 + i - 1 },
                "n",
                100 + i,
                DIR,
            )
        })
        .collect();
    let found = map
        .resume(
            &SavedState {
                next_node: depth + 2,
                ..state(nodes, Vec::new())
            },
            false,
        )
        .unwrap();
    assert_eq!(found.live_nodes, MAX_DEPTH);
    assert_eq!(found.stale_nodes, 1);
    assert_eq!(
        errno(map.getattr(&Context::new(), depth + 1, None)),
        libc::ESTALE
    );
}

#[test]
fn writable_handles_are_not_reopened_in_a_read_only_share() {
    let map = NodeMap::new(Scripted::with(&[(ROOT, "a", 10, 110, REG)]));
    let found = map
        .resume(
            &state(
                vec![saved(2, ROOT, "a", 110, REG)],
                vec![
                    SavedHandle {
                        fh: 1,
                        node: 2,
                        flags: libc::O_RDWR.cast_unsigned(),
                        is_dir: false,
                    },
                    SavedHandle {
                        fh: 2,
                        node: 2,
                        flags: libc::O_RDONLY.cast_unsigned(),
                        is_dir: false,
                    },
                ],
            ),
            true,
        )
        .unwrap();
    assert_eq!((found.live_handles, found.stale_handles), (1, 1));
    assert_eq!(
        errno(map.getattr(&Context::new(), 2, Some(1))),
        libc::ESTALE
    );
}
