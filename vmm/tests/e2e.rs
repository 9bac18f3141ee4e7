//! End-to-end tests: the real `paddock` VMM booting the real guest kernel and guest-init.
//!
//! They need hardware KVM (natively, or inside the lab: `cargo xtask ci`). Without it each test
//! says so and returns — unless `PADDOCK_E2E_REQUIRED=1` (set by `cargo xtask ci`), where a
//! missing KVM or artifact is a failure.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{e2e_available, text, Scratch};

fn run_with_stdin(scratch: &Scratch, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = scratch.paddock();
    cmd.args(args);
    scratch.output_with_stdin(cmd, args, stdin)
}

fn run(scratch: &Scratch, args: &[&str]) -> Output {
    let mut cmd = scratch.paddock();
    cmd.args(args).stdin(Stdio::null());
    scratch.output_within(cmd, args, common::command_limit())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn echo_prints_and_exits_zero() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = run(&s, &["run", "--", "echo", "hello from the guest"]);
    assert_eq!(
        text(&out.stdout),
        "hello from the guest\n",
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    s.assert_clean();
}

#[test]
fn exit_statuses_are_passed_through() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    for (script, want) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 7", 7),
        ("kill -9 $$", 128 + 9),
    ] {
        let out = run(&s, &["run", "--", "sh", "-c", script]);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{script}: stderr {}",
            text(&out.stderr)
        );
    }
    s.assert_clean();
}

#[test]
fn commands_start_with_no_signal_blocked_or_ignored_and_signals_reach_them() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    // PID 1 blocks the signals it handles; its children must not inherit that. SIGTERM sent
    // to itself must then end the shell.
    let script = "grep -E '^Sig(Blk|Ign)' /proc/self/status; kill -TERM $$; echo survived";
    let out = run(&s, &["run", "--", "sh", "-c", script]);
    assert_eq!(
        text(&out.stdout),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        "stderr {}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(128 + 15));
    s.assert_clean();
}

#[test]
fn one_mib_of_stdin_round_trips() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let mut data = vec![0u8; 1 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    let out = run_with_stdin(
        &s,
        &["run", "--", "sh", "-c", "cat; sha256sum >&2 </dev/null"],
        &data,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&data));
    // And the guest saw the same bytes.
    let out = run_with_stdin(&s, &["run", "--", "sha256sum"], &data);
    assert!(
        text(&out.stdout).starts_with(&sha256_hex(&data)),
        "guest hash {}",
        text(&out.stdout)
    );
    s.assert_clean();
}

#[test]
fn sixteen_mib_of_stdout_arrive_intact_and_stderr_stays_separate() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let script = "head -c 16777216 /dev/urandom > /tmp/blob && sha256sum /tmp/blob | cut -d' ' -f1 >&2 && cat /tmp/blob";
    let out = run(&s, &["run", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 16 << 20);
    assert_eq!(text(&out.stderr).trim(), sha256_hex(&out.stdout));
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; echo more-out",
        ],
    );
    assert_eq!(text(&out.stdout), "to-out\nmore-out\n");
    assert_eq!(text(&out.stderr), "to-err\n");
    s.assert_clean();
}

#[test]
fn two_vcpus_give_two_cpus() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = run(&s, &["run", "--vcpus", "2", "--", "nproc"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "2",
        "stderr: {}",
        text(&out.stderr)
    );
    let out = run(
        &s,
        &[
            "run",
            "--memory",
            "128",
            "--",
            "sh",
            "-c",
            "grep MemTotal /proc/meminfo",
        ],
    );
    let kib: u64 = text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (100 * 1024..=128 * 1024).contains(&kib),
        "MemTotal {kib} KiB for a 128 MiB guest"
    );
    s.assert_clean();
}

