//! Per-sandbox resource limits with cgroup v2: the VMM process moves itself into its own cgroup
//! (`<base>/<sandbox>-<pid>`) before it creates the VM, so every page of guest memory and every
//! VMM thread is charged from the start. `memory.max` is the guest's RAM plus the VMM's
//! overhead, `pids.max` bounds its threads, `cpu.max` is the `--cpus` quota.
//!
//! The base is `$PADDOCK_CGROUP` (a cgroup v2 directory delegated to this user; `off` turns
//! limits off), else a `paddock` cgroup next to the caller's own, in the nearest ancestor that
//! is delegated (writable, with the memory, cpu and pids controllers). Where there is none (no
//! cgroup v2, nothing delegated), sandboxes run without limits and the CLI says so once.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Names the base directory, or `off`.
pub const CGROUP_ENV: &str = "PADDOCK_CGROUP";
/// The controllers a sandbox cgroup needs.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// The CPU quota's period, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// The VMM's own memory beyond guest RAM, at least: its binary, thread stacks, page tables,
/// device buffers (bounded per connection) and the snapshot's page cache under pressure.
const MIN_OVERHEAD_BYTES: u64 = 128 << 20;
/// Processes and threads of one VMM: the main, control and event-loop threads, one per vCPU
/// (at most 255), and short-lived helpers.
pub const PIDS_MAX: u32 = 512;
/// Empty sandbox cgroups older than this are removed when another sandbox starts (a VMM
/// cannot remove its own cgroup; younger ones may be about to be joined).
const STALE_AFTER: Duration = Duration::from_secs(60);
/// The `--cpus` range accepted.
pub const MIN_CPUS: f64 = 0.01;
pub const MAX_CPUS: f64 = 1024.0;

/// What one sandbox may use.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// `memory.max`, bytes.
    pub memory_max: u64,
    /// `cpu.max` as a number of CPUs (a fraction allowed); none: unbounded.
    pub cpus: Option<f64>,
    /// `pids.max`.
    pub pids_max: u32,
}

impl Limits {
    /// The limits of a VMM whose guest has `guest_ram` bytes: RAM plus an eighth (at least
    /// [`MIN_OVERHEAD_BYTES`]) for the VMM itself.
    pub fn for_guest(guest_ram: u64, cpus: Option<f64>) -> Self {
        Limits {
            memory_max: guest_ram.saturating_add(MIN_OVERHEAD_BYTES.max(guest_ram / 8)),
            cpus,
            pids_max: PIDS_MAX,
        }
    }

    /// `cpu.max`'s contents: the quota and the period in microseconds.
    fn cpu_max(&self) -> Option<String> {
        self.cpus.map(|cpus| {
            let quota = (cpus.clamp(MIN_CPUS, MAX_CPUS) * CPU_PERIOD_US as f64).round();
            // Bounded: at most 1024 * 100_000, far inside u64.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let quota = quota as u64;
            format!("{quota} {CPU_PERIOD_US}")
        })
    }
}

/// Where a sandbox's VMM runs, as recorded in its `info.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Not recorded (a sandbox started by an older paddock).
    #[default]
    Unknown,
    /// In this cgroup, with its limits.
    Limited(PathBuf),
    /// Without limits, for this reason.
    Unlimited(String),
}

/// Why there is no cgroup for sandboxes here (not an error: sandboxes run without limits).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("{CGROUP_ENV}=off")]
    Disabled,
    #[error("no cgroup v2 file system is mounted")]
    NoCgroupV2,
    #[error("{path} is not a cgroup v2 directory")]
    NotACgroup { path: PathBuf },
    #[error(
        "no cgroup delegated to this user with the memory, cpu and pids controllers (tried \
         {tried}; set {CGROUP_ENV} to a delegated cgroup, or run under systemd-run --user \
         --scope -p Delegate=yes)"
    )]
    NotDelegated { tried: PathBuf },
}

/// Setting up a sandbox's cgroup failed where one was available.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {what} {path}: {source}")]
pub struct CgroupError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Moves the calling process into a new cgroup for sandbox `name` with `limits`. Returns where
/// it went, or why it runs unlimited; an error only when an available cgroup refused the
/// limits (the VMM should not start then).
pub fn enter(name: &str, limits: &Limits) -> Result<Placement, CgroupError> {
    enter_with(name, Some(limits))
}

/// Moves the calling process into a new cgroup named after `name` with no limits yet: a warm
/// VMM's, made before it knows its sandbox (so that what it makes ahead is charged there too),
/// limited by [`limit`] once claimed. A cgroup v2 directory cannot be renamed, so it keeps the
/// warm VMM's name.
pub fn enter_unlimited(name: &str) -> Result<Placement, CgroupError> {
    enter_with(name, None)
}

