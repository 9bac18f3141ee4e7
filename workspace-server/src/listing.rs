//! Directory listings whose offsets stay valid while the directory changes under them.
//!
//! The passthrough file system answers each `READDIR` by seeking its directory descriptor to
//! the offset the guest's kernel sends and reading on. On a host file system whose directory
//! offsets are positions in a list (tmpfs before Linux 6.6, for one), a seek after entries were
//! removed lands past entries never returned: `rm -rf` over the share left files behind
//! ("Directory not empty"). So the whole listing is read once, when the guest starts reading
//! at offset 0, and served from that copy by index; a `READDIRPLUS` looks each entry up as it
//! is served (so the kernel's lookup counts stay exact), and skips one removed meanwhile.
//! Entries added or removed after the start may or may not show, as POSIX allows. The copies
//! held at once are bounded ([`MAX_HELD_BYTES`]); past that a listing is served as the
//! passthrough serves it.

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, DirEntry, Entry, FileSystem};
use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The most bytes of listings held at once, over every open directory of a session: a guest
/// opening many large directories gets the passthrough's own listing past it.
pub const MAX_HELD_BYTES: usize = 256 << 20;
/// What one entry costs besides its name.
const ENTRY_OVERHEAD: usize = 48;
/// Bytes asked of the passthrough per call while reading a listing.
const READ_CHUNK: u32 = 64 << 10;

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    ino: u64,
    type_: u32,
    name: Vec<u8>,
}

impl Listed {
    fn cost(&self) -> usize {
        self.name.len() + ENTRY_OVERHEAD
    }

    fn is_dot_or_dot_dot(&self) -> bool {
        self.name == b"." || self.name == b".."
    }

    /// This entry as the `index`th of its listing (its offset is the next one's index).
    fn dir_entry(&self, index: usize) -> DirEntry<'_> {
        DirEntry {
            ino: self.ino,
            offset: index as u64 + 1,
            type_: self.type_,
            name: &self.name,
        }
    }
}

/// How an open directory is listed.
#[derive(Debug)]
enum Listing {
    /// From this copy, by index.
    Copied(Arc<Vec<Listed>>),
    /// By the passthrough (the copy would have passed [`MAX_HELD_BYTES`]).
    Direct,
}

#[derive(Debug, Default)]
struct Held {
    by_handle: HashMap<u64, Listing>,
    bytes: usize,
}

/// The listings of a session's open directories, by handle.
#[derive(Debug, Default)]
pub struct Listings {
    held: Mutex<Held>,
}

impl Listings {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the listing of `handle` (its directory was released).
    pub fn release(&self, handle: u64) {
        let mut held = self.lock();
        if let Some(Listing::Copied(entries)) = held.by_handle.remove(&handle) {
            let cost: usize = entries.iter().map(Listed::cost).sum();
            held.bytes = held.bytes.saturating_sub(cost);
        }
    }

    /// Forgets every listing (the session ended).
    pub fn clear(&self) {
        *self.lock() = Held::default();
    }

    /// The listing to serve `handle` from at `offset`: read anew at offset 0, else the one held.
    fn for_read<F>(
        &self,
        fs: &F,
        ctx: &Context,
        inode: F::Inode,
        handle: u64,
        offset: u64,
    ) -> io::Result<Option<Arc<Vec<Listed>>>>
    where
        F: FileSystem,
        F::Inode: Copy,
    {
        if offset != 0 {
            return Ok(match self.lock().by_handle.get(&handle) {
                Some(Listing::Copied(entries)) => Some(entries.clone()),
                Some(Listing::Direct) | None => None,
            });
        }
        self.release(handle);
        let budget = MAX_HELD_BYTES.saturating_sub(self.lock().bytes);
        let listing = match read_whole(fs, ctx, inode, handle, budget)? {
            Some(entries) => Listing::Copied(Arc::new(entries)),
            None => Listing::Direct,
        };
        let mut held = self.lock();
        let served = match &listing {
            Listing::Copied(entries) => {
                held.bytes += entries.iter().map(Listed::cost).sum::<usize>();
                Some(entries.clone())
            }
            Listing::Direct => None,
        };
        held.by_handle.insert(handle, listing);
        Ok(served)
    }

