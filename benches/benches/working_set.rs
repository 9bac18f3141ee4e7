//! A restore's first touches of its working set, natively (no VM: guest RAM is a private mapping
//! of a sparse memory file on disk, as after a restore, and this process plays the guest,
//! touching the working set's runs in a shuffled order). Three ways of starting: nothing done
//! ahead (each touch faults, the kernel reads around it), the record's runs prefetched into the
//! page cache (`POSIX_FADV_WILLNEED`, what paddock does), and the runs populated into the page
//! tables (`MADV_POPULATE_READ`); each with the memory file dropped from the page cache (cold,
//! as after a reboot or under memory pressure) and cached (warm, a template restored again).
//!
//! The shape is the agent template's in the lab (2026-12-04): 2 GiB of guest RAM, a working set
//! of about 4,100 pages from resume to ready, in about 100 runs.
//!
//! `cargo xtask bench working_set` (or `cargo bench -p paddock-benches --bench working_set`).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use paddock_vmm::snapshot::working_set::WorkingSet;
use paddock_vmm::vstate::memory::{map_guest_ram, GuestMemory};
use paddock_vmm::vstate::pagemap::PAGE;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use vm_memory::GuestMemoryBackend;

const GUEST_RAM: u64 = 2 << 30;
/// Runs in the working set, and pages in each.
const RUNS: u64 = 128;
const RUN_PAGES: u64 = 32;

/// The memory file: sparse, data only where the working set (and a neighbour page on each side,
/// as a real guest's memory has) lies; on the build machine's disk, not tmpfs.
fn memory_file(set: &WorkingSet) -> std::fs::File {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let file = tempfile::tempfile_in(dir).expect("a memory file");
    file.set_len(GUEST_RAM).expect("sizing the memory file");
    let page = vec![0x5au8; usize::try_from(PAGE).expect("page size")];
    for &(first, pages) in &set.runs {
        for p in first.saturating_sub(1)..(first + pages + 1).min(GUEST_RAM / PAGE) {
            file.write_all_at(&page, p * PAGE).expect("writing a page");
        }
    }
    file.sync_all().expect("syncing the memory file");
    file
}

/// The working set: runs spread evenly over guest RAM.
fn working_set() -> WorkingSet {
    let stride = GUEST_RAM / PAGE / RUNS;
    WorkingSet {
        memory_bytes: GUEST_RAM,
        memory_file: "memory-bench.bin".into(),
        runs: (0..RUNS).map(|i| (i * stride + 7, RUN_PAGES)).collect(),
    }
}

/// The runs in the order the "guest" touches them: a fixed shuffle.
fn touch_order() -> Vec<usize> {
    let mut order: Vec<usize> = (0..usize::try_from(RUNS).expect("run count")).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, usize::try_from(x % (i as u64 + 1)).expect("index"));
    }
    order
}

/// Drops the memory file's pages from the page cache (they are clean: no root needed).
fn drop_cached(file: &std::fs::File) {
    // SAFETY: plain integers and a file descriptor this process owns.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "dropping the memory file from the page cache");
}

#[derive(Clone, Copy, Debug)]
enum Start {
    Nothing,
    Prefetch,
    Populate,
}

fn touch_all(memory: &GuestMemory, set: &WorkingSet, order: &[usize]) -> u64 {
    let base = memory.iter().next().expect("one region").as_ptr();
    let mut sum = 0u64;
    for &i in order {
        let (first, pages) = set.runs[i];
        for p in first..first + pages {
            let offset = usize::try_from(p * PAGE).expect("offset");
            // SAFETY: every working-set page lies below 3 GiB, in the first region mapped.
            sum += u64::from(unsafe { std::ptr::read_volatile(base.add(offset)) });
        }
    }
    sum
}

fn first_touches(c: &mut Criterion) {
    let set = working_set();
    let file = memory_file(&set);
    let order = touch_order();
    let mut g = c.benchmark_group("working_set");
    g.sample_size(20);
    for cold in [true, false] {
        for start in [Start::Nothing, Start::Prefetch, Start::Populate] {
            let id = format!("{}_{start:?}", if cold { "cold" } else { "warm" });
            g.bench_function(BenchmarkId::new("restore_then_touch", id), |b| {
                b.iter_batched(
                    || {
                        if cold {
                            drop_cached(&file);
                        } else {
                            touch_all(
                                &map_guest_ram(&file, GUEST_RAM, flags()).expect("mapping"),
                                &set,
                                &order,
                            );
                        }
                        map_guest_ram(&file, GUEST_RAM, flags()).expect("mapping")
                    },
                    |memory| {
                        match start {
                            Start::Nothing => 0,
                            Start::Prefetch => set.prefetch(&file).expect("prefetching"),
                            Start::Populate => set.populate(&memory).expect("populating"),
                        };
                        let sum = touch_all(&memory, &set, &order);
                        assert_eq!(sum, 0x5a * set.pages());
                        memory
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

fn flags() -> i32 {
    libc::MAP_PRIVATE | libc::MAP_NORESERVE
}

criterion_group!(benches, first_touches);
criterion_main!(benches);
