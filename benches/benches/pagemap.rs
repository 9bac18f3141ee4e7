//! A reset's bookkeeping: finding the guest pages written since the restore, natively (no VM:
//! guest RAM is a private mapping of a memory file, as after a restore, and this process plays
//! the guest). Two ways, `PAGEMAP_SCAN` (Linux 6.7, populated page tables only) and reading
//! `/proc/self/pagemap` (8 bytes per page), on a 256 MiB and a 4 GiB guest that read a 64 MiB
//! working set (2 MiB runs spread over the guest); first with nothing written (the cost of a
//! reset with nothing dirtied must not follow the guest's size), then finding and discarding
//! 16 MiB written (64 KiB runs spread over the guest).
//!
//! `cargo xtask bench pagemap` (or `cargo bench -p paddock-benches --bench pagemap`).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use paddock_vmm::vstate::pagemap::{for_each_private_run_by, PrivatePageWalk, PAGE};
use std::os::fd::AsRawFd;

const MIB: u64 = 1 << 20;

/// A size or offset inside guest RAM, which fits the address space it is mapped in.
fn u64_to_usize(n: u64) -> usize {
    usize::try_from(n).expect("a 64-bit host")
}
/// What the guest read since its restore (clean: kept by a reset).
const WORKING_SET: u64 = 64 * MIB;
/// The working set's runs.
const WORKING_SET_RUN: u64 = 2 * MIB;
/// What it wrote (dropped by a reset).
const WRITTEN: u64 = 16 * MIB;
/// The written runs.
const WRITTEN_RUN: u64 = 64 << 10;

/// Guest RAM: a sparse memory file mapped privately, its working set read in.
struct Guest {
    addr: *mut u8,
    len: u64,
    _file: std::fs::File,
}

impl Guest {
    fn new(len: u64) -> Self {
        let file = tempfile::tempfile().expect("a memory file");
        file.set_len(len).expect("sizing the memory file");
        // SAFETY: a fresh private mapping of a valid fd; nothing else lives at its address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                u64_to_usize(len),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mapping guest RAM");
        let guest = Guest {
            addr: addr.cast(),
            len,
            _file: file,
        };
        // The working set, in 2 MiB runs spread over the guest (a guest's memory is used in
        // clusters: its kernel, page cache, heaps).
        guest.touch(WORKING_SET, WORKING_SET_RUN, |addr| {
            // SAFETY: `touch` passes addresses inside the mapping.
            unsafe { std::ptr::read_volatile(addr) };
        });
        guest
    }

    /// Calls `visit` on every page of `total` bytes in runs of `run` bytes spread evenly over
    /// the guest.
    fn touch(&self, total: u64, run: u64, mut visit: impl FnMut(*mut u8)) {
        let runs = total / run;
        let stride = self.len / runs;
        assert!(
            stride >= run,
            "{total} bytes in runs of {run} do not fit the guest"
        );
        for r in 0..runs {
            for page in 0..run / PAGE {
                // SAFETY: stride >= run, so r * stride + run <= len: every address is inside the
                // mapping.
                visit(unsafe { self.addr.add(u64_to_usize(r * stride + page * PAGE)) });
            }
        }
    }

    /// Writes `WRITTEN` bytes in 64 KiB runs spread over the guest.
    fn write(&self) {
        self.touch(WRITTEN, WRITTEN_RUN, |addr| {
            // SAFETY: `touch` passes addresses inside the mapping.
            unsafe { std::ptr::write_volatile(addr, 1) };
        });
    }

    /// Finds the written pages `walk`'s way and drops them, as a reset does; returns the count.
    fn reset(&self, walk: PrivatePageWalk, discard: bool) -> u64 {
        let mut pages = 0;
        for_each_private_run_by(walk, self.addr as u64, self.len, |first, count| {
            pages += count;
            if discard {
                // SAFETY: the run lies inside the private mapping; MADV_DONTNEED drops only
                // its copy-on-write copies.
                let rc = unsafe {
                    libc::madvise(
                        self.addr.add(u64_to_usize(first * PAGE)).cast(),
                        u64_to_usize(count * PAGE),
                        libc::MADV_DONTNEED,
                    )
                };
                assert_eq!(rc, 0, "MADV_DONTNEED");
            }
            Ok(())
        })
        .expect("walking the pagemap");
        pages
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.addr.cast(), u64_to_usize(self.len)) };
    }
}

fn walks() -> Vec<PrivatePageWalk> {
    let probe = Guest::new(256 * MIB);
    let mut walks = vec![PrivatePageWalk::Entries];
    match for_each_private_run_by(
        PrivatePageWalk::Scan,
        probe.addr as u64,
        probe.len,
        |_, _| Ok(()),
    ) {
        Ok(()) => walks.push(PrivatePageWalk::Scan),
        Err(e) => eprintln!("PAGEMAP_SCAN is not available on this kernel: {e}"),
    }
    walks
}

fn bookkeeping(c: &mut Criterion) {
    let walks = walks();
    let mut group = c.benchmark_group("reset_bookkeeping");
    for size_mib in [256u64, 4096] {
        let guest = Guest::new(size_mib * MIB);
        for &walk in &walks {
            let label = format!("{walk:?}/{size_mib}MiB").to_lowercase();
            group.bench_function(BenchmarkId::new("nothing_written", &label), |b| {
                b.iter(|| assert_eq!(guest.reset(walk, false), 0))
            });
            group.bench_function(BenchmarkId::new("16MiB_written_discarded", &label), |b| {
                b.iter_batched(
                    || guest.write(),
                    |()| assert_eq!(guest.reset(walk, true), WRITTEN / PAGE),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bookkeeping);
criterion_main!(benches);
