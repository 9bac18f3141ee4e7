//! The proxy's Unix socket (`<vsock.sock>_1080`, where the VMM connects each guest connection to
//! vsock port 1080): created 0600 without a window in which it is reachable with other modes,
//! refused if another proxy is live on it, replaced if stale, removed when the proxy stops.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process accepts connections on the socket.
    #[error("{path} is live: another egress proxy is serving this sandbox")]
    Live {
        /// The socket.
        path: PathBuf,
    },
    /// Something other than a socket is at the path.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Binding, securing or moving the socket into place failed.
    #[error("setting up the egress socket {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The bound socket; dropping it removes the socket file (if it is still ours).
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    path: PathBuf,
    identity: (u64, u64),
}

/// The socket's mode: 0600, or 0666 where its directory is opened to a group and closed to
/// everyone else (set-group-ID, `rwxrwx---`: a sandbox whose VMM runs as a user of its own, which
/// reaches the proxy through that group; the directory is then what keeps others out).
fn socket_mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let shared = path
        .parent()
        .and_then(|dir| fs::metadata(dir).ok())
        .is_some_and(|meta| meta.mode() & 0o2077 == 0o2070);
    if shared {
        0o666
    } else {
        0o600
    }
}

impl BoundSocket {
    /// Binds `path`: inside a fresh private (0700) directory next to it first, chmod 0600,
    /// then renamed into place, so the socket is never reachable with a wider mode — not at
    /// `path`, and not at its temporary name either (the process-wide umask is left alone).
    /// Call it inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, ListenError> {
        let listener = bind_listening(path)?;
        Self::adopt(listener, path)
    }

    /// Takes over `listener`, bound at `path` by [`bind_listening`] in another process (the
    /// one that started this proxy: socket activation, so that connections queue from the
    /// start and nobody waits for this process to bind). Call it inside a tokio runtime.
    pub fn adopt(
        listener: std::os::unix::net::UnixListener,
        path: &Path,
    ) -> Result<Self, ListenError> {
        let io_error = |source| ListenError::Io {
            path: path.to_path_buf(),
            source,
        };
        listener.set_nonblocking(true).map_err(io_error)?;
        let listener = UnixListener::from_std(listener).map_err(io_error)?;
        let identity = file_identity(path).ok_or_else(|| {
            io_error(io::Error::new(
                io::ErrorKind::NotFound,
                "the socket is not at its path",
            ))
        })?;
        Ok(BoundSocket {
            listener,
            path: path.to_path_buf(),
            identity,
        })
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Where it is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        // Remove the file only if it is still this socket (a successor may have replaced it).
        if file_identity(&self.path).is_some_and(|identity| identity == self.identity) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds and listens on `path` as [`BoundSocket::bind`] does (stale socket replaced, live one
/// refused, never reachable with a wider mode), without a runtime: for a process that hands the
/// listener to the proxy it starts ([`BoundSocket::adopt`]).
pub fn bind_listening(path: &Path) -> Result<std::os::unix::net::UnixListener, ListenError> {
    clear_stale(path)?;
    let mut private_dir = path.as_os_str().to_owned();
    private_dir.push(format!(".b{}", std::process::id()));
    let private_dir = PathBuf::from(private_dir);
    let temporary = private_dir.join("s");
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ListenError::Io { path, source }
    };
    make_private_dir(&private_dir).map_err(io_error(&private_dir))?;
    let bound = std::os::unix::net::UnixListener::bind(&temporary)
        .map_err(io_error(&temporary))
        .and_then(|listener| {
            fs::set_permissions(&temporary, fs::Permissions::from_mode(socket_mode(path)))
                .and_then(|()| fs::rename(&temporary, path))
                .map_err(io_error(path))
                .map(|()| listener)
        });
    let _ = fs::remove_file(&temporary);
    let _ = fs::remove_dir(&private_dir);
    bound
}

/// Creates `dir` with mode 0700, replacing one left by an earlier attempt of this process id.
fn make_private_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(dir)?,
        Ok(_) => fs::remove_file(dir)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    fs::DirBuilder::new().mode(0o700).create(dir)?;
    // The umask may narrow the mode given at creation; it cannot widen it.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Device and inode of the file at `path` (not following a symlink).
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()))
}

/// Refuses a live socket at `path`, removes a stale one.
fn clear_stale(path: &Path) -> Result<(), ListenError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(ListenError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if is_live(path) {
        return Err(ListenError::Live {
            path: path.to_path_buf(),
        });
    }
    fs::remove_file(path).map_err(|source| ListenError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether a process accepts connections on the socket at `path`.
fn is_live(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

#[cfg(test)]
mod tests;
