//! `cargo xtask lab -- COMMAND [ARGS...]`: boots the lab machine (qemu TCG with emulated AMD-V,
//! Debian's cloud kernel with kvm-amd loaded, so it has a real `/dev/kvm`) with the static `paddock`
//! on PATH and the default guest artifacts in place, runs COMMAND inside, streams its output and
//! returns its exit status. The lab kernel is cached; the lab initramfs is rebuilt per run.

mod clock;
mod console;
mod kernel;
mod qemu;
mod script;

use crate::tools::{self, Tool};
use crate::{rootfs, util};
use anyhow::{Context, Result};
use console::Markers;
use rootfs_builder::{busybox, ImageSpec};
use std::fs::File;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where the static paddock binary goes inside the lab (on PATH).
pub const PADDOCK_PATH: &str = "/usr/bin/paddock";
/// Where the hostile guest program sits in the lab (beside paddock, where the tests look).
pub const HOSTILE_PATH: &str = "/usr/bin/paddock-hostile";
/// Default overall limit on a lab run, in seconds (override with `PADDOCK_LAB_TIMEOUT`).
const DEFAULT_TIMEOUT_SECS: u64 = 3600;

/// Runs `command` in the lab with the default files ([`default_files`]) plus `extra` files
/// given as `HOST_PATH:LAB_PATH`; returns its exit status.
pub fn run(extra: &[String], command: &[String]) -> Result<i32> {
    // Before building anything: a fresh machine learns what to install at once.
    tools::ensure(&[Tool::QemuSystemX86])?;
    let mut files = default_files()?;
    for spec in extra {
        let (host, lab_path) = spec
            .split_once(':')
            .with_context(|| format!("--file {spec:?}: expected HOST_PATH:LAB_PATH"))?;
        if !lab_path.starts_with('/') {
            anyhow::bail!("--file {spec:?}: the lab path must be absolute");
        }
        files.push((PathBuf::from(host), lab_path.to_owned()));
    }
    run_with(&files, &[], command)
}

/// The files every lab run gets: the freshly built static `paddock` at [`PADDOCK_PATH`] (and
/// `paddock-hostile` beside it), and the
/// default guest kernel, initramfs and agent root image (`<cache>/default/`) at
/// `/paddock/vmlinux`, `/paddock/rootfs.cpio` and `/paddock/rootfs-agent.img` when they exist
/// (the lab runs without them; paddock then lacks that guest).
pub fn default_files() -> Result<Vec<(PathBuf, String)>> {
    let paddock = util::build_static_bin("paddock-vmm", "paddock")?;
    // The malicious-guest suite's guest program (vmm/tests/e2e_hostile.rs finds it beside
    // paddock, here and natively).
    let hostile = util::build_static_bin("hostile-guest", "paddock-hostile")?;
    let mut files = vec![
        (paddock, PADDOCK_PATH.to_owned()),
        (hostile, HOSTILE_PATH.to_owned()),
    ];
    let defaults = util::default_artifacts_dir();
    for (name, lab_path) in [
        ("vmlinux", script::GUEST_KERNEL_PATH),
        ("rootfs.cpio", script::GUEST_ROOTFS_PATH),
        ("rootfs-agent.img", script::GUEST_IMAGE_PATH),
    ] {
        let host = defaults.join(name);
        if host.exists() {
            files.push((host, lab_path.to_owned()));
        } else {
            eprintln!(
                "xtask: lab: no default guest {name} at {} (build it first)",
                host.display()
            );
        }
    }
    Ok(files)
}

/// How many times a lab that went down (see [`qemu::DownKind`]) is replaced by a fresh one. A
/// rerun resumes after the steps that finished, so it costs little; CI's end-to-end run has
/// seen the lab crash twice in 25 minutes (2026-12-03).
const MAX_RERUNS: u32 = 4;

