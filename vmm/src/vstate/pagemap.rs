//! Which pages of a private file mapping this process has written (a copy-on-write copy is
//! present or swapped, and not file-backed), or touched at all (present or swapped).
//!
//! A reset discards only the written pages, so every clean page keeps its host and KVM mappings and
//! the guest does not fault on it again; the snapshot writer saves them. Two ways to find them,
//! the first the host kernel offers: the `PAGEMAP_SCAN` ioctl (Linux 6.7), which walks only the
//! populated page tables and returns runs, so its cost follows what the guest touched, not its
//! size; else reading `/proc/self/pagemap`, 8 bytes for every page of the range, touched or not.

use crate::cast::u64_to_usize;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};

/// Host page size guest RAM is mapped with (huge pages are disabled on guest RAM).
pub const PAGE: u64 = 4096;
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_FILE_OR_SHARED: u64 = 1 << 61;
/// Pagemap entries read per call: bounds the buffer (512 KiB) whatever the guest's size.
const ENTRIES_PER_READ: u64 = 64 * 1024;

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)` (`linux/fs.h`).
pub const PAGEMAP_SCAN: u64 = 0xc060_6610;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
/// Runs returned per `PAGEMAP_SCAN` call (24 bytes each).
const REGIONS_PER_SCAN: usize = 512;

/// `struct page_region` (`linux/fs.h`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct pm_scan_arg` (`linux/fs.h`).
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// How the written pages are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivatePageWalk {
    /// The `PAGEMAP_SCAN` ioctl: populated page tables only.
    Scan,
    /// Every page's `/proc/self/pagemap` entry.
    Entries,
}

/// Which pages a walk reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// Written since the mapping was made: a private copy, present or swapped out.
    Written,
    /// Touched since the mapping was made, read or written: present or swapped out (a snapshot's
    /// working set).
    Touched,
}

/// Whether this kernel has `PAGEMAP_SCAN`: 0 not yet known, 1 yes, 2 no.
static SCAN_SUPPORT: AtomicU8 = AtomicU8::new(0);

/// Calls `on_run(first_page, page_count)` for each run of consecutive private pages (written
/// since the mapping was made) in this process's mapping `[addr, addr + len)`, in order, the
/// fastest way the kernel offers. `addr` and `len` must be page-aligned.
pub fn for_each_private_run(
    addr: u64,
    len: u64,
    on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for_each_run(PageKind::Written, addr, len, on_run)
}

/// Calls `on_run(first_page, page_count)` for each run of consecutive pages touched (read or
/// written) in this process's mapping `[addr, addr + len)`, in order, the fastest way the kernel
/// offers. `addr` and `len` must be page-aligned.
pub fn for_each_touched_run(
    addr: u64,
    len: u64,
    on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for_each_run(PageKind::Touched, addr, len, on_run)
}

fn for_each_run(
    kind: PageKind,
    addr: u64,
    len: u64,
    mut on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if SCAN_SUPPORT.load(Ordering::Relaxed) != 2 {
        match for_each_run_by(PrivatePageWalk::Scan, kind, addr, len, &mut on_run) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                SCAN_SUPPORT.store(2, Ordering::Relaxed);
            }
            done => {
                SCAN_SUPPORT.store(1, Ordering::Relaxed);
                return done;
            }
        }
    }
    for_each_run_by(PrivatePageWalk::Entries, kind, addr, len, on_run)
}

/// [`for_each_private_run`] the given way. [`PrivatePageWalk::Scan`] on a kernel without
/// `PAGEMAP_SCAN` fails with [`std::io::ErrorKind::Unsupported`] before calling `on_run`.
pub fn for_each_private_run_by(
    walk: PrivatePageWalk,
    addr: u64,
    len: u64,
    on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for_each_run_by(walk, PageKind::Written, addr, len, on_run)
}

/// The pages of `kind` in `[addr, addr + len)`, found the given way.
pub fn for_each_run_by(
    walk: PrivatePageWalk,
    kind: PageKind,
    addr: u64,
    len: u64,
    on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let pagemap = File::open("/proc/self/pagemap")?;
    match walk {
        PrivatePageWalk::Scan => scan(&pagemap, kind, addr, len, on_run),
        PrivatePageWalk::Entries => read_entries(&pagemap, kind, addr, len, on_run),
    }
}

