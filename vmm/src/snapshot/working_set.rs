//! A snapshot's working set: the guest pages a restore touched from the vCPUs' start until
//! guest-init answered, recorded the first time a snapshot is restored. Every later restore asks
//! the kernel to read those pages into the page cache before the vCPUs run (all runs at once,
//! not waited for), instead of the guest faulting them in one synchronous read at a time, and,
//! where the host's KVM has `KVM_PRE_FAULT_MEMORY`, maps them into KVM's stage-2 tables too
//! ([`crate::vstate::prefault`]). ([`WorkingSet::populate`], filling the VMM's page tables,
//! measured slower: docs/BENCHMARKS.md.)
//!
//! The record lives beside the snapshot (`working-set.bin`) and names the memory file it was
//! taken from: a snapshot written again into the same directory has a new memory file, so an
//! old record is never applied to it. The record is a hint: a missing, stale or corrupt one is
//! ignored (with a warning when corrupt), never trusted.
//!
//! Format (little-endian): magic `PDKWSET\0`, version (u32), payload length (u64), CRC32 of
//! the payload (u32); payload: guest RAM bytes (u64), memory file name length (u16) and bytes,
//! run count (u32), then each run as first page and page count (u64 each), pages counted from
//! the start of the memory file.

use crate::cast::u64_to_usize;
use crate::vstate::memory::GuestMemory;
use crate::vstate::pagemap::{for_each_touched_run, PAGE};
use std::io::Write;
use std::path::{Path, PathBuf};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// The record's file name, in the snapshot directory.
pub const FILE_NAME: &str = "working-set.bin";
/// Identifies a working-set record.
pub const MAGIC: [u8; 8] = *b"PDKWSET\0";
/// Bumped on any change to the layout.
pub const VERSION: u32 = 1;
/// magic (8) + version (4) + payload length (8) + CRC32 (4).
const HEADER_LEN: usize = 24;
/// Most runs a record may hold (16 bytes each: 16 MiB); a real working set has a few thousand.
pub const MAX_RUNS: usize = 1 << 20;
/// Longest memory file name (the store's names are far shorter).
const MAX_NAME: usize = 255;
/// Largest record file read: the header and the largest payload a valid record can have.
const MAX_RECORD_BYTES: u64 = (HEADER_LEN + 8 + 2 + MAX_NAME + 4 + MAX_RUNS * 16) as u64;

