//! Issue 12's goal figures, all from one run (so from one lab boot): restore → ready, reset →
//! ready with nothing dirtied, and a fork of 10, for three guests: the minimal profile at
//! 256 MiB and at 4 GiB, and the agent template (Docker engine up). Ends with a table of
//! medians set against the goals.
//!
//! Run with `cargo xtask bench fast_path` (natively with hardware KVM, otherwise inside the
//! lab, where every figure is software-emulated and only comparable to other lab figures).

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use paddock_benches::{agent_available, available, restore_ready, rss_pss_kib};
use paddock_vmm::sandbox::pool;
use paddock_vmm::sandbox::{ConsoleLog, Launch, SandboxInfo, Sandboxes};
use paddock_vmm::timings::Span;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a warm VMM may take to be made, in the lab.
const FILL_TIMEOUT: Duration = Duration::from_secs(300);
/// How many sandboxes a fork makes here.
const FORK_COUNT: usize = 10;
/// Forks of FORK_COUNT taken per shape (their median is the figure: one is noisy in the lab).
const FORK_RUNS: usize = 3;

/// One guest the figures are taken for: its label and the snapshot every restore starts from.
struct Shape {
    label: &'static str,
    snapshot: PathBuf,
}

/// Every sample of one figure, in milliseconds (criterion's warm-up runs included).
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, elapsed: Duration) -> Duration {
        self.0.push(elapsed.as_secs_f64() * 1e3);
        elapsed
    }

    fn median(&self) -> Option<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }

    fn describe(&self) -> String {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        match (self.median(), sorted.first(), sorted.last()) {
            (Some(m), Some(lo), Some(hi)) => {
                format!("{m:.1} ms ({lo:.1} – {hi:.1}, n = {})", sorted.len())
            }
            _ => "not measured".into(),
        }
    }
}

/// Every sample of each span of one kind of restore, in the order the spans run (one seen
/// only in some restores, such as the working set's first recording, goes after the span it
/// followed there).
#[derive(Default)]
struct SpanSamples {
    spans: Vec<(String, Samples)>,
    restores: usize,
}

impl SpanSamples {
    fn push(&mut self, spans: &[Span]) {
        self.restores += 1;
        let mut previous: Option<usize> = None;
        for span in spans {
            let at = match self.spans.iter().position(|(name, _)| *name == span.span) {
                Some(at) => at,
                None => {
                    let at = previous.map_or(0, |p| p + 1);
                    self.spans
                        .insert(at, (span.span.clone(), Samples::default()));
                    at
                }
            };
            self.spans[at].1 .0.push(span.ms);
            previous = Some(at);
        }
    }

    /// One line per span: its median (and in how many restores it ran, when not in all),
    /// then the sum of the medians of the spans every restore ran.
    fn describe(&self, indent: &str) -> String {
        let width = self
            .spans
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let mut total = 0.0;
        for (name, samples) in &self.spans {
            let median = samples.median().unwrap_or(0.0);
            let runs = samples.0.len();
            if runs == self.restores {
                total += median;
                out.push_str(&format!("{indent}{name:<width$}  {median:>7.1} ms\n"));
            } else {
                out.push_str(&format!(
                    "{indent}{name:<width$}  {median:>7.1} ms (in {runs} of {} restores)\n",
                    self.restores
                ));
            }
        }
        out.push_str(&format!(
            "{indent}{:<width$}  {total:>7.1} ms",
            "sum of medians"
        ));
        out
    }
}

/// What one shape measured.
#[derive(Default)]
struct Figures {
    restore_pool: Samples,
    restore_pool_caller_spans: SpanSamples,
    restore_pool_spans: SpanSamples,
    restore_process: Samples,
    restore_in_process: Samples,
    restore_in_process_spans: SpanSamples,
    reset: Samples,
    reset_in_process: Samples,
    fork: Samples,
    fork_from_pool: usize,
    fork_pss_kib: u64,
    pre_faulted_pages: Option<u64>,
}

fn group(c: &mut Criterion) -> BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("fast_path");
    // One restore or reset per sample: the lab's are tens to hundreds of milliseconds.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(1));
    g
}

/// Boots a minimal guest of `memory_mib` in a VMM process and snapshots it (stopping it).
fn minimal_snapshot(sandboxes: &Sandboxes, memory_mib: u64, dir: &Path) -> PathBuf {
    let name = format!("boot{memory_mib}");
    sandboxes
        .start(
            Some(&name),
            Launch::Boot {
                kernel: paddock_vmm::config::default_kernel(None),
                rootfs: paddock_vmm::config::default_rootfs(None),
                image: None,
                disk: None,
                vcpus: 1,
                memory_mib,
                console: ConsoleLog::Off,
                kernel_args: std::env::var("PADDOCK_BENCH_KERNEL_ARGS").ok(),
            },
        )
        .expect("boot");
    let snapshot = dir.join(format!("minimal-{memory_mib}"));
    sandboxes
        .snapshot(&name, &snapshot, true)
        .expect("snapshot");
    let _ = sandboxes.remove(&name, true);
    snapshot
}

