//! The guest side of the workspace share: a FUSE mount at the host directory's own path whose
//! requests guest-init relays, unchanged, over one vsock connection to the sandbox's workspace
//! server on the host (see `paddock_protocol::workspace`). guest-init only moves whole messages;
//! what the requests mean is the host server's business, and it trusts none of them.

use crate::service::Transport;
use crate::sys::{cstring, cvt};
use crate::vsock::VsockStream;
use paddock_protocol::workspace::{
    message_len, BadLength, HELLO, IN_HEADER_LEN, MAX_MESSAGE, OUT_HEADER_LEN,
};
use paddock_protocol::{mountinfo, WorkspaceMode, HOST_CID, WORKSPACE_PORT};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Why the workspace could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The path is not absolute, or not plain (`.`/`..` components, NUL bytes).
    #[error("workspace path {0:?} is not an absolute, normalized path")]
    Path(String),
    /// The mount point could not be made.
    #[error("cannot make the mount point {path}: {source}")]
    MountPoint { path: String, source: io::Error },
    /// `/dev/fuse` could not be opened (a kernel without FUSE).
    #[error("cannot open /dev/fuse: {0}")]
    Device(#[source] io::Error),
    /// The host's workspace server did not answer on its port.
    #[error("cannot reach the host's workspace server (vsock port {WORKSPACE_PORT}): {0}")]
    Host(#[source] io::Error),
    /// mount(2) refused.
    #[error("cannot mount the workspace on {path}: {source}")]
    Mount { path: String, source: io::Error },
    /// The relay threads could not be started.
    #[error("cannot start the workspace relay: {0}")]
    Relay(#[source] io::Error),
    /// This platform mounts no workspaces (a test stand-in for the guest).
    #[error("this platform cannot mount a workspace")]
    Unsupported,
}

/// Why a workspace's changes could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// No workspace is mounted at the path.
    #[error("no workspace is mounted at {0}")]
    NotMounted(String),
    /// The workspace there is live: its changes are on the host already.
    #[error("the workspace at {0} is live, not copy-on-write: its changes are on the host")]
    Live(String),
    /// Reading the layers failed.
    #[error("reading the workspace's changes: {0}")]
    Read(#[source] io::Error),
    /// This platform has no workspaces (a test stand-in for the guest).
    #[error("this platform has no workspaces")]
    Unsupported,
}

/// The changes of the copy-on-write workspace mounted at `path`.
pub fn changes(
    path: &str,
) -> Result<Vec<paddock_protocol::workspace::WorkspaceChange>, ChangesError> {
    let served = served_at(path).ok_or_else(|| ChangesError::NotMounted(path.to_string()))?;
    let layers = served
        .layers
        .filter(|_| served.mode == WorkspaceMode::Cow)
        .ok_or_else(|| ChangesError::Live(path.to_string()))?;
    // The lower is cached for a minute (it is not expected to change), but `paddock apply`
    // changes it: what the guest compares against must be the host's directory as it is now.
    // Dropping the guest's clean caches makes the next look at each lower file ask the host.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    changes::list(&layers.upper, &layers.lower).map_err(ChangesError::Read)
}

/// A mount this guest-init serves: its mode, and for a copy-on-write one, its upper layer.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Which mount (a later one at the same path has another).
    pub(crate) id: u32,
    pub(crate) mode: WorkspaceMode,
    pub(crate) layers: Option<CowLayers>,
}

/// The paths whose mounts this guest-init serves now (a relay that ends removes its path).
fn served() -> &'static Mutex<HashMap<String, Served>> {
    static SERVED: OnceLock<Mutex<HashMap<String, Served>>> = OnceLock::new();
    SERVED.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_served() -> std::sync::MutexGuard<'static, HashMap<String, Served>> {
    served()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The mount served at `path`, if any.
pub(crate) fn served_at(path: &str) -> Option<Served> {
    lock_served().get(path).cloned()
}

/// Where a copy-on-write workspace's layers are: the read-only FUSE mount of the host's
/// directory (`lower`) and, in a tmpfs in guest memory, the guest's changes (`upper`) and
/// overlayfs's work directory.
#[derive(Debug, Clone)]
pub(crate) struct CowLayers {
    pub(crate) lower: PathBuf,
    pub(crate) tmpfs: PathBuf,
    pub(crate) upper: PathBuf,
    pub(crate) work: PathBuf,
}

impl CowLayers {
    /// Fresh layer directories for the next copy-on-write mount.
    fn next() -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let base = Path::new(COW_BASE).join(COUNT.fetch_add(1, Ordering::Relaxed).to_string());
        Self {
            lower: base.join("lower"),
            tmpfs: base.join("layer"),
            upper: base.join("layer/upper"),
            work: base.join("layer/work"),
        }
    }
}

