//! Guest memory backed by a memfd, laid out around the MMIO gap.
//!
//! A memfd (rather than anonymous memory) lets a snapshot write the guest's pages out as a file
//! and lets restore map a snapshot file in its place.

use crate::arch::x86_64::layout;
use std::fs::File;
use std::os::fd::FromRawFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

/// The guest memory type used throughout the VMM.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Smallest guest we accept (the kernel and initramfs must fit).
pub const MIN_MEMORY_MIB: u64 = 32;
/// Largest guest we accept.
pub const MAX_MEMORY_MIB: u64 = 256 * 1024;

/// Why guest memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is outside the supported range.
    #[error("guest memory size {0} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB")]
    InvalidSize(u64),
    /// memfd_create failed.
    #[error("memfd_create failed: {0}")]
    Memfd(#[source] std::io::Error),
    /// Sizing the memfd failed.
    #[error("sizing the guest memory file failed: {0}")]
    Truncate(#[source] std::io::Error),
    /// Mapping a region failed.
    #[error("mapping guest memory failed: {0}")]
    Mmap(String),
}

/// Guest memory plus the file behind it.
pub struct GuestRam {
    /// The mapped memory.
    pub memory: GuestMemory,
    /// The memfd (or snapshot memory file) the regions map.
    pub file: File,
    /// Total bytes of guest RAM.
    pub size: u64,
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRam")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Creates `mib` MiB of guest RAM in a fresh memfd, shared-mapped (writes land in the memfd).
pub fn create_guest_ram(mib: u64) -> Result<GuestRam, MemoryError> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(MemoryError::InvalidSize(mib));
    }
    let size = mib << 20;
    // SAFETY: the name is a valid NUL-terminated string and flags are valid memfd flags.
    let fd = unsafe { libc::memfd_create(c"paddock-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).map_err(MemoryError::Truncate)?;
    let memory = map_guest_ram(&file, size, libc::MAP_SHARED | libc::MAP_NORESERVE)?;
    Ok(GuestRam { memory, file, size })
}

/// Maps `file` as guest RAM of `size` bytes with the given mmap flags (MAP_SHARED for a live
/// memfd, MAP_PRIVATE for a snapshot's memory file). File offsets follow guest RAM order.
pub fn map_guest_ram(file: &File, size: u64, flags: i32) -> Result<GuestMemory, MemoryError> {
    let mut regions = Vec::new();
    let mut file_offset = 0u64;
    for (base, len) in layout::ram_ranges(size) {
        let fo = FileOffset::new(
            file.try_clone()
                .map_err(|e| MemoryError::Mmap(e.to_string()))?,
            file_offset,
        );
        let len_usize = usize::try_from(len).map_err(|e| MemoryError::Mmap(e.to_string()))?;
        let mapping = MmapRegionBuilder::new(len_usize)
            .with_file_offset(fo)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .build()
            .map_err(|e| MemoryError::Mmap(e.to_string()))?;
        no_huge_pages(mapping.as_ptr(), len_usize);
        let region = GuestRegionMmap::new(mapping, GuestAddress(base))
            .ok_or_else(|| MemoryError::Mmap("region wraps the address space".into()))?;
        regions.push(region);
        file_offset += len;
    }
    GuestMemory::from_regions(regions).map_err(|e| MemoryError::Mmap(e.to_string()))
}

/// Guest RAM is kept in 4 KiB pages: a reset discards exactly the pages the guest dirtied, and
/// huge pages would turn a 4 KiB guest write into a 2 MiB copy-on-write.
fn no_huge_pages(addr: *mut u8, len: usize) {
    // SAFETY: the range is a mapping we just created and own; MADV_NOHUGEPAGE only changes
    // the kernel's page-size policy for it.
    let rc = unsafe { libc::madvise(addr.cast(), len, libc::MADV_NOHUGEPAGE) };
    if rc != 0 {
        tracing::debug!(
            "MADV_NOHUGEPAGE on guest RAM failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Maps `file` privately over guest RAM, at the same host addresses (so KVM's memory slots and
/// every device's view stay valid): the guest now sees the file's contents, copy-on-write.
pub fn remap_private(mem: &GuestMemory, file: &File) -> Result<(), MemoryError> {
    use std::os::fd::AsRawFd;
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    let mut offset = 0u64;
    for region in mem.iter() {
        let len = crate::cast::u64_to_usize(region.len());
        let file_offset = libc::off_t::try_from(offset)
            .map_err(|_| MemoryError::Mmap(format!("file offset {offset} out of range")))?;
        // SAFETY: the target range is exactly a region this GuestMemory mapped and still owns;
        // MAP_FIXED atomically replaces those pages with a mapping of the same size, so no other
        // mapping is touched and every existing pointer into guest RAM stays valid.
        let addr = unsafe {
            libc::mmap(
                region.as_ptr().cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(MemoryError::Mmap(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        no_huge_pages(addr.cast(), len);
        offset += len as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn memfd_ram_is_shared_with_the_file() {
        let ram = create_guest_ram(32).unwrap();
        assert_eq!(ram.memory.last_addr().0, (32 << 20) - 1);
        ram.memory
            .write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        let mut buf = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(&ram.file, &mut buf, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(buf), 0xdead_beef);
    }

    #[test]
    fn remap_then_discard_returns_to_the_file() {
        let ram = create_guest_ram(32).unwrap();
        ram.memory.write_obj(1u64, GuestAddress(0x2000)).unwrap();
        let snapshot = tempfile::tempfile().unwrap();
        snapshot.set_len(32 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&snapshot, &7u64.to_le_bytes(), 0x2000).unwrap();
        remap_private(&ram.memory, &snapshot).unwrap();
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 7);
        ram.memory.write_obj(9u64, GuestAddress(0x2000)).unwrap();
        let mut b = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&snapshot, &mut b, 0x2000).unwrap();
        assert_eq!(
            u64::from_le_bytes(b),
            7,
            "private writes never reach the file"
        );
        // A copy-back limit of 0: the written page is dropped, and the file shows again.
        crate::vstate::reset_pages::return_written_pages(&ram.memory, &snapshot, 0).unwrap();
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 7);
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(matches!(
            create_guest_ram(1),
            Err(MemoryError::InvalidSize(1))
        ));
        assert!(matches!(
            create_guest_ram(u64::MAX),
            Err(MemoryError::InvalidSize(_))
        ));
    }
}
