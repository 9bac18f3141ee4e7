//! `cargo xtask build|run|ci|bench`: the default artifacts, running a sandbox, the whole test
//! suite and the benchmarks — natively where hardware KVM exists, otherwise inside the lab.

use crate::util::{self, run, STATIC_TARGET};
use crate::{kernel, lab, rootfs};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Builds the guest kernel, the initramfs, the agent root image and the static `paddock` binary.
pub fn build_artifacts() -> Result<String> {
    let kernel = kernel::build(None)?;
    let rootfs = rootfs::build("minimal")?;
    let image = rootfs::build("agent")?;
    let paddock = util::build_static_bin("paddock-vmm", "paddock")?;
    Ok(format!(
        "kernel  {}\nrootfs  {}\nimage   {}\npaddock {}",
        kernel.display(),
        rootfs.display(),
        image.display(),
        paddock.display()
    ))
}

/// Builds everything and runs `command` in a sandbox (`paddock run -- command`).
pub fn run_in_sandbox(command: &[String]) -> Result<i32> {
    eprintln!("{}", build_artifacts()?);
    let mut paddock_cmd = vec!["paddock".to_string(), "run".to_string(), "--".to_string()];
    paddock_cmd.extend_from_slice(command);
    if util::host_has_hardware_kvm() {
        let paddock = util::target_dir()
            .join(STATIC_TARGET)
            .join("release/paddock");
        let status = Command::new(paddock).args(&paddock_cmd[1..]).status()?;
        Ok(status.code().unwrap_or(1))
    } else {
        eprintln!("xtask: no hardware KVM here; running in the lab (software-emulated, slow)");
        lab::run(&[], &paddock_cmd)
    }
}

/// Builds a static test or bench executable and returns its path.
fn build_static_test_binary(
    package: &str,
    kind: &str,
    name: &str,
    extra: &[&str],
) -> Result<PathBuf> {
    let out = util::output(
        Command::new(env!("CARGO"))
            .current_dir(util::project_root())
            .args([
                "build",
                "--release",
                "--message-format=json",
                "--package",
                package,
                &format!("--{kind}"),
                name,
                "--target",
                STATIC_TARGET,
            ])
            .args(extra)
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            ),
    )?;
    for line in out.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == name {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo did not report an executable for {kind} {name}")
}

/// Runs a static test binary natively or in the lab, with the default artifacts and paddock.
fn run_end_to_end(binary: &PathBuf, args: &[&str]) -> Result<i32> {
    if util::host_has_hardware_kvm() {
        let status = Command::new(binary)
            .args(args)
            .env("PADDOCK_E2E_REQUIRED", "1")
            .env(
                "PADDOCK_BIN",
                util::target_dir()
                    .join(STATIC_TARGET)
                    .join("release/paddock"),
            )
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        return Ok(status.code().unwrap_or(1));
    }
    let inside = "/usr/bin/paddock-e2e".to_string();
    let mut command = vec![inside.clone()];
    command.extend(args.iter().map(|s| s.to_string()));
    let mut files = lab::default_files()?;
    files.push((binary.clone(), inside));
    let mut env = vec![
        ("PADDOCK_E2E_REQUIRED".into(), "1".into()),
        ("PADDOCK_BIN".into(), "/usr/bin/paddock".into()),
    ];
    // The benchmarks' own settings (`PADDOCK_BENCH_*`) go along into the lab.
    env.extend(std::env::vars().filter(|(name, _)| name.starts_with("PADDOCK_BENCH_")));
    lab::run_with(&files, &env, &command)
}

/// How long one end-to-end test binary may run in the lab.
const BINARY_LIMIT_SECS: u32 = 1500;

/// Runs every test binary in turn (one lab boot for all of them); the first failure's status.
fn run_end_to_end_suite(binaries: &[PathBuf], test_args: &[String]) -> Result<i32> {
    let mut args = vec!["--test-threads=1"];
    args.extend(test_args.iter().map(String::as_str));
    if util::host_has_hardware_kvm() {
        // The malicious-guest suite looks for its guest program beside paddock.
        util::build_static_bin("hostile-guest", "paddock-hostile")?;
        let mut first_failure = 0;
        for binary in binaries {
            let status = run_end_to_end(binary, &args)?;
            if first_failure == 0 {
                first_failure = status;
            }
        }
        return Ok(first_failure);
    }
    let mut files = lab::default_files()?;
    let mut inside = Vec::new();
    for (i, binary) in binaries.iter().enumerate() {
        let path = format!("/usr/bin/paddock-e2e-{i}");
        files.push((binary.clone(), path.clone()));
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        inside.push((path, name));
    }
    let script = |done: &[String]| -> Result<Vec<String>> {
        Ok(vec![
            "sh".to_string(),
            "-c".to_string(),
            suite_script(&inside, &args, done)?,
        ])
    };
    lab::run_resumable(
        &files,
        &[
            ("PADDOCK_E2E_REQUIRED".into(), "1".into()),
            ("PADDOCK_BIN".into(), "/usr/bin/paddock".into()),
            ("PADDOCK_SECCOMP_WATCH".into(), "1".into()),
            // `PADDOCK_SECCOMP=log cargo xtask ci --e2e-only` lists what the filters lack.
            (
                "PADDOCK_SECCOMP".into(),
                std::env::var("PADDOCK_SECCOMP").unwrap_or_default(),
            ),
            // `PADDOCK_JAIL=off cargo xtask ci --e2e-only` runs the VMMs unjailed (to tell
            // whether a failure is the jail's).
            (
                "PADDOCK_JAIL".into(),
                std::env::var("PADDOCK_JAIL").unwrap_or_default(),
            ),
        ],
        &script,
    )
}

