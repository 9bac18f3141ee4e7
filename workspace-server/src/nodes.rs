//! Guest node ids and file handles of the server's own, so a mount can outlive its connection
//! (docs/WORKSPACE.md): a file system wrapper between the FUSE server and the file system that
//! gives the guest ids it allocates itself, translates them to the inner file system's on every
//! request, and tracks what each one means (its name under its parent, the host's identity of
//! the file, the lookups the guest's kernel holds, the flags a handle was opened with). Saved
//! with a snapshot ([`NodeMap::save`]), that table lets a later server find the same files again
//! ([`NodeMap::resume`], in `nodes/resume.rs`) and answer the guest kernel's old ids.
//!
//! A guest id that was never given out, or was forgotten, is `EBADF`; one whose file could not
//! be found again after a resume is stale, `ESTALE`, whatever the request — never another file.

mod resume;
mod table;
mod watched;

pub use resume::Resumption;
pub use table::Identity;

use crate::guard::NodeFacts;
use crate::saved::{SavedState, ROOT};
use crate::watch::HostWatch;
use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn, FsOptions, OpenOptions};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, GetxattrReply, IoctlData, ListxattrReply,
    SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use std::ffi::CStr;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use table::Table;

/// `RENAME_EXCHANGE` in a rename's flags: the two names swap.
const RENAME_EXCHANGE: u32 = 2;

/// `inner` behind node ids and handles of its own.
#[derive(Debug)]
pub struct NodeMap<F> {
    inner: F,
    table: Mutex<Table>,
    /// The host's directories watched for changes (a live share), see `nodes/watched.rs`.
    watch: Option<HostWatch>,
}

impl<F> NodeMap<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            table: Mutex::new(Table::default()),
            watch: None,
        }
    }

    /// The same map, watching the host's directories the guest holds through `watch`.
    pub fn watching(mut self, watch: HostWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// The file system it wraps.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new mount's session `id`: an empty table (the root alone).
    pub fn start_session(&self, id: u64) {
        *self.lock() = Table::new(Some(id));
        if let Some(watch) = &self.watch {
            watch.clear();
            watch.watch_root(ROOT);
        }
    }

    /// The session being served, if any.
    pub fn session(&self) -> Option<u64> {
        self.lock().session
    }

    /// The session's table as a saved state (`None` when no session is served), taken under
    /// the table's lock once, so it is consistent.
    pub fn save(&self, read_only: bool) -> Option<SavedState> {
        self.lock().save(read_only)
    }

    fn node(&self, node: u64) -> io::Result<u64> {
        self.lock().inner_node(node)
    }

    fn node_and_handle(&self, node: u64, fh: u64) -> io::Result<(u64, u64)> {
        let table = self.lock();
        Ok((table.inner_node(node)?, table.inner_handle(fh)?))
    }

    /// Inner node `node`, inner handle `fh` and the flags that handle was opened with. Reads
    /// and writes pass those flags rather than the guest's: the passthrough applies differing
    /// flags with `F_SETFL`, and when that fails (an `O_PATH` descriptor, or `O_NOATIME` on a
    /// file the server does not own) fuse-backend-rs 0.14 closes the handle's descriptor while
    /// its handle still holds the number, which a later open reuses: one handle would reach
    /// another file.
    fn node_and_open_handle(&self, node: u64, fh: u64) -> io::Result<(u64, u64, u32)> {
        let table = self.lock();
        let (handle, flags) = table.inner_handle_and_flags(fh)?;
        Ok((table.inner_node(node)?, handle, flags))
    }

    fn node_and_maybe_handle(&self, node: u64, fh: Option<u64>) -> io::Result<(u64, Option<u64>)> {
        let table = self.lock();
        let inner = table.inner_node(node)?;
        let handle = fh.map(|fh| table.inner_handle(fh)).transpose()?;
        Ok((inner, handle))
    }

    /// The guest's view of an entry the inner file system answered: its node id translated
    /// (inode 0, a placeholder with no node, passes as it is), one lookup taken, and, unless it
    /// is `.` or `..`, known by `name` under `parent`.
    fn entry(&self, mut entry: Entry, name: Option<(u64, &[u8])>) -> Entry {
        if entry.inode == 0 {
            return entry;
        }
        let mut table = self.lock();
        let guest = table.looked_up(entry.inode, &entry.attr);
        let named = name.filter(|(_, n)| *n != b"." && *n != b"..");
        if let Some((parent, name)) = named {
            table.name(guest, (parent, name.to_vec()));
        }
        entry.inode = guest;
        self.watch_if_directory(&table, guest, &entry.attr);
        if let Some(timeout) =
            named.and_then(|(parent, _)| self.watched_timeout(parent, &entry.attr))
        {
            entry.entry_timeout = timeout;
            entry.attr_timeout = timeout;
        }
        entry
    }
}

