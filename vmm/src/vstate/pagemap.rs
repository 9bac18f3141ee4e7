//! Which pages of a private file mapping this process has written: read from
//! `/proc/self/pagemap`, where a copy-on-write copy is present (or swapped) and not file-backed.
//!
//! A reset discards only these pages, so every clean page keeps its host and KVM mappings and
//! the guest does not fault on it again; the snapshot writer saves them.

use crate::cast::u64_to_usize;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Host page size guest RAM is mapped with (huge pages are disabled on guest RAM).
pub const PAGE: u64 = 4096;
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_FILE_OR_SHARED: u64 = 1 << 61;
/// Pagemap entries read per call: bounds the buffer (512 KiB) whatever the guest's size.
const ENTRIES_PER_READ: u64 = 64 * 1024;

/// Calls `on_run(first_page, page_count)` for each run of consecutive private pages (written
/// since the mapping was made) in this process's mapping `[addr, addr + len)`, in order.
/// `addr` and `len` must be page-aligned.
pub fn for_each_private_run(
    addr: u64,
    len: u64,
    mut on_run: impl FnMut(u64, u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let pagemap = File::open("/proc/self/pagemap")?;
    let pages = len / PAGE;
    let mut buf = vec![0u8; u64_to_usize(ENTRIES_PER_READ.min(pages) * 8)];
    let mut run: Option<(u64, u64)> = None;
    let mut done = 0u64;
    while done < pages {
        let count = ENTRIES_PER_READ.min(pages - done);
        let chunk = &mut buf[..u64_to_usize(count * 8)];
        pagemap.read_exact_at(chunk, (addr / PAGE + done) * 8)?;
        for (i, entry) in chunk.chunks_exact(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(entry);
            let entry = u64::from_le_bytes(bytes);
            let page = done + i as u64;
            let private = entry & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0
                && entry & PAGEMAP_FILE_OR_SHARED == 0;
            run = match (run, private) {
                (Some((first, n)), true) => Some((first, n + 1)),
                (None, true) => Some((page, 1)),
                (Some((first, n)), false) => {
                    on_run(first, n)?;
                    None
                }
                (None, false) => None,
            };
        }
        done += count;
    }
    if let Some((first, n)) = run {
        on_run(first, n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private mapping of a 16-page file, as guest RAM is after a restore.
    fn private_mapping(file: &File) -> (*mut u8, u64) {
        use std::os::fd::AsRawFd;
        let len = 16 * PAGE;
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

    fn runs(addr: *mut u8, len: u64) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        for_each_private_run(addr as u64, len, |first, n| {
            runs.push((first, n));
            Ok(())
        })
        .unwrap();
        runs
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
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(addr.cast(), u64_to_usize(len)) };
    }

    #[test]
    fn an_untouched_mapping_has_no_private_pages() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(16 * PAGE).unwrap();
        let (addr, len) = private_mapping(&file);
        assert!(runs(addr, len).is_empty());
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(addr.cast(), u64_to_usize(len)) };
    }
}
