//! One sandbox's workspace server: the passthrough file system over the shared directory, and
//! the guest connections it answers, one at a time. A connection either starts a new mount
//! (`HELLO`: a new session id) or carries on one a snapshot held (`RESUME_HELLO`: the state the
//! host loaded for that session is re-established first, see [`crate::nodes`]). A session's
//! nodes and handles are dropped when its connection ends; a loaded state is not.

use crate::guard::{self, Verdict};
use crate::listing::Listings;
use crate::nodes::NodeMap;
use crate::owner::{Owner, OwnerMapped};
use crate::pending::PendingState;
use crate::saved::{DecodeError, SavedState};
use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{CachePolicy, Config, PassthroughFs};
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};
use paddock_protocol::workspace::{
    message_len, BadLength, HELLO, IN_HEADER_LEN, MAX_MESSAGE, NOT_RESUMED, RESUMED, RESUME_HELLO,
    SESSION_ID_LEN,
};
use paddock_protocol::WorkspaceMode;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long the guest may trust attributes and names it was given before asking again. Live,
/// the host may change the directory at any time, so this is short; a file's data is
/// revalidated on every open (close-to-open consistency).
const LIVE_CACHE_TIMEOUT: Duration = Duration::from_secs(1);
/// The same for a copy-on-write share, whose lower layer is not expected to change under the
/// sandbox (overlayfs assumes as much).
const COW_CACHE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a resuming connection waits for the host to load its state.
pub const RESUME_WAIT: Duration = Duration::from_secs(10);

/// The file system the FUSE server answers with: the passthrough, owners mapped, behind node
/// ids and handles of the server's own.
type Served = NodeMap<OwnerMapped<Arc<PassthroughFs>>>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The directory is not an absolute path in UTF-8 (the passthrough file system takes it as
    /// text).
    #[error("workspace {0}: not an absolute path in UTF-8")]
    Path(PathBuf),
    /// The passthrough file system could not be set up over it.
    #[error("cannot serve {dir}: {source}")]
    Serve { dir: PathBuf, source: io::Error },
}

/// Why a guest connection ended other than by the guest closing it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection did not start with the workspace hello or the resume hello.
    #[error("the connection did not start with the workspace hello")]
    Hello,
    /// A resume found no state loaded for its session (or one of another mode), or could not
    /// re-establish it: the guest was told, and the mount is over.
    #[error("no state to resume session {0:#018x} from")]
    NotResumed(u64),
    /// A request announced an impossible length.
    #[error(transparent)]
    Length(#[from] BadLength),
    /// Reading or writing the connection failed.
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
    /// A reply could not be written.
    #[error("a reply could not be written: {0}")]
    Reply(fuse_backend_rs::Error),
}

/// Why a loaded state was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a state this server's encoding makes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A state of a share in the other mode (read-only or not).
    #[error("the state is of a {} share, this one is not", if *.0 { "read-only" } else { "writable" })]
    Mode(bool),
}

/// The passthrough file system over one directory, and its FUSE server.
pub struct WorkspaceServer {
    nodes: Arc<Served>,
    read_only: bool,
    server: Server<Arc<Served>>,
    dir: PathBuf,
    pending: PendingState,
    resume_wait: Duration,
}

impl std::fmt::Debug for WorkspaceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceServer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// This process's effective uid and gid: the host user whose files these are.
fn own_ids() -> Owner {
    // SAFETY: geteuid and getegid have no memory effects.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Owner { uid, gid }
}

impl WorkspaceServer {
    /// A server for `dir` (absolute, symlinks already resolved by the caller), read-only for a
    /// copy-on-write share, showing this process's own files as `guest`'s (see [`crate::owner`]).
    /// Opens what it needs now (the directory, `/proc/self/fd`), so it keeps working once its
    /// process is confined to `dir`.
    pub fn new(dir: &Path, mode: WorkspaceMode, guest: Owner) -> Result<Self, StartError> {
        let cache = match mode {
            WorkspaceMode::Live => LIVE_CACHE_TIMEOUT,
            WorkspaceMode::Cow => COW_CACHE_TIMEOUT,
        };
        let root = dir
            .to_str()
            .filter(|_| dir.is_absolute())
            .ok_or_else(|| StartError::Path(dir.to_path_buf()))?;
        let config = Config {
            root_dir: root.to_string(),
            cache_policy: CachePolicy::Auto,
            attr_timeout: cache,
            entry_timeout: cache,
            xattr: false,
            writeback: false,
            do_import: true,
            ..Config::default()
        };
        let serve_error = |source| StartError::Serve {
            dir: dir.to_path_buf(),
            source,
        };
        let fs = Arc::new(PassthroughFs::new(config).map_err(serve_error)?);
        // Checked now, so a directory that cannot be served is an error at start; every guest
        // session's INIT imports it again.
        fs.import().map_err(serve_error)?;
        let nodes = Arc::new(NodeMap::new(OwnerMapped {
            inner: fs,
            host: own_ids(),
            guest,
            listings: Listings::default(),
        }));
        Ok(Self {
            server: Server::new(nodes.clone()),
            nodes,
            read_only: mode == WorkspaceMode::Cow,
            dir: dir.to_path_buf(),
            pending: PendingState::default(),
            resume_wait: RESUME_WAIT,
        })
    }