/// The lab's script for the test binaries (path inside the lab, name) not yet in `done`.
/// Every binary runs even after one fails (each failure is worth seeing); the exit status is
/// the first failure's. Each one reports `INDEX:STATUS` when it ends, so a lab that goes down
/// is resumed at the binary it was running. A binary that hangs is cut off after
/// BINARY_LIMIT_SECS (its tests' own commands time out sooner), so one hang cannot use up the
/// lab's whole time.
///
/// The tests a binary reports FAILED run once more, alone (`--exact`), in the same lab: KVM
/// nested under qemu TCG now and then crashes a guest (a triple fault no hardware host shows,
/// docs/BENCHMARKS.md), and rerunning one test costs seconds where rerunning the suite costs
/// half an hour. A test that fails twice fails the suite; one that passes the second time is
/// named in a FLAKY line, so it is seen, never hidden.
fn suite_script(binaries: &[(String, String)], args: &[&str], done: &[String]) -> Result<String> {
    let mut status = 0;
    let mut finished = std::collections::BTreeSet::new();
    for label in done {
        let (index, rc) = label
            .split_once(':')
            .and_then(|(i, rc)| Some((i.parse::<usize>().ok()?, rc.parse::<i32>().ok()?)))
            .with_context(|| format!("the lab reported an unreadable step {label:?}"))?;
        finished.insert(index);
        if status == 0 {
            status = rc;
        }
    }
    // Options only: a name filter would select other tests than the failed ones on the rerun.
    let options: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| a.starts_with('-'))
        .collect();
    // The kernel's seccomp records (a VMM its filter killed, or with PADDOCK_SECCOMP=log every
    // syscall a filter lacks), collected while the tests run and summed up at the end.
    let seccomp_log = "${TMPDIR:-/tmp}/paddock-seccomp.log";
    let mut script = format!(
        "status={status}; \
         watcher=; [ -n \"$PADDOCK_SECCOMP_WATCH\" ] && [ -r /dev/kmsg ] && {{ awk '/type=1326/ {{ print; fflush() }}' /dev/kmsg \
           >{seccomp_log} 2>/dev/null & watcher=$!; }}; \
         seccomp_records() {{ [ -s {seccomp_log} ] || return 0; \
             echo 'xtask: seccomp records in the kernel log so far (count, thread, syscall number):'; \
             sed -n 's/.*comm=\"\\([^\"]*\\)\".*syscall=\\([0-9]*\\).*/\\1 \\2/p' {seccomp_log} \
               | sort | uniq -c; }}"
    );
    for (i, (path, name)) in binaries.iter().enumerate() {
        if finished.contains(&i) {
            continue;
        }
        let out = format!("${{TMPDIR:-/tmp}}/paddock-e2e-{i}.out");
        let rc_file = format!("${{TMPDIR:-/tmp}}/paddock-e2e-{i}.rc");
        let run = |extra: &str| {
            format!(
                "{{ timeout -s KILL {BINARY_LIMIT_SECS} {path} {extra}; echo $? >{rc_file}; }} 2>&1 \
                 | tee {out}; rc=$(cat {rc_file})"
            )
        };
        script.push_str(&format!(
            "; {first}; \
             if [ $rc -ne 0 ]; then \
               failed=$(sed -n 's/^test \\(.*\\) \\.\\.\\. FAILED$/\\1/p' {out} | tr '\\n' ' '); \
               if [ -n \"$failed\" ]; then \
                 echo \"xtask: {name}: running the failed tests once more: $failed\"; \
                 {again}; \
                 [ $rc -ne 0 ] || echo \"xtask: {name}: FLAKY: failed, then passed when run again: $failed\"; \
               fi; \
             fi; \
             seccomp_records; \
             echo \"${{PADDOCK_LAB_DONE}}{i}:$rc\"; \
             [ $rc -eq 0 ] || {{ echo \"xtask: {name} ended with status $rc\"; [ $status -ne 0 ] || status=$rc; }}",
            first = run(&args.join(" ")),
            again = run(&format!("{} --exact $failed", options.join(" "))),
        ));
    }
    script.push_str("; [ -z \"$watcher\" ] || kill $watcher 2>/dev/null; exit $status");
    Ok(script)
}

