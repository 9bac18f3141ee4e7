//! `cargo xtask fuzz [TARGET] [--seconds N]`: builds the libFuzzer targets in `fuzz/` with
//! cargo-fuzz (AddressSanitizer, debug assertions), writes their seed corpora with the project's
//! own encoders, and runs each target (or the one named) for N seconds on a corpus kept under
//! `~/.cache/paddock/fuzz/corpus/TARGET`, so every run starts where the last one stopped.
//! A crash fails the command with the input's path and the command that replays it.

use crate::util::{self, run};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Seconds per target when `cargo xtask ci` runs them.
pub const CI_SECONDS: u64 = 20;
/// The cargo-fuzz release xtask installs when none is on PATH (from crates.io).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The build target cargo-fuzz compiles for.
const FUZZ_TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// Lines of a failing target's log shown with the error.
const LOG_TAIL_LINES: usize = 60;

/// Every target: the files of `fuzz/fuzz_targets/`, found by name (no list to forget).
pub fn targets(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            if let Some(stem) = path.file_stem() {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Builds every target, then fuzzes `only` (or every target) for `seconds` each.
pub fn fuzz(only: Option<&str>, seconds: u64) -> Result<()> {
    let root = util::project_root();
    let all = targets(&root)?;
    let chosen: Vec<&String> = match only {
        Some(name) => match all.iter().find(|t| *t == name) {
            Some(target) => vec![target],
            None => bail!("no fuzz target {name:?} (there are: {})", all.join(", ")),
        },
        None => all.iter().collect(),
    };
    ensure_cargo_fuzz()?;
    let cache = util::cache_dir().join("fuzz");
    let target_dir = cache.join("target");
    eprintln!("xtask fuzz: building {} targets", all.len());
    run(&mut cargo_fuzz(&root, &target_dir, "build"))?;

    // Seeds are rewritten each run (they follow the encoders); the corpus is kept.
    let seeds = cache.join("seeds");
    let _ = std::fs::remove_dir_all(&seeds);
    let writer = target_dir.join(FUZZ_TRIPLE).join("release/fuzz-seeds");
    run(Command::new(&writer).arg(&seeds))?;

    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut summary = Vec::new();
    for target in chosen {
        let target_seeds = seeds.join(target);
        if !target_seeds.is_dir() {
            bail!("fuzz target {target} has no seeds: add them to fuzz/src/seeds.rs");
        }
        let corpus = cache.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let log = logs.join(format!("{target}.log"));
        eprintln!("xtask fuzz: {target} for {seconds} s");
        let status = cargo_fuzz(&root, &target_dir, "run")
            .arg(target)
            .arg(&corpus)
            .arg(&target_seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A single input that runs for seconds is a hang worth reporting.
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log)?,
            ))
            .status()
            .context("running cargo fuzz")?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(LOG_TAIL_LINES).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed ({status}); its input is under fuzz/artifacts/{target}/, \
                 replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run {target} INPUT`; log {}:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        summary.push(format!(
            "{target:<18} {:>10} runs  corpus {:>5} inputs",
            final_stat(&text, "stat::number_of_executed_units:").unwrap_or_else(|| "?".into()),
            std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0)
        ));
    }
    eprintln!("xtask fuzz: no crash in {seconds} s per target:");
    for line in summary {
        eprintln!("  {line}");
    }
    Ok(())
}

/// `cargo fuzz SUBCOMMAND` in the project, its build cached outside the checkout (a clean
/// clone reuses it). cargo-fuzz passes nightly-only flags (the sanitizer); RUSTC_BOOTSTRAP lets
/// the machine's one stable toolchain take them.
fn cargo_fuzz(root: &Path, target_dir: &Path, subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", subcommand, "--target-dir"])
        .arg(target_dir);
    command
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` is not available.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io");
    run(Command::new(env!("CARGO")).args([
        "install",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
        "cargo-fuzz",
    ]))
}

/// The value libFuzzer printed for `key` in its final stats.
fn final_stat(log: &str, key: &str) -> Option<String> {
    log.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(key))
        .map(|value| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_file_is_found_and_declared_in_the_manifest() {
        let root = util::project_root();
        let targets = targets(&root).unwrap();
        assert!(targets.len() >= 9, "{targets:?}");
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
        let seeds = std::fs::read_to_string(root.join("fuzz/src/seeds.rs")).unwrap();
        for target in &targets {
            assert!(
                manifest.contains(&format!("path = \"fuzz_targets/{target}.rs\"")),
                "fuzz/Cargo.toml lacks a [[bin]] for {target}"
            );
            assert!(
                seeds.contains(&format!("(\"{target}\", ")),
                "fuzz/src/seeds.rs has no seeds for {target}"
            );
        }
    }

    #[test]
    fn final_stats_are_read_from_the_log() {
        let log = "INFO: x\nstat::number_of_executed_units: 1234\nstat::peak_rss_mb: 80\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units:").as_deref(),
            Some("1234")
        );
        assert_eq!(final_stat(log, "stat::missing:"), None);
    }
}
