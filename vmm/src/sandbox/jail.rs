//! The VMM's jail: its own mount namespace whose root holds only what this sandbox needs (its
//! artifacts and snapshot, its state directory, `/dev/kvm`, `/dev/null`, `/dev/urandom` and a
//! `/proc` of its own), an empty network namespace and a PID namespace in which it is PID 1.
//! An ordinary user gets the namespaces through a user namespace that maps only their own ids;
//! root needs none. Paths keep their host spelling inside (each is bound at its own path), so
//! nothing else in the VMM changes; directories named later (a snapshot's destination, a reset
//! target) reach the jailed VMM as open descriptors over the control socket.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why the jail could not be built.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// A namespace could not be created.
    #[error("creating the VMM's {what} namespace failed")]
    Unshare {
        /// Which namespaces.
        what: &'static str,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The user namespace's id maps could not be written.
    #[error("writing {path}")]
    IdMap {
        /// The /proc file.
        path: &'static str,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A mount (or unmount, or pivot) step failed.
    #[error("jail: {what} {path} failed")]
    Mount {
        /// The step.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A path to expose is not there.
    #[error("jail: {path} is needed by the VMM but cannot be read")]
    Missing {
        /// The path.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
}

impl JailError {
    /// Whether the host forbids the namespaces to this user (user namespaces disabled or
    /// restricted, as on Ubuntu 24.04 by AppArmor): then the VMM runs unjailed, with a warning.
    pub fn is_unavailable(&self) -> bool {
        let code = match self {
            JailError::Unshare { source, .. } | JailError::IdMap { source, .. } => {
                source.raw_os_error()
            }
            JailError::Mount { source, .. } => source.raw_os_error(),
            JailError::Missing { .. } => None,
        };
        matches!(
            code,
            Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOSPC)
        ) && !is_root()
    }
}

/// One host path the jailed VMM sees, at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The path (absolute).
    pub path: PathBuf,
    /// Whether the VMM may write it.
    pub writable: bool,
}

/// What the jail exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JailPlan {
    /// Paths bound into the jail, at their own paths.
    pub binds: Vec<Bind>,
    /// No `/proc` and no device nodes: for a helper process that opened what it needs from
    /// them before it entered (it has no PID namespace of its own to show).
    pub bare: bool,
    /// Stay in the host's network namespace: for a helper that connects out (the egress
    /// proxy). Everything else gets an empty one.
    pub keep_network: bool,
}

/// Device nodes every VMM needs.
pub const DEVICES: [&str; 3] = ["/dev/kvm", "/dev/null", "/dev/urandom"];

impl JailPlan {
    /// Adds `path` (made absolute); writable wins when a path is added twice.
    pub fn bind(&mut self, path: &Path, writable: bool) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(existing) = self.binds.iter_mut().find(|b| b.path == path) {
            existing.writable |= writable;
            return;
        }
        self.binds.push(Bind { path, writable });
    }

    /// The binds in mount order: parents before what lies beneath them, so a file bound
    /// read-only inside a writable directory stays read-only.
    pub fn ordered(&self) -> Vec<Bind> {
        let mut binds = self.binds.clone();
        binds.sort_by_key(|b| (b.path.components().count(), b.path.clone()));
        binds
    }
}

/// The VMM's pid as the host sees it (inside its PID namespace it is 1): recorded before the
/// jail's own `/proc` hides the host's.
static HOST_PID: OnceLock<u32> = OnceLock::new();