/// Why a working set could not be recorded, read or populated.
#[derive(Debug, thiserror::Error)]
pub enum WorkingSetError {
    /// Reading or writing the record failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Finding the touched pages failed.
    #[error("finding the guest pages touched since the restore")]
    Walk(#[source] std::io::Error),
    /// Prefetching a run failed.
    #[error("prefetching {pages} guest pages from page {first}")]
    Prefetch {
        /// First page of the run.
        first: u64,
        /// Pages in the run.
        pages: u64,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// Populating a run failed.
    #[error("populating {pages} guest pages from page {first}")]
    Populate {
        /// First page of the run.
        first: u64,
        /// Pages in the run.
        pages: u64,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// Not a working-set record.
    #[error("not a working-set record (bad magic)")]
    BadMagic,
    /// Written by another format version.
    #[error("working-set record version {0} is not supported (this paddock reads {VERSION})")]
    Version(u32),
    /// Shorter than it says, or a length out of bounds.
    #[error("working-set record is truncated or malformed")]
    Malformed,
    /// The payload does not match its checksum.
    #[error("working-set record checksum mismatch (file corrupted)")]
    Checksum,
    /// A run lies outside guest RAM.
    #[error("working-set run of {pages} pages from page {first} lies outside guest RAM")]
    OutOfRange {
        /// First page of the run.
        first: u64,
        /// Pages in the run.
        pages: u64,
    },
}

/// Guest pages touched, as runs of file pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingSet {
    /// Guest RAM size of the snapshot, in bytes.
    pub memory_bytes: u64,
    /// The snapshot's memory file name the record was taken from.
    pub memory_file: String,
    /// `(first page, page count)` runs, pages counted from the start of the memory file.
    pub runs: Vec<(u64, u64)>,
}

impl WorkingSet {
    /// The pages of `memory` touched (read or written) since it was mapped: walks the page
    /// tables, not the pages.
    pub fn of(
        memory: &GuestMemory,
        memory_bytes: u64,
        memory_file: &str,
    ) -> Result<Self, WorkingSetError> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut region_first_page = 0u64;
        for region in memory.iter() {
            for_each_touched_run(region.as_ptr() as u64, region.len(), |first, pages| {
                let first = region_first_page + first;
                // Regions are consecutive in the file: join a run that crosses a boundary.
                match runs.last_mut() {
                    Some((start, n)) if *start + *n == first => *n += pages,
                    _ => runs.push((first, pages)),
                }
                Ok(())
            })
            .map_err(WorkingSetError::Walk)?;
            region_first_page += region.len() / PAGE;
        }
        Ok(Self {
            memory_bytes,
            memory_file: memory_file.to_string(),
            runs,
        })
    }

    /// Pages in the set.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|(_, n)| n).sum()
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Both bounded, so the counts written always fit their fields (a record cut short is
        // still a valid, smaller hint; a cut name never matches, so it is never applied).
        let name_len = u16::try_from(self.memory_file.len().min(MAX_NAME)).unwrap_or(0);
        let name = &self.memory_file.as_bytes()[..usize::from(name_len)];
        let run_count = u32::try_from(self.runs.len().min(MAX_RUNS)).unwrap_or(0);
        let runs = &self.runs[..usize::try_from(run_count).unwrap_or(0)];
        let mut payload = Vec::with_capacity(14 + name.len() + runs.len() * 16);
        payload.extend_from_slice(&self.memory_bytes.to_le_bytes());
        payload.extend_from_slice(&name_len.to_le_bytes());
        payload.extend_from_slice(name);
        payload.extend_from_slice(&run_count.to_le_bytes());
        for (first, pages) in runs {
            payload.extend_from_slice(&first.to_le_bytes());
            payload.extend_from_slice(&pages.to_le_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes and checks a record (format, checksum, every run inside its guest RAM).
    pub fn decode(bytes: &[u8]) -> Result<Self, WorkingSetError> {
        let mut header = Reader(bytes);
        if header.take(8)? != MAGIC {
            return Err(WorkingSetError::BadMagic);
        }
        let version = header.u32()?;
        if version != VERSION {
            return Err(WorkingSetError::Version(version));
        }
        let len = header.u64()?;
        let crc = header.u32()?;
        if len != header.0.len() as u64 {
            return Err(WorkingSetError::Malformed);
        }
        if crc32fast::hash(header.0) != crc {
            return Err(WorkingSetError::Checksum);
        }
        let mut payload = header;
        let memory_bytes = payload.u64()?;
        let name_len = usize::from(payload.u16()?);
        if name_len > MAX_NAME {
            return Err(WorkingSetError::Malformed);
        }
        let memory_file = String::from_utf8(payload.take(name_len)?.to_vec())
            .map_err(|_| WorkingSetError::Malformed)?;
        let count = usize::try_from(payload.u32()?).map_err(|_| WorkingSetError::Malformed)?;
        if count > MAX_RUNS || payload.0.len() != count * 16 {
            return Err(WorkingSetError::Malformed);
        }
        let total_pages = memory_bytes / PAGE;
        let mut runs = Vec::with_capacity(count);
        for _ in 0..count {
            let (first, pages) = (payload.u64()?, payload.u64()?);
            if pages == 0 || first.checked_add(pages).is_none_or(|end| end > total_pages) {
                return Err(WorkingSetError::OutOfRange { first, pages });
            }
            runs.push((first, pages));
        }
        Ok(Self {
            memory_bytes,
            memory_file,
            runs,
        })
    }

    /// The record in snapshot directory `dir` for the memory file `memory_file` of
    /// `memory_bytes`: `Ok(None)` when there is none or it was taken from another memory file
    /// (the directory was written again since), an error when it is unreadable or corrupt.
    pub fn load(
        dir: &Path,
        memory_file: &str,
        memory_bytes: u64,
    ) -> Result<Option<Self>, WorkingSetError> {
        let Some(set) = Self::read(&dir.join(FILE_NAME))? else {
            return Ok(None);
        };
        Ok((set.memory_file == memory_file && set.memory_bytes == memory_bytes).then_some(set))
    }

    /// Reads and checks the record at `path`; `Ok(None)` when there is none. Only a regular
    /// file is read (never through a symlink), and no more of it than a valid record can hold:
    /// the file may come from a VMM its guest has taken over.
    pub fn read(path: &Path) -> Result<Option<Self>, WorkingSetError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| WorkingSetError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io(source)),
        };
        if !file.metadata().map_err(io)?.is_file() {
            return Err(WorkingSetError::Malformed);
        }
        let mut bytes = Vec::new();
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(WorkingSetError::Malformed);
        }
        Self::decode(&bytes).map(Some)
    }

