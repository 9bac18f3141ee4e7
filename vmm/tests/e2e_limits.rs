//! End-to-end tests of per-sandbox resource limits: each VMM in its own cgroup v2 with memory,
//! CPU and pids limits, charged for its guest's memory from the start (natively with hardware
//! KVM, or in the lab, which mounts cgroup v2 at /sys/fs/cgroup).

mod common;

use common::{e2e_available, text, Scratch};
use std::path::{Path, PathBuf};

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The cgroup v2 directory process `pid` runs in.
fn cgroup_of(pid: u32) -> PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup v2 line in {own:?}"));
    Path::new(CGROUP_MOUNT).join(path.trim().trim_start_matches('/'))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

/// Whether this host has cgroup v2 (the lab always does; a native host says if not).
fn cgroup_v2_here() -> bool {
    let here = Path::new(CGROUP_MOUNT).join("cgroup.controllers").exists();
    if !here {
        assert!(
            std::env::var_os("PADDOCK_E2E_REQUIRED").is_none() || !Path::new("/init").exists(),
            "the lab mounts cgroup v2; it is missing"
        );
        eprintln!("skipped: no cgroup v2 mounted at {CGROUP_MOUNT}");
    }
    here
}

#[test]
fn a_sandbox_runs_in_its_own_cgroup_with_memory_cpu_and_pids_limits() {
    if !e2e_available() || !cgroup_v2_here() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "lim", "--memory", "256", "--cpus", "0.5"]);
    let pid = s.pid_of("lim");
    let cgroup = cgroup_of(pid);
    assert_eq!(
        cgroup.file_name().map(|n| n.to_string_lossy().into_owned()),
        Some(format!("lim-{pid}")),
        "{}",
        cgroup.display()
    );
    // Guest RAM plus the VMM's overhead (at least 128 MiB); half a CPU; a pids limit.
    assert_eq!(
        read(&cgroup, "memory.max"),
        ((256u64 + 128) << 20).to_string()
    );
    assert_eq!(read(&cgroup, "cpu.max"), "50000 100000");
    assert_eq!(read(&cgroup, "pids.max"), "512");
    // The VMM is in it (with any helper it started; the egress proxy is not its child).
    let procs = read(&cgroup, "cgroup.procs");
    let members: Vec<String> = procs
        .lines()
        .map(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!(
                "{p}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect();
    eprintln!("cgroup members: {members:?}");
    assert!(procs.lines().any(|p| p == pid.to_string()), "{members:?}");

    // The guest fills 100 MiB of its memory: the VMM is charged for it, within its limit, and
    // goes on serving.
    let out = s.cli(&[
        "exec",
        "lim",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null && echo filled",
    ]);
    assert_eq!(text(&out.stdout), "filled\n", "{}", text(&out.stderr));
    let current: u64 = read(&cgroup, "memory.current").parse().unwrap();
    assert!(
        current > 100 << 20 && current <= (256 + 128) << 20,
        "memory.current {current}"
    );
    assert_eq!(s.ok(&["exec", "lim", "--", "echo", "alive"]), "alive\n");

    // Removing the sandbox removes its cgroup.
    s.ok(&["rm", "-f", "lim"]);
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    s.assert_clean();
}

#[test]
fn without_a_cgroup_sandboxes_run_unlimited_and_say_so_once() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let off = [("PADDOCK_CGROUP", "off")];
    let first = s.cli_env(&["start", "--name", "a", "--cpus", "1"], &off);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains("without resource limits")
            && text(&first.stderr).contains("PADDOCK_CGROUP=off"),
        "{}",
        text(&first.stderr)
    );
    let second = s.cli_env(&["start", "--name", "b"], &off);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(
        !text(&second.stderr).contains("without resource limits"),
        "said twice: {}",
        text(&second.stderr)
    );
    assert_eq!(s.ok(&["exec", "a", "--", "echo", "up"]), "up\n");
    // A throwaway run is not a sandbox with a cgroup: --cpus is refused, clearly.
    let out = s.cli(&["run", "--cpus", "1", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("--cpus limits sandboxes"),
        "{}",
        text(&out.stderr)
    );
    // Out-of-range quotas are refused before anything starts.
    let out = s.cli(&["start", "--name", "c", "--cpus", "0"]);
    assert_ne!(out.status.code(), Some(0));
    s.ok(&["rm", "-f", "a"]);
    s.ok(&["rm", "-f", "b"]);
    s.assert_clean();
}
