//! Pages this process pins in guest RAM and knows the guest-physical address of (from
//! `/proc/self/pagemap`, which shows frame numbers to root): where the hostile rings and
//! buffers live.

use std::io;
use std::os::unix::fs::FileExt;

/// Guest page size.
pub const PAGE: usize = 4096;
const PFN_MASK: u64 = (1 << 55) - 1;
const PRESENT: u64 = 1 << 63;

/// `count` locked pages, each with its own guest-physical address (not contiguous).
#[derive(Debug)]
pub struct Pages {
    ptr: *mut u8,
    count: usize,
    phys: Vec<u64>,
}

impl Pages {
    /// Allocates, locks and resolves `count` pages.
    pub fn new(count: usize) -> io::Result<Self> {
        let len = count * PAGE;
        // SAFETY: a fresh anonymous mapping; unmapped only in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | libc::MAP_LOCKED,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr: *mut u8 = ptr.cast();
        // Touch every page so each has a frame of its own (not the shared zero page).
        for page in 0..count {
            // SAFETY: inside the mapping made above.
            unsafe { std::ptr::write_volatile(ptr.add(page * PAGE), 0) };
        }
        let pagemap = std::fs::File::open("/proc/self/pagemap")?;
        let mut phys = Vec::with_capacity(count);
        for page in 0..count {
            let mut entry = [0u8; 8];
            let vpn = (ptr as u64 + (page * PAGE) as u64) / PAGE as u64;
            pagemap.read_exact_at(&mut entry, vpn * 8)?;
            let entry = u64::from_le_bytes(entry);
            let pfn = entry & PFN_MASK;
            if entry & PRESENT == 0 || pfn == 0 {
                return Err(io::Error::other(
                    "pagemap shows no frame (not root, or the page is not present)",
                ));
            }
            phys.push(pfn * PAGE as u64);
        }
        Ok(Self { ptr, count, phys })
    }

    /// Guest-physical address of byte `offset` of page `page`.
    pub fn phys(&self, page: usize, offset: usize) -> u64 {
        self.phys[page] + offset as u64
    }

    /// Writes `bytes` at `offset` of page `page` (must fit in the page).
    pub fn write(&self, page: usize, offset: usize, bytes: &[u8]) {
        assert!(page < self.count && offset + bytes.len() <= PAGE);
        // SAFETY: bounds checked above; volatile so the device sees every store.
        unsafe {
            let at = self.ptr.add(page * PAGE + offset);
            for (i, b) in bytes.iter().enumerate() {
                std::ptr::write_volatile(at.add(i), *b);
            }
        }
    }

    /// Reads a little-endian u16 at `offset` of page `page`.
    pub fn read16(&self, page: usize, offset: usize) -> u16 {
        assert!(page < self.count && offset + 2 <= PAGE);
        // SAFETY: bounds checked above; [u8; 2] has no alignment.
        let bytes = unsafe {
            std::ptr::read_volatile(self.ptr.add(page * PAGE + offset).cast::<[u8; 2]>())
        };
        u16::from_le_bytes(bytes)
    }

    /// Zeroes page `page`.
    pub fn clear(&self, page: usize) {
        self.write(page, 0, &[0u8; PAGE]);
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by nothing after this.
        unsafe { libc::munmap(self.ptr.cast(), self.count * PAGE) };
    }
}
