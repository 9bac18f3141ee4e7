//! A device window mapped from `/dev/mem` (uncached, as a driver sees it) and the virtio-mmio
//! register offsets.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
/// virtio-mmio register offsets (virtio 1.x, section 4.2.2).
pub mod reg {
    pub const MAGIC: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_AVAIL_LOW: usize = 0x090;
    pub const QUEUE_USED_LOW: usize = 0x0a0;
    pub const CONFIG: usize = 0x100;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
}

/// A mapped device window.
#[derive(Debug)]
pub struct Window {
    ptr: *mut u8,
    len: usize,
}

impl Window {
    /// Maps `[base, base + len)` of physical memory through `/dev/mem`.
    pub fn map(base: u64, len: usize) -> io::Result<Self> {
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open("/dev/mem")?;
        let offset = libc::off_t::try_from(base).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of a device window; nothing else lives at the address
        // the kernel picks, and the window is unmapped only in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                mem.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn at(&self, offset: usize, width: usize) -> *mut u8 {
        assert!(
            offset + width <= self.len,
            "offset {offset:#x} outside the window"
        );
        // SAFETY: checked just above to lie inside the mapping.
        unsafe { self.ptr.add(offset) }
    }

    /// A 32-bit register read.
    pub fn read32(&self, offset: usize) -> u32 {
        let at = self.at(offset & !3, 4);
        // SAFETY: inside the mapping and 4-byte aligned (the window is page-aligned).
        unsafe { std::ptr::read_volatile(at.cast::<u32>()) }
    }

    /// A 32-bit register write.
    pub fn write32(&self, offset: usize, value: u32) {
        let at = self.at(offset & !3, 4);
        // SAFETY: as in read32.
        unsafe { std::ptr::write_volatile(at.cast::<u32>(), value) }
    }

    /// A one-byte write at any offset (the transport expects 32-bit accesses).
    pub fn write8(&self, offset: usize, value: u8) {
        let at = self.at(offset, 1);
        // SAFETY: inside the mapping; a byte has no alignment.
        unsafe { std::ptr::write_volatile(at, value) }
    }

    /// A two-byte write at an even offset.
    pub fn write16(&self, offset: usize, value: u16) {
        let at = self.at(offset & !1, 2);
        // SAFETY: inside the mapping and 2-byte aligned.
        unsafe { std::ptr::write_volatile(at.cast::<u16>(), value) }
    }

    /// A 64-bit write (split by the CPU or not; the transport sees what it sees).
    pub fn write64(&self, offset: usize, value: u64) {
        let at = self.at(offset & !7, 8);
        // SAFETY: inside the mapping and 8-byte aligned.
        unsafe { std::ptr::write_volatile(at.cast::<u64>(), value) }
    }

    /// Window size in bytes.
    pub fn size(&self) -> usize {
        self.len
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, used by nothing after this.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