    /// Writes the record to `path` atomically (a temporary file beside it, named as the
    /// snapshot store names its temporaries so a crashed writer's is cleaned up, renamed over
    /// it).
    pub fn write(&self, path: &Path) -> Result<(), WorkingSetError> {
        let tmp = path.with_file_name(format!(
            "{}{FILE_NAME}.{}",
            super::store::TMP_PREFIX,
            std::process::id()
        ));
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| WorkingSetError::Io { what, path, source }
        };
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&self.encode()))
            .map_err(io("writing", &tmp));
        if let Err(e) =
            written.and_then(|()| std::fs::rename(&tmp, path).map_err(io("renaming", path)))
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Asks the kernel to read every page of the set from the memory file into the page cache
    /// (`POSIX_FADV_WILLNEED`, one call per run): the reads are started, not waited for, so they
    /// overlap the rest of the restore, and a page already cached costs nothing. The guest's
    /// first touch of each page then finds it cached (and maps its neighbours with it). Returns
    /// the pages asked for.
    pub fn prefetch(&self, memory_file: &std::fs::File) -> Result<u64, WorkingSetError> {
        use std::os::fd::AsRawFd;
        let mut asked = 0u64;
        for &(first, pages) in &self.runs {
            let (Ok(offset), Ok(len)) = (
                libc::off_t::try_from(first * PAGE),
                libc::off_t::try_from(pages * PAGE),
            ) else {
                return Err(WorkingSetError::OutOfRange { first, pages });
            };
            // SAFETY: plain integers and a file descriptor this process owns; no memory passed.
            let rc = unsafe {
                libc::posix_fadvise(
                    memory_file.as_raw_fd(),
                    offset,
                    len,
                    libc::POSIX_FADV_WILLNEED,
                )
            };
            if rc != 0 {
                return Err(WorkingSetError::Prefetch {
                    first,
                    pages,
                    source: std::io::Error::from_raw_os_error(rc),
                });
            }
            asked += pages;
        }
        Ok(asked)
    }

    /// Maps every page of the set into `memory` from its file (`MADV_POPULATE_READ`: nothing is
    /// copied, the pages stay shared with the file until written), one call per run. Returns
    /// the pages populated.
    pub fn populate(&self, memory: &GuestMemory) -> Result<u64, WorkingSetError> {
        let mut populated = 0u64;
        for part in self.parts(memory) {
            // SAFETY: [host, host + len) lies inside a region of guest RAM this GuestMemory
            // mapped and owns (`parts` clamps each run to its region); MADV_POPULATE_READ only
            // faults the file's pages in for reading, as a guest read would.
            let rc = unsafe {
                libc::madvise(
                    part.host as *mut libc::c_void,
                    u64_to_usize(part.pages * PAGE),
                    libc::MADV_POPULATE_READ,
                )
            };
            if rc != 0 {
                return Err(WorkingSetError::Populate {
                    first: part.first,
                    pages: part.pages,
                    source: std::io::Error::last_os_error(),
                });
            }
            populated += part.pages;
        }
        Ok(populated)
    }

    /// The set as guest-physical ranges `(address, bytes)` of `memory`, for
    /// [`crate::vstate::prefault::pre_fault`].
    pub fn guest_ranges(&self, memory: &GuestMemory) -> Vec<(u64, u64)> {
        self.parts(memory)
            .into_iter()
            .map(|part| (part.guest, part.pages * PAGE))
            .collect()
    }

    /// The runs split at region boundaries, each located in the guest and in this process
    /// (regions sit back to back in the memory file, in order). Pages past the end of guest RAM
    /// are left out.
    fn parts(&self, memory: &GuestMemory) -> Vec<RunPart> {
        let regions: Vec<(u64, u64, u64, u64)> = {
            let mut first_page = 0u64;
            memory
                .iter()
                .map(|region| {
                    let pages = region.len() / PAGE;
                    let entry = (
                        first_page,
                        pages,
                        region.as_ptr() as u64,
                        region.start_addr().0,
                    );
                    first_page += pages;
                    entry
                })
                .collect()
        };
        let mut parts = Vec::new();
        for &(first, pages) in &self.runs {
            // A run may span regions: one part in each.
            for &(region_first, region_pages, host, guest) in &regions {
                let start = first.max(region_first);
                let end = (first + pages).min(region_first + region_pages);
                if start < end {
                    parts.push(RunPart {
                        first: start,
                        pages: end - start,
                        host: host + (start - region_first) * PAGE,
                        guest: guest + (start - region_first) * PAGE,
                    });
                }
            }
        }
        parts
    }
}

