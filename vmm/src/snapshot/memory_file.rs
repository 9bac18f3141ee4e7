//! Guest memory to a sparse file: only pages the guest ever touched are written; untouched
//! pages stay holes, so a 256 MiB guest that used 40 MiB costs 40 MiB on disk.

use crate::cast::u64_to_usize;
use crate::vstate::memory::GuestMemory;
use crate::vstate::pagemap::{for_each_private_run, PAGE};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};

/// Pages copied per batch (bounds the bounce buffer).
const BATCH_PAGES: u64 = 256;

/// Why guest memory could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    /// An I/O call failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    /// Reading guest memory failed.
    #[error("reading guest memory failed: {0}")]
    Guest(#[source] vm_memory::GuestMemoryError),
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> MemoryFileError {
    move |source| MemoryFileError::Io { what, source }
}

/// Byte ranges `[start, end)` of `file` within `[from, to)` that hold data (not holes).
fn data_ranges(file: &File, from: u64, to: u64) -> Result<Vec<(u64, u64)>, MemoryFileError> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let offset = |at: u64| {
        libc::off_t::try_from(at).map_err(|_| MemoryFileError::Io {
            what: "finding data in guest memory file",
            source: std::io::ErrorKind::InvalidInput.into(),
        })
    };
    let mut pos = from;
    while pos < to {
        let at = offset(pos)?;
        // SAFETY: lseek on a valid fd with valid whence values has no memory effects.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        let Ok(data) = u64::try_from(data) else {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // no data past `pos`
            }
            return Err(MemoryFileError::Io {
                what: "finding data in guest memory file",
                source: err,
            });
        };
        if data >= to {
            break;
        }
        let at = offset(data)?;
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, at, libc::SEEK_HOLE) };
        let hole = u64::try_from(hole).map_or(to, |hole| hole.min(to));
        ranges.push((data, hole));
        pos = hole;
    }
    Ok(ranges)
}

/// Marks pages of this process's mapping `[addr, addr + len)` that are private copies (written
/// by the guest after a MAP_PRIVATE restore).
fn private_pages(addr: u64, len: u64, marks: &mut [bool]) -> Result<(), MemoryFileError> {
    for_each_private_run(addr, len, |first, count| {
        let end = (first + count).min(marks.len() as u64);
        marks[u64_to_usize(first)..u64_to_usize(end)].fill(true);
        Ok(())
    })
    .map_err(io("reading /proc/self/pagemap"))
}

/// Writes guest RAM (mapped from `backing`) to `dest` (already sized) as a sparse file.
/// Returns the number of bytes actually written.
pub fn write_sparse(
    mem: &GuestMemory,
    backing: &File,
    dest: &File,
) -> Result<u64, MemoryFileError> {
    let mut written = 0u64;
    let mut file_offset = 0u64;
    let mut buf = vec![0u8; u64_to_usize(BATCH_PAGES * PAGE)];
    for region in mem.iter() {
        let len = region.len();
        let pages = u64_to_usize(len / PAGE);
        let mut marks = vec![false; pages];
        for (start, end) in data_ranges(backing, file_offset, file_offset + len)? {
            let first = u64_to_usize((start - file_offset) / PAGE);
            let last = u64_to_usize((end - file_offset).div_ceil(PAGE));
            marks[first..last.min(pages)]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        private_pages(region.as_ptr() as u64, len, &mut marks)?;

        let mut page = 0usize;
        while page < pages {
            if !marks[page] {
                page += 1;
                continue;
            }
            let run_end = (page..pages)
                .take_while(|&p| marks[p])
                .take(u64_to_usize(BATCH_PAGES))
                .last()
                .unwrap_or(page)
                + 1;
            let bytes = (run_end - page) * u64_to_usize(PAGE);
            let chunk = &mut buf[..bytes];
            let guest = region.start_addr().0 + page as u64 * PAGE;
            mem.read_slice(chunk, vm_memory::GuestAddress(guest))
                .map_err(MemoryFileError::Guest)?;
            // Write runs of non-zero pages only: zero pages stay holes.
            for (i, p) in chunk.chunks(u64_to_usize(PAGE)).enumerate() {
                if p.iter().any(|&b| b != 0) {
                    let at = file_offset + (page + i) as u64 * PAGE;
                    dest.write_all_at(p, at)
                        .map_err(io("writing the snapshot memory file"))?;
                    written += PAGE;
                }
            }
            page = run_end;
        }
        file_offset += len;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{create_guest_ram, map_guest_ram};
    use std::os::unix::fs::MetadataExt;
    use vm_memory::GuestAddress;

    #[test]
    fn only_touched_pages_are_written_and_content_survives() {
        let ram = create_guest_ram(32).unwrap();
        ram.memory
            .write_slice(&[0xab; 100], GuestAddress(0x10_0000))
            .unwrap();
        ram.memory
            .write_slice(&[0xcd; 8192], GuestAddress(0x1f0_0000))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem");
        let dest = File::create(&path).unwrap();
        dest.set_len(ram.size).unwrap();
        let written = write_sparse(&ram.memory, &ram.file, &dest).unwrap();
        assert_eq!(written, 3 * PAGE);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 32 << 20);
        assert!(
            meta.blocks() * 512 < (1 << 20),
            "file is sparse: {} blocks",
            meta.blocks()
        );

        // Restore it MAP_PRIVATE, dirty a page privately, and snapshot again.
        let file = File::open(&path).unwrap();
        let restored =
            map_guest_ram(&file, ram.size, libc::MAP_PRIVATE | libc::MAP_NORESERVE).unwrap();
        let mut b = [0u8; 100];
        restored
            .read_slice(&mut b, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(b, [0xab; 100]);
        restored
            .write_slice(&[0xee; 10], GuestAddress(0x80_0000))
            .unwrap();
        let path2 = dir.path().join("mem2");
        let dest2 = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path2)
            .unwrap();
        dest2.set_len(ram.size).unwrap();
        let written = write_sparse(&restored, &file, &dest2).unwrap();
        assert_eq!(written, 4 * PAGE, "old pages plus the private one");
        let mut e = [0u8; 10];
        dest2.read_exact_at(&mut e, 0x80_0000).unwrap();
        assert_eq!(e, [0xee; 10]);
    }
}
