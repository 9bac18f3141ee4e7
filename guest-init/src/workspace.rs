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
use paddock_protocol::{HOST_CID, WORKSPACE_PORT};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
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

/// The paths whose mounts this guest-init serves now (a relay that ends removes its path).
fn served() -> &'static Mutex<HashSet<String>> {
    static SERVED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SERVED.get_or_init(|| Mutex::new(HashSet::new()))
}

fn lock_served() -> std::sync::MutexGuard<'static, HashSet<String>> {
    served()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// Mounts the workspace at `path` and starts relaying it; nothing to do when this guest-init
/// already serves it there. The host connection is made first: if the server cannot be
/// reached, nothing is mounted.
pub fn mount(path: &str) -> Result<(), MountError> {
    if !is_plain_absolute(path) {
        return Err(MountError::Path(path.to_string()));
    }
    if lock_served().contains(path) {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|source| MountError::MountPoint {
        path: path.to_string(),
        source,
    })?;
    // A mount left behind by a relay that ended (its server went away): out of the way.
    let target = cstring(path).map_err(|_| MountError::Path(path.to_string()))?;
    // SAFETY: `target` is a valid C string; a failure (nothing mounted there) is fine.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };

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
    let options = cstring(&options).map_err(|_| MountError::Path(path.to_string()))?;
    let source = cstring("paddock-workspace").map_err(|_| MountError::Path(path.to_string()))?;
    let fstype = cstring("fuse").map_err(|_| MountError::Path(path.to_string()))?;
    // SAFETY: every pointer is a valid C string for the call; `data` is the option string the
    // fuse file system parses.
    cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    })
    .map_err(|source| MountError::Mount {
        path: path.to_string(),
        source,
    })?;
    if let Err(e) = start_relay(path, fuse, host) {
        // SAFETY: as above.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        return Err(MountError::Relay(e));
    }
    Ok(())
}

/// Starts the two relay threads of the mount at `path`.
fn start_relay(path: &str, fuse: File, host: VsockStream) -> io::Result<()> {
    let fuse_in = fuse.try_clone()?;
    let host_out = host.try_clone()?;
    let ended = Arc::new(Mutex::new(false));
    lock_served().insert(path.to_string());
    let end = {
        let path = path.to_string();
        move |why: String| {
            crate::console_log!("workspace {path}: relay ended: {why}");
            lock_served().remove(&path);
        }
    };
    let (end_a, ended_a) = (end.clone(), ended.clone());
    let spawned = std::thread::Builder::new()
        .name("workspace-requests".into())
        .spawn(move || {
            let why = relay_requests(fuse_in, host_out);
            finish(&ended_a, &end_a, why);
        });
    if let Err(e) = spawned {
        lock_served().remove(path);
        return Err(e);
    }
    std::thread::Builder::new()
        .name("workspace-replies".into())
        .spawn(move || {
            let why = relay_replies(host, fuse);
            finish(&ended, &end, why);
        })?;
    Ok(())
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

#[cfg(test)]
mod tests;