/// Runs merged across the pieces the kernel returns them in (it splits a run where a page's
/// categories change, present to swapped, and where its buffer fills).
struct Runs<F> {
    on_run: F,
    run: Option<(u64, u64)>,
}

impl<F: FnMut(u64, u64) -> std::io::Result<()>> Runs<F> {
    fn add(&mut self, first: u64, count: u64) -> std::io::Result<()> {
        self.run = match self.run {
            Some((start, n)) if start + n == first => Some((start, n + count)),
            Some((start, n)) => {
                (self.on_run)(start, n)?;
                Some((first, count))
            }
            None => Some((first, count)),
        };
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        match self.run.take() {
            Some((start, n)) => (self.on_run)(start, n),
            None => Ok(()),
        }
    }
}

fn scan(
    pagemap: &File,
    kind: PageKind,
    addr: u64,
    len: u64,
    on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let end = addr + len;
    let mut regions = [PageRegion::default(); REGIONS_PER_SCAN];
    let mut runs = Runs { on_run, run: None };
    let mut start = addr;
    // Written: not file-backed (an anonymous copy). Either: present or swapped out.
    let (not_file, file_mask) = match kind {
        PageKind::Written => (PAGE_IS_FILE, PAGE_IS_FILE),
        PageKind::Touched => (0, 0),
    };
    while start < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: REGIONS_PER_SCAN as u64,
            category_inverted: not_file,
            category_mask: file_mask,
            category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            ..PmScanArg::default()
        };
        // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points at `regions`, which has room
        // for `vec_len` entries and outlives the call; the kernel writes only those and
        // `arg.walk_end`.
        let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
        if found < 0 {
            let error = std::io::Error::last_os_error();
            return match error.raw_os_error() {
                // No such ioctl on this kernel (before 6.7), or one that refuses these masks.
                Some(libc::ENOTTY) | Some(libc::EINVAL) if start == addr => {
                    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
                }
                _ => Err(error),
            };
        }
        let found = usize::try_from(found).unwrap_or(0).min(REGIONS_PER_SCAN);
        for region in &regions[..found] {
            let first = region.start.saturating_sub(addr) / PAGE;
            let count = region.end.saturating_sub(region.start) / PAGE;
            runs.add(first, count)?;
        }
        if arg.walk_end <= start || arg.walk_end > end {
            return Err(std::io::Error::other(
                "PAGEMAP_SCAN made no progress through the range",
            ));
        }
        start = arg.walk_end;
    }
    runs.finish()
}

