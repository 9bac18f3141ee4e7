//! The agent profile's figures: cold boot → engine ready, template restore → engine ready
//! (new VMM process and in-process), reset → ready with a container running, and memory per
//! sandbox for 10 sandboxes restored from one template.
//!
//! Run with `cargo xtask bench engine` (natively with hardware KVM, otherwise inside the lab,
//! where every figure is software-emulated and only comparable to other lab figures).

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_benches::{agent_available, exec, rss_pss_kib};
use paddock_protocol::{EngineState, ExitStatus};
use paddock_vmm::sandbox::guest::GuestLink;
use paddock_vmm::sandbox::{ConsoleLog, Launch, Sandboxes};
use paddock_vmm::template::TemplateSpec;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn spec() -> TemplateSpec {
    paddock_benches::agent_template_spec()
}

fn boot_launch(spec: &TemplateSpec) -> Launch {
    Launch::Boot {
        kernel: spec.artifacts.kernel.clone(),
        rootfs: spec.artifacts.initrd.clone(),
        image: spec.artifacts.image.clone(),
        disk: None,
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        console: ConsoleLog::Off,
        kernel_args: spec.kernel_args.clone(),
    }
}

/// Cold boots are minutes in the lab: measured a few times and printed, not sampled by criterion.
fn cold_boot_figures(sandboxes: &Sandboxes) {
    let spec = spec();
    let runs: usize = std::env::var("PADDOCK_BENCH_COLD_BOOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut times = Vec::new();
    for i in 0..runs {
        let name = format!("cold{i}");
        let t = Instant::now();
        let info = sandboxes
            .start(Some(&name), boot_launch(&spec))
            .expect("cold boot");
        times.push(t.elapsed().as_secs_f64());
        assert!(
            matches!(
                info.guest.as_ref().map(|g| &g.engine),
                Some(EngineState::Up { .. })
            ),
            "engine not up after a cold boot: {}",
            info.guest_summary()
        );
        sandboxes.remove(&name, true).expect("remove");
    }
    times.sort_by(f64::total_cmp);
    println!(
        "engine/cold_boot_to_engine_ready: median {:.2} s of {runs} (min {:.2} s, max {:.2} s)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

fn template_dir(sandboxes: &Sandboxes) -> PathBuf {
    let (t, built) = paddock_benches::agent_template(sandboxes);
    println!(
        "engine/template: {} ({}; boot to engine ready {:.2} s, {:.1} MiB on disk)",
        t.manifest.key.short(),
        if built { "built now" } else { "cached" },
        t.manifest.boot_ms / 1e3,
        t.disk_bytes() as f64 / f64::from(1 << 20)
    );
    t.dir
}

fn memory_per_sandbox(sandboxes: &Sandboxes, dir: &std::path::Path) {
    let started = Instant::now();
    let forks = sandboxes.fork(dir, 10, "m", false).expect("10 sandboxes");
    println!(
        "engine/ten_sandboxes_from_one_template: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let (mut rss, mut pss) = (0, 0);
    for f in &forks {
        let (r, p) = rss_pss_kib(f.pid);
        rss += r;
        pss += p;
    }
    println!(
        "engine/memory_per_sandbox: RSS {} KiB, PSS {} KiB (mean of {}, engine up in each)",
        rss / forks.len() as u64,
        pss / forks.len() as u64,
        forks.len()
    );
    for f in &forks {
        let _ = sandboxes.remove(&f.name, true);
    }
}

fn engine(c: &mut Criterion) {
    if !agent_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let sandboxes = Sandboxes::new(Some(&work.path().join("state")));
    let dir = template_dir(&sandboxes);
    // A criterion filter (`cargo xtask bench NAME`) asks for one sampled figure: the printed
    // ones (minutes in the lab) are left out then.
    let filtered = std::env::args().skip(1).any(|arg| !arg.starts_with("--"));
    if !filtered {
        if std::env::var_os("PADDOCK_BENCH_SKIP_COLD").is_none() {
            cold_boot_figures(&sandboxes);
        }
        memory_per_sandbox(&sandboxes, &dir);
    }

    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mut n = 0;
    g.bench_function("template_restore_to_engine_ready_process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("r{n}");
                let t = Instant::now();
                sandboxes
                    .start(
                        Some(&name),
                        Launch::Restore {
                            dir: dir.clone(),
                            console: ConsoleLog::Off,
                            image: None,
                        },
                    )
                    .expect("restore");
                total += t.elapsed();
                sandboxes.remove(&name, true).expect("remove");
            }
            total
        })
    });
    let uds = work.path().join("v.sock");
    g.bench_function("template_restore_to_engine_ready_in_process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&uds);
                let t = Instant::now();
                let mut link = GuestLink::listen(&uds).expect("listen");
                let vmm = paddock_vmm::builder::restore(
                    &dir,
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

    // A sandbox with a container running, snapshotted; each reset goes back to it.
    let _ = std::fs::remove_file(&uds);
    let mut link = GuestLink::listen(&uds).expect("listen");
    let mut vmm =
        paddock_vmm::builder::restore(&dir, &uds, None, None, &paddock_benches::seccomp())
            .expect("restore");
    link.resume(&vmm, Duration::from_secs(60)).expect("resume");
    let setup = "set -e; d=$(mktemp -d); cp /bin/busybox $d/; \
                 printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > $d/Dockerfile; \
                 docker build -q -t bb $d >/dev/null; \
                 docker run -d --name busy bb /bin/busybox sleep 100000 >/dev/null";
    assert_eq!(exec(&uds, &["bash", "-c", setup]), ExitStatus::Code(0));
    let snap = work.path().join("with-container");
    vmm.snapshot(&snap, false).expect("snapshot");
    vmm.reset(Some(&snap))
        .expect("reset to the container snapshot");
    link.resume(&vmm, Duration::from_secs(60)).expect("resume");
    g.bench_function("reset_to_ready_with_a_container_running", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                vmm.reset(None).expect("reset");
                link.resume(&vmm, Duration::from_secs(60)).expect("resume");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    assert_eq!(
        exec(
            &uds,
            &["docker", "inspect", "-f", "{{.State.Running}}", "busy"]
        ),
        ExitStatus::Code(0),
        "the container still runs after the resets"
    );
    vmm.stop();
}

criterion_group!(benches, engine);
criterion_main!(benches);
