//! End-to-end tests of the VMM's seccomp filters: every thread of a sandbox's VMM is confined
//! (and holds no capability) after a boot, a restore, a reset and a fork, the sandbox works
//! under them, and a syscall outside them ends the VMM with SIGSYS and a message naming it.

mod common;

use common::{e2e_available, Scratch};
use std::time::{Duration, Instant};

/// Each thread of process `pid`: its name and its `Seccomp:` mode.
fn thread_modes(pid: u32) -> Vec<(String, String)> {
    let mut modes = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        modes.push((field("Name:"), field("Seccomp:")));
        // No capability left on any thread, whoever started paddock (the lab: root).
        for set in ["CapEff:", "CapPrm:", "CapInh:"] {
            assert_eq!(
                field(set),
                "0000000000000000",
                "{set} of {} in {pid}",
                field("Name:")
            );
        }
    }
    modes.sort();
    modes
}

/// Asserts every thread of the sandbox's VMM runs under a filter (mode 2), the vCPUs, the
/// device event loop and the control thread among them.
fn assert_confined(s: &Scratch, name: &str) {
    let pid = s.pid_of(name);
    let modes = thread_modes(pid);
    eprintln!("{name} (pid {pid}): {modes:?}");
    for (thread, mode) in &modes {
        assert_eq!(mode, "2", "thread {thread} of {name}: {modes:?}");
    }
    for thread in ["vcpu0", "vmm-events", "vmm-control"] {
        assert!(
            modes.iter().any(|(t, _)| t == thread),
            "no {thread} thread in {modes:?}"
        );
    }
}

fn exec_ok(s: &Scratch, name: &str) {
    assert_eq!(s.ok(&["exec", name, "--", "echo", "fine"]).trim(), "fine");
}

#[test]
fn every_vmm_thread_is_confined_after_boot_restore_and_reset() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "sc"]);
    assert_confined(&s, "sc");
    exec_ok(&s, "sc");
    let snap = s.path("snap");
    s.ok(&["snapshot", "sc", snap.to_str().unwrap()]);
    s.ok(&["restore", snap.to_str().unwrap(), "--name", "sc2"]);
    assert_confined(&s, "sc2");
    exec_ok(&s, "sc2");
    s.ok(&["reset", "sc2"]);
    assert_confined(&s, "sc2");
    exec_ok(&s, "sc2");
    s.ok(&[
        "fork",
        snap.to_str().unwrap(),
        "--count",
        "1",
        "--prefix",
        "f",
    ]);
    assert_confined(&s, "f-0");
    exec_ok(&s, "f-0");
    for name in ["sc", "sc2", "f-0"] {
        s.ok(&["rm", "--force", name]);
    }
}

#[test]
fn no_seccomp_runs_unconfined_and_says_so() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = s.cli(&["start", "--name", "open", "--no-seccomp"]);
    assert!(out.status.success(), "{}", s.sandbox_logs("open"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WITHOUT its seccomp"), "{stderr}");
    let modes = thread_modes(s.pid_of("open"));
    assert!(modes.iter().all(|(_, m)| m == "0"), "{modes:?}");
    exec_ok(&s, "open");
    s.ok(&["rm", "--force", "open"]);
}

#[test]
fn a_forbidden_syscall_ends_the_vmm_with_sigsys_and_a_message() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = s.cli_env(
        &["start", "--name", "bad"],
        &[("PADDOCK_TEST_FORBIDDEN_SYSCALL", "1")],
    );
    assert!(out.status.success(), "{}", s.sandbox_logs("bad"));
    let paths =
        paddock_vmm::sandbox::paths::SandboxPaths::new(&s.state_dir(), "bad").expect("paths");
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = std::fs::read_to_string(paths.vmm_log()).unwrap_or_default();
        if log.contains("SIGSYS") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        log.contains("was killed by its seccomp filter (SIGSYS)"),
        "{log}"
    );
    // Root (the lab) reads the kernel's log: the syscall is named.
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } == 0 {
        assert!(log.contains("called getuid (syscall 102)"), "{log}");
    }
    let listed = s.ok(&["ls", "--json"]);
    assert!(!listed.contains("\"running\""), "{listed}");
    s.ok(&["rm", "--force", "bad"]);
}