/// A run's part within one region of guest RAM.
struct RunPart {
    /// First page, counted from the start of the memory file.
    first: u64,
    /// Pages.
    pages: u64,
    /// Its address in this process.
    host: u64,
    /// Its guest-physical address.
    guest: u64,
}

/// Reads little-endian fields off the front of a byte slice, refusing to read past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WorkingSetError> {
        if self.0.len() < n {
            return Err(WorkingSetError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WorkingSetError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, WorkingSetError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WorkingSetError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WorkingSetError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::map_guest_ram;
    use std::os::unix::fs::FileExt;

    fn sample() -> WorkingSet {
        WorkingSet {
            memory_bytes: 64 << 20,
            memory_file: "memory-1-1.bin".into(),
            runs: vec![(0, 3), (100, 1), (16383, 1)],
        }
    }

    #[test]
    fn a_record_round_trips() {
        let set = sample();
        assert_eq!(WorkingSet::decode(&set.encode()).unwrap(), set);
        assert_eq!(set.pages(), 5);
    }

    #[test]
    fn a_corrupt_or_foreign_record_is_refused() {
        let bytes = sample().encode();
        // Every truncation, and every single flipped byte, is refused (never trusted).
        for len in 0..bytes.len() {
            assert!(
                WorkingSet::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(WorkingSet::decode(&bad).is_err(), "byte {i} flipped");
        }
        let mut other_version = bytes.clone();
        other_version[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert!(matches!(
            WorkingSet::decode(&other_version),
            Err(WorkingSetError::Version(_))
        ));
        // A run past guest RAM, with a valid checksum, is refused too.
        let mut outside = sample();
        outside.runs.push((16383, 2));
        assert!(matches!(
            WorkingSet::decode(&outside.encode()),
            Err(WorkingSetError::OutOfRange { .. })
        ));
    }

    #[test]
    fn a_record_of_another_memory_file_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let set = sample();
        set.write(&dir.path().join(FILE_NAME)).unwrap();
        let loaded = WorkingSet::load(dir.path(), "memory-1-1.bin", 64 << 20).unwrap();
        assert_eq!(loaded, Some(set));
        assert_eq!(
            WorkingSet::load(dir.path(), "memory-2-1.bin", 64 << 20).unwrap(),
            None
        );
        assert_eq!(
            WorkingSet::load(dir.path(), "memory-1-1.bin", 128 << 20).unwrap(),
            None
        );
        std::fs::write(dir.path().join(FILE_NAME), b"PDKWSET\0garbage").unwrap();
        assert!(WorkingSet::load(dir.path(), "memory-1-1.bin", 64 << 20).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            WorkingSet::load(empty.path(), "memory-1-1.bin", 64 << 20).unwrap(),
            None
        );
    }

    #[test]
    fn only_a_regular_file_of_a_records_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("host-file");
        sample().write(&secret).unwrap();
        // A symlink to a (valid) record elsewhere is refused, not followed.
        let link = dir.path().join(FILE_NAME);
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(WorkingSet::read(&link).is_err());
        std::fs::remove_file(&link).unwrap();
        // A directory, and a file longer than any record, are refused.
        std::fs::create_dir(&link).unwrap();
        assert!(WorkingSet::read(&link).is_err());
        std::fs::remove_dir(&link).unwrap();
        let mut long = sample().encode();
        long.resize(usize::try_from(MAX_RECORD_BYTES).unwrap() + 1, 0);
        std::fs::write(&link, &long).unwrap();
        assert!(matches!(
            WorkingSet::read(&link),
            Err(WorkingSetError::Malformed)
        ));
        // The temporary a write uses is gone after it.
        sample().write(&link).unwrap();
        assert_eq!(WorkingSet::read(&link).unwrap(), Some(sample()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// The touched pages of a private mapping are recorded; populating them in a fresh mapping
    /// makes exactly those pages present, with the file's contents.
    #[test]
    fn recorded_pages_are_populated_in_a_new_mapping() {
        let size = 64u64 << 20;
        let file = tempfile::tempfile().unwrap();
        file.set_len(size).unwrap();
        file.write_all_at(b"page five", 5 * PAGE).unwrap();
        let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        let first = map_guest_ram(&file, size, flags).unwrap();
        let region = first.iter().next().unwrap();
        let base = region.as_ptr();
        // SAFETY: the offsets lie inside the 64 MiB region just mapped.
        unsafe {
            let _ = std::ptr::read_volatile(base.add(u64_to_usize(5 * PAGE)));
            let _ = std::ptr::read_volatile(base.add(u64_to_usize(6 * PAGE)));
            std::ptr::write_volatile(base.add(u64_to_usize(1000 * PAGE)), 1);
        }
        // A read fault maps neighbours already in the page cache too (fault-around), so the
        // set holds at least the pages touched, in the same 64 KiB windows.
        let set = WorkingSet::of(&first, size, "memory-x.bin").unwrap();
        let holds =
            |set: &WorkingSet, page: u64| set.runs.iter().any(|&(f, n)| (f..f + n).contains(&page));
        for page in [5, 6, 1000] {
            assert!(holds(&set, page), "page {page} not in {:?}", set.runs);
        }
        assert!(set.pages() <= 3 * 16, "{:?}", set.runs);
        assert!(!holds(&set, 500));

        let second = map_guest_ram(&file, size, flags).unwrap();
        let region = second.iter().next().unwrap();
        assert_eq!(set.populate(&second).unwrap(), set.pages());
        let again = WorkingSet::of(&second, size, "memory-x.bin").unwrap();
        for &(first, n) in &set.runs {
            for page in first..first + n {
                assert!(holds(&again, page), "page {page} not populated");
            }
        }
        assert!(!holds(&again, 500));
        // Populated for reading: the file's contents, not a private copy.
        // SAFETY: page 5 lies inside the region.
        let byte = unsafe { std::ptr::read_volatile(region.as_ptr().add(u64_to_usize(5 * PAGE))) };
        assert_eq!(byte, b'p');
        // Prefetching asks for every page of the set and maps nothing.
        let third = map_guest_ram(&file, size, flags).unwrap();
        assert_eq!(set.prefetch(&file).unwrap(), set.pages());
        assert!(WorkingSet::of(&third, size, "memory-x.bin")
            .unwrap()
            .runs
            .is_empty());
    }
}
