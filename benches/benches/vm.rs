//! paddock's headline figures: boot-to-ready, exec round trip, VMM memory, snapshot, restore
//! (a VMM process started, a warm VMM claimed, in process),
//! reset with 0/16/64 MiB dirtied, fork of 10 and memory per fork.
//!
//! Run with `cargo xtask bench` (natively with hardware KVM, otherwise inside the lab, where
//! every figure is software-emulated and only comparable to other lab figures).

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_benches::{available, boot_ready, exec, rss_pss_kib, status_kib};
use paddock_vmm::sandbox::guest::GuestLink;
use paddock_vmm::sandbox::{ConsoleLog, Launch, Sandboxes};
use std::time::{Duration, Instant};

fn slow(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("vm");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g
}

fn boot_and_exec(c: &mut Criterion) {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut g = slow(c);
    g.bench_function("boot_to_ready", |b| {
        b.iter(|| {
            let (vmm, _link) = boot_ready(&uds);
            vmm.stop();
        })
    });
    let (vmm, _link) = boot_ready(&uds);
    g.bench_function("exec_true_round_trip", |b| b.iter(|| exec(&uds, &["true"])));
    g.finish();
    vmm.stop();
}

fn memory_figures() {
    if !available() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sandboxes = Sandboxes::new(Some(state.path()));
    let kernel = paddock_vmm::config::default_kernel(None);
    let rootfs = paddock_vmm::config::default_rootfs(None);
    let info = sandboxes
        .start(
            Some("rss"),
            Launch::Boot {
                kernel,
                rootfs,
                image: None,
                disk: None,
                vcpus: 1,
                memory_mib: 256,
                console: ConsoleLog::Off,
                kernel_args: None,
            },
        )
        .expect("start");
    let pid = info.pid;
    let rss = status_kib(pid, "VmRSS:");
    let shmem = status_kib(pid, "RssShmem:");
    println!("memory/vmm_rss_after_boot: {rss} KiB total, {shmem} KiB of it guest RAM, VMM overhead {} KiB", rss - shmem);

    let snap = state.path().join("snap");
    sandboxes.snapshot("rss", &snap, true).expect("snapshot");
    let started = Instant::now();
    let forks = sandboxes.fork(&snap, 10, "f", false).expect("fork");
    println!(
        "memory/fork_10_wall: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let (mut rss_sum, mut pss_sum) = (0, 0);
    for f in &forks {
        let (r, p) = rss_pss_kib(f.pid);
        rss_sum += r;
        pss_sum += p;
    }
    println!(
        "memory/per_fork: RSS {} KiB, PSS {} KiB (mean of {})",
        rss_sum / forks.len() as u64,
        pss_sum / forks.len() as u64,
        forks.len()
    );
    for f in &forks {
        let _ = sandboxes.remove(&f.name, true);
    }
    let _ = sandboxes.remove("rss", true);
}

/// Restores `snap` as sandbox `r{n}` through the library, timed from the call to ready, then
/// removes it; whether it claimed a warm VMM.
fn timed_restore(sandboxes: &Sandboxes, snap: &std::path::Path, n: u32) -> (Duration, bool) {
    let name = format!("r{n}");
    let t = Instant::now();
    let info = sandboxes
        .start(
            Some(&name),
            Launch::Restore {
                dir: snap.to_path_buf(),
                console: ConsoleLog::Off,
                image: None,
            },
        )
        .expect("restore");
    let elapsed = t.elapsed();
    sandboxes.remove(&name, true).expect("remove");
    (elapsed, info.from_pool)
}

fn snapshots(c: &mut Criterion) {
    if !available() {
        return;
    }
    memory_figures();
    let work = tempfile::tempdir().unwrap();
    let uds = work.path().join("v.sock");
    let snap = work.path().join("snap");
    let mut g = slow(c);

    let (mut vmm, _link) = boot_ready(&uds);
    // A realistic guest: some memory in use.
    exec(
        &uds,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=16 2>/dev/null",
        ],
    );
    // The restore and reset benchmarks need a snapshot even when this one is filtered out.
    vmm.snapshot(&snap, false).expect("snapshot");
    g.bench_function("snapshot_create_256mib", |b| {
        b.iter(|| vmm.snapshot(&snap, false).expect("snapshot"))
    });
    vmm.stop();

    let state = work.path().join("state");
    let sandboxes = Sandboxes::new(Some(&state));
    let mut n = 0;
    g.bench_function("restore_to_ready_process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let (elapsed, _) = timed_restore(&sandboxes, &snap, n);
                total += elapsed;
            }
            total
        })
    });
    // The same restore claiming a warm VMM (`paddock pool`): the pool is refilled before each
    // one, outside the measurement.
    let pool = sandboxes.pool();
    g.bench_function("restore_to_ready_pool", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                paddock_vmm::sandbox::pool::await_refills();
                pool.fill(1, Duration::from_secs(120)).expect("pool");
                n += 1;
                let (elapsed, from_pool) = timed_restore(&sandboxes, &snap, n);
                total += elapsed;
                assert!(from_pool, "the restore claimed a warm VMM");
            }
            total
        })
    });
    paddock_vmm::sandbox::pool::await_refills();
    pool.drain().expect("drain");
    g.bench_function("restore_to_ready_in_process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&uds);
                let t = Instant::now();
                let mut link = GuestLink::listen(&uds).expect("listen");
                let vmm = paddock_vmm::builder::restore(
                    &snap,
                    &uds,
                    None,
                    None,
                    &paddock_benches::seccomp(),
                )
                .expect("restore");
                link.resume(&vmm, Duration::from_secs(60)).expect("resume");
                total += t.elapsed();
                vmm.stop();
            }
            total
        })
    });

    let _ = std::fs::remove_file(&uds);
    let mut link = GuestLink::listen(&uds).expect("listen");
    let mut vmm =
        paddock_vmm::builder::restore(&snap, &uds, None, None, &paddock_benches::seccomp())
            .expect("restore");
    link.resume(&vmm, Duration::from_secs(60)).expect("resume");
    for mib in [0u32, 16, 64] {
        g.bench_function(format!("reset_to_ready_dirty_{mib}mib"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if mib > 0 {
                        let script =
                            format!("dd if=/dev/zero of=/tmp/dirty bs=1M count={mib} 2>/dev/null");
                        exec(&uds, &["sh", "-c", &script]);
                    }
                    let t = Instant::now();
                    vmm.reset(None).expect("reset");
                    link.resume(&vmm, Duration::from_secs(60)).expect("resume");
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
    vmm.stop();
}

criterion_group!(benches, boot_and_exec, snapshots);
criterion_main!(benches);
