//! A device window mapped from `/dev/mem` (uncached, as a driver sees it) and the virtio-mmio
//! register offsets.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
/// virtio-mmio register offsets (virtio 1.x, section 4.2.2), from virtio-bindings.
pub mod reg {
    use virtio_bindings::virtio_mmio as m;
    pub const MAGIC: usize = m::VIRTIO_MMIO_MAGIC_VALUE as usize;
    pub const VERSION: usize = m::VIRTIO_MMIO_VERSION as usize;
    pub const DEVICE_ID: usize = m::VIRTIO_MMIO_DEVICE_ID as usize;
    pub const DRIVER_FEATURES: usize = m::VIRTIO_MMIO_DRIVER_FEATURES as usize;
    pub const DRIVER_FEATURES_SEL: usize = m::VIRTIO_MMIO_DRIVER_FEATURES_SEL as usize;
    pub const QUEUE_SEL: usize = m::VIRTIO_MMIO_QUEUE_SEL as usize;
    pub const QUEUE_NUM: usize = m::VIRTIO_MMIO_QUEUE_NUM as usize;
    pub const QUEUE_READY: usize = m::VIRTIO_MMIO_QUEUE_READY as usize;
    pub const QUEUE_NOTIFY: usize = m::VIRTIO_MMIO_QUEUE_NOTIFY as usize;
    pub const STATUS: usize = m::VIRTIO_MMIO_STATUS as usize;
    pub const QUEUE_DESC_LOW: usize = m::VIRTIO_MMIO_QUEUE_DESC_LOW as usize;
    pub const QUEUE_AVAIL_LOW: usize = m::VIRTIO_MMIO_QUEUE_AVAIL_LOW as usize;
    pub const QUEUE_USED_LOW: usize = m::VIRTIO_MMIO_QUEUE_USED_LOW as usize;
    pub const CONFIG: usize = m::VIRTIO_MMIO_CONFIG as usize;
}

/// Device status bits, from virtio-bindings.
pub mod status {
    use virtio_bindings::virtio_config as c;
    pub const ACKNOWLEDGE: u32 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE;
    pub const DRIVER: u32 = c::VIRTIO_CONFIG_S_DRIVER;
    pub const DRIVER_OK: u32 = c::VIRTIO_CONFIG_S_DRIVER_OK;
    pub const FEATURES_OK: u32 = c::VIRTIO_CONFIG_S_FEATURES_OK;
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
