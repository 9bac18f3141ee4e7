//! The workspace share's own cost on this host, without a VM: a kernel FUSE mount of a
//! directory served by paddock's workspace server (guard, node map, owner mapping and
//! fuse-backend-rs's passthrough, in process) through guest-init's relay over a Unix socket —
//! everything a request crosses on the way to the host's files except the vsock device and
//! the guest — against the directory itself. The figure issue 11 sets for hardware KVM,
//! `git status` on a 10,000-file tree within 2× of the host's own, is bounded below by this
//! one: a VM adds a vsock round trip (two exits) per request on top.
//!
//! Timed by criterion: `git status --porcelain` warm (caches kept; a live share caches names,
//! attributes and listings for 30 s beneath the directories it watches, the host's changes
//! pushed) and cold (the host's page, dentry and inode caches dropped before each run, which
//! also empties the FUSE mount's), on the mount and on the directory. Needs root (the mount, `drop_caches`) and `/dev/fuse`; without them
//! it says why and measures nothing. Run with `cargo xtask bench workspace_native`. Files:
//! `PADDOCK_BENCH_WORKSPACE_FILES` (10000).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use paddock_protocol::workspace::{HELLO, SESSION_ID_LEN};
use paddock_workspace::{Owner, WorkspaceServer};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn files() -> usize {
    std::env::var("PADDOCK_BENCH_WORKSPACE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// `git ARGS` in `dir`; panics with its output if it fails.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A committed tree of `n` small files, 100 per directory, beside `.git`.
fn make_tree(dir: &Path, n: usize) {
    for i in 0..n {
        let sub = dir.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).expect("a directory of the tree");
        }
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).expect("a file");
    }
    git(dir, &["init", "-q"]);
    git(dir, &["config", "gc.auto", "0"]);
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@paddock",
            "commit",
            "-qm",
            "tree",
        ],
    );
}

/// Mounts FUSE at `target` (the kernel's side; its requests are read from the returned file).
fn mount_fuse(target: &Path) -> std::io::Result<File> {
    let fuse = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")?;
    let options = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other,max_read={}",
        fuse.as_raw_fd(),
        1 << 20
    );
    let target_c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())?;
    let options_c = std::ffi::CString::new(options)?;
    // SAFETY: valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"paddock-workspace".as_ptr(),
            target_c.as_ptr(),
            c"fuse".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options_c.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fuse)
}

/// The directory served at a mount point: the server and the relay threads run until the
/// mount goes.
struct Share {
    mount: PathBuf,
}

impl Share {
    fn serve(dir: &Path, mount: &Path) -> std::io::Result<Self> {
        // SAFETY: geteuid and getegid have no memory effects.
        let me = unsafe {
            Owner {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        };
        let server = WorkspaceServer::new(dir, paddock_protocol::WorkspaceMode::Live, me)
            .map_err(std::io::Error::other)?;
        let server = std::sync::Arc::new(server);
        server.start_watch()?;
        let (mut relay_side, server_side) = UnixStream::pair()?;
        std::thread::spawn(move || server.serve(server_side));
        relay_side.write_all(HELLO)?;
        let mut session = [0u8; SESSION_ID_LEN];
        relay_side.read_exact(&mut session)?;
        let fuse = mount_fuse(mount)?;
        let (fuse_in, host_out) = (fuse.try_clone()?, relay_side.try_clone()?);
        std::thread::spawn(move || guest_init::workspace::relay_requests(fuse_in, host_out));
        let notifier = guest_init::workspace::Notifier::start(fuse.try_clone()?)?;
        std::thread::spawn(move || {
            guest_init::workspace::relay_replies(relay_side, fuse, notifier)
        });
        Ok(Self {
            mount: mount.to_path_buf(),
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.mount.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid C string; the result is ignored (the process ends anyway).
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn drop_caches() {
    // SAFETY: sync has no memory effects.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("dropping the caches (root)");
}

fn git_status(dir: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain"])
        .output()
        .expect("git status");
    let took = started.elapsed();
    assert!(out.status.success() && out.stdout.is_empty(), "git status");
    took
}

fn bench(c: &mut Criterion) {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("workspace_native: skipped: needs root (a FUSE mount, drop_caches)");
        return;
    }
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let (dir, mount) = (scratch.path().join("tree"), scratch.path().join("mount"));
    std::fs::create_dir_all(&dir).expect("the tree's directory");
    std::fs::create_dir_all(&mount).expect("the mount point");
    let n = files();
    make_tree(&dir, n);
    let _share = match Share::serve(&dir, &mount) {
        Ok(share) => share,
        Err(e) => {
            eprintln!("workspace_native: skipped: cannot mount FUSE here ({e})");
            return;
        }
    };
    assert!(mount.join(".git").is_dir(), "the share shows the tree");
    let mut group = c.benchmark_group(format!("git status, {n} files"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (place, root) in [("host", &dir), ("share", &mount)] {
        group.bench_with_input(BenchmarkId::new("warm", place), root, |b, root| {
            git_status(root);
            b.iter(|| git_status(root));
        });
        group.bench_with_input(BenchmarkId::new("cold", place), root, |b, root| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        drop_caches();
                        git_status(root)
                    })
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
