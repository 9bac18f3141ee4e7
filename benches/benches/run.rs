//! `paddock run` as a user meets it: `paddock run shell DIR -- true` end to end (a new sandbox
//! restored from the agent template, the command run as `agent`, its status back), and the time
//! from typing `paddock run shell DIR` on a terminal to the first byte of the guest shell's
//! prompt.
//!
//! Run with `cargo xtask bench run` (natively with hardware KVM, otherwise inside the lab, where
//! every figure is software-emulated and only comparable to other lab figures).

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_benches::agent_available;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn paddock_bin() -> PathBuf {
    std::env::var_os("PADDOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("paddock"))
}

/// A `paddock` command whose sandboxes live under `state`.
fn paddock(state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(paddock_bin());
    cmd.arg(args[0])
        .arg("--state-dir")
        .arg(state)
        .args(&args[1..]);
    cmd
}

fn remove(state: &Path, name: &str) {
    let status = paddock(state, &["rm", "--force", name])
        .stdout(Stdio::null())
        .status()
        .expect("paddock rm");
    assert!(status.success(), "paddock rm {name}");
}

/// A pseudo-terminal pair: (master, slave).
fn open_pty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers for the two fds; null name and termios ask for defaults.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh fds that nothing else owns.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Waits until `master` has something to read, for at most `limit`.
fn readable(master: &File, limit: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: master.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call.
    unsafe {
        libc::poll(
            &mut pfd,
            1,
            i32::try_from(limit.as_millis()).unwrap_or(i32::MAX),
        ) > 0
    }
}

fn run(c: &mut Criterion) {
    if !agent_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let dir = work.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.display().to_string();
    // The template first (built here if this machine has none yet), outside every sample.
    let out = paddock(&state, &["run", "--rm", "shell", &dir, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("paddock run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut g = c.benchmark_group("run");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let mut n = 0;
    g.bench_function("run_shell_true_new_sandbox", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("t{n}");
                let t = Instant::now();
                let status = paddock(
                    &state,
                    &["run", "--name", &name, "shell", &dir, "--", "true"],
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("paddock run");
                total += t.elapsed();
                assert!(status.success(), "paddock run shell -- true");
                remove(&state, &name);
            }
            total
        })
    });
    g.bench_function("run_shell_first_prompt_byte", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("p{n}");
                let (mut master, slave) = open_pty();
                let mut cmd = paddock(&state, &["run", "--name", &name, "shell", &dir]);
                cmd.stdin(File::from(slave.try_clone().unwrap()))
                    .stdout(File::from(slave))
                    .stderr(Stdio::null());
                let t = Instant::now();
                let mut child = cmd.spawn().expect("paddock run");
                assert!(
                    readable(&master, Duration::from_secs(120)),
                    "no prompt within 120 s"
                );
                total += t.elapsed();
                let mut first = [0u8; 256];
                let _ = master.read(&mut first);
                master.write_all(b"exit\r").unwrap();
                let status = child.wait().expect("wait for paddock run");
                assert!(status.success(), "paddock run shell: {status}");
                remove(&state, &name);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, run);
criterion_main!(benches);