/// Where guest-init keeps copy-on-write workspaces' layers.
const COW_BASE: &str = "/run/paddock/workspace";

/// mount(2) with Rust strings; `what` names the step in the error.
fn sys_mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), MountError> {
    let path = target.display().to_string();
    let bad = |_| MountError::Path(path.clone());
    let (source, fstype, data) = (
        cstring(source).map_err(bad)?,
        cstring(fstype).map_err(bad)?,
        cstring(data).map_err(bad)?,
    );
    let target_c = target
        .to_str()
        .and_then(|t| cstring(t).ok())
        .ok_or_else(|| MountError::Path(path.clone()))?;
    // SAFETY: every pointer is a valid C string for the call; `data` is the option string the
    // file system parses.
    cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })
    .map(drop)
    .map_err(|source| MountError::Mount { path, source })
}

/// Lazily unmounts whatever is mounted at `target` (nothing there is fine).
fn detach(target: &Path) {
    if let Some(target) = target.to_str().and_then(|t| cstring(t).ok()) {
        // SAFETY: `target` is a valid C string; the result is ignored on purpose.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn make_dir(path: &Path) -> Result<(), MountError> {
    std::fs::create_dir_all(path).map_err(|source| MountError::MountPoint {
        path: path.display().to_string(),
        source,
    })
}

/// Whether `path` is absolute and has no `.`, `..` or empty components.
fn is_plain_absolute(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .skip(1)
            .all(|c| c != "." && c != ".." && (!c.is_empty() || path == "/"))
        && path != "/"
}

/// Mounts the workspace at `path` as `mode` says and starts relaying it; nothing to do when
/// this guest-init already serves it there. The host connection is made first: if the server
/// cannot be reached, nothing is mounted.
pub fn mount(path: &str, mode: WorkspaceMode) -> Result<(), MountError> {
    if !is_plain_absolute(path) {
        return Err(MountError::Path(path.to_string()));
    }
    if lock_served().contains_key(path) {
        return Ok(());
    }
    let target = Path::new(path);
    // A mount of ours left behind (its relay ended, or a snapshot held it): out of the way.
    // There is none before the first mount.
    if MOUNTED_ONCE.swap(true, Ordering::AcqRel) {
        detach_ours(target);
    }
    make_dir(target)?;

    let fuse = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")
        .map_err(MountError::Device)?;
    let mut host = VsockStream::connect(HOST_CID, WORKSPACE_PORT).map_err(MountError::Host)?;
    host.write_all(HELLO).map_err(MountError::Host)?;
    let options = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other,max_read={}",
        fuse.as_raw_fd(),
        1 << 20
    );
    let layers = (mode == WorkspaceMode::Cow).then(CowLayers::next);
    // Live, the share is the mount; copy-on-write, it is the read-only lower layer.
    let (fuse_at, read_only) = match &layers {
        Some(layers) => {
            make_dir(&layers.lower)?;
            (layers.lower.as_path(), libc::MS_RDONLY)
        }
        None => (target, 0),
    };
    sys_mount(
        "paddock-workspace",
        fuse_at,
        "fuse",
        libc::MS_NOSUID | libc::MS_NODEV | read_only,
        &options,
    )?;
    static MOUNTS: AtomicU32 = AtomicU32::new(0);
    let id = MOUNTS.fetch_add(1, Ordering::Relaxed);
    let served = Served {
        id,
        mode,
        layers: layers.clone(),
    };
    // The relay runs before anything looks into the mount (the overlay does, at once).
    if let Err(e) = start_relay(path, served, fuse, host) {
        detach(fuse_at);
        return Err(MountError::Relay(e));
    }
    if let Some(layers) = &layers {
        if let Err(e) = stack_overlay(target, layers) {
            forget(path, id);
            unmount_cow(target, layers);
            return Err(e);
        }
    }
    Ok(())
}