/// Runs `command` in the lab with `files` (host path, absolute path inside the lab) added to its
/// initramfs and `env` exported; streams the command's output to stdout and returns its exit status.
/// Errors when the lab itself fails, crashes or exceeds `PADDOCK_LAB_TIMEOUT` seconds.
/// `PADDOCK_LAB_VERBOSE=1` shows the lab kernel's boot log (on stderr).
pub fn run_with(
    files: &[(PathBuf, String)],
    env: &[(String, String)],
    command: &[String],
) -> Result<i32> {
    run_resumable(files, env, &|_: &[String]| Ok(command.to_vec()))
}

/// [`run_with`] for a command made of steps: `command(done)` gives the command to run after
/// the steps in `done` (the labels it reported with `echo "${PADDOCK_LAB_DONE}LABEL"`, none at
/// first). When the lab machine itself goes down (hangs at boot, crashes, stalls), a fresh lab
/// runs `command` again with the steps reported so far, up to [`MAX_RERUNS`] times within
/// `PADDOCK_LAB_TIMEOUT`.
pub fn run_resumable(
    files: &[(PathBuf, String)],
    env: &[(String, String)],
    command: &dyn Fn(&[String]) -> Result<Vec<String>>,
) -> Result<i32> {
    tools::ensure(&[Tool::QemuSystemX86])?;
    let timeout = timeout()?;
    let kernel = kernel::lab_kernel()?;
    let nonce = run_nonce();
    let markers = Markers::new(&nonce);
    let work = TempDir::for_this_run(&nonce)?;
    let verbose =
        std::env::var_os("PADDOCK_LAB_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0");
    // PADDOCK_LAB_TIMEOUT bounds the whole call, the reruns included.
    let started = std::time::Instant::now();
    let mut done: Vec<String> = Vec::new();
    let mut reruns = 0;
    let outcome = loop {
        let spec = lab_spec(&kernel, &markers, files, env, &command(&done)?)?;
        let initrd = work.0.join("lab.cpio");
        let file =
            File::create(&initrd).with_context(|| format!("creating {}", initrd.display()))?;
        spec.write_newc(BufWriter::new(file))?;
        let left = timeout.saturating_sub(started.elapsed());
        let down = match qemu::run(&kernel.vmlinuz, &initrd, &markers, left, verbose) {
            Ok(outcome) => break outcome,
            Err(e) => e.downcast::<qemu::LabDown>()?,
        };
        let why = match down.kind {
            qemu::DownKind::BootHang => "the lab machine hung while booting",
            qemu::DownKind::Crash => {
                "the lab machine itself went down (a failure of KVM nested under qemu TCG, \
                 see docs/BENCHMARKS.md)"
            }
            qemu::DownKind::Stall => {
                "the lab machine stopped running (KVM nested under qemu TCG, see \
                 docs/BENCHMARKS.md)"
            }
        };
        done.extend(down.progress.iter().cloned());
        let left = timeout.saturating_sub(started.elapsed());
        if reruns == MAX_RERUNS || left < Duration::from_secs(60) {
            anyhow::bail!(
                "lab: {down}; {why}, and {}",
                if reruns == MAX_RERUNS {
                    format!("it went down {} times", reruns + 1)
                } else {
                    "PADDOCK_LAB_TIMEOUT leaves no time to rerun".to_owned()
                }
            );
        }
        reruns += 1;
        let after = if done.is_empty() {
            String::new()
        } else {
            format!(" after the steps it finished ({})", done.join(", "))
        };
        eprintln!(
            "xtask: lab: {down}\nxtask: lab: {why}; running the command again in a fresh lab{after} \
             (within the {} s left)",
            left.as_secs()
        );
    };
    let init = match (outcome.init_uptime, outcome.init_wall) {
        (Some(uptime), Some(wall)) => format!(
            "/init at {uptime:.2} s guest uptime ({:.1} s wall)",
            wall.as_secs_f64()
        ),
        _ => "/init time unknown".to_owned(),
    };
    eprintln!(
        "xtask: lab ({}): {init}; exit status {} after {:.1} s wall",
        kernel.release,
        outcome.status,
        outcome.wall.as_secs_f64()
    );
    Ok(outcome.status)
}

