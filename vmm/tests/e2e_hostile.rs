//! The malicious-guest suite: a guest whose root drives the devices itself (`paddock-hostile`,
//! built from `hostile-guest/`) attacks the VMM through the legacy ports, every virtio-mmio
//! register, broken virtqueues and a raw vsock flood that ignores the host's limits and credit.
//! Three victims: a booted sandbox with a scratch disk (vsock and virtio-blk), a sandbox
//! restored from a template (its devices from a snapshot's state), and an agent sandbox (its
//! Docker engine running, its root image on virtio-blk).
//! Pass: the VMM keeps serving (its memory bounded by the sandbox's `--memory 256`, its control
//! socket answering, no panic) or ends that one sandbox with a clear error; a second sandbox
//! running beside it is untouched either way.

mod common;

use common::{e2e_available, paddock_bin, text, Scratch};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Host port the flood connects to (a listener this test holds without reading).
const FLOOD_PORT: u32 = 5000;
/// How long the hostile program may take in the lab.
const SUITE_LIMIT: Duration = Duration::from_secs(420);
/// `--memory` of the attacked sandbox, MiB.
const GUEST_MIB: u64 = 256;
/// Size of the attacked sandbox's scratch disk.
const DISK_BYTES: u64 = 16 << 20;
/// What the VMM may hold besides guest RAM: the cgroup's own bound (paddock's overhead rule,
/// at least 128 MiB), so a VMM that keeps serving stayed inside it.
const OVERHEAD_MIB: u64 = 128;

/// The hostile program, beside the paddock binary (xtask builds both into one directory and
/// copies both into the lab).
fn hostile_bin() -> Option<PathBuf> {
    let path = paddock_bin().with_file_name("paddock-hostile");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("PADDOCK_E2E_REQUIRED").is_none(),
        "{} is missing (cargo xtask ci builds it)",
        path.display()
    );
    eprintln!("skipped: no {}", path.display());
    None
}

/// VmRSS of `pid` in KiB, or None once it is gone.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Copies the hostile program into sandbox `name` as `/tmp/hostile`, through `exec`'s stdin.
fn copy_into(s: &Scratch, name: &str, hostile: &Path) {
    let binary = std::fs::read(hostile).unwrap();
    let copy = [
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "cat > /tmp/hostile && chmod +x /tmp/hostile",
    ];
    let out = s.output_with_stdin(s.paddock_command(&copy), &copy, &binary);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Holds every connection made to `path` open without ever reading from it.
fn hoarding_listener(path: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        held.len()
    })
}

/// The attacked sandbox: booted with a scratch disk (two devices, vsock and virtio-blk), or
/// restored from a template (vsock only; the devices come from a snapshot's state).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Victim {
    BootedWithDisk,
    Restored,
    /// An agent sandbox: Debian restored from the agent template, its Docker engine running and
    /// its root image on virtio-blk.
    Agent,
}

#[test]
fn a_hostile_booted_guest_with_a_disk_crashes_only_itself() {
    attack(Victim::BootedWithDisk);
}

#[test]
fn a_hostile_restored_guest_crashes_only_itself() {
    attack(Victim::Restored);
}

#[test]
fn a_hostile_agent_guest_with_its_engine_running_crashes_only_itself() {
    attack(Victim::Agent);
}

