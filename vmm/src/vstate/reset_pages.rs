//! Returning the guest pages written since a restore to the snapshot's contents, for a reset in
//! place: copied back into the same pages while they are few, dropped when they are many.
//!
//! A written page of a private file mapping is the process's own copy. Dropping it
//! (`MADV_DONTNEED`) also takes it out of KVM's tables, so the guest faults it in again the
//! next time it touches it, one exit and one host fault each. The pages a guest writes between
//! two resets are mostly the ones it writes after every reset (its stacks, the kernel's
//! structures for the vsock round trip, timers): measured in the lab, a reset with nothing
//! dirtied was followed by about 240 such faults, which were most of the guest's time before it
//! answered (docs/BENCHMARKS.md). Copying the file's contents back into those pages keeps every
//! mapping in place, so the guest runs on without faulting. The copies stay private, so each
//! later reset copies them again: while they are at most [`COPY_BACK_LIMIT`] that costs less
//! than the faults it saves; beyond it the pages are dropped, and the set starts over.

use super::memory::{GuestMemory, MemoryError};
use super::pagemap::{for_each_private_run, PAGE};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Up to this many bytes of written pages a reset copies back; more are dropped.
pub const COPY_BACK_LIMIT: u64 = 8 << 20;

/// [`COPY_BACK_LIMIT`], or 0 (always drop, as before copying back) where the VMM was started
/// with `PADDOCK_RESET_COPY_BACK=off`: to measure without.
pub fn copy_back_limit() -> u64 {
    match std::env::var_os("PADDOCK_RESET_COPY_BACK") {
        Some(v) if v == "off" => 0,
        _ => COPY_BACK_LIMIT,
    }
}

/// What a reset did with the written pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagesReturned {
    /// Copied back from the file into the same pages (bytes): every mapping stays.
    CopiedBack(u64),
    /// Dropped (bytes): the next access maps the file's page again.
    Dropped(u64),
}

/// A run of written pages: where it is mapped and where its contents are in the file.
struct Run {
    host_addr: u64,
    file_offset: u64,
    len: u64,
}

/// Returns every page written since guest RAM was mapped privately from `file` to the file's
/// contents: copied back when they add up to at most `copy_back_limit` bytes, else dropped.
/// The vCPUs and devices must be paused.
pub fn return_written_pages(
    mem: &GuestMemory,
    file: &File,
    copy_back_limit: u64,
) -> Result<PagesReturned, MemoryError> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    let mut runs = Vec::new();
    let mut region_offset = 0u64;
    for region in mem.iter() {
        let base = region.as_ptr() as u64;
        for_each_private_run(base, region.len(), |first, count| {
            runs.push(Run {
                host_addr: base + first * PAGE,
                file_offset: region_offset + first * PAGE,
                len: count * PAGE,
            });
            Ok(())
        })
        .map_err(|e| MemoryError::Mmap(format!("finding written guest pages: {e}")))?;
        region_offset += region.len();
    }
    let total: u64 = runs.iter().map(|r| r.len).sum();
    if total <= copy_back_limit {
        for run in &runs {
            copy_back(run, file)
                .map_err(|e| MemoryError::Mmap(format!("copying guest pages back: {e}")))?;
        }
        return Ok(PagesReturned::CopiedBack(total));
    }
    for run in &runs {
        // SAFETY: the run lies inside a private file mapping this GuestMemory owns (the pagemap
        // walk stays within its region); MADV_DONTNEED only drops its anonymous copy-on-write
        // pages, the mapping itself stays in place.
        let rc = unsafe {
            libc::madvise(
                run.host_addr as *mut libc::c_void,
                crate::cast::u64_to_usize(run.len),
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(MemoryError::Mmap(format!(
                "discarding written guest pages: {e}"
            )));
        }
    }
    Ok(PagesReturned::Dropped(total))
}