fn read_entries(
    pagemap: &File,
    kind: PageKind,
    addr: u64,
    len: u64,
    on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let pages = len / PAGE;
    let mut buf = vec![0u8; u64_to_usize(ENTRIES_PER_READ.min(pages) * 8)];
    let mut runs = Runs { on_run, run: None };
    let mut done = 0u64;
    while done < pages {
        let count = ENTRIES_PER_READ.min(pages - done);
        let chunk = &mut buf[..u64_to_usize(count * 8)];
        pagemap.read_exact_at(chunk, (addr / PAGE + done) * 8)?;
        for (i, entry) in chunk.chunks_exact(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(entry);
            let entry = u64::from_le_bytes(bytes);
            let touched = entry & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0;
            let wanted = match kind {
                PageKind::Written => touched && entry & PAGEMAP_FILE_OR_SHARED == 0,
                PageKind::Touched => touched,
            };
            if wanted {
                runs.add(done + i as u64, 1)?;
            }
        }
        done += count;
    }
    runs.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private mapping of a 16-page file, as guest RAM is after a restore.
    fn private_mapping(file: &File) -> (*mut u8, u64) {
        private_mapping_of(file, 16)
    }

    /// A private mapping of the first `pages` pages of `file`.
    fn private_mapping_of(file: &File, pages: u64) -> (*mut u8, u64) {
        let len = pages * PAGE;
        // SAFETY: a fresh private mapping of a valid fd, nothing else at the returned address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                u64_to_usize(len),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        (addr.cast(), len)
    }

    /// The written runs, found every way this kernel offers (which must agree).
    fn runs(addr: *mut u8, len: u64) -> Vec<(u64, u64)> {
        runs_of(PageKind::Written, addr, len)
    }

    /// The runs of `kind`, found every way this kernel offers (which must agree).
    fn runs_of(kind: PageKind, addr: *mut u8, len: u64) -> Vec<(u64, u64)> {
        let mut by_walk = Vec::new();
        for walk in [PrivatePageWalk::Entries, PrivatePageWalk::Scan] {
            let mut runs = Vec::new();
            match for_each_run_by(walk, kind, addr as u64, len, |first, n| {
                runs.push((first, n));
                Ok(())
            }) {
                Ok(()) => by_walk.push(runs),
                Err(e)
                    if walk == PrivatePageWalk::Scan
                        && e.kind() == std::io::ErrorKind::Unsupported =>
                {
                    eprintln!("this kernel has no PAGEMAP_SCAN");
                }
                Err(e) => panic!("{walk:?}: {e}"),
            }
        }
        let mut auto = Vec::new();
        for_each_run(kind, addr as u64, len, |first, n| {
            auto.push((first, n));
            Ok(())
        })
        .unwrap();
        for runs in &by_walk {
            assert_eq!(runs, &auto);
        }
        auto
    }

    #[test]
    fn finds_written_pages_not_read_ones() {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&[1u8; u64_to_usize(16 * PAGE)], 0)
            .unwrap();
        let (addr, len) = private_mapping(&file);
        // SAFETY: every offset below is inside the 16-page mapping made above.
        unsafe {
            let _ = std::ptr::read_volatile(addr.add(u64_to_usize(PAGE))); // read only: clean
            for page in [2usize, 3, 4, 9, 15] {
                std::ptr::write_volatile(addr.add(page * u64_to_usize(PAGE)), 7);
            }
        }
        assert_eq!(runs(addr, len), vec![(2, 3), (9, 1), (15, 1)]);
        // Touched: the read page too (and whatever the kernel mapped around it on the read
        // fault: fault-around maps neighbours already in the page cache).
        let touched = runs_of(PageKind::Touched, addr, len);
        for page in [1u64, 2, 3, 4, 9, 15] {
            assert!(
                touched.iter().any(|&(f, n)| (f..f + n).contains(&page)),
                "page {page} not in {touched:?}"
            );
        }
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(addr.cast(), u64_to_usize(len)) };
    }

    #[test]
    fn runs_longer_than_one_scan_and_a_last_page_are_whole() {
        // More runs than one PAGEMAP_SCAN call returns, then a long run up to the very end.
        let pages = 4 * REGIONS_PER_SCAN as u64 + 300;
        let file = tempfile::tempfile().unwrap();
        file.set_len(pages * PAGE).unwrap();
        let (addr, len) = private_mapping_of(&file, pages);
        let mut expected = Vec::new();
        let alternating = 4 * REGIONS_PER_SCAN as u64;
        for page in (0..alternating).step_by(2) {
            expected.push((page, 1));
        }
        expected.push((alternating + 100, 200));
        for &(first, n) in &expected {
            for page in first..first + n {
                // SAFETY: every page written is inside the mapping.
                unsafe { std::ptr::write_volatile(addr.add(u64_to_usize(page * PAGE)), 1) };
            }
        }
        // A read between the written pages keeps them apart.
        // SAFETY: inside the mapping.
        unsafe { std::ptr::read_volatile(addr.add(u64_to_usize(PAGE))) };
        assert_eq!(runs(addr, len), expected);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(addr.cast(), u64_to_usize(len)) };
    }

    #[test]
    fn an_untouched_mapping_has_no_private_pages() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(16 * PAGE).unwrap();
        let (addr, len) = private_mapping(&file);
        assert!(runs(addr, len).is_empty());
        assert!(runs_of(PageKind::Touched, addr, len).is_empty());
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(addr.cast(), u64_to_usize(len)) };
    }
}
