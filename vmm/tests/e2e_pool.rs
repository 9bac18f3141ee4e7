//! End-to-end tests of the warm VMM pool (`paddock pool`): restores, forks and template starts
//! claim warm VMMs, which are replaced in the background; a VMM killed while idle is skipped;
//! callers claiming at once get different VMMs. Real VMMs, guest kernel and guest-init
//! (natively with hardware KVM, or in the lab).

mod common;

use common::{assert_unprivileged, e2e_available, kill9, Scratch};
use std::time::{Duration, Instant};

/// A snapshot of a running minimal guest, its sandbox removed.
fn snapshot(s: &Scratch) -> String {
    s.ok(&["start", "--name", "base"]);
    s.exec_ok("base", "echo from-the-snapshot > /tmp/mark");
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap()]);
    s.ok(&["rm", "--force", "base"]);
    snap.to_str().unwrap().to_string()
}

fn pool(s: &Scratch) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["pool", "show", "--json"])).unwrap()
}

fn ready(pool: &serde_json::Value) -> Vec<serde_json::Value> {
    pool["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "ready")
        .cloned()
        .collect()
}

/// Waits until the pool has `count` ready warm VMMs.
fn await_ready(s: &Scratch, count: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown = pool(s);
        if ready(&shown).len() == count {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "the pool never had {count} ready: {shown}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn from_pool(s: &Scratch, name: &str) -> bool {
    let listed = s
        .listed(name)
        .unwrap_or_else(|| panic!("{name} is not listed"));
    listed["from_pool"].as_bool().unwrap()
}

#[test]
fn restores_and_forks_claim_warm_vmms_which_are_replaced_and_drained() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let snap = snapshot(&s);
    let filled: serde_json::Value =
        serde_json::from_str(&s.ok(&["pool", "fill", "2", "--json"])).unwrap();
    assert_eq!(filled["size"], 2);
    let warm = ready(&filled);
    assert_eq!(warm.len(), 2, "{filled}");
    for entry in &warm {
        let rss = entry["rss_bytes"]
            .as_u64()
            .expect("an idle VMM's memory is shown");
        assert!(rss < 64 << 20, "an idle warm VMM is small: {entry}");
    }

    s.ok(&["restore", &snap, "--name", "r"]);
    assert!(from_pool(&s, "r"), "the restore claimed a warm VMM");
    let spans = s.listed("r").unwrap()["spans"].clone();
    assert_eq!(
        spans[0]["span"], "claimed from the pool, snapshot read",
        "{spans}"
    );
    assert_eq!(s.exec_ok("r", "cat /tmp/mark"), "from-the-snapshot\n");
    // Confined as any VMM: no capabilities, its own cgroup (made ahead, limited once claimed)
    // and jail.
    let pid = s.pid_of("r");
    assert_unprivileged(pid);
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let dir = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 line");
        let memory_max = std::fs::read_to_string(format!("/sys/fs/cgroup{dir}/memory.max"));
        let memory_max = memory_max.unwrap_or_default();
        assert!(
            memory_max
                .trim()
                .parse::<u64>()
                .is_ok_and(|max| max > 256 << 20),
            "the claimed VMM's cgroup {dir} is limited: memory.max {memory_max:?}"
        );
    }
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        !mounts.contains(" /etc ") && mounts.contains("/dev/kvm"),
        "the claimed VMM is in its jail: {mounts}"
    );
    s.exec_ok("r", "echo later > /tmp/mark");
    s.ok(&["reset", "r"]);
    assert_eq!(s.exec_ok("r", "cat /tmp/mark"), "from-the-snapshot\n");

    // The claimed one was replaced in the background.
    let refilled = await_ready(&s, 2);
    let before: Vec<_> = warm.iter().map(|e| e["id"].clone()).collect();
    assert!(
        ready(&refilled).iter().any(|e| !before.contains(&e["id"])),
        "a new warm VMM replaced the claimed one: {refilled}"
    );

    // A fork of three: two warm VMMs claimed, one VMM started.
    s.ok(&["fork", &snap, "--count", "3", "--prefix", "f"]);
    let pooled = (0..3).filter(|i| from_pool(&s, &format!("f-{i}"))).count();
    assert_eq!(pooled, 2, "{}", s.ok(&["ls", "--json"]));
    for i in 0..3 {
        assert_eq!(
            s.exec_ok(&format!("f-{i}"), "cat /tmp/mark"),
            "from-the-snapshot\n"
        );
    }
    await_ready(&s, 2);

    // Drained: every warm VMM ends.
    s.ok(&["pool", "drain"]);
    let drained = pool(&s);
    assert_eq!(drained["size"], 0);
    assert!(
        drained["entries"].as_array().unwrap().is_empty(),
        "{drained}"
    );
    for name in ["r", "f-0", "f-1", "f-2"] {
        s.ok(&["rm", "--force", name]);
    }
    s.assert_clean();
}

#[test]
fn a_warm_vmm_killed_while_idle_is_skipped_not_handed_out() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let snap = snapshot(&s);
    let filled: serde_json::Value =
        serde_json::from_str(&s.ok(&["pool", "fill", "1", "--json"])).unwrap();
    let pid = u32::try_from(ready(&filled)[0]["pid"].as_u64().unwrap()).unwrap();
    kill9(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while paddock_vmm::sandbox::process_alive(pid) {
        assert!(Instant::now() < deadline, "the killed warm VMM lingers");
        std::thread::sleep(Duration::from_millis(50));
    }

    s.ok(&["restore", &snap, "--name", "r"]);
    assert!(!from_pool(&s, "r"), "a dead warm VMM is never handed out");
    assert_eq!(s.exec_ok("r", "cat /tmp/mark"), "from-the-snapshot\n");
    assert!(
        pool(&s)["entries"].as_array().unwrap().is_empty(),
        "the dead one's entry is gone"
    );
    s.ok(&["rm", "--force", "r"]);
    s.ok(&["pool", "drain"]);
    s.assert_clean();
}

#[test]
fn two_restores_at_once_claim_different_warm_vmms() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let snap = snapshot(&s);
    s.ok(&["pool", "fill", "2"]);
    let mut restores: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| s.cli_background(&["restore", &snap, "--name", name]))
        .collect();
    for restore in &mut restores {
        assert!(
            restore.wait().unwrap().success(),
            "{}",
            s.all_sandbox_logs()
        );
    }
    assert!(
        from_pool(&s, "a") && from_pool(&s, "b"),
        "{}",
        s.ok(&["ls", "--json"])
    );
    assert_ne!(s.pid_of("a"), s.pid_of("b"));
    for name in ["a", "b"] {
        assert_eq!(s.exec_ok(name, "cat /tmp/mark"), "from-the-snapshot\n");
    }
    s.ok(&["pool", "drain"]);
    for name in ["a", "b"] {
        s.ok(&["rm", "--force", name]);
    }
    s.assert_clean();
}