fn attack(victim: Victim) {
    if !e2e_available() {
        return;
    }
    let Some(hostile) = hostile_bin() else {
        return;
    };
    if victim == Victim::Agent && !common::agent_image_available() {
        return;
    }
    let s = if victim == Victim::Agent {
        Scratch::agent()
    } else {
        Scratch::new()
    };
    s.ok(&["start", "--name", "calm", "--profile", "minimal"]);
    let console = s.path("hb.console");
    let disk = s.path("hb.disk");
    let mut start = vec![
        "start".to_string(),
        "--name".into(),
        "hb".into(),
        "--console".into(),
        console.to_str().unwrap().into(),
    ];
    if victim != Victim::Agent {
        // The agent template fixes its own size and kernel arguments.
        start.extend([
            "--memory".into(),
            GUEST_MIB.to_string(),
            // The program reports through the kernel log: let it reach the console.
            "--kernel-args".into(),
            "loglevel=7".into(),
        ]);
    }
    if victim == Victim::BootedWithDisk {
        // A scratch disk gives the guest a virtio-blk device to attack beside vsock (and makes
        // the sandbox boot rather than restore a template).
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(DISK_BYTES)
            .unwrap();
        start.extend(["--disk".to_string(), disk.to_str().unwrap().into()]);
    }
    let start: Vec<&str> = start.iter().map(String::as_str).collect();
    s.ok(&start);
    let pid = s.pid_of("hb");
    let agent_mib = s
        .listed("hb")
        .and_then(|hb| hb["memory_mib"].as_u64())
        .unwrap_or(GUEST_MIB);
    let paths = paddock_vmm::sandbox::paths::SandboxPaths::new(&s.state_dir(), "hb").unwrap();
    let flood_socket = PathBuf::from(format!("{}_{FLOOD_PORT}", paths.vsock().display()));
    let stop = Arc::new(AtomicBool::new(false));
    let hoarder = hoarding_listener(&flood_socket, stop.clone());

    copy_into(&s, "hb", &hostile);
    // Reports go to the kernel log (the console, written by polling): the serial port's own
    // interrupts are among the things attacked. The exec returns at once; the guest's vsock
    // link goes down when the program takes the device.
    let script = format!(
        "echo 8 > /proc/sys/kernel/printk; echo on > /proc/sys/kernel/printk_devkmsg; \
         /tmp/hostile --seed {} --port {FLOOD_PORT} --connections 600 --per-connection 5 \
         < /dev/null > /dev/kmsg 2>&1 &",
        std::process::id()
    );
    let out = s.cli(&["exec", "hb", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let start = Instant::now();
    let mut peak_kib = 0u64;
    // Lossy: the port phase writes random bytes to the serial port, and so to the console.
    let console_text =
        || String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    let ended = loop {
        if let Some(kib) = rss_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        let log = console_text();
        if log.contains("hostile: finished") || log.contains("hostile: stopped") {
            break false;
        }
        if !alive(pid) {
            break true;
        }
        // The program itself crashed (its port child is `hostile-ports` and may trap).
        assert!(
            !log.contains("traps: hostile["),
            "the hostile program crashed\n{}",
            s.sandbox_logs("hb")
        );
        assert!(
            start.elapsed() < Duration::from_secs(60) || log.contains("hostile: seed"),
            "the hostile program did not start\n{}",
            s.sandbox_logs("hb")
        );
        assert!(
            start.elapsed() < SUITE_LIMIT,
            "the hostile program did not finish in {SUITE_LIMIT:?}\n{}",
            s.sandbox_logs("hb")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    stop.store(true, Ordering::Relaxed);
    let held = hoarder.join().unwrap();
    let report: Vec<String> = console_text()
        .lines()
        .filter_map(|l| l.split_once("hostile: ").map(|(_, r)| r.to_owned()))
        .collect();
    eprintln!(
        "hostile run ({victim:?}): {:.1} s, VMM peak RSS {} MiB, {held} flood connections reached the host, \
         VMM {}\n  {}",
        start.elapsed().as_secs_f64(),
        peak_kib >> 10,
        if ended { "ended" } else { "kept serving" },
        report.join("\n  ")
    );
    let vmm_log = std::fs::read_to_string(paths.vmm_log()).unwrap_or_default();
    assert!(
        !vmm_log.contains("panicked"),
        "the VMM panicked\n{}",
        s.sandbox_logs("hb")
    );

    if ended {
        // One sandbox ended: it must say why.
        let listing = s.ok(&["ls"]);
        assert!(
            vmm_log.lines().any(|l| l.contains("ERROR")) || listing.contains("exited"),
            "the VMM ended without a reason\n{listing}\n{}",
            s.sandbox_logs("hb")
        );
    } else {
        assert!(
            report.iter().any(|l| l == "finished"),
            "the hostile program stopped early: {report:?}\n{}",
            s.sandbox_logs("hb")
        );
        // Still serving: bounded memory, a control socket that answers, a clean stop.
        let guest_mib = if victim == Victim::Agent {
            agent_mib
        } else {
            GUEST_MIB
        };
        let limit_kib = (guest_mib + OVERHEAD_MIB) << 10;
        assert!(
            peak_kib <= limit_kib,
            "VMM RSS reached {peak_kib} KiB (limit {limit_kib} KiB)"
        );
        let snap = s.path("after");
        let out = s.cli(&["snapshot", "hb", snap.to_str().unwrap()]);
        assert!(
            out.status.code() == Some(0) || !text(&out.stderr).trim().is_empty(),
            "a snapshot after the attack failed without a message"
        );
        let out = s.cli(&["stop", "hb"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    if victim == Victim::BootedWithDisk {
        // Whatever the chains asked, the disk did not grow past its end.
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), DISK_BYTES);
    }
    // The neighbour never noticed.
    assert_eq!(s.ok(&["exec", "calm", "--", "echo", "fine"]).trim(), "fine");
    s.ok(&["rm", "--force", "hb", "calm"]);
}

#[test]
fn hostile_fuse_requests_stay_in_the_workspace_and_leave_its_server_serving() {
    use std::os::unix::fs::FileTypeExt;
    if !e2e_available() {
        return;
    }
    let Some(hostile) = hostile_bin() else {
        return;
    };
    let s = Scratch::new();
    // The host: `ws` (the workspace) beside `outside`, a host-only file.
    let host = s.path("fuse-host");
    let ws = host.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("from-host"), b"hello\n").unwrap();
    let outside = host.join("outside");
    std::fs::write(&outside, b"host secret\n").unwrap();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let ws_arg = ws.to_str().unwrap();
    s.ok(&["start", "--name", "fw", "--workspace", ws_arg]);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.state_dir().join("sandboxes/fw/workspace.json")).unwrap(),
    )
    .unwrap();
    let server = u32::try_from(record["server_pid"].as_u64().unwrap()).unwrap();

    copy_into(&s, "fw", &hostile);
    // guest-init's own mount goes first. The server serves one connection at a time, the
    // newest; guest-init's relay, its connection ended, connects again to carry its mount on
    // (as after a restore), which would end the attack's connection in turn. The guest's own
    // mount is the guest's to break; what is under test is the server.
    let script = format!(
        "umount -l {ws_arg} && sleep 1 && cd / && /tmp/hostile --seed {} --fuse-rounds 2000",
        std::process::id()
    );
    let out = s.cli(&["exec", "fw", "--", "sh", "-c", &script]);
    let report = text(&out.stdout);
    eprintln!("{report}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report}\n{}\n{}",
        text(&out.stderr),
        s.sandbox_logs("fw")
    );
    assert!(report.contains("hostile: finished"), "{report}");
    assert!(
        report.contains("fuse: nothing of the host leaked") && !report.contains("ESCAPED"),
        "a host file reached the guest:\n{report}"
    );
    assert!(
        report.contains("fuse: a new connection's init answered Some(0)"),
        "the server stopped serving:\n{report}"
    );
    // No state was loaded for a made-up session, and the guest cannot reach the control
    // commands: no state comes out (a length would be 4 bytes or more).
    assert!(
        report.contains("fuse: a forged resume answered Some(0)"),
        "a forged resume was taken up:\n{report}"
    );
    for command in ["'S'", "'L'"] {
        assert!(
            report.contains(&format!(
                "fuse: control {command} on the guest's port answered Some(0) bytes"
            )),
            "the guest's port answered a control command:\n{report}"
        );
    }
    assert!(
        paddock_vmm::sandbox::process_alive(server),
        "the workspace server died\n{}",
        s.sandbox_logs("fw")
    );
    // Nothing changed outside the workspace, and nothing special was made inside it.
    let beside: Vec<String> = std::fs::read_dir(&host)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut beside = beside;
    beside.sort();
    assert_eq!(
        beside,
        ["outside", "ws"],
        "nothing appeared beside the workspace"
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"host secret\n");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    for entry in std::fs::read_dir(&ws).unwrap().flatten() {
        let kind = entry.file_type().unwrap();
        assert!(
            !(kind.is_char_device()
                || kind.is_block_device()
                || kind.is_fifo()
                || kind.is_socket()),
            "the guest made a special file on the host: {:?}",
            entry.path()
        );
    }
    // A reset mounts the share again: the server serves the guest as before. The random
    // requests may have changed modes and contents inside the workspace (that is the guest's
    // right there, e.g. a SETATTR on the root): the host user sets the root's mode back, as they
    // could, and writes a file the guest must then read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_file(ws.join("after-attack"));
    std::fs::write(ws.join("after-attack"), b"served\n").unwrap();
    s.ok(&["reset", "fw"]);
    let out = s.cli(&["exec", "fw", "--", "cat", &format!("{ws_arg}/after-attack")]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "served\n".to_string()),
        "{}",
        text(&out.stderr)
    );
    s.ok(&["rm", "--force", "fw"]);
    s.assert_no_sandboxes_running();
}