/// The agent template (built here if no cached one matches), restored as a snapshot.
fn agent_template(sandboxes: &Sandboxes) -> PathBuf {
    let (template, built) = paddock_benches::agent_template(sandboxes);
    println!(
        "fast_path/agent template: {} ({}, {} MiB)",
        template.manifest.key.short(),
        if built { "built now" } else { "cached" },
        paddock_benches::agent_template_spec().memory_mib
    );
    template.dir
}

/// Restores `snapshot` as sandbox `name` through the library, timed from the call to ready.
fn timed_restore(sandboxes: &Sandboxes, snapshot: &Path, name: &str) -> (Duration, SandboxInfo) {
    let started = Instant::now();
    let info = sandboxes
        .start(
            Some(name),
            Launch::Restore {
                dir: snapshot.to_path_buf(),
                console: ConsoleLog::Off,
                image: None,
            },
        )
        .expect("restore");
    (started.elapsed(), info)
}

fn restores(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    sandboxes: &Sandboxes,
    shape: &Shape,
    figures: &mut Figures,
) {
    let warm = sandboxes.pool();
    let mut n = 0u32;
    g.bench_function(format!("{}/restore_to_ready_pool", shape.label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Refilled before each restore, outside the measurement.
                pool::await_refills();
                warm.fill(1, FILL_TIMEOUT).expect("pool");
                n += 1;
                let name = format!("{}-p{n}", shape.label);
                let (elapsed, info) = timed_restore(sandboxes, &shape.snapshot, &name);
                assert!(info.from_pool, "the restore claimed a warm VMM");
                figures.pre_faulted_pages = info.pre_faulted_pages;
                figures.restore_pool_caller_spans.push(&info.caller_spans);
                figures.restore_pool_spans.push(&info.spans);
                total += figures.restore_pool.push(elapsed);
                sandboxes.remove(&name, true).expect("remove");
            }
            total
        })
    });
    pool::await_refills();
    warm.drain().expect("drain the pool");
    g.bench_function(format!("{}/restore_to_ready_process", shape.label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("{}-s{n}", shape.label);
                let (elapsed, info) = timed_restore(sandboxes, &shape.snapshot, &name);
                assert!(!info.from_pool, "no warm VMM was there to claim");
                total += figures.restore_process.push(elapsed);
                sandboxes.remove(&name, true).expect("remove");
            }
            total
        })
    });
    let work = tempfile::tempdir().expect("temporary directory");
    let uds = work.path().join("v.sock");
    g.bench_function(
        format!("{}/restore_to_ready_in_process", shape.label),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let (vmm, _link) = restore_ready(&shape.snapshot, &uds);
                    let elapsed = started.elapsed();
                    total += figures.restore_in_process.push(elapsed);
                    let mut spans = vmm.launch_spans.clone();
                    let launched: f64 = spans.iter().map(|s| s.ms).sum();
                    spans.push(Span {
                        span: "guest answered".into(),
                        ms: (elapsed.as_secs_f64() * 1e3 - launched).max(0.0),
                    });
                    figures.restore_in_process_spans.push(&spans);
                    vmm.stop();
                }
                total
            })
        },
    );
}

fn resets(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    sandboxes: &Sandboxes,
    shape: &Shape,
    figures: &mut Figures,
) {
    // Through the library, as `paddock reset` does: a request to the sandbox's VMM process.
    let name = format!("{}-reset", shape.label);
    timed_restore(sandboxes, &shape.snapshot, &name);
    g.bench_function(format!("{}/reset_to_ready", shape.label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                sandboxes.reset(&name, None).expect("reset");
                total += figures.reset.push(started.elapsed());
            }
            total
        })
    });
    sandboxes.remove(&name, true).expect("remove");

    // In this process: the VMM's reset and guest-init's answer, nothing around them.
    let work = tempfile::tempdir().expect("temporary directory");
    let uds = work.path().join("v.sock");
    let (mut vmm, mut link) = restore_ready(&shape.snapshot, &uds);
    g.bench_function(format!("{}/reset_to_ready_in_process", shape.label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                vmm.reset(None).expect("reset");
                link.resume(&vmm, Duration::from_secs(60)).expect("resume");
                total += figures.reset_in_process.push(started.elapsed());
            }
            total
        })
    });
    vmm.stop();
}

