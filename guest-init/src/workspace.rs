//! The guest side of the workspace share: a FUSE mount at the host directory's own path whose
//! requests guest-init relays, unchanged, over a vsock connection to the sandbox's workspace
//! server on the host (see `paddock_protocol::workspace`). guest-init only moves whole messages;
//! what the requests mean is the host server's business, and it trusts none of them. The mount
//! and its relay live in guest memory, so a snapshot holds them: after a restore or reset the
//! relay reconnects and carries the mount on (`link`).

use crate::service::Transport;
use crate::sys::{cstring, cvt};
use crate::vsock::VsockStream;
use link::{forward_requests, serve_replies, Link};
use paddock_protocol::workspace::{HELLO, SESSION_ID_LEN};
use paddock_protocol::{mountinfo, WorkspaceMode, HOST_CID, WORKSPACE_PORT};
use status::{Settled, Status};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use notifier::Notifier;
pub use relay::{relay_replies, relay_requests, RelayEnd};
pub use resume::ResumeError;

/// How a `mount` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounted {
    /// Mounted by this call.
    Fresh,
    /// It was mounted and served already (one a snapshot held, carried across the restore or
    /// reset).
    Carried,
}

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
    /// The mount there is still reconnecting to the host after the wait.
    #[error("the workspace at {0} is still reconnecting to the host")]
    StillResuming(String),
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

/// A mount this guest-init serves: its mode, for a copy-on-write one its layers, and where its
/// relay stands.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Which mount (a later one at the same path has another).
    pub(crate) id: u32,
    pub(crate) mode: WorkspaceMode,
    pub(crate) layers: Option<CowLayers>,
    pub(crate) status: Arc<Status>,
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

/// Longest `mount` waits for a relay that is reconnecting (its own attempts stop after 30 s).
const CARRY_WAIT: Duration = Duration::from_secs(60);

/// Mounts the workspace at `path` as `mode` says and starts relaying it. When this guest-init
/// serves it there already (a snapshot held the mount), nothing is mounted: once its relay is
/// connected (it may be reconnecting after a restore) the mount is [`Mounted::Carried`]; a
/// relay that could not carry on is replaced by a fresh mount. The host connection is made
/// first: if the server cannot be reached, nothing is mounted.
pub fn mount(path: &str, mode: WorkspaceMode) -> Result<Mounted, MountError> {
    if !is_plain_absolute(path) {
        return Err(MountError::Path(path.to_string()));
    }
    if let Some(carried) = carried_at(path, CARRY_WAIT)? {
        return Ok(carried);
    }
    let target = Path::new(path);
    // A mount of ours left behind (its relay ended): out of the way. There is none before the
    // first mount.
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
    let mut session = [0u8; SESSION_ID_LEN];
    host.read_exact(&mut session).map_err(MountError::Host)?;
    let session = u64::from_le_bytes(session);
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
    // The relay runs before anything looks into the mount (the overlay does, at once).
    let link = match start_relay(path, (id, mode, layers.clone()), fuse, host, session) {
        Ok(link) => link,
        Err(e) => {
            detach(fuse_at);
            return Err(MountError::Relay(e));
        }
    };
    if let Some(layers) = &layers {
        if let Err(e) = stack_overlay(target, layers) {
            link.die();
            forget(path, id);
            unmount_cow(target, layers);
            return Err(e);
        }
    }
    Ok(Mounted::Fresh)
}

/// Whether the mount this guest-init serves at `path` (if any) goes on: [`Mounted::Carried`]
/// once its relay is connected (waiting up to `wait` while it reconnects); `None` when there is
/// none, or its relay is dead (then it is forgotten, a copy-on-write one's layers unmounted,
/// and a fresh mount replaces it).
fn carried_at(path: &str, wait: Duration) -> Result<Option<Mounted>, MountError> {
    let Some(served) = served_at(path) else {
        return Ok(None);
    };
    match served.status.settle(wait) {
        Settled::Connected => Ok(Some(Mounted::Carried)),
        Settled::StillResuming => Err(MountError::StillResuming(path.to_string())),
        Settled::Dead => {
            forget(path, served.id);
            if let Some(layers) = &served.layers {
                unmount_cow(Path::new(path), layers);
            }
            Ok(None)
        }
    }
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

/// Starts the two relay threads of mount `id` at `path` (with its mode and layers), over the
/// host connection `host` of session `session`; the relay's shared state.
fn start_relay(
    path: &str,
    (id, mode, layers): (u32, WorkspaceMode, Option<CowLayers>),
    fuse: File,
    host: VsockStream,
    session: u64,
) -> io::Result<Arc<Link<VsockStream>>> {
    let fuse_in = fuse.try_clone()?;
    let notifier = Notifier::start(fuse.try_clone()?)?;
    let link = Arc::new(Link::new(host.try_clone()?, session, path));
    lock_served().insert(
        path.to_string(),
        Served {
            id,
            mode,
            layers,
            status: Arc::clone(&link.status),
        },
    );
    let requests = {
        let (link, path) = (Arc::clone(&link), path.to_string());
        move || ended(&path, id, &forward_requests(&link, fuse_in))
    };
    let replies = {
        let (link, path) = (Arc::clone(&link), path.to_string());
        move || {
            let connect = || VsockStream::connect(HOST_CID, WORKSPACE_PORT);
            let why = serve_replies(link, host, (fuse, notifier), connect, resume::RECONNECT);
            ended(&path, id, &why);
        }
    };
    let started = std::thread::Builder::new()
        .name("workspace-requests".into())
        .spawn(requests)
        .and_then(|_| {
            std::thread::Builder::new()
                .name("workspace-replies".into())
                .spawn(replies)
        });
    if let Err(e) = started {
        link.die();
        forget(path, id);
        return Err(e);
    }
    Ok(link)
}

/// A relay direction ended: mount `id` at `path` is not served any more. The mount stays,
/// dead, until the next one replaces it: its users get `ENOTCONN`, never the empty directory
/// beneath. The direction that ended the relay says why (the other ends as `Ended`).
fn ended(path: &str, id: u32, why: &RelayEnd) {
    if !matches!(why, RelayEnd::Ended) {
        crate::console_log!("workspace {path}: relay ended: {why}");
    }
    forget(path, id);
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

pub mod changes;
mod kept;
mod link;
mod notifier;
mod relay;
mod resume;
mod status;

#[cfg(test)]
mod carry_tests;
#[cfg(test)]
mod tests;