/// The rest of the copy-on-write stack over the lower layer: a tmpfs for the guest's changes,
/// and the overlay of both at `target`.
fn stack_overlay(target: &Path, layers: &CowLayers) -> Result<(), MountError> {
    make_dir(&layers.tmpfs)?;
    sys_mount(
        "paddock-workspace-layer",
        &layers.tmpfs,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    )?;
    make_dir(&layers.upper)?;
    make_dir(&layers.work)?;
    // The upper's root takes the host directory's owner and mode, as the live mount shows it.
    if let Ok(meta) = std::fs::metadata(&layers.lower) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let _ = std::os::unix::fs::chown(&layers.upper, Some(meta.uid()), Some(meta.gid()));
        let _ = std::fs::set_permissions(
            &layers.upper,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        );
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        layers.lower.display(),
        layers.upper.display(),
        layers.work.display()
    );
    sys_mount(
        "paddock-workspace",
        target,
        "overlay",
        libc::MS_NOSUID | libc::MS_NODEV,
        &options,
    )
}

/// Lazily unmounts every mount of ours (source `paddock-workspace`) at `target`, innermost
/// first; anything else mounted there (the guest's own `/tmp`, say) stays.
fn detach_ours(target: &Path) {
    for _ in 0..8 {
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        if mounted_here(&table, target) != Some("paddock-workspace") {
            return;
        }
        detach(target);
    }
}

/// The source of the topmost mount at `target` in a `/proc/self/mountinfo` table.
fn mounted_here<'a>(table: &'a str, target: &Path) -> Option<&'a str> {
    let target = target.as_os_str().as_bytes();
    table
        .lines()
        .rev()
        .filter_map(mountinfo::parse_line)
        .find_map(|mount| (mount.mount_point == target).then_some(mount.source))
}

fn unmount_cow(target: &Path, layers: &CowLayers) {
    detach(target);
    detach(&layers.tmpfs);
    detach(&layers.lower);
}

/// Starts the two relay threads of the mount at `path`.
fn start_relay(path: &str, served: Served, fuse: File, host: VsockStream) -> io::Result<()> {
    let fuse_in = fuse.try_clone()?;
    let host_out = host.try_clone()?;
    let ended = Arc::new(Mutex::new(false));
    let closer = Arc::new(host.try_clone()?);
    let id = served.id;
    lock_served().insert(path.to_string(), served);
    let end = {
        let path = path.to_string();
        move |why: String| {
            crate::console_log!("workspace {path}: relay ended: {why}");
            // The other direction ends too; the mount stays, dead, until the next one
            // replaces it: its users get ENOTCONN, never the empty directory beneath.
            let _ = closer.shutdown();
            forget(&path, id);
        }
    };
    let (end_a, ended_a) = (end.clone(), ended.clone());
    let started = std::thread::Builder::new()
        .name("workspace-requests".into())
        .spawn(move || {
            let why = relay_requests(fuse_in, host_out);
            finish(&ended_a, &end_a, why);
        })
        .and_then(|_| {
            std::thread::Builder::new()
                .name("workspace-replies".into())
                .spawn(move || {
                    let why = relay_replies(host, fuse);
                    finish(&ended, &end, why);
                })
        });
    if let Err(e) = started {
        forget(path, id);
        return Err(e);
    }
    Ok(())
}

/// Forgets mount `id` at `path` (not a newer one there).
fn forget(path: &str, id: u32) {
    let mut served = lock_served();
    if served.get(path).is_some_and(|s| s.id == id) {
        served.remove(path);
    }
}

/// Whether this guest-init ever mounted a workspace: set before its first mount (a snapshot
/// holds guest memory, so a guest restored from one that had a mount has it set too). Until
/// then, no mount of ours can exist, and nothing needs looking for.
static MOUNTED_ONCE: AtomicBool = AtomicBool::new(false);

