//! End-to-end tests of the VMM's seccomp filters: every thread of a sandbox's VMM is confined
//! (and holds no capability) after a boot, a restore, a reset and a fork, the sandbox works
//! under them, and a syscall outside them ends the VMM with SIGSYS and a message naming it.
//! Its jail too: namespaces of its own, a root holding only its own files, limits, and no host
//! file reachable.

mod common;

use common::{e2e_available, text, Scratch};
use std::time::{Duration, Instant};

/// A field of a `/proc/.../status` text (`"CapEff:"`), trimmed; empty when absent.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Each thread of process `pid`: its name and its `Seccomp:` mode.
fn thread_modes(pid: u32) -> Vec<(String, String)> {
    let mut modes = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |name: &str| status_field(&status, name);
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
/// device event loop and the main thread (which answers the control socket) among them.
fn assert_confined(s: &Scratch, name: &str) {
    let pid = s.pid_of(name);
    let modes = thread_modes(pid);
    eprintln!("{name} (pid {pid}): {modes:?}");
    for (thread, mode) in &modes {
        assert_eq!(mode, "2", "thread {thread} of {name}: {modes:?}");
    }
    for thread in ["vcpu0", "vmm-events"] {
        assert!(
            modes.iter().any(|(t, _)| t == thread),
            "no {thread} thread in {modes:?}"
        );
    }
}

/// Sandbox `name`'s `vmm.log` once it contains `needle` (or as it is after `limit`).
fn vmm_log_once_it_has(s: &Scratch, name: &str, needle: &str, limit: Duration) -> String {
    let paths =
        paddock_vmm::sandbox::paths::SandboxPaths::new(&s.state_dir(), name).expect("paths");
    let deadline = Instant::now() + limit;
    loop {
        let log = std::fs::read_to_string(paths.vmm_log()).unwrap_or_default();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
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
    // Each sandbox's egress proxy holds no capability and cannot gain one either.
    for name in ["sc", "sc2", "f-0"] {
        let paths = paddock_vmm::sandbox::paths::SandboxPaths::new(&s.state_dir(), name).unwrap();
        let record = paddock_vmm::sandbox::egress::EgressRecord::read(&paths.dir).unwrap();
        let proxy = record.proxy_pid.unwrap();
        let status = std::fs::read_to_string(format!("/proc/{proxy}/status")).unwrap();
        let field = |name: &str| status_field(&status, name);
        for set in ["CapEff:", "CapPrm:", "CapInh:"] {
            assert_eq!(field(set), "0000000000000000", "{set} of {name}'s proxy");
        }
        assert_eq!(field("NoNewPrivs:"), "1", "{name}'s proxy");
        // ... and every one of its threads runs under its filter (installed right after it
        // listens, so within moments of its sandbox starting).
        let filtered = || {
            std::fs::read_dir(format!("/proc/{proxy}/task"))
                .unwrap()
                .all(|task| {
                    let status =
                        std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
                    status_field(&status, "Seccomp:") == "2"
                })
        };
        let since = std::time::Instant::now();
        while !filtered() && since.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(filtered(), "{name}'s proxy has a thread without its filter");
    }
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
    // A cold boot: were the template not built yet, its build's VMM would get the hook too.
    let out = s.cli_env(
        &["start", "--name", "bad", "--cold-boot"],
        &[("PADDOCK_TEST_FORBIDDEN_SYSCALL", "1")],
    );
    assert!(out.status.success(), "{}", s.sandbox_logs("bad"));
    let log = vmm_log_once_it_has(&s, "bad", "SIGSYS", Duration::from_secs(60));
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

/// The namespace `kind` of process `pid` (`mnt:[4026531841]`).
fn namespace(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|l| l.display().to_string())
        .unwrap_or_default()
}

/// Asserts the sandbox's VMM is jailed: its own mount, network and PID namespaces, a root that
/// holds none of the host's system directories, no new privileges, and its limits.
fn assert_jailed(s: &Scratch, name: &str) {
    let pid = s.pid_of(name).to_string();
    for kind in ["mnt", "net", "pid"] {
        assert_ne!(
            namespace(&pid, kind),
            namespace("self", kind),
            "{name}'s VMM shares the host's {kind} namespace"
        );
    }
    let root: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for host_only in ["etc", "usr", "bin", "sbin", "lib", "boot"] {
        assert!(
            !root.contains(&host_only.to_string()),
            "{name}'s root: {root:?}"
        );
    }
    assert!(root.contains(&"dev".to_string()), "{name}'s root: {root:?}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])),
        "{status}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |what: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(what))
            .map(|l| {
                l[what.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        limit("Max open files"),
        paddock_vmm::sandbox::rlimits::OPEN_FILES.to_string(),
        "{limits}"
    );
    assert_eq!(limit("Max core file size"), "0", "{limits}");
    assert_ne!(limit("Max file size"), "unlimited", "{limits}");
}

#[test]
fn the_vmm_is_jailed_and_reaches_no_host_file() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = s.cli_env(
        &["start", "--name", "jail"],
        &[("PADDOCK_TEST_OPEN_HOST_FILE", "/etc/hostname")],
    );
    assert!(out.status.success(), "{}", s.sandbox_logs("jail"));
    assert_jailed(&s, "jail");
    exec_ok(&s, "jail");
    let log = vmm_log_once_it_has(&s, "jail", "test hook: opening", Duration::from_secs(30));
    assert!(
        log.contains("test hook: opening /etc/hostname: No such file or directory"),
        "{log}"
    );
    // Directories named after the start reach the jailed VMM open: a snapshot into one, a
    // restore of it, and a reset to it.
    let snap = s.path("elsewhere/snap");
    s.ok(&["snapshot", "jail", snap.to_str().unwrap()]);
    s.ok(&["restore", snap.to_str().unwrap(), "--name", "jail2"]);
    assert_jailed(&s, "jail2");
    s.ok(&["reset", "jail", "--to", snap.to_str().unwrap()]);
    assert_jailed(&s, "jail");
    exec_ok(&s, "jail");
    let listed = s.ok(&["ls", "--json"]);
    assert!(listed.contains(snap.to_str().unwrap()), "{listed}");
    for name in ["jail", "jail2"] {
        s.ok(&["rm", "--force", name]);
    }
}

/// Whether `path` holds `needle`.
fn holds(path: &std::path::Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_jailed_snapshot_of_a_restored_guest_holds_what_it_wrote() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    let first = s.path("first");
    s.ok(&["snapshot", "base", first.to_str().unwrap()]);
    s.ok(&["restore", first.to_str().unwrap(), "--name", "again"]);
    assert_jailed(&s, "again");
    // Written after the restore: only in pages the guest dirtied since.
    let marker = "paddock-jail-marker-4f1c";
    s.ok(&[
        "exec",
        "again",
        "--",
        "sh",
        "-c",
        &format!("echo {marker}-$((6 * 7)) > /tmp/marker"),
    ]);
    let second = s.path("second");
    let out = s.ok(&["snapshot", "again", second.to_str().unwrap()]);
    eprintln!("{out}");
    let needle = format!("{marker}-42");
    assert!(
        !holds(&common::memory_file(&first), needle.as_bytes()),
        "the marker predates the restore"
    );
    assert!(
        holds(&common::memory_file(&second), needle.as_bytes()),
        "the snapshot lacks what the restored guest wrote: {out}"
    );
    for name in ["base", "again"] {
        s.ok(&["rm", "--force", name]);
    }
}

/// The ids of process `pid` (`Uid:`/`Gid:` lines: real, effective, saved, filesystem).
fn ids(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    (status_field(&status, "Uid:"), status_field(&status, "Gid:"))
}

/// Asserts the command whose output is `out` started sandbox `name`.
fn assert_started(s: &Scratch, out: &std::process::Output, name: &str) {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stderr),
        s.sandbox_logs(name)
    );
}

/// Asserts sandbox `name`'s VMM runs as nobody (all four ids), confined and jailed.
fn assert_runs_as_nobody(s: &Scratch, name: &str) {
    let pid = s.pid_of(name);
    let (uid, gid) = ids(pid);
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["65534"; 4],
        "{name}'s VMM uids"
    );
    assert_eq!(
        gid.split_whitespace().collect::<Vec<_>>(),
        ["65534"; 4],
        "{name}'s VMM gids"
    );
    assert_confined(s, name);
    assert_jailed(s, name);
}

/// Run by root with `PADDOCK_VMM_USER=nobody`, every VMM (booted, restored, reset, forked) runs
/// as nobody, and still does all a VMM does: exec, a snapshot into a directory it never saw, a
/// restore and a fork of it, a reset, a live workspace share, and a DNS question through the
/// sandbox's egress proxy (both helpers stay root's and listen where the VMM can reach them).
#[test]
fn a_vmm_started_by_root_runs_as_the_configured_user() {
    if !e2e_available() {
        return;
    }
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: --vmm-user is root's (the lab runs the tests as root)");
        return;
    }
    let s = Scratch::new();
    // By ids: the lab's initramfs has no passwd file to name nobody in.
    let as_nobody = [("PADDOCK_VMM_USER", "65534:65534")];
    let project = s.path("project");
    std::fs::create_dir_all(&project).unwrap();
    let project = std::fs::canonicalize(&project).unwrap();
    let project_arg = project.to_str().unwrap();
    let out = s.cli_env(
        &["start", "--name", "u", "--workspace", project_arg],
        &as_nobody,
    );
    assert_started(&s, &out, "u");
    assert_runs_as_nobody(&s, "u");
    exec_ok(&s, "u");

    // The workspace server (root's) serves the nobody VMM's guest.
    std::fs::write(project.join("from-host"), "host\n").unwrap();
    let echoed = s.ok(&[
        "exec",
        "u",
        "--",
        "sh",
        "-c",
        &format!("cat {project_arg}/from-host && echo guest > {project_arg}/from-guest"),
    ]);
    assert_eq!(echoed, "host\n");
    assert_eq!(
        std::fs::read_to_string(project.join("from-guest")).unwrap(),
        "guest\n"
    );
    // The egress proxy (root's) answers the nobody VMM's guest: its DNS question is decided
    // and logged, whatever the decision.
    let _ = s.cli(&["exec", "u", "--", "nslookup", "vmm-user.test", "127.0.0.1"]);
    let asked = s
        .ok(&["policy", "log", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["host"] == "vmm-user.test");
    assert!(asked, "no egress decision for the guest's DNS question");

    // A snapshot into a directory made now, then a restore, a reset and a fork of it.
    let snap = s.path("snaps/one");
    s.ok(&["snapshot", "u", snap.to_str().unwrap()]);
    let out = s.cli_env(
        &["restore", snap.to_str().unwrap(), "--name", "u2"],
        &as_nobody,
    );
    assert_started(&s, &out, "u2");
    assert_runs_as_nobody(&s, "u2");
    exec_ok(&s, "u2");
    s.ok(&["reset", "u2"]);
    assert_runs_as_nobody(&s, "u2");
    exec_ok(&s, "u2");
    s.ok(&["reset", "u", "--to", snap.to_str().unwrap()]);
    exec_ok(&s, "u");
    let out = s.cli_env(
        &[
            "fork",
            snap.to_str().unwrap(),
            "--count",
            "1",
            "--prefix",
            "uf",
        ],
        &as_nobody,
    );
    assert_started(&s, &out, "uf-0");
    assert_runs_as_nobody(&s, "uf-0");
    exec_ok(&s, "uf-0");
    for name in ["u", "u2", "uf-0"] {
        s.ok(&["rm", "--force", name]);
    }
}
