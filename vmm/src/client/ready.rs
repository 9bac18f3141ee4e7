//! Waiting for guest-init's readiness announcement on `<uds>_<port>`: the moment the guest
//! connects is boot-to-ready (or restore-to-ready). The announcing connection stays open as the
//! host's link to guest-init: the vsock device keeps it across snapshots, so it carries the
//! `Resume` after a restore or reset; when it breaks, guest-init announces itself again.

use paddock_protocol::{read_frame, BootInfo, FrameError, Response};
use std::ffi::OsString;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `Ready` announcement.
#[derive(Debug)]
pub struct Ready {
    pub boot: BootInfo,
    /// When the guest's connection was accepted.
    pub connected_at: Instant,
    /// The announcing connection: guest-init serves requests on it.
    pub link: super::Connection,
}

/// Errors of [`ReadyListener`].
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("{path} exists and is not a socket")]
    PathInUse { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("the guest did not announce readiness within {0:?}")]
    Timeout(Duration),
    #[error("waiting for the guest: {0}")]
    Io(#[from] io::Error),
    #[error("bad readiness frame: {0}")]
    Frame(#[from] FrameError),
    #[error("expected Ready, the guest sent {0}")]
    Unexpected(&'static str),
}

/// How long an accepted readiness connection may take to deliver its frame.
const FRAME_ALLOWANCE: Duration = Duration::from_secs(10);

/// Listens on `<uds>_<port>` for guest-init's `Ready`. Removes the socket file when dropped.
#[derive(Debug)]
pub struct ReadyListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ReadyListener {
    /// Binds `<uds_path>_<port>`, replacing a stale socket file left by an earlier run.
    pub fn bind(uds_path: impl AsRef<Path>, port: u32) -> Result<Self, ReadyError> {
        let mut name = OsString::from(uds_path.as_ref().as_os_str());
        name.push(format!("_{port}"));
        let path = PathBuf::from(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
            Ok(_) => return Err(ReadyError::PathInUse { path }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(&path).map_err(|source| ReadyError::Bind {
            path: path.clone(),
            source,
        })?;
        // Non-blocking so a connection that vanishes between poll and accept cannot block us.
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    /// The socket path the VMM connects to for the guest.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for the guest to connect and send `Ready`.
    pub fn wait(&self, timeout: Duration) -> Result<Ready, ReadyError> {
        let deadline = Instant::now() + timeout;
        let (mut stream, connected_at) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !poll_readable(&self.listener, left)? {
                return Err(ReadyError::Timeout(timeout));
            }
            match self.listener.accept() {
                Ok((stream, _)) => break (stream, Instant::now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(e.into()),
            }
        };
        stream.set_nonblocking(false)?;
        // `timeout` bounds the wait for the guest to connect; once it has, its frame is on its
        // way and gets its own allowance (the connection cannot be handed back, so a short
        // caller timeout must not drop it).
        stream.set_read_timeout(Some(FRAME_ALLOWANCE))?;
        match read_frame::<_, Response>(&mut stream) {
            Ok(Response::Ready(boot)) => Ok(Ready {
                boot,
                connected_at,
                link: super::Connection::from_stream(stream),
            }),
            Ok(other) => Err(ReadyError::Unexpected(super::response_kind(&other))),
            Err(FrameError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                Err(ReadyError::Timeout(timeout))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for ReadyListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits until `listener` has a pending connection; false on timeout.
fn poll_readable(listener: &UnixListener, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let mut fds = [libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        match ready {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
