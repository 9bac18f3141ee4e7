//! The workspace share against the guest's own tmpfs, in one agent sandbox: sequential write
//! and read of 256 MiB, create + stat + delete of 10,000 small files, and `git status` on a
//! 10,000-file tree (cold and warm caches), each timed inside the guest
//! (`benches/workspace/workloads.sh`), with the ratio share / tmpfs; the same on a
//! copy-on-write share. Then, sampled by criterion, a small file read 100 times (the round
//! trip of one request) on each.
//!
//! Run with `cargo xtask bench workspace` (natively with hardware KVM, otherwise inside the lab,
//! where every figure is software-emulated and only comparable to other lab figures). Sizes:
//! `PADDOCK_BENCH_WORKSPACE_MIB` (256), `PADDOCK_BENCH_WORKSPACE_FILES` (10000); rounds:
//! `PADDOCK_BENCH_WORKSPACE_ROUNDS` (3).

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_benches::agent_available;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const WORKLOADS: &str = include_str!("../workspace/workloads.sh");
/// Where the guest's own tmpfs is mounted for the comparison.
const TMPFS: &str = "/mnt/paddock-bench";

fn paddock_bin() -> PathBuf {
    std::env::var_os("PADDOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("paddock"))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `paddock ARGS` with sandboxes under `state`; panics with its stderr if it fails.
fn paddock(state: &Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(paddock_bin())
        .arg(args[0])
        .arg("--state-dir")
        .arg(state)
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running paddock");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("writing stdin");
    let out = child.wait_with_output().expect("paddock");
    assert!(
        out.status.success(),
        "paddock {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The workloads in `dir` of sandbox `name`: workload → milliseconds.
fn workloads(state: &Path, name: &str, dir: &str, mib: u64, files: u64) -> BTreeMap<String, u64> {
    let out = paddock(
        state,
        &[
            "exec",
            name,
            "--",
            "bash",
            "-s",
            "--",
            dir,
            &mib.to_string(),
            &files.to_string(),
        ],
        WORKLOADS.as_bytes(),
    );
    out.lines()
        .filter_map(|line| {
            let (name, ms) = line.split_once(' ')?;
            Some((name.to_string(), ms.trim().parse().ok()?))
        })
        .collect()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Runs the workloads `rounds` times in `sandbox` on each of `places` (label, directory);
/// workload and label → median milliseconds.
fn medians(
    state: &Path,
    sandbox: &str,
    places: &[(&'static str, &str)],
) -> BTreeMap<(String, &'static str), u64> {
    let mib = env_or("PADDOCK_BENCH_WORKSPACE_MIB", 256);
    let files = env_or("PADDOCK_BENCH_WORKSPACE_FILES", 10_000);
    let rounds = env_or("PADDOCK_BENCH_WORKSPACE_ROUNDS", 3);
    let mut runs: BTreeMap<(String, &'static str), Vec<u64>> = BTreeMap::new();
    for _ in 0..rounds {
        for &(label, dir) in places {
            for (workload, ms) in workloads(state, sandbox, dir, mib, files) {
                runs.entry((workload, label)).or_default().push(ms);
            }
        }
    }
    runs.into_iter().map(|(k, v)| (k, median(v))).collect()
}

/// Prints each figure beside the guest tmpfs's.
fn print_against_tmpfs(medians: &BTreeMap<(String, &'static str), u64>) {
    let rounds = env_or("PADDOCK_BENCH_WORKSPACE_ROUNDS", 3);
    for ((workload, label), ms) in medians {
        if *label == "tmpfs" {
            continue;
        }
        match medians.get(&(workload.clone(), "tmpfs")).copied() {
            Some(tmpfs) => println!(
                "workspace/{workload}/{label}: {ms} ms, guest tmpfs {tmpfs} ms, ratio {:.1}x \
                 (median of {rounds})",
                *ms as f64 / tmpfs.max(1) as f64
            ),
            None => println!("workspace/{workload}/{label}: {ms} ms (median of {rounds})"),
        }
    }
}

/// Guest-timed: `iters` reads of one small file in `dir`, in one exec.
fn small_reads(state: &Path, dir: &str, iters: u64) -> Duration {
    let script = format!(
        "cd {dir} && echo small > .paddock-small && sync && echo 3 > /proc/sys/vm/drop_caches && \
         s=$(date +%s%N); i=0; while [ $i -lt {iters} ]; do cat .paddock-small > /dev/null; \
         i=$((i+1)); done; echo $(( $(date +%s%N) - s )); rm -f .paddock-small"
    );
    let out = paddock(state, &["exec", "ws", "--", "bash", "-c", &script], b"");
    Duration::from_nanos(out.trim().parse().expect("nanoseconds"))
}

fn workspace(c: &mut Criterion) {
    if !agent_available() {
        return;
    }
    let work = tempfile::tempdir().expect("scratch");
    let state = work.path().join("state");
    let project = work.path().join("project");
    std::fs::create_dir(&project).expect("project dir");
    let project = project.canonicalize().expect("project dir");
    let project_str = project.to_str().expect("a UTF-8 path");
    // One agent sandbox at a time (two guests of 2 GiB do not fit every lab machine).
    paddock(
        &state,
        &["start", "--name", "ws", "--workspace", project_str],
        b"",
    );
    paddock(
        &state,
        &[
            "exec",
            "ws",
            "--",
            "sh",
            "-c",
            &format!("mkdir -p {TMPFS} && mount -t tmpfs -o size=1g tmpfs {TMPFS}"),
        ],
        b"",
    );
    let filtered = std::env::args().skip(1).any(|arg| !arg.starts_with("--"));
    let mut figures = BTreeMap::new();
    if !filtered {
        figures = medians(&state, "ws", &[("share", project_str), ("tmpfs", TMPFS)]);
    }

    let mut g = c.benchmark_group("workspace");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    for (label, dir) in [("share", project_str), ("tmpfs", TMPFS)] {
        g.bench_function(format!("read_small_file/{label}"), |b| {
            b.iter_custom(|iters| small_reads(&state, dir, iters))
        });
    }
    g.finish();
    paddock(&state, &["rm", "--force", "ws"], b"");

    if !filtered {
        paddock(
            &state,
            &[
                "start",
                "--name",
                "wscow",
                "--workspace",
                project_str,
                "--workspace-mode",
                "cow",
            ],
            b"",
        );
        figures.extend(medians(&state, "wscow", &[("cow_share", project_str)]));
        paddock(&state, &["rm", "--force", "wscow"], b"");
        print_against_tmpfs(&figures);
    }
}

criterion_group!(benches, workspace);
criterion_main!(benches);