/// The whole test suite: formatting-independent unit tests, then the end-to-end tests.
pub fn ci(e2e_only: bool, no_e2e: bool, test_args: &[String]) -> Result<()> {
    let root = util::project_root();
    // Every host tool, up front: the unit tests run some (cpio), the builds and the lab the
    // rest, and a fresh machine should learn what is missing before minutes of building.
    crate::tools::ensure(crate::tools::Tool::ALL)?;
    if !e2e_only {
        // The written rules: formatting and clippy's warnings (the tidy test runs with the unit
        // tests).
        eprintln!("xtask ci: cargo fmt --check, cargo clippy");
        // The fuzz targets are a workspace of their own (its clippy build cached outside the
        // checkout).
        let fuzz_target_dir = util::cache_dir().join("fuzz/clippy-target");
        for (manifest, target_dir) in [
            ("Cargo.toml", None),
            ("fuzz/Cargo.toml", Some(&fuzz_target_dir)),
        ] {
            let manifest = ["--manifest-path", manifest];
            run(Command::new(env!("CARGO"))
                .current_dir(&root)
                .args(["fmt", "--all", "--check"])
                .args(manifest))?;
            let mut clippy = Command::new(env!("CARGO"));
            clippy
                .current_dir(&root)
                .arg("clippy")
                .args(manifest)
                .args([
                    "--workspace",
                    "--all-targets",
                    "--quiet",
                    "--",
                    "-D",
                    "warnings",
                ]);
            if let Some(dir) = target_dir {
                clippy.env("CARGO_TARGET_DIR", dir);
            }
            run(&mut clippy)?;
        }
        eprintln!("xtask ci: unit tests");
        run(Command::new(env!("CARGO")).current_dir(&root).args([
            "test",
            "--workspace",
            "--quiet",
        ]))?;
        eprintln!(
            "xtask ci: every fuzz target for {} s",
            crate::fuzz::CI_SECONDS
        );
        crate::fuzz::fuzz(None, crate::fuzz::CI_SECONDS)?;
    }
    if no_e2e {
        return Ok(());
    }
    eprintln!("xtask ci: building artifacts");
    eprintln!("{}", build_artifacts()?);
    eprintln!(
        "xtask ci: end-to-end tests ({})",
        if util::host_has_hardware_kvm() {
            "native KVM"
        } else {
            "lab"
        }
    );
    let mut binaries = Vec::new();
    // Every vmm/tests/e2e*.rs, found by name: a new end-to-end test file runs without a list
    // to update.
    // `PADDOCK_E2E_BINARIES=e2e_run,e2e_seccomp` runs only those files (when looking into one
    // part: CI runs them all).
    let only = std::env::var("PADDOCK_E2E_BINARIES").ok();
    for test in crate::tidy::end_to_end_tests(&util::project_root())? {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|name| name.trim() == test))
        {
            continue;
        }
        binaries.push(build_static_test_binary("paddock-vmm", "test", &test, &[])?);
    }
    let status = run_end_to_end_suite(&binaries, test_args)?;
    if status != 0 {
        bail!("end-to-end tests failed (exit status {status})");
    }
    Ok(())
}