/// FORK_RUNS forks of FORK_COUNT, each claiming warm VMMs made ahead (outside the
/// measurement); printed, not sampled by criterion (each is seconds in the lab).
fn fork(sandboxes: &Sandboxes, shape: &Shape, figures: &mut Figures) {
    let warm = sandboxes.pool();
    for run in 0..FORK_RUNS {
        pool::await_refills();
        warm.fill(FORK_COUNT, FILL_TIMEOUT).expect("pool");
        let started = Instant::now();
        let forks = sandboxes
            .fork(
                &shape.snapshot,
                FORK_COUNT,
                &format!("{}-f{run}", shape.label),
                false,
            )
            .expect("fork");
        figures.fork.push(started.elapsed());
        figures.fork_from_pool = forks.iter().filter(|f| f.from_pool).count();
        let pss: u64 = forks.iter().map(|f| rss_pss_kib(f.pid).1).sum();
        figures.fork_pss_kib = pss / forks.len().max(1) as u64;
        for f in &forks {
            let _ = sandboxes.remove(&f.name, true);
        }
    }
    pool::await_refills();
    warm.drain().expect("drain the pool");
}

/// Prints one shape's medians against issue 12's goals.
fn report(shape: &Shape, figures: &Figures) {
    let verdict = |met: bool| if met { "met" } else { "not met" };
    let restore = figures.restore_pool.median();
    let reset = figures.reset.median();
    println!(
        "fast_path/summary {} (medians; goals from issue 12, lab):",
        shape.label
    );
    println!(
        "  restore → ready, warm VMM (library): {} [goal ≤ 53 ms: {}]",
        figures.restore_pool.describe(),
        verdict(restore.is_some_and(|m| m <= 53.0))
    );
    println!(
        "    the caller's spans:\n{}\n    the VMM's spans (from the claim, within the caller's):\n{}",
        figures.restore_pool_caller_spans.describe("      "),
        figures.restore_pool_spans.describe("      ")
    );
    println!(
        "  restore → ready, VMM process started: {}",
        figures.restore_process.describe()
    );
    println!(
        "  restore → ready, in this process: {}",
        figures.restore_in_process.describe()
    );
    println!(
        "    its spans:\n{}",
        figures.restore_in_process_spans.describe("      ")
    );
    println!(
        "  working set pre-faulted: {}",
        figures.pre_faulted_pages.map_or(
            "no (this host's KVM cannot, or no record)".to_string(),
            |p| format!("{p} pages")
        )
    );
    println!(
        "  reset → ready, nothing dirtied (library): {} [goal ≤ 16 ms: {}]",
        figures.reset.describe(),
        verdict(reset.is_some_and(|m| m <= 16.0))
    );
    println!(
        "  reset → ready, in this process: {}",
        figures.reset_in_process.describe()
    );
    if let (Some(wall), Some(one)) = (figures.fork.median(), restore) {
        println!(
            "  fork of {FORK_COUNT}: {} wall, {} from the pool (last), PSS {} KiB each; \
             {:.1} × one restore [goal ≤ {FORK_COUNT} ×: {}]",
            figures.fork.describe(),
            figures.fork_from_pool,
            figures.fork_pss_kib,
            wall / one,
            verdict(wall <= FORK_COUNT as f64 * one)
        );
    }
}

fn fast_path(c: &mut Criterion) {
    if !available() {
        return;
    }
    let work = tempfile::tempdir().expect("temporary directory");
    let sandboxes = Sandboxes::new(Some(&work.path().join("state")));
    let mut shapes = vec![
        Shape {
            label: "minimal_256mib",
            snapshot: minimal_snapshot(&sandboxes, 256, work.path()),
        },
        Shape {
            label: "minimal_4gib",
            snapshot: minimal_snapshot(&sandboxes, 4096, work.path()),
        },
    ];
    if agent_available() {
        shapes.push(Shape {
            label: "agent",
            snapshot: agent_template(&sandboxes),
        });
    }
    let mut results = Vec::new();
    for shape in &shapes {
        let mut figures = Figures::default();
        let mut g = group(c);
        restores(&mut g, &sandboxes, shape, &mut figures);
        resets(&mut g, &sandboxes, shape, &mut figures);
        g.finish();
        fork(&sandboxes, shape, &mut figures);
        report(shape, &figures);
        results.push(figures);
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "fast_path: every figure below is from this one run (one lab boot, where there is one), \
         host kernel {}",
        kernel.trim()
    );
    for (shape, figures) in shapes.iter().zip(&results) {
        report(shape, figures);
    }
}

criterion_group!(benches, fast_path);
criterion_main!(benches);