impl<F: FileSystem<Inode = u64, Handle = u64>> NodeMap<F> {
    /// Ends a forgotten node's inner lookups.
    fn forward_forget(&self, ctx: &Context, inner: Option<(u64, u64)>) {
        if let Some((inner, count)) = inner {
            self.inner.forget(ctx, inner, count);
        }
    }

    /// Releases guest handle `fh` of `node` through `release` (the inner node and handle), then
    /// forgets it. A stale handle is only forgotten.
    fn release_with(
        &self,
        node: u64,
        fh: u64,
        release: impl FnOnce(u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        let (inner_node, inner_handle) = {
            let mut table = self.lock();
            let open = *table
                .handles
                .get(&fh)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
            if open.node != node {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            let Some(inner_handle) = open.inner else {
                table.handles.remove(&fh);
                return Ok(());
            };
            (table.inner_node(node)?, inner_handle)
        };
        let result = release(inner_node, inner_handle);
        self.lock().handles.remove(&fh);
        result
    }
}

impl<F: FileSystem<Inode = u64, Handle = u64>> NodeFacts for NodeMap<F> {
    fn mode_and_links(&self, node: u64) -> Result<(u32, u64), i32> {
        let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
        let inner = self.node(node).map_err(errno)?;
        match self.inner.getattr(&Context::new(), inner, None) {
            Ok((stat, _)) => Ok((stat.st_mode, stat.st_nlink)),
            Err(e) => Err(errno(e)),
        }
    }
}

impl<F: FileSystem<Inode = u64, Handle = u64>> FileSystem for NodeMap<F> {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let wanted = self.inner.init(capable)?;
        self.lock().capable = capable.bits();
        Ok(wanted)
    }

    fn destroy(&self) {
        self.inner.destroy();
        *self.lock() = Table::default();
        if let Some(watch) = &self.watch {
            watch.clear();
        }
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        match self.inner.lookup(ctx, self.node(parent)?, name) {
            Ok(entry) => Ok(self.entry(entry, Some((parent, name.to_bytes())))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.absent(parent).ok_or(e),
            Err(e) => Err(e),
        }
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        let inner = {
            let mut table = self.lock();
            let inner = table.forget(inode, count);
            self.unwatch_if_gone(&table, inode);
            inner
        };
        self.forward_forget(ctx, inner);
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        let inner: Vec<(u64, u64)> = {
            let mut table = self.lock();
            let mut inner = Vec::new();
            for (node, count) in requests {
                inner.extend(table.forget(node, count));
                self.unwatch_if_gone(&table, node);
            }
            inner
        };
        if !inner.is_empty() {
            self.inner.batch_forget(ctx, inner);
        }
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let guest = inode;
        let (inode, handle) = self.node_and_maybe_handle(inode, handle)?;
        let (attr, timeout) = self.inner.getattr(ctx, inode, handle)?;
        Ok((attr, self.attr_timeout(guest, &attr, timeout)))
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let guest = inode;
        let (inode, handle) = self.node_and_maybe_handle(inode, handle)?;
        let (attr, timeout) = self.inner.setattr(ctx, inode, attr, handle, valid)?;
        Ok((attr, self.attr_timeout(guest, &attr, timeout)))
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, self.node(inode)?)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let entry = self
            .inner
            .symlink(ctx, linkname, self.node(parent)?, name)?;
        Ok(self.entry(entry, Some((parent, name.to_bytes()))))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let entry = self
            .inner
            .mknod(ctx, self.node(parent)?, name, mode, rdev, umask)?;
        Ok(self.entry(entry, Some((parent, name.to_bytes()))))
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let entry = self
            .inner
            .mkdir(ctx, self.node(parent)?, name, mode, umask)?;
        Ok(self.entry(entry, Some((parent, name.to_bytes()))))
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.inner.unlink(ctx, self.node(parent)?, name)?;
        self.lock().unname_at(&(parent, name.to_bytes().to_vec()));
        Ok(())
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.inner.rmdir(ctx, self.node(parent)?, name)?;
        self.lock().unname_at(&(parent, name.to_bytes().to_vec()));
        Ok(())
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let (inner_old, inner_new) = {
            let table = self.lock();
            (table.inner_node(olddir)?, table.inner_node(newdir)?)
        };
        self.inner
            .rename(ctx, inner_old, oldname, inner_new, newname, flags)?;
        self.lock().renamed(
            (olddir, oldname.to_bytes().to_vec()),
            (newdir, newname.to_bytes().to_vec()),
            flags & RENAME_EXCHANGE != 0,
        );
        Ok(())
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        let (inner_node, inner_parent) = {
            let table = self.lock();
            (table.inner_node(inode)?, table.inner_node(newparent)?)
        };
        let entry = self.inner.link(ctx, inner_node, inner_parent, newname)?;
        let entry = self.entry(entry, None);
        if entry.inode != 0 {
            self.lock()
                .name_if_none(entry.inode, (newparent, newname.to_bytes().to_vec()));
        }
        Ok(entry)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let inner = self.node(inode)?;
        let (handle, options, passthrough) = self.inner.open(ctx, inner, flags, fuse_flags)?;
        let handle = handle.map(|h| self.lock().opened(h, inode, flags, false));
        let options = options | self.data_cache(ctx, inode, inner);
        Ok((handle, options, passthrough))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let flags = args.flags;
        let (entry, handle, options, passthrough) =
            self.inner.create(ctx, self.node(parent)?, name, args)?;
        let entry = self.entry(entry, Some((parent, name.to_bytes())));
        let handle = handle.map(|h| self.lock().opened(h, entry.inode, flags, false));
        Ok((entry, handle, options, passthrough))
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        _guest_flags: u32,
    ) -> io::Result<usize> {
        let (inode, handle, flags) = self.node_and_open_handle(inode, handle)?;
        self.inner
            .read(ctx, inode, handle, w, size, offset, lock_owner, flags)
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        _guest_flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        let (inode, handle, flags) = self.node_and_open_handle(inode, handle)?;
        self.inner.write(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.flush(ctx, inode, handle, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.fsync(ctx, inode, datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner
            .fallocate(ctx, inode, handle, mode, offset, length)
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.release_with(inode, handle, |inode, handle| {
            self.inner
                .release(ctx, inode, flags, handle, flush, flock_release, lock_owner)
        })
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, self.node(inode)?)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .setxattr(ctx, self.node(inode)?, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.inner.getxattr(ctx, self.node(inode)?, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.inner.listxattr(ctx, self.node(inode)?, size)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.inner.removexattr(ctx, self.node(inode)?, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let (handle, options) = self.inner.opendir(ctx, self.node(inode)?, flags)?;
        let handle = handle.map(|h| self.lock().opened(h, inode, flags, true));
        Ok((handle, options | self.listing_cache(inode)))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner
            .readdir(ctx, inode, handle, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let parent = inode;
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        let mut translated = |dir: DirEntry, entry: Entry| {
            let entry = self.entry(entry, Some((parent, dir.name)));
            let added = add_entry(dir, entry);
            if entry.inode != 0 {
                match added {
                    // No room: the kernel never saw the entry, and the inner file system
                    // forgets its own lookup of it.
                    Ok(0) => {
                        let mut table = self.lock();
                        table.not_delivered(entry.inode);
                        self.unwatch_if_gone(&table, entry.inode);
                    }
                    Ok(_) => {}
                    // The reply failed: the inner lookup stays, the guest's is taken back.
                    Err(_) => {
                        let inner = {
                            let mut table = self.lock();
                            let inner = table.forget(entry.inode, 1);
                            self.unwatch_if_gone(&table, entry.inode);
                            inner
                        };
                        self.forward_forget(ctx, inner);
                    }
                }
            }
            added
        };
        self.inner
            .readdirplus(ctx, inode, handle, size, offset, &mut translated)
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        self.release_with(inode, handle, |inode, handle| {
            self.inner.releasedir(ctx, inode, flags, handle)
        })
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        self.inner.access(ctx, self.node(inode)?, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.lseek(ctx, inode, handle, offset, whence)
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.getlk(ctx, inode, handle, owner, lock, flags)
    }

    fn setlk(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.setlk(ctx, inode, handle, owner, lock, flags)
    }

    fn setlkw(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.setlkw(ctx, inode, handle, owner, lock, flags)
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        flags: u32,
        cmd: u32,
        data: IoctlData,
        out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner
            .ioctl(ctx, inode, handle, flags, cmd, data, out_size)
    }

    fn bmap(&self, ctx: &Context, inode: u64, block: u64, blocksize: u32) -> io::Result<u64> {
        self.inner.bmap(ctx, self.node(inode)?, block, blocksize)
    }

    fn poll(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        khandle: u64,
        flags: u32,
        events: u32,
    ) -> io::Result<u32> {
        // `khandle` is the kernel's own token for a poll notification, not a file handle.
        let (inode, handle) = self.node_and_handle(inode, handle)?;
        self.inner.poll(ctx, inode, handle, khandle, flags, events)
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
    }

    fn id_remap(&self, ctx: &mut Context) -> io::Result<()> {
        self.inner.id_remap(ctx)
    }
}

#[cfg(test)]
mod tests;
