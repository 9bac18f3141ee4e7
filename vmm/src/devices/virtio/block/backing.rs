//! The disk's backing file: validated at construction, then read and written with positioned
//! I/O (`pread`/`pwrite`) straight between the file and guest memory, with no bounce buffer.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::volatile_memory::{Error as VolatileMemoryError, VolatileSlice};
use vm_memory::{
    GuestAddress, GuestMemory as _, GuestMemoryError, Permissions, ReadVolatile, WriteVolatile,
};

use super::{BlockError, SECTOR_SIZE};
use crate::devices::virtio::GuestMemory;

/// A disk image file and the part of it the guest sees.
#[derive(Debug)]
pub(super) struct Backing {
    file: File,
    exposed_len: u64,
    read_only: bool,
}

/// Why moving data between the file and guest memory failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum DiskIoError {
    /// The guest buffer is not (entirely) in guest memory.
    #[error("guest buffer at {addr:#x} (+{len}) is not in guest memory: {source}")]
    GuestMemory {
        addr: u64,
        len: u32,
        source: GuestMemoryError,
    },
    /// The file read or write failed, or came up short.
    #[error("{op} of {len} bytes at file offset {offset} failed: {source}")]
    File {
        op: &'static str,
        offset: u64,
        len: u32,
        source: VolatileMemoryError,
    },
    /// `fdatasync` failed.
    #[error("flush failed: {0}")]
    Flush(io::Error),
}