    /// The same server with a resuming connection waiting at most `wait` for its state
    /// ([`RESUME_WAIT`] by default).
    pub fn with_resume_wait(mut self, wait: Duration) -> Self {
        self.resume_wait = wait;
        self
    }

    /// The state of the session being served, encoded (empty when none is served, or when it
    /// does not fit a state's bounds: a resume from it then finds none and the guest mounts
    /// again). The table is read under its lock once, so the state is consistent.
    pub fn save_state(&self) -> Vec<u8> {
        let Some(state) = self.nodes.save(self.read_only) else {
            return Vec::new();
        };
        match state.encode() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!("the workspace state is not saved: {e}");
                Vec::new()
            }
        }
    }

    /// Whether a loaded state waits for its resume.
    pub fn has_loaded_state(&self) -> bool {
        self.pending.is_loaded()
    }

    /// Makes `bytes` (a state [`Self::save_state`] made, maybe in another process) the one the
    /// next resume carries on from; empty bytes say that none comes (a resume is refused at
    /// once, not after the wait).
    pub fn load_state(&self, bytes: &[u8]) -> Result<(), LoadError> {
        if bytes.is_empty() {
            self.pending.put(None);
            return Ok(());
        }
        let state = SavedState::decode(bytes)?;
        if state.read_only != self.read_only {
            return Err(LoadError::Mode(state.read_only));
        }
        self.pending.put(Some(state));
        Ok(())
    }

    /// Starts the thread that serves guest connections, one at a time, as [`Sessions::accept`]
    /// hands them over. The thread is running once this returns (past the syscalls a thread
    /// makes as it starts), so the process can then be confined to a filter that allows none.
    pub fn start_sessions(self: &Arc<Self>) -> io::Result<Sessions> {
        let (streams, queued) = mpsc::channel::<UnixStream>();
        let server = self.clone();
        let (started, running) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("workspace-session".into())
            .spawn(move || {
                let _ = started.send(());
                for stream in queued {
                    match server.serve(stream) {
                        Ok(()) => tracing::info!("workspace session ended"),
                        Err(e) => tracing::warn!("workspace session ended: {e}"),
                    }
                }
            })?;
        // Returns once the thread runs its own code: its start-up syscalls are behind it.
        running
            .recv()
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(Sessions {
            streams,
            current: None,
        })
    }

    /// Serves one guest connection until the guest closes it; then forgets every node and
    /// handle it had.
    pub fn serve(&self, stream: UnixStream) -> Result<(), SessionError> {
        let closer = stream.try_clone();
        let result = self.serve_connection(stream);
        // The peer learns that the session is over (a refused hello or resume, a bad message)
        // even while another handle on the connection stays open: [`Sessions::accept`] keeps
        // one to end it when a newer connection comes.
        if let Ok(closer) = closer {
            let _ = closer.shutdown(std::net::Shutdown::Both);
        }
        self.nodes.destroy();
        result
    }

    fn serve_connection(&self, mut stream: UnixStream) -> Result<(), SessionError> {
        let mut hello = [0u8; HELLO.len()];
        stream
            .read_exact(&mut hello)
            .map_err(|_| SessionError::Hello)?;
        if &hello == HELLO {
            let session = new_session_id()?;
            self.nodes.start_session(session);
            stream.write_all(&session.to_le_bytes())?;
            tracing::info!("workspace session {session:#018x} mounted");
        } else if &hello == RESUME_HELLO {
            let mut session = [0u8; SESSION_ID_LEN];
            stream.read_exact(&mut session)?;
            let session = u64::from_le_bytes(session);
            let Some(nodes) = self.resume(session) else {
                stream.write_all(&[NOT_RESUMED])?;
                return Err(SessionError::NotResumed(session));
            };
            stream.write_all(&[RESUMED])?;
            stream.write_all(&invalidations(&nodes))?;
        } else {
            return Err(SessionError::Hello);
        }
        self.serve_requests(stream)
    }

    /// Re-establishes `session` from the loaded state (waiting for one a while); returns the
    /// guest node ids it holds (the root's included), or `None` if it was not re-established.
    fn resume(&self, session: u64) -> Option<Vec<u64>> {
        let Some(state) = self.pending.take_within(self.resume_wait) else {
            tracing::warn!("workspace session {session:#018x}: no state loaded to resume from");
            return None;
        };
        if state.session != session || state.read_only != self.read_only {
            tracing::warn!(
                "workspace session {session:#018x}: the loaded state is of session {:#018x}",
                state.session
            );
            return None;
        }
        match self.nodes.resume(&state, self.read_only) {
            Ok(found) => {
                tracing::info!("workspace session {session:#018x} resumed: {found:?}");
                let nodes = std::iter::once(crate::saved::ROOT);
                Some(nodes.chain(state.nodes.iter().map(|n| n.id)).collect())
            }
            Err(e) => {
                tracing::warn!("workspace session {session:#018x} not resumed: {e}");
                None
            }
        }
    }

    fn serve_requests(&self, mut stream: UnixStream) -> Result<(), SessionError> {
        let mut request = vec![0u8; MAX_MESSAGE];
        let mut reply = vec![0u8; MAX_MESSAGE];
        loop {
            match stream.read_exact(&mut request[..IN_HEADER_LEN]) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let len = message_len(&request[..IN_HEADER_LEN], IN_HEADER_LEN)?;
            stream.read_exact(&mut request[IN_HEADER_LEN..len])?;
            let message = &mut request[..len];
            if let Verdict::Refuse(errno) = guard::vet(message, &*self.nodes, self.read_only) {
                stream.write_all(&guard::error_reply(guard::unique(message), errno))?;
                continue;
            }
            let reader = Reader::<()>::from_fuse_buffer(FuseBuf::new(message))
                .map_err(|e| SessionError::Io(io::Error::other(e.to_string())))?;
            let writer = FuseDevWriter::<()>::new(stream.as_raw_fd(), &mut reply)
                .map_err(|e| SessionError::Io(io::Error::other(e.to_string())))?;
            match self
                .server
                .handle_message(reader, writer.into(), None, None)
            {
                Ok(_) => {}
                Err(e @ fuse_backend_rs::Error::FailedToWrite(_)) => {
                    return Err(SessionError::Reply(e))
                }
                // A request the server could not decode: only a broken or hostile guest sends
                // one, and only its own request goes unanswered.
                Err(e) => tracing::warn!("workspace request refused: {e}"),
            }
        }
    }
}