fn enter_with(name: &str, limits: Option<&Limits>) -> Result<Placement, CgroupError> {
    let base = match base() {
        Ok(base) => base,
        Err(why) => return Ok(Placement::Unlimited(why.to_string())),
    };
    sweep(&base);
    // The host's pid: inside its PID namespace every VMM is 1.
    let dir = base.join(format!("{name}-{}", super::jail::host_pid()));
    std::fs::create_dir(&dir).map_err(|source| CgroupError {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    let placement = Placement::Limited(dir.clone());
    let joined = limits
        .map_or(Ok(()), |limits| limit(&placement, limits))
        .and_then(|()| write(&dir, "cgroup.procs", &std::process::id().to_string()));
    match joined {
        Ok(()) => Ok(placement),
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            Err(e)
        }
    }
}

/// Sets `limits` on the cgroup of `placement` (nothing for a process without one).
pub fn limit(placement: &Placement, limits: &Limits) -> Result<(), CgroupError> {
    let Placement::Limited(dir) = placement else {
        return Ok(());
    };
    write(dir, "memory.max", &limits.memory_max.to_string())?;
    write(dir, "pids.max", &limits.pids_max.to_string())?;
    if let Some(cpu_max) = limits.cpu_max() {
        write(dir, "cpu.max", &cpu_max)?;
    }
    Ok(())
}

/// Removes the cgroup of a sandbox whose VMM has ended (it must be empty).
pub fn remove(placement: &Placement) {
    if let Placement::Limited(dir) = placement {
        let _ = std::fs::remove_dir(dir);
    }
}

fn write(dir: &Path, file: &'static str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|source| CgroupError {
        what: "writing",
        path,
        source,
    })
}

/// The directory sandbox cgroups are made in.
fn base() -> Result<PathBuf, Unavailable> {
    match std::env::var_os(CGROUP_ENV) {
        Some(value) if value == "off" => Err(Unavailable::Disabled),
        Some(value) if !value.is_empty() => {
            let path = PathBuf::from(value);
            if !path.join("cgroup.controllers").is_file() {
                return Err(Unavailable::NotACgroup { path });
            }
            if has_controllers(&path) || enable_controllers(&path) {
                Ok(path)
            } else {
                Err(Unavailable::NotDelegated { tried: path })
            }
        }
        _ => {
            let mount =
                cgroup2_mount(&read("/proc/self/mountinfo")).ok_or(Unavailable::NoCgroupV2)?;
            let own = own_cgroup(&read("/proc/self/cgroup")).ok_or(Unavailable::NoCgroupV2)?;
            delegated_base(&mount, &own)
        }
    }
}

/// The nearest cgroup at or above the caller's own parent (its own, if that is the root) that
/// can hold a `paddock` child with the needed controllers; that child, created if need be.
fn delegated_base(mount: &Path, own: &Path) -> Result<PathBuf, Unavailable> {
    let own_dir = mount.join(own.strip_prefix("/").unwrap_or(own));
    let mut candidate = if own_dir == mount {
        Some(own_dir.clone())
    } else {
        own_dir.parent().map(Path::to_path_buf)
    };
    while let Some(dir) = candidate {
        if !dir.starts_with(mount) {
            break;
        }
        // Only the root may hold processes and enable controllers for its children at once.
        let usable = has_controllers(&dir) || (dir == mount && enable_controllers(&dir));
        let base = dir.join("paddock");
        if usable {
            match std::fs::create_dir(&base) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => {
                    candidate = dir.parent().map(Path::to_path_buf);
                    continue;
                }
            }
            if has_controllers(&base) || enable_controllers(&base) {
                return Ok(base);
            }
        }
        candidate = dir.parent().map(Path::to_path_buf);
    }
    Err(Unavailable::NotDelegated { tried: own_dir })
}

/// Whether `dir`'s children get every controller in [`CONTROLLERS`].
fn has_controllers(dir: &Path) -> bool {
    let enabled = read(dir.join("cgroup.subtree_control"));
    CONTROLLERS.iter().all(|c| {
        enabled
            .split_whitespace()
            .any(|e| e.trim_start_matches('+') == *c)
    })
}

/// Enables [`CONTROLLERS`] for `dir`'s children; whether they are enabled after.
fn enable_controllers(dir: &Path) -> bool {
    let request: Vec<String> = CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
    let _ = std::fs::write(dir.join("cgroup.subtree_control"), request.join(" "));
    has_controllers(dir)
}