/// Reads the run's contents from the file into its pages.
fn copy_back(run: &Run, file: &File) -> std::io::Result<()> {
    // SAFETY: the run lies inside guest RAM's mapping, which this process owns for as long as
    // the GuestMemory lives; the vCPUs and devices are paused, so nothing else reads or writes
    // these bytes while the slice exists.
    let pages = unsafe {
        std::slice::from_raw_parts_mut(run.host_addr as *mut u8, crate::cast::u64_to_usize(run.len))
    };
    let mut done = 0;
    while done < pages.len() {
        match file.read_at(&mut pages[done..], run.file_offset + done as u64) {
            // The mapping cannot outlast the file's end (its pages would be gone): a file cut
            // short under the sandbox.
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{create_guest_ram, remap_private};
    use crate::vstate::pagemap::for_each_touched_run;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

    /// 32 MiB of guest RAM mapped privately from a file holding 7 at 0x2000 and 5 at 0x9000.
    fn restored() -> (crate::vstate::memory::GuestRam, File) {
        let ram = create_guest_ram(32).unwrap();
        let snapshot = tempfile::tempfile().unwrap();
        snapshot.set_len(32 << 20).unwrap();
        snapshot.write_all_at(&7u64.to_le_bytes(), 0x2000).unwrap();
        snapshot.write_all_at(&5u64.to_le_bytes(), 0x9000).unwrap();
        remap_private(&ram.memory, &snapshot).unwrap();
        (ram, snapshot)
    }

    fn written_pages(mem: &GuestMemory) -> u64 {
        let region = mem.iter().next().unwrap();
        let mut pages = 0;
        for_each_private_run(region.as_ptr() as u64, region.len(), |_, n| {
            pages += n;
            Ok(())
        })
        .unwrap();
        pages
    }

    fn touched_pages(mem: &GuestMemory) -> u64 {
        let region = mem.iter().next().unwrap();
        let mut pages = 0;
        for_each_touched_run(region.as_ptr() as u64, region.len(), |_, n| {
            pages += n;
            Ok(())
        })
        .unwrap();
        pages
    }

    #[test]
    fn a_few_written_pages_are_copied_back_and_stay_mapped() {
        let (ram, snapshot) = restored();
        ram.memory.write_obj(9u64, GuestAddress(0x2000)).unwrap();
        ram.memory.write_obj(3u64, GuestAddress(0x5000)).unwrap();
        let returned = return_written_pages(&ram.memory, &snapshot, COPY_BACK_LIMIT).unwrap();
        assert_eq!(returned, PagesReturned::CopiedBack(2 * PAGE));
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 7);
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x5000)).unwrap(), 0);
        assert_eq!(
            written_pages(&ram.memory),
            2,
            "the copies stay in place (and mapped)"
        );
        // Copied back again on the next reset: a later write is undone too.
        ram.memory.write_obj(4u64, GuestAddress(0x2008)).unwrap();
        return_written_pages(&ram.memory, &snapshot, COPY_BACK_LIMIT).unwrap();
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x2008)).unwrap(), 0);
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x9000)).unwrap(), 5);
    }

    #[test]
    fn many_written_pages_are_dropped() {
        let (ram, snapshot) = restored();
        for page in 0..4u64 {
            ram.memory
                .write_obj(page + 100, GuestAddress(0x1000 * (page + 1)))
                .unwrap();
        }
        let before = touched_pages(&ram.memory);
        let returned = return_written_pages(&ram.memory, &snapshot, 3 * PAGE).unwrap();
        assert_eq!(returned, PagesReturned::Dropped(4 * PAGE));
        assert_eq!(written_pages(&ram.memory), 0);
        assert!(
            touched_pages(&ram.memory) < before,
            "the pages left the mapping"
        );
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x2000)).unwrap(), 7);
        assert_eq!(ram.memory.read_obj::<u64>(GuestAddress(0x3000)).unwrap(), 0);
    }
}