impl Backing {
    /// Checks that `exposed_len` is a non-zero whole number of sectors, that the file holds at
    /// least that many bytes, and that it is open for what the disk allows.
    pub(super) fn new(file: File, exposed_len: u64, read_only: bool) -> Result<Self, BlockError> {
        if exposed_len == 0 || !exposed_len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::ExposedLength(exposed_len));
        }
        let backing = Self {
            file,
            exposed_len,
            read_only,
        };
        backing.check_size()?;
        backing.check_access_mode()?;
        Ok(backing)
    }

    /// Fails if the file is now shorter than the exposed length (it may have been truncated
    /// since it was opened). Works for block devices too, whose metadata length is 0.
    pub(super) fn check_size(&self) -> Result<(), BlockError> {
        let file_len = (&self.file)
            .seek(SeekFrom::End(0))
            .map_err(BlockError::BackingSize)?;
        if file_len < self.exposed_len {
            return Err(BlockError::BackingTooSmall {
                file_len,
                exposed_len: self.exposed_len,
            });
        }
        Ok(())
    }

    fn check_access_mode(&self) -> Result<(), BlockError> {
        // SAFETY: F_GETFL on a descriptor the `File` owns; no memory is passed.
        let flags = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(BlockError::AccessMode(io::Error::last_os_error()));
        }
        let usable = match flags & libc::O_ACCMODE {
            libc::O_RDWR => true,
            libc::O_RDONLY => self.read_only,
            _ => false,
        };
        if !usable {
            return Err(BlockError::BackingAccess {
                read_only: self.read_only,
            });
        }
        Ok(())
    }

    pub(super) fn exposed_len(&self) -> u64 {
        self.exposed_len
    }

    pub(super) fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reads `len` bytes at file `offset` into guest memory at `addr`: one `pread` per guest
    /// memory region the buffer spans (one for any buffer that does not straddle a hole).
    pub(super) fn read_to_guest(
        &self,
        mem: &GuestMemory,
        addr: GuestAddress,
        len: u32,
        offset: u64,
    ) -> Result<(), DiskIoError> {
        let mut file = FileAt::new(&self.file, offset);
        for slice in guest_slices(mem, addr, len, Permissions::Write)? {
            let mut slice = slice.map_err(|source| guest_error(addr, len, source))?;
            file.read_exact_volatile(&mut slice)
                .map_err(|source| DiskIoError::File {
                    op: "read",
                    offset,
                    len,
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes `len` bytes of guest memory at `addr` to file `offset` (one `pwrite` per region).
    pub(super) fn write_from_guest(
        &self,
        mem: &GuestMemory,
        addr: GuestAddress,
        len: u32,
        offset: u64,
    ) -> Result<(), DiskIoError> {
        let mut file = FileAt::new(&self.file, offset);
        for slice in guest_slices(mem, addr, len, Permissions::Read)? {
            let slice = slice.map_err(|source| guest_error(addr, len, source))?;
            file.write_all_volatile(&slice)
                .map_err(|source| DiskIoError::File {
                    op: "write",
                    offset,
                    len,
                    source,
                })?;
        }
        Ok(())
    }

    /// Makes written data durable (`fdatasync`).
    pub(super) fn flush(&self) -> Result<(), DiskIoError> {
        self.file.sync_data().map_err(DiskIoError::Flush)
    }
}

fn guest_error(addr: GuestAddress, len: u32, source: GuestMemoryError) -> DiskIoError {
    DiskIoError::GuestMemory {
        addr: addr.0,
        len,
        source,
    }
}

fn guest_slices(
    mem: &GuestMemory,
    addr: GuestAddress,
    len: u32,
    access: Permissions,
) -> Result<impl Iterator<Item = Result<VolatileSlice<'_, ()>, GuestMemoryError>> + '_, DiskIoError>
{
    mem.get_slices(addr, len as usize, access)
        .map_err(|source| guest_error(addr, len, source))
}

/// A file read or written at an advancing offset with `pread`/`pwrite`, so that guest memory can
/// be filled or drained through vm-memory's volatile I/O traits without touching the file's
/// own position.
struct FileAt<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> FileAt<'a> {
    fn new(file: &'a File, offset: u64) -> Self {
        Self { file, offset }
    }

    fn file_offset(&self) -> Result<libc::off_t, VolatileMemoryError> {
        libc::off_t::try_from(self.offset)
            .map_err(|_| VolatileMemoryError::IOError(io::Error::from(io::ErrorKind::InvalidInput)))
    }

    fn advance(&mut self, done: isize) -> Result<usize, VolatileMemoryError> {
        if done < 0 {
            return Err(VolatileMemoryError::IOError(io::Error::last_os_error()));
        }
        let done = done.unsigned_abs();
        self.offset = self.offset.saturating_add(done as u64);
        Ok(done)
    }
}

impl ReadVolatile for FileAt<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let offset = self.file_offset()?;
        let guard = buf.ptr_guard_mut();
        // SAFETY: the descriptor is owned by a live `File`; `guard` points at `buf.len()` bytes
        // of mapped guest memory that the `VolatileSlice` guarantees valid for writes while the
        // guard lives. The kernel writes at most `buf.len()` bytes there.
        let done = unsafe {
            libc::pread(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        let result = self.advance(done);
        // Mark what may have changed, as vm-memory's own fd reads do.
        let dirty = result.as_ref().map_or(buf.len(), |&n| n);
        buf.bitmap().mark_dirty(0, dirty);
        result
    }
}

impl WriteVolatile for FileAt<'_> {
    fn write_volatile<B: BitmapSlice>(
        &mut self,
        buf: &VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let offset = self.file_offset()?;
        let guard = buf.ptr_guard();
        // SAFETY: the descriptor is owned by a live `File`; `guard` points at `buf.len()` bytes
        // of mapped guest memory that the `VolatileSlice` guarantees valid for reads while the
        // guard lives. The kernel only reads them.
        let done = unsafe {
            libc::pwrite(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        self.advance(done)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use vm_memory::Bytes;

    use super::*;

    /// Guest memory of two adjacent regions, so a buffer can straddle them.
    fn two_regions() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 0x10000), (GuestAddress(0x10000), 0x10000)])
            .unwrap()
    }

    fn disk(bytes: &[u8]) -> (tempfile::NamedTempFile, Backing) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .open(f.path())
            .unwrap();
        let backing = Backing::new(file, bytes.len() as u64, false).unwrap();
        (f, backing)
    }

    #[test]
    fn io_straddling_two_memory_regions_moves_every_byte() {
        let contents: Vec<u8> = (0..8192u32)
            .map(|i| u8::try_from(i * 7 % 256).unwrap())
            .collect();
        let (_f, backing) = disk(&contents);
        let mem = two_regions();
        let addr = GuestAddress(0x10000 - 1000);
        backing.read_to_guest(&mem, addr, 4096, 512).unwrap();
        let mut got = vec![0u8; 4096];
        mem.read_slice(&mut got, addr).unwrap();
        assert_eq!(got, contents[512..512 + 4096]);

        let new: Vec<u8> = (0..2048u32).map(|i| (i % 13) as u8).collect();
        mem.write_slice(&new, addr).unwrap();
        backing.write_from_guest(&mem, addr, 2048, 1024).unwrap();
        let mut on_disk = vec![0u8; 2048];
        std::os::unix::fs::FileExt::read_exact_at(&backing.file, &mut on_disk, 1024).unwrap();
        assert_eq!(on_disk, new);
    }

    #[test]
    fn io_outside_guest_memory_is_an_error() {
        let (_f, backing) = disk(&[0u8; 4096]);
        let mem = two_regions();
        let err = backing
            .read_to_guest(&mem, GuestAddress(0x20000 - 100), 512, 0)
            .unwrap_err();
        assert!(matches!(err, DiskIoError::GuestMemory { .. }), "{err}");
    }

    #[test]
    fn a_short_file_read_is_an_error() {
        let (f, backing) = disk(&[1u8; 4096]);
        f.as_file().set_len(1024).unwrap();
        let mem = two_regions();
        let err = backing
            .read_to_guest(&mem, GuestAddress(0), 2048, 0)
            .unwrap_err();
        assert!(matches!(err, DiskIoError::File { op: "read", .. }), "{err}");
    }
}