/// Removes empty sandbox cgroups under `base` older than [`STALE_AFTER`] (their VMMs ended).
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| now.duration_since(at).ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if old && path.is_dir() && read(path.join("cgroup.procs")).trim().is_empty() {
            let _ = std::fs::remove_dir(&path);
        }
    }
}

/// The mount point of the cgroup v2 file system, from `/proc/self/mountinfo`'s text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if rest.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        fields.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// The caller's cgroup v2 path, from `/proc/self/cgroup`'s text (`0::/path`).
fn own_cgroup(proc_cgroup: &str) -> Option<PathBuf> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| PathBuf::from(path.trim()))
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Says once per state directory that sandboxes run without limits, and why.
pub fn note_once(state_dir: &Path, placement: &Placement) {
    let Placement::Unlimited(why) = placement else {
        return;
    };
    let marker = state_dir.join(".cgroup-note-shown");
    if marker.exists() {
        return;
    }
    let _ = std::fs::write(&marker, why);
    tracing::warn!(
        "sandboxes run without resource limits (--cpus, memory, pids): {why}. This note is \
         shown once."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_and_own_cgroup_are_read_from_proc() {
        let mountinfo = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate
31 23 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_mount("22 1 0:21 / /proc rw - proc proc rw"), None);
        assert_eq!(
            own_cgroup("1:cpu:/x\n0::/user.slice/user-1000.slice/session-2.scope\n"),
            Some(PathBuf::from("/user.slice/user-1000.slice/session-2.scope"))
        );
        assert_eq!(own_cgroup("1:cpu:/x\n"), None);
    }

    #[test]
    fn limits_add_the_vmm_overhead_and_the_cpu_quota() {
        let small = Limits::for_guest(256 << 20, Some(0.5));
        assert_eq!(small.memory_max, (256 + 128) << 20);
        assert_eq!(small.cpu_max().as_deref(), Some("50000 100000"));
        let large = Limits::for_guest(8 << 30, None);
        assert_eq!(large.memory_max, (8 << 30) + (1 << 30));
        assert_eq!(large.cpu_max(), None);
        assert_eq!(
            Limits::for_guest(0, Some(1e9)).cpu_max().as_deref(),
            Some("102400000 100000")
        );
    }

    /// A fake cgroup tree: directories with the files the kernel would show.
    fn fake_cgroup(dir: &Path, subtree: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::write(dir.join("cgroup.subtree_control"), subtree).unwrap();
    }

    #[test]
    fn the_base_is_next_to_the_callers_cgroup_where_controllers_are_delegated() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path();
        fake_cgroup(mount, "cpu memory pids");
        fake_cgroup(&mount.join("user.slice"), "memory pids");
        fake_cgroup(&mount.join("user.slice/app.slice"), "cpu memory pids");
        fake_cgroup(&mount.join("user.slice/app.slice/term.scope"), "");
        // The fake `paddock` child shows the controllers as enabled (a plain file accepts the
        // write, as the kernel's would).
        let base = delegated_base(mount, Path::new("/user.slice/app.slice/term.scope")).unwrap();
        assert_eq!(base, mount.join("user.slice/app.slice/paddock"));
        assert!(has_controllers(&base));
    }

    #[test]
    fn without_delegated_controllers_there_is_no_base() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path().join("cg");
        fake_cgroup(&mount, "");
        fake_cgroup(&mount.join("a"), "");
        fake_cgroup(&mount.join("a/b"), "");
        // Make the root's subtree_control refuse the write, as the kernel does for a user.
        let control = mount.join("cgroup.subtree_control");
        std::fs::remove_file(&control).unwrap();
        std::fs::create_dir(&control).unwrap();
        assert!(matches!(
            delegated_base(&mount, Path::new("/a/b")),
            Err(Unavailable::NotDelegated { .. })
        ));
    }

    #[test]
    fn off_and_bad_overrides_are_reasons_not_errors() {
        // Only this test sets the variable; enter() is never called by unit tests (it would
        // move the test process into a real cgroup).
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(CGROUP_ENV, "off");
        assert!(matches!(base(), Err(Unavailable::Disabled)));
        std::env::set_var(CGROUP_ENV, dir.path());
        assert!(matches!(base(), Err(Unavailable::NotACgroup { .. })));
        std::env::remove_var(CGROUP_ENV);
    }

    #[test]
    fn the_note_is_shown_once_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let placement = Placement::Unlimited("no cgroup v2".into());
        note_once(dir.path(), &placement);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".cgroup-note-shown")).unwrap(),
            "no cgroup v2"
        );
        note_once(dir.path(), &Placement::Limited(dir.path().into()));
    }
}
