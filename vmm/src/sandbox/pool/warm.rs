//! The warm VMM's side of the pool: made ahead of time (process, supervisor, PID namespace,
//! KVM, the VM with its irqchip, PIT and first vCPU), it waits on its claim socket for the one
//! caller that takes it, learns its sandbox's name and launch, and goes on as a VMM started
//! for them would (`daemon::run`: cgroup, jail, limits, restore). No guest runs before the
//! claim, and a VMM only ever serves one.

use super::entry::{PoolDirs, CLAIM_SOCKET, RECORD_FILE};
use super::PoolClaim;
use crate::sandbox::daemon::{Launch, MadeAhead, JAIL_ROOT};
use crate::sandbox::paths::{PathsError, SandboxPaths};
use crate::vstate::prepared::{PrepareError, PreparedVm};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a claimer may take to send its claim once connected.
const CLAIM_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a warm VMM ended without being claimed.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// The VM could not be made ahead.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The entry's directory or claim socket could not be used.
    #[error("the pool entry {path}: {source}")]
    Entry {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It was taken and let go without a claim (`paddock pool drain`, a stale entry removed):
    /// not a failure.
    #[error("taken out of the pool without a claim")]
    Discarded,
    /// The claim names a sandbox whose directory is not this entry's.
    #[error("the claim for {name:?} does not name this entry's directory")]
    WrongDirectory { name: String },
    /// Its cgroup could not be made.
    #[error(transparent)]
    Cgroup(#[from] crate::sandbox::cgroup::CgroupError),
    /// Its jail could not be prepared.
    #[error("preparing the jail: {}", crate::seccomp::describe(.0))]
    Jail(#[from] crate::sandbox::jail::JailError),
    /// The claim's sandbox name is unusable.
    #[error(transparent)]
    Paths(#[from] PathsError),
}

/// A claim received: what the VMM now is.
#[derive(Debug)]
pub struct Claimed {
    /// The sandbox's files (the entry's directory, moved there by the claimer).
    pub paths: SandboxPaths,
    /// Its name.
    pub name: String,
    /// What to restore.
    pub launch: Launch,
    /// Its CPU quota.
    pub cpus: Option<f64>,
    /// The connection the launch report goes back on.
    pub stream: UnixStream,
    /// When the claim arrived: where the sandbox's spans begin.
    pub at: Instant,
    /// What it made ahead: the VM, its cgroup, its jail.
    pub ahead: MadeAhead,
}

/// Makes ahead its cgroup (unlimited yet), its jail (when `jailed`: namespaces, the root's
/// tmpfs, devices, `/proc`; the sandbox's paths come after the claim) and the VM; opens the
/// entry `id` for claims; and waits, single-threaded, for the one claim it serves.
pub fn wait_for_claim(state_dir: &Path, id: &str, jailed: bool) -> Result<Claimed, WarmError> {
    let dirs = PoolDirs::new(state_dir);
    let entry = dirs.idle().join(id);
    let entry_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WarmError::Entry { path, source }
    };
    let identity = std::fs::metadata(&entry)
        .map(|meta| (meta.dev(), meta.ino()))
        .map_err(entry_err(&entry))?;
    // On failure the entry stays, without a claim socket (never claimed), so that `pool fill`
    // can show its log; sweeps remove it.
    let cgroup = crate::sandbox::cgroup::enter_unlimited(&format!("pool-{id}"))?;
    let jail = if jailed {
        Some(crate::sandbox::jail::prepare(&entry.join(JAIL_ROOT))?)
    } else {
        None
    };
    let vm = PreparedVm::create(1)?;
    let socket = entry.join(CLAIM_SOCKET);
    let listener = UnixListener::bind(&socket).map_err(entry_err(&socket))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(entry_err(&socket))?;
    }
    tracing::info!(id, "warm VMM ready for a claim");
    // Another user's connection is dropped and the wait goes on: it can neither claim nor end
    // this VMM.
    let mut stream = loop {
        let (stream, _) = listener.accept().map_err(entry_err(&socket))?;
        if same_user(&stream) {
            break stream;
        }
        tracing::warn!("a connection from another user to the claim socket was refused");
    };
    let at = Instant::now();
    drop(listener);
    stream
        .set_read_timeout(Some(CLAIM_READ_TIMEOUT))
        .map_err(entry_err(&socket))?;
    let claim: PoolClaim =
        paddock_protocol::read_frame(&mut stream).map_err(|_| WarmError::Discarded)?;
    stream.set_read_timeout(None).map_err(entry_err(&socket))?;
    let paths = SandboxPaths::new(state_dir, &claim.name)?;
    let moved = std::fs::metadata(&paths.dir)
        .map(|meta| (meta.dev(), meta.ino()))
        .ok();
    if moved != Some(identity) {
        return Err(WarmError::WrongDirectory { name: claim.name });
    }
    let _ = std::fs::remove_file(paths.dir.join(CLAIM_SOCKET));
    let _ = std::fs::remove_file(paths.dir.join(RECORD_FILE));
    tracing::info!(name = claim.name, "warm VMM claimed");
    Ok(Claimed {
        paths,
        name: claim.name,
        launch: claim.launch,
        cpus: claim.cpus,
        stream,
        at,
        ahead: MadeAhead { vm, cgroup, jail },
    })
}

/// Whether the peer of `stream` runs as this process's user (root may claim too).
fn same_user(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    // Bounded: a ucred is 12 bytes.
    #[allow(clippy::cast_possible_truncation)]
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into `cred`, which is that large.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: geteuid has no memory effects.
    let own = unsafe { libc::geteuid() };
    got == 0 && (cred.uid == own || cred.uid == 0)
}