/// This process's pid in the host's PID namespace: what the `/proc` it first asks shows for
/// it (the host's, when it is first asked before the jail; the cgroup's name asks first).
pub fn host_pid() -> u32 {
    *HOST_PID.get_or_init(|| {
        std::fs::read_link("/proc/self")
            .ok()
            .and_then(|link| link.to_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(std::process::id)
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

fn unshare(flags: libc::c_int, what: &'static str) -> Result<(), JailError> {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(JailError::Unshare {
            what,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Called by the supervisor before it forks the VMM: a new PID namespace for its next child
/// (and, for an ordinary user, the user namespace that allows it, mapping only the user's own
/// uid and gid; supplementary groups such as `kvm` keep working). Single-threaded callers only.
pub fn new_pid_namespace() -> Result<(), JailError> {
    if is_root() {
        return unshare(libc::CLONE_NEWPID, "PID");
    }
    // SAFETY: getuid/getgid have no memory effects.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID, "user and PID")?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    Ok(())
}

/// Enters the jail of a helper process (the workspace server, the egress proxy): for an
/// ordinary user first a
/// user namespace mapping only their own ids, then [`enter`] with a bare plan (no PID namespace,
/// no `/proc`, no devices). Single-threaded callers only.
pub fn enter_as_helper(plan: &JailPlan, root: &Path) -> Result<(), JailError> {
    if !is_root() {
        // SAFETY: getuid/getgid have no memory effects.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        unshare(libc::CLONE_NEWUSER, "user")?;
        write_proc("/proc/self/setgroups", "deny")?;
        write_proc("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
        write_proc("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    }
    let plan = JailPlan {
        bare: true,
        ..plan.clone()
    };
    enter(&plan, root)
}

fn write_proc(path: &'static str, text: &str) -> Result<(), JailError> {
    std::fs::write(path, text).map_err(|source| JailError::IdMap { path, source })
}

/// Enters the jail: new mount and network namespaces, a root at `root` (an empty directory,
/// which only this namespace sees mounted) holding the plan's paths, the devices and a fresh
/// `/proc`, made the process's root. Call it single-threaded, in the child the supervisor
/// forked after [`new_pid_namespace`] (the fresh `/proc` shows that namespace).
pub fn enter(plan: &JailPlan, root: &Path) -> Result<(), JailError> {
    enter_with(plan, root, RootSwitch::Pivot)
}

/// How the jail's root becomes the process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootSwitch {
    /// `pivot_root`, falling back to moving when the host's root cannot be pivoted away.
    Pivot,
    /// Moving the jail's root over `/` and `chroot` into it (always: for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Move,
}

fn enter_with(plan: &JailPlan, root: &Path, switch: RootSwitch) -> Result<(), JailError> {
    let prepared = prepare_with(root, plan.keep_network, !plan.bare)?;
    finish_with(prepared, root, plan, switch)
}

/// A jail half built by [`prepare`]: its namespaces, its root's tmpfs, the devices and `/proc`
/// are there; the plan's paths are not, and the process's root is still the host's.
#[derive(Debug)]
#[must_use = "a prepared jail is entered with `finish`"]
pub struct PreparedJail {
    _private: (),
}

/// The part of [`enter`] that needs no plan, done ahead of time by a warm VMM (its sandbox, and
/// so the paths its jail shows, are not known yet): new mount and network namespaces, the
/// tmpfs on `root`, the devices and a fresh `/proc`. Call it single-threaded, as `enter`.
pub fn prepare(root: &Path) -> Result<PreparedJail, JailError> {
    prepare_with(root, false, true)
}

/// Completes a [`prepare`]d jail with `plan`'s paths and makes it the process's root. `root` is
/// the prepared root's path now (the directory holding it may have been moved meanwhile).
pub fn finish(prepared: PreparedJail, root: &Path, plan: &JailPlan) -> Result<(), JailError> {
    finish_with(prepared, root, plan, RootSwitch::Pivot)
}

fn prepare_with(root: &Path, keep_network: bool, devices: bool) -> Result<PreparedJail, JailError> {
    // Before the fresh /proc hides the host's: this process's host pid.
    host_pid();
    if keep_network {
        unshare(libc::CLONE_NEWNS, "mount")?;
    } else {
        unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET, "mount and network")?;
    }
    // Nothing mounted here propagates back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        "making private",
    )?;
    // Only the root itself: its parent (the sandbox's directory) must still be there, so that
    // a helper starting late never makes a removed sandbox's directory again.
    match std::fs::create_dir(root) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(JailError::Mount {
                what: "creating",
                path: root.to_path_buf(),
                source: e,
            })
        }
        _ => {}
    }
    mount(
        Some("tmpfs".as_ref()),
        root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "mounting a tmpfs on",
    )?;
    if devices {
        // A missing device is the VMM's to report (no /dev/kvm: not a KVM host).
        for device in DEVICES.iter().filter(|d| Path::new(d).exists()) {
            let bind = Bind {
                path: PathBuf::from(device),
                writable: true,
            };
            bind_into(root, &bind)?;
        }
        let proc_dir = root.join("proc");
        make_dir(&proc_dir)?;
        mount(
            Some("proc".as_ref()),
            &proc_dir,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "mounting /proc on",
        )?;
    }
    Ok(PreparedJail { _private: () })
}

fn finish_with(
    _prepared: PreparedJail,
    root: &Path,
    plan: &JailPlan,
    switch: RootSwitch,
) -> Result<(), JailError> {
    for bind in &plan.ordered() {
        bind_into(root, bind)?;
    }
    match switch {
        RootSwitch::Pivot => match pivot_into(root) {
            // The host runs from an initramfs (rootfs cannot be pivoted away from), as a
            // diskless host or the test lab does: move the jail's root over it instead.
            Err(JailError::Mount { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                move_into(root)?
            }
            other => other?,
        },
        RootSwitch::Move => move_into(root)?,
    }
    // The root itself: no new files outside the binds.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        "remounting read-only",
    )?;
    Ok(())
}

/// Binds `bind.path` at the same path under `root`, read-only unless writable.
fn bind_into(root: &Path, bind: &Bind) -> Result<(), JailError> {
    let source = &bind.path;
    let meta = std::fs::metadata(source).map_err(|source_err| JailError::Missing {
        path: source.clone(),
        source: source_err,
    })?;
    let relative = source.strip_prefix("/").unwrap_or(source);
    let target = root.join(relative);
    if let Some(parent) = target.parent() {
        make_dir(parent)?;
    }
    // The mount point: an empty directory or file of the same kind (already there when a
    // parent directory was bound before).
    if std::fs::symlink_metadata(&target).is_err() {
        let made = if meta.is_dir() {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        };
        made.map_err(|source| JailError::Mount {
            what: "creating the mount point",
            path: target.clone(),
            source,
        })?;
    }
    mount(
        Some(source.as_os_str()),
        &target,
        None,
        libc::MS_BIND,
        "binding",
    )?;
    if !bind.writable {
        // A remount may not drop the flags the host's mount has (an unprivileged user's
        // namespace keeps them locked): carry them over.
        let inherited = mount_flags(source);
        mount(
            None,
            &target,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | inherited,
            "making read-only",
        )?;
    }
    Ok(())
}

/// The `MS_*` flags of the mount `path` lies on that a bind remount must keep.
fn mount_flags(path: &Path) -> libc::c_ulong {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into `stat`, a plain struct we own; `c_path` is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return 0;
    }
    let pairs = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    pairs
        .iter()
        .filter(|(st, _)| stat.f_flag & st != 0)
        .fold(0, |flags, (_, ms)| flags | ms)
}

fn make_dir(path: &Path) -> Result<(), JailError> {
    std::fs::create_dir_all(path).map_err(|source| JailError::Mount {
        what: "creating",
        path: path.to_path_buf(),
        source,
    })
}

/// Makes `root` the process's root and detaches the host's.
fn pivot_into(root: &Path) -> Result<(), JailError> {
    std::env::set_current_dir(root).map_err(|source| JailError::Mount {
        what: "entering",
        path: root.to_path_buf(),
        source,
    })?;
    let dot = c".";
    // SAFETY: pivot_root(".", ".") stacks the old root on the new one; both strings are
    // NUL-terminated literals.
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } != 0 {
        return Err(JailError::Mount {
            what: "pivoting into",
            path: root.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: detaches the old root, now mounted on "."; the string is a literal.
    if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(JailError::Mount {
            what: "detaching the host's root from",
            path: root.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    std::env::set_current_dir("/").map_err(|source| JailError::Mount {
        what: "entering",
        path: PathBuf::from("/"),
        source,
    })
}

/// Makes `root` the process's root where `pivot_root` cannot (the host's root is rootfs): the
/// jail's root is moved over `/`, hiding the host's tree beneath it, and the process chroots
/// into it (it keeps no capability to chroot again).
fn move_into(root: &Path) -> Result<(), JailError> {
    let entering = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JailError::Mount {
            what: "entering",
            path,
            source,
        }
    };
    std::env::set_current_dir(root).map_err(entering(root))?;
    mount(
        Some(".".as_ref()),
        Path::new("/"),
        None,
        libc::MS_MOVE,
        "moving the jail's root over",
    )?;
    std::os::unix::fs::chroot(".").map_err(entering(root))?;
    std::env::set_current_dir("/").map_err(entering(Path::new("/")))
}

fn mount(
    source: Option<&std::ffi::OsStr>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    what: &'static str,
) -> Result<(), JailError> {
    let err = |source: std::io::Error| JailError::Mount {
        what,
        path: target.to_path_buf(),
        source,
    };
    let c = |s: &[u8]| CString::new(s).map_err(|e| err(std::io::Error::other(e)));
    let source = source.map(|s| c(s.as_bytes())).transpose()?;
    let fstype = fstype.map(|s| c(s.as_bytes())).transpose()?;
    let target_c =
        CString::new(target.as_os_str().as_bytes()).map_err(|e| err(std::io::Error::other(e)))?;
    // SAFETY: every pointer is NUL-terminated and outlives the call, or null where mount(2)
    // accepts null; no data argument is passed.
    let rc = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The host tree of a test: a writable directory, a read-only file, and files outside.
    struct Tree {
        _dir: tempfile::TempDir,
        writable: PathBuf,
        read_only: PathBuf,
        outside: PathBuf,
        root: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let writable = dir.path().join("sandbox");
        std::fs::create_dir(&writable).unwrap();
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
        let read_only = dir.path().join("kernel");
        std::fs::write(&read_only, b"kernel").unwrap();
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o666)).unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"secret").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o666)).unwrap();
        let root = writable.join("jail-root");
        Tree {
            writable,
            read_only,
            outside,
            root,
            _dir: dir,
        }
    }

    /// What the jailed process checks; the number of the first check that failed, or 0.
    fn checks(tree: &Tree) -> i32 {
        let results = [
            // 1: the host's files outside the plan are not there at all.
            std::fs::metadata(&tree.outside).is_err() && std::fs::metadata("/etc/passwd").is_err(),
            // 2: a read-only artifact reads, and cannot be written.
            std::fs::read(&tree.read_only).is_ok_and(|b| b == b"kernel")
                && std::fs::OpenOptions::new()
                    .write(true)
                    .open(&tree.read_only)
                    .is_err_and(|e| e.raw_os_error() == Some(libc::EROFS)),
            // 3: the sandbox's directory is writable, and the host sees it (checked outside).
            std::fs::write(tree.writable.join("written"), b"inside").is_ok(),
            // 4: nothing can be created beside the binds.
            std::fs::write("/new-file", b"x").is_err(),
            // 5: PID 1 of its own namespace; its /proc shows only it.
            std::process::id() == 1
                && std::fs::read_dir("/proc").is_ok_and(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                        .count()
                        == 1
                }),
            // 6: an empty network namespace: no interface but lo, and lo down.
            std::fs::read_to_string("/proc/net/dev").is_ok_and(|dev| {
                dev.lines()
                    .skip(2)
                    .all(|line| line.trim_start().starts_with("lo:"))
            }),
            // 7: the host pid was recorded before the jail's /proc hid it.
            host_pid() != 1,
            // 8: /dev/null is there.
            std::fs::write("/dev/null", b"x").is_ok(),
            // 9: the jail's /proc shows which pages of a private file mapping this process
            // wrote (snapshots and resets of a restored guest rely on it).
            written_pages_show(&tree.writable.join("memory")),
        ];
        results
            .iter()
            .position(|ok| !ok)
            .map_or(0, |i| i32::try_from(i + 1).unwrap_or(i32::MAX))
    }

    /// Maps a 16-page file privately, writes page 3, and checks the pagemap names that page
    /// only.
    fn written_pages_show(path: &Path) -> bool {
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
        else {
            return false;
        };
        if file.set_len(16 * 4096).is_err() {
            return false;
        }
        // SAFETY: a new private mapping of a file we own, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                16 * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return false;
        }
        let mut runs = Vec::new();
        // SAFETY: reads every page (faulting them in from the file) and writes page 3, all
        // inside the mapping.
        unsafe {
            for page in 0..16 {
                std::ptr::read_volatile((addr as *const u8).add(page * 4096));
            }
            std::ptr::write_volatile((addr as *mut u8).add(3 * 4096), 1);
        }
        let read = crate::vstate::pagemap::for_each_private_run(addr as u64, 16 * 4096, |f, n| {
            runs.push((f, n));
            Ok(())
        });
        // SAFETY: unmaps the mapping made above.
        unsafe { libc::munmap(addr, 16 * 4096) };
        if read.is_err() || runs != [(3, 1)] {
            eprintln!("pagemap in the jail: {read:?} {runs:?}");
            return false;
        }
        true
    }

    /// Forks a child that makes a PID namespace (as `nobody` when `unprivileged`) and a
    /// grandchild in it that runs `inner`, as the supervisor and the VMM are; returns the
    /// child's pid. Its exit status is `inner`'s, or 20–23 when the scaffolding failed.
    fn spawn_in_pid_namespace(unprivileged: bool, inner: impl FnOnce() -> i32) -> libc::pid_t {
        // SAFETY: the child and grandchild make raw syscalls and simple file operations, then
        // _exit; nothing they do needs another thread of the test process.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid != 0 {
            return pid;
        }
        let code = (|| {
            if unprivileged {
                // SAFETY: dropping to nobody in the child.
                if unsafe { libc::setgid(65534) != 0 || libc::setuid(65534) != 0 } {
                    return 20;
                }
                // A process that changed its uid is not dumpable, which leaves its /proc
                // files (the id maps among them) root's; a user's own process is.
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) };
            }
            if let Err(e) = new_pid_namespace() {
                eprintln!("jail: {}", crate::seccomp::describe(&e));
                return 21;
            }
            // SAFETY: as above.
            let grandchild = unsafe { libc::fork() };
            if grandchild == 0 {
                let code = inner();
                // SAFETY: ends the grandchild.
                unsafe { libc::_exit(code) };
            }
            exit_status(grandchild).unwrap_or(23)
        })();
        // SAFETY: ends the child.
        unsafe { libc::_exit(code) };
    }

    /// Waits for child `pid`; its exit status (none if a signal ended it).
    fn exit_status(pid: libc::pid_t) -> Option<i32> {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
    }

    /// A step of entering the jail, its error reported as the check numbered `failed`.
    fn entered<T>(result: Result<T, JailError>, failed: i32) -> Result<T, i32> {
        result.map_err(|e| {
            eprintln!("jail: {}", crate::seccomp::describe(&e));
            failed
        })
    }

    /// Runs `checks` in a jail built as the VMM's is (see [`spawn_in_pid_namespace`]).
    fn jailed_checks(tree: &Tree, unprivileged: bool, switch: RootSwitch) -> i32 {
        let mut plan = JailPlan::default();
        plan.bind(&tree.writable, true);
        plan.bind(&tree.read_only, false);
        let pid = spawn_in_pid_namespace(unprivileged, || {
            entered(enter_with(&plan, &tree.root, switch), 22).map_or_else(|e| e, |()| checks(tree))
        });
        exit_status(pid).expect("the child exits")
    }

    #[test]
    fn a_jailed_process_sees_only_its_plan_in_namespaces_of_its_own() {
        if !is_root() {
            eprintln!("skipped: needs root to test both ways in");
            return;
        }
        let ways = [
            (false, RootSwitch::Pivot),
            (true, RootSwitch::Pivot),
            (false, RootSwitch::Move),
            (true, RootSwitch::Move),
        ];
        for (unprivileged, switch) in ways {
            let tree = tree();
            assert_eq!(
                jailed_checks(&tree, unprivileged, switch),
                0,
                "check failed (unprivileged: {unprivileged}, {switch:?})"
            );
            assert_eq!(
                std::fs::read(tree.writable.join("written")).unwrap(),
                b"inside"
            );
            // The jail's root was mounted only inside: the host sees the empty mount point.
            assert_eq!(std::fs::read_dir(&tree.root).unwrap().count(), 0);
        }
    }

    /// A warm VMM's jail: prepared while the sandbox's directory is the pool entry's, finished
    /// after the claimer moved it to the sandbox's path.
    #[test]
    fn a_jail_prepared_ahead_is_finished_after_its_directory_moved() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tree = tree();
        let entry = tree.writable.with_file_name("entry");
        std::fs::rename(&tree.writable, &entry).unwrap();
        let mut plan = JailPlan::default();
        plan.bind(&tree.writable, true);
        plan.bind(&tree.read_only, false);
        let (mut to_child, mut from_child) = ([0; 2], [0; 2]);
        // SAFETY: pipe writes two descriptors into each array.
        unsafe {
            assert_eq!(libc::pipe(to_child.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(from_child.as_mut_ptr()), 0);
        }
        let pid = spawn_in_pid_namespace(false, || {
            let mut byte = [0u8; 1];
            let prepared = match entered(prepare(&entry.join("jail-root")), 24) {
                Ok(prepared) => prepared,
                Err(code) => return code,
            };
            // SAFETY: one byte each way on the pipes' descriptors.
            unsafe {
                libc::write(from_child[1], byte.as_ptr().cast(), 1);
                libc::read(to_child[0], byte.as_mut_ptr().cast(), 1);
            }
            entered(finish(prepared, &tree.root, &plan), 22).map_or_else(|e| e, |()| checks(&tree))
        });
        let mut byte = [0u8; 1];
        // SAFETY: one byte each way on the pipes' descriptors.
        unsafe { libc::read(from_child[0], byte.as_mut_ptr().cast(), 1) };
        // The claimer's move, from the host's mount namespace.
        std::fs::rename(&entry, &tree.writable).unwrap();
        // SAFETY: as above.
        unsafe { libc::write(to_child[1], byte.as_ptr().cast(), 1) };
        assert_eq!(exit_status(pid), Some(0), "the check that failed");
        assert_eq!(
            std::fs::read(tree.writable.join("written")).unwrap(),
            b"inside"
        );
        // SAFETY: closing the pipes' descriptors, which this process owns.
        unsafe {
            for fd in to_child.into_iter().chain(from_child) {
                libc::close(fd);
            }
        }
    }

    #[test]
    fn binds_are_mounted_parents_first_and_writable_wins() {
        let mut plan = JailPlan::default();
        plan.bind(Path::new("/a/b/c"), false);
        plan.bind(Path::new("/a"), true);
        plan.bind(Path::new("/a/b/c"), true);
        plan.bind(Path::new("/z"), false);
        let ordered: Vec<_> = plan
            .ordered()
            .into_iter()
            .map(|b| (b.path.display().to_string(), b.writable))
            .collect();
        assert_eq!(
            ordered,
            [
                ("/a".to_string(), true),
                ("/z".to_string(), false),
                ("/a/b/c".to_string(), true)
            ]
        );
    }
}