    /// `READDIR` of `handle` from `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn readdir<F>(
        &self,
        fs: &F,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()>
    where
        F: FileSystem,
        F::Inode: Copy,
        F::Handle: Copy,
    {
        let Some(entries) = self.for_read(fs, ctx, inode, handle.into(), offset)? else {
            return fs.readdir(ctx, inode, handle, size, offset, add_entry);
        };
        for (index, listed) in entries.iter().enumerate().skip(to_index(offset)) {
            if add_entry(listed.dir_entry(index))? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// `READDIRPLUS` of `handle` from `offset`: each entry looked up (through `lookup`, the
    /// caller's own, so its view of owners applies) as it is served.
    #[allow(clippy::too_many_arguments)]
    pub fn readdirplus<F>(
        &self,
        fs: &F,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        size: u32,
        offset: u64,
        lookup: &dyn Fn(&std::ffi::CStr) -> io::Result<Entry>,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()>
    where
        F: FileSystem,
        F::Inode: Copy,
        F::Handle: Copy,
    {
        let Some(entries) = self.for_read(fs, ctx, inode, handle.into(), offset)? else {
            return fs.readdirplus(ctx, inode, handle, size, offset, add_entry);
        };
        let mut served = 0usize;
        for (index, listed) in entries.iter().enumerate().skip(to_index(offset)) {
            let mut dir_entry = listed.dir_entry(index);
            // `.` and `..` go without a node (node id 0: the kernel takes no reference).
            let entry = if listed.is_dot_or_dot_dot() {
                no_node()
            } else {
                let Ok(name) = CString::new(listed.name.clone()) else {
                    continue;
                };
                match lookup(&name) {
                    Ok(entry) => entry,
                    // Removed since the listing was read: not listed.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    // The entries already in the reply go (the kernel takes their references
                    // and asks again from the next offset); an error with none is the answer.
                    Err(_) if served > 0 => break,
                    Err(e) => return Err(e),
                }
            };
            let node = entry.inode;
            if node != 0 {
                dir_entry.ino = entry.attr.st_ino;
            }
            if add_entry(dir_entry, entry)? == 0 {
                // No room: the kernel never saw this entry, so it holds no reference to it.
                if node != 0 {
                    fs.forget(ctx, F::Inode::from(node), 1);
                }
                break;
            }
            served += 1;
        }
        Ok(())
    }
}

/// The index of the entry after `offset` (offsets are index + 1).
fn to_index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// An entry that gives the kernel no node.
fn no_node() -> Entry {
    Entry {
        inode: 0,
        generation: 0,
        // SAFETY: stat64 is plain data; all zeroes is a valid value.
        attr: unsafe { std::mem::zeroed::<stat64>() },
        attr_flags: 0,
        attr_timeout: Duration::ZERO,
        entry_timeout: Duration::ZERO,
    }
}

/// The whole listing of `handle` through the passthrough, or `None` if it costs more than
/// `budget` bytes.
fn read_whole<F>(
    fs: &F,
    ctx: &Context,
    inode: F::Inode,
    handle: u64,
    budget: usize,
) -> io::Result<Option<Vec<Listed>>>
where
    F: FileSystem,
    F::Inode: Copy,
{
    let mut entries = Vec::new();
    let mut cost = 0usize;
    let mut next = 0u64;
    loop {
        let mut got = 0usize;
        let mut over = false;
        fs.readdir(
            ctx,
            inode,
            F::Handle::from(handle),
            READ_CHUNK,
            next,
            &mut |entry: DirEntry| {
                let listed = Listed {
                    ino: entry.ino,
                    type_: entry.type_,
                    name: entry.name.to_vec(),
                };
                cost += listed.cost();
                if cost > budget {
                    over = true;
                    return Ok(0);
                }
                next = entry.offset;
                entries.push(listed);
                got += 1;
                Ok(entry.name.len().max(1))
            },
        )?;
        if over {
            return Ok(None);
        }
        if got == 0 {
            return Ok(Some(entries));
        }
    }
}

#[cfg(test)]
mod tests;