/// `FUSE_NOTIFY_INVAL_INODE`, the notification code in a `fuse_out_header`'s error field.
const NOTIFY_INVAL_INODE: i32 = 2;

/// Notifications that make the guest's kernel drop the attributes it cached of each of `nodes`
/// (kept in guest memory since the snapshot, while the host's files went on changing): its
/// next look at a node asks the server, and with `AUTO_INVAL_DATA` a changed size or time
/// drops the node's cached pages too. Attributes only (offset -1): invalidating pages from the
/// stream that also carries replies could wait on a page lock held by a read whose reply is
/// behind it. Names are left to their one-second timeout for the same reason (invalidating an
/// entry takes its directory's lock).
fn invalidations(nodes: &[u64]) -> Vec<u8> {
    const LEN: u32 = 16 + 24;
    let mut out = Vec::with_capacity(nodes.len() * LEN as usize);
    for node in nodes {
        out.extend_from_slice(&LEN.to_le_bytes());
        out.extend_from_slice(&NOTIFY_INVAL_INODE.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        // fuse_notify_inval_inode_out: ino, off (-1: attributes only), len.
        out.extend_from_slice(&node.to_le_bytes());
        out.extend_from_slice(&(-1i64).to_le_bytes());
        out.extend_from_slice(&0i64.to_le_bytes());
    }
    out
}

/// A new mount's session id: random, so a state saved for one mount is never taken up by
/// another's resume.
fn new_session_id() -> io::Result<u64> {
    let mut id = [0u8; SESSION_ID_LEN];
    let mut filled = 0;
    while filled < id.len() {
        let rest = &mut id[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`, which is valid
        // for writes of that many; the result is checked.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(got) {
            Ok(n) => filled += n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(u64::from_le_bytes(id))
}

/// The hand-over to the session thread.
#[derive(Debug)]
pub struct Sessions {
    streams: mpsc::Sender<UnixStream>,
    /// The connection being served (a handle to end it).
    current: Option<UnixStream>,
}

impl Sessions {
    /// Hands connections from `listener` to the session thread until accepting fails. The
    /// newest connection is the guest's (a sandbox has one guest; after a reset it connects
    /// again while the old connection may not have been torn down yet): a new one ends the one
    /// before it.
    pub fn accept(mut self, listener: &UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept()?;
            if let Some(old) = self.current.take() {
                let _ = old.shutdown(std::net::Shutdown::Both);
            }
            self.current = Some(stream.try_clone()?);
            self.streams
                .send(stream)
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
    }
}

#[cfg(test)]
mod tests;