/// After a restore or reset: the mounts the snapshot held are served over connections the
/// restore reset (their host side is gone), so their relays are dead. Each is forgotten and unmounted (lazily:
/// a process inside one gets `ENOTCONN`), a copy-on-write one with its layers (the guest's
/// changes in it are gone: the host's baseline for them went with the connection). The host
/// mounts the share again.
pub fn forget_stale() {
    lock_served().clear();
    unmount_stale(
        MOUNTED_ONCE.load(Ordering::Acquire),
        || std::fs::read_to_string("/proc/self/mountinfo").ok(),
        |point| {
            detach(point);
            crate::console_log!(
                "workspace: {} from before the restore is unmounted",
                point.display()
            );
        },
    );
}

/// Unmounts every mount of ours in the table `read_table` gives, innermost first, the ones
/// whose relays already saw the reset included; the table is not even read when nothing was
/// ever `mounted_once`.
fn unmount_stale(
    mounted_once: bool,
    mut read_table: impl FnMut() -> Option<String>,
    mut unmount: impl FnMut(&Path),
) {
    if !mounted_once {
        return;
    }
    for _ in 0..32 {
        let Some(table) = read_table() else {
            return;
        };
        let Some(point) = ours(&table).pop() else {
            return;
        };
        unmount(Path::new(std::ffi::OsStr::from_bytes(&point)));
    }
}

/// The mount points of our mounts (sources `paddock-workspace...`) in a mountinfo table,
/// outermost first.
fn ours(table: &str) -> Vec<Vec<u8>> {
    table
        .lines()
        .filter_map(mountinfo::parse_line)
        .filter(|mount| mount.source.starts_with("paddock-workspace"))
        .map(|mount| mount.mount_point)
        .collect()
}

/// The first relay thread to end reports why; either ending drops its handle on `/dev/fuse`
/// (when both have, the kernel aborts the mount: its users get `ENOTCONN`, never a hang).
fn finish(ended: &Mutex<bool>, end: &impl Fn(String), why: RelayEnd) {
    let mut ended = ended.lock().unwrap_or_else(|p| p.into_inner());
    if !*ended {
        *ended = true;
        end(why.to_string());
    }
}

/// Why a relay direction stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayEnd {
    /// The kernel unmounted the file system.
    #[error("unmounted")]
    Unmounted,
    /// The host closed the connection.
    #[error("the host closed the connection")]
    HostClosed,
    /// A message with an impossible length.
    #[error(transparent)]
    BadLength(#[from] BadLength),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Kernel -> host: each read of `/dev/fuse` is one whole request; it goes to the host as is.
pub fn relay_requests(mut fuse: impl Read, mut host: impl Write) -> RelayEnd {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = match fuse.read(&mut buf) {
            Ok(0) => return RelayEnd::Unmounted,
            Ok(n) => n,
            // An interrupted request the kernel took back, or a signal: read the next.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINTR)) => {
                continue
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return RelayEnd::Unmounted,
            Err(e) => return RelayEnd::Io(e),
        };
        let message = &buf[..n];
        if let Err(e) = message_len(message, IN_HEADER_LEN) {
            return e.into();
        }
        if let Err(e) = host.write_all(message) {
            return e.into();
        }
    }
}

/// Host -> kernel: replies come as a stream; each is cut at the length its header gives and
/// written to `/dev/fuse` in one write, as the kernel requires.
pub fn relay_replies(mut host: impl Read, mut fuse: impl Write) -> RelayEnd {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        match host.read_exact(&mut buf[..OUT_HEADER_LEN]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return RelayEnd::HostClosed,
            Err(e) => return e.into(),
        }
        let len = match message_len(&buf[..OUT_HEADER_LEN], OUT_HEADER_LEN) {
            Ok(len) => len,
            Err(e) => return e.into(),
        };
        if let Err(e) = host.read_exact(&mut buf[OUT_HEADER_LEN..len]) {
            return e.into();
        }
        match fuse.write(&buf[..len]) {
            Ok(_) => {}
            // The request was interrupted and is gone: its reply has nowhere to go.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return RelayEnd::Unmounted,
            Err(e) => return e.into(),
        }
    }
}

pub mod changes;

#[cfg(test)]
mod tests;