#[test]
fn a_guest_triple_fault_ends_run_with_a_message_not_a_hang() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    // reboot=t: the guest kernel reboots by a triple fault, which gives it no chance to close
    // the exec connection: paddock run must see the VM end and say so, not wait on it.
    let started = Instant::now();
    let out = run(
        &s,
        &[
            "run",
            "--kernel-args",
            "reboot=t",
            "--timeout",
            "300",
            "--",
            "reboot",
            "-f",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(paddock_vmm::exit_codes::PADDOCK_ERROR),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("TripleFault"), "stderr: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    s.assert_clean();
}

#[test]
fn a_triple_fault_leaves_guest_memory_for_a_post_mortem_when_asked() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = s.cli_env(
        &[
            "start",
            "--name",
            "tf",
            "--cold-boot",
            "--kernel-args",
            "reboot=t",
        ],
        &[("PADDOCK_DUMP_ON_TRIPLE_FAULT", "1")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let memory_bytes = s.listed("tf").unwrap()["memory_mib"].as_u64().unwrap() << 20;
    // The guest kernel reboots by a triple fault (reboot=t); the exec just loses its guest.
    let _ = s.cli(&["exec", "tf", "--", "reboot", "-f"]);
    let paths = paddock_vmm::sandbox::paths::SandboxPaths::new(&s.state_dir(), "tf").unwrap();
    let dump = paths.dir.join("guest-memory.dump");
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.listed("tf").is_some_and(|t| t["state"] == "running") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(paths.vmm_log()).unwrap_or_default();
    assert!(log.contains("guest memory after the triple fault"), "{log}");
    let bytes = std::fs::read(&dump).expect("the dump");
    assert_eq!(bytes.len() as u64, memory_bytes);
    // Guest RAM in order: the kernel's image is at 16 MiB, where it was loaded.
    assert!(bytes[16 << 20..17 << 20].iter().any(|b| *b != 0));
    s.ok(&["rm", "--force", "tf"]);
}

#[test]
fn guest_reboot_ends_the_vm_cleanly() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    // reboot(2) at once: the command never reports, the VM resets, paddock says so.
    let started = Instant::now();
    let out = run(&s, &["run", "--timeout", "120", "--", "reboot", "-f"]);
    assert_eq!(
        out.status.code(),
        Some(paddock_vmm::exit_codes::GUEST_ENDED),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("rebooted"),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // An orderly reboot via init: `reboot` itself may report 0 before the guest goes down.
    let out = run(
        &s,
        &[
            "run",
            "--timeout",
            "120",
            "--",
            "sh",
            "-c",
            "reboot; sleep 100",
        ],
    );
    let code = out.status.code();
    // 0 from `reboot`, or sh killed by the shutdown (TERM, then KILL), or no status at all.
    assert!(
        matches!(
            code,
            Some(0) | Some(143) | Some(137) | Some(paddock_vmm::exit_codes::GUEST_ENDED)
        ),
        "{code:?}: {}",
        text(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(110),
        "the VM ended long before the sleep would have"
    );
    s.assert_clean();
}

#[test]
fn timeout_kills_the_command_with_a_clear_error() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = run(&s, &["run", "--timeout", "3", "--", "sleep", "600"]);
    assert_eq!(out.status.code(), Some(paddock_vmm::exit_codes::TIMEOUT));
    assert!(
        text(&out.stderr).contains("timed out after 3 s"),
        "stderr: {}",
        text(&out.stderr)
    );
    s.assert_clean();
}

#[test]
fn missing_or_corrupt_kernel_is_a_clear_error() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let out = run(
        &s,
        &["run", "--kernel", "/nonexistent/vmlinux", "--", "true"],
    );
    assert_eq!(
        out.status.code(),
        Some(paddock_vmm::exit_codes::PADDOCK_ERROR)
    );
    assert!(
        text(&out.stderr).contains("/nonexistent/vmlinux"),
        "stderr: {}",
        text(&out.stderr)
    );
    let bad = s.path("garbage-vmlinux");
    std::fs::write(&bad, vec![0x42u8; 4096]).unwrap();
    let out = run(
        &s,
        &["run", "--kernel", bad.to_str().unwrap(), "--", "true"],
    );
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(
        out.status.code(),
        Some(paddock_vmm::exit_codes::PADDOCK_ERROR)
    );
    assert!(
        text(&out.stderr).contains("not a loadable"),
        "stderr: {}",
        text(&out.stderr)
    );
    s.assert_clean();
}

#[test]
fn eight_concurrent_execs_in_one_sandbox() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "busy"]);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let cmd = s.paddock_command(&[
                "exec",
                "busy",
                "--",
                "sh",
                "-c",
                &format!("sleep 1; echo worker-{i}; echo err-{i} >&2; exit {i}"),
            ]);
            std::thread::spawn(move || {
                let mut cmd = cmd;
                cmd.stdin(Stdio::null()).output().expect("exec")
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let out = t.join().unwrap();
        assert_eq!(text(&out.stdout), format!("worker-{i}\n"));
        assert_eq!(text(&out.stderr), format!("err-{i}\n"));
        assert_eq!(out.status.code(), Some(i as i32));
    }
    s.ok(&["rm", "--force", "busy"]);
    s.assert_no_sandboxes_running();
    s.assert_clean();
}