/// The lab initramfs: busybox, the KVM modules, /init, the command and the extra files.
fn lab_spec(
    kernel: &kernel::LabKernel,
    markers: &Markers,
    files: &[(PathBuf, String)],
    env: &[(String, String)],
    command: &[String],
) -> Result<ImageSpec> {
    let busybox = rootfs::busybox_static()?;
    let mut spec = busybox::base_layer(&busybox, &busybox::applets(&busybox)?)?;
    let mut modules_in_lab = Vec::new();
    for module in &kernel.modules {
        let name = module
            .file_name()
            .context("module without a file name")?
            .to_string_lossy();
        let lab_path = format!("/lib/modules/{name}");
        spec.host_file(&lab_path, 0o644, module)?;
        modules_in_lab.push(lab_path);
    }
    spec.bytes_file(
        "/init",
        0o755,
        script::init_script(markers, &modules_in_lab),
    )?;
    spec.bytes_file(
        script::COMMAND_PATH,
        0o755,
        script::command_script(command)?,
    )?;
    spec.bytes_file(script::ENV_PATH, 0o644, script::env_script(env)?)?;
    for (host, lab_path) in files {
        spec.host_file(lab_path, host_permissions(host)?, host)?;
    }
    Ok(spec)
}

/// The permission bits of a host file (following symlinks), so executables stay executable.
fn host_permissions(path: &Path) -> Result<u32> {
    let meta = std::fs::metadata(path).with_context(|| format!("lab file {}", path.display()))?;
    Ok(meta.permissions().mode() & 0o7777)
}

/// `PADDOCK_LAB_TIMEOUT` seconds (default an hour), cut to what is left before
/// `PADDOCK_LAB_DEADLINE` (Unix seconds) when that is set: CI gives the lab the time left of
/// its own limit, however long the builds before it took.
fn timeout() -> Result<Duration> {
    let seconds = |name: &str| -> Result<Option<u64>> {
        match std::env::var(name) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .with_context(|| format!("{name}={text:?}: not seconds")),
            Err(_) => Ok(None),
        }
    };
    let mut timeout =
        Duration::from_secs(seconds("PADDOCK_LAB_TIMEOUT")?.unwrap_or(DEFAULT_TIMEOUT_SECS));
    if let Some(deadline) = seconds("PADDOCK_LAB_DEADLINE")? {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        timeout = timeout.min(Duration::from_secs(deadline).saturating_sub(now));
        if timeout < Duration::from_secs(60) {
            anyhow::bail!("PADDOCK_LAB_DEADLINE leaves the lab less than a minute");
        }
    }
    Ok(timeout)
}

/// A fresh value per run, so the console markers cannot be produced by anything else.
fn run_nonce() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let hash = util::hash_parts([
        now.as_nanos().to_le_bytes().as_slice(),
        &std::process::id().to_le_bytes(),
    ]);
    hash[..16].to_owned()
}

/// A run's scratch directory `<tmp>/paddock-lab-<pid>-<nonce>`, removed when dropped. Directories
/// of runs that were killed (their pid is gone) are removed when the next run starts.
struct TempDir(PathBuf);

impl TempDir {
    const PREFIX: &'static str = "paddock-lab-";

    fn for_this_run(nonce: &str) -> Result<Self> {
        let tmp = std::env::temp_dir();
        Self::remove_stale(&tmp);
        let path = tmp.join(format!("{}{}-{nonce}", Self::PREFIX, std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn remove_stale(tmp: &Path) {
        let Ok(entries) = std::fs::read_dir(tmp) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|n| n.strip_prefix(Self::PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