/// Runs the criterion benchmarks (natively or in the lab): `vm` (the minimal guest),
/// `fast_path` (issue 12's restore, reset and fork figures for three guests), `engine` (the
/// agent profile), `run` (`paddock run shell` as a user meets it) and `workspace` (the
/// share against the guest's tmpfs), each in its own lab boot, and, natively (no VM in them),
/// `egress` (the egress proxy on loopback), `pagemap` (finding a reset's written pages) and
/// `working_set` (a restore's first touches, cold and warm); a filter naming one of them (or a
/// benchmark inside it) runs only that one.
pub fn bench(filter: Option<&str>) -> Result<()> {
    const TARGETS: [&str; 9] = [
        "vm",
        "fast_path",
        "engine",
        "run",
        "workspace",
        "workspace_native",
        "egress",
        "pagemap",
        "working_set",
    ];
    const NATIVE: [&str; 4] = ["egress", "pagemap", "working_set", "workspace_native"];
    if !filter.is_some_and(|f| NATIVE.contains(&f)) {
        build_artifacts()?;
    }
    for target in TARGETS {
        let criterion_filter = match filter {
            Some(f) if f == target => None,
            Some(f) if TARGETS.contains(&f) => continue,
            other => other,
        };
        if NATIVE.contains(&target) {
            // No VM, so no lab either.
            let mut cmd = Command::new(env!("CARGO"));
            cmd.current_dir(util::project_root()).args([
                "bench",
                "--package",
                "paddock-benches",
                "--bench",
                target,
                "--",
            ]);
            cmd.args(criterion_filter);
            run(&mut cmd)?;
            continue;
        }
        let bench = build_static_test_binary("paddock-benches", "bench", target, &[])?;
        let mut args = vec!["--bench"];
        args.extend(criterion_filter);
        let status = run_end_to_end(&bench, &args)?;
        if status != 0 {
            bail!("benchmarks {target} failed (exit status {status})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Runs the suite script with `sh`, the binaries being small shell commands.
    fn run_suite(binaries: &[(&str, &str)], done: &[&str]) -> (i32, String) {
        let tmp = tempfile::tempdir().unwrap();
        run_suite_in(tmp.path(), binaries, done)
    }

    fn run_suite_in(tmp: &Path, binaries: &[(&str, &str)], done: &[&str]) -> (i32, String) {
        let binaries: Vec<(String, String)> = binaries
            .iter()
            .map(|(path, name)| (path.to_string(), name.to_string()))
            .collect();
        let done: Vec<String> = done.iter().map(|d| d.to_string()).collect();
        let script = suite_script(&binaries, &[], &done).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PADDOCK_LAB_DONE", "DONE=")
            .env("TMPDIR", tmp)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn every_binary_runs_and_the_first_failure_is_the_status() {
        let (status, out) = run_suite(
            &[("true", "a"), ("false", "b"), ("sh -c 'exit 7'", "c")],
            &[],
        );
        assert_eq!(status, 1, "{out}");
        assert!(
            out.contains("DONE=0:0\nDONE=1:1\nxtask: b ended with status 1\n"),
            "{out}"
        );
        assert!(
            out.contains("DONE=2:7\nxtask: c ended with status 7\n"),
            "{out}"
        );
    }

    #[test]
    fn a_resumed_suite_skips_the_finished_binaries_and_keeps_their_status() {
        let (status, out) = run_suite(&[("false", "a"), ("true", "b")], &["0:3"]);
        assert_eq!(status, 3, "{out}");
        assert_eq!(out, "DONE=1:0\n");
        let (status, out) = run_suite(&[("true", "a"), ("true", "b")], &["0:0", "1:0"]);
        assert_eq!((status, out.as_str()), (0, ""));
        assert!(suite_script(&[], &[], &["x".to_owned()]).is_err());
    }

    /// A test binary as libtest prints one: `t::flaky` fails on its first run only, `t::broken`
    /// always; `--exact NAME...` runs just those.
    fn fake_test_binary(dir: &Path) -> String {
        let path = dir.join("fake-tests");
        std::fs::write(
            &path,
            r#"#!/bin/sh
state="$(dirname "$0")/ran-before"
[ "$1" = --exact ] && { shift; names="$*"; } || names="t::ok t::flaky t::broken"
rc=0
for name in $names; do
    case "$name" in
        t::ok) echo "test $name ... ok" ;;
        t::flaky) if [ -e "$state" ]; then echo "test $name ... ok"; else echo "test $name ... FAILED"; rc=101; fi ;;
        t::broken) echo "test $name ... FAILED"; rc=101 ;;
    esac
done
touch "$state"
exit $rc
"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn failed_tests_run_once_more_alone_and_a_pass_then_is_called_flaky() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = fake_test_binary(tmp.path());
        let (status, out) = run_suite_in(tmp.path(), &[(&fake, "e2e_x")], &[]);
        // Both t::flaky and t::broken failed, and t::broken fails again.
        assert_eq!(status, 101, "{out}");
        assert!(
            out.contains("running the failed tests once more: t::flaky t::broken"),
            "{out}"
        );
        assert!(out.contains("test t::flaky ... ok"), "{out}");
        assert!(!out.contains("FLAKY"), "{out}");
        assert!(out.contains("DONE=0:101\n"), "{out}");
    }

    #[test]
    fn a_test_that_passes_when_run_again_passes_the_suite_with_a_flaky_line() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = fake_test_binary(tmp.path());
        // Without t::broken: only the flaky test fails, once.
        let script = tmp.path().join("no-broken");
        std::fs::write(
            &script,
            format!("#!/bin/sh\n[ \"$1\" = --exact ] || set -- --exact t::ok t::flaky\nexec {fake} \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let (status, out) = run_suite_in(tmp.path(), &[(&script.to_string_lossy(), "e2e_x")], &[]);
        assert_eq!(status, 0, "{out}");
        assert!(
            out.contains("xtask: e2e_x: FLAKY: failed, then passed when run again: t::flaky"),
            "{out}"
        );
        assert!(out.contains("DONE=0:0\n"), "{out}");
    }
}
