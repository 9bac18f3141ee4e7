//! One sandbox's workspace server: the passthrough file system over the shared directory, and
//! the guest connections it answers, one at a time. A connection either starts a new mount
//! (`HELLO`: a new session id) or carries on one a snapshot held (`RESUME_HELLO`: the state the
//! host loaded for that session is re-established first, see [`crate::nodes`]). A session's
//! nodes and handles are dropped when its connection ends; a loaded state is not.

use crate::guard::{self, Verdict};
use crate::listing::Listings;
use crate::nodes::NodeMap;
use crate::notify::Notifications;
use crate::owner::{Owner, OwnerMapped};
use crate::pending::PendingState;
use crate::saved::{DecodeError, SavedState};
use crate::watch::HostWatch;
use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{CachePolicy, Config, PassthroughFs};
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};
use paddock_protocol::workspace::{
    message_len, BadLength, HELLO, IN_HEADER_LEN, MAX_MESSAGE, NOT_RESUMED, RESUMED, RESUME_HELLO,
    SESSION_ID_LEN,
};
use paddock_protocol::WorkspaceMode;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How long the guest may trust attributes and names it was given before asking again. Live,
/// the host may change the directory at any time, so this is short where no watch tells the
/// guest of changes (beneath a watched directory: [`crate::watch::WATCHED_TIMEOUT`]); a file's
/// data is revalidated on every open (close-to-open consistency).
const LIVE_CACHE_TIMEOUT: Duration = Duration::from_secs(1);
/// The same for a copy-on-write share, whose lower layer is not expected to change under the
/// sandbox (overlayfs assumes as much).
const COW_CACHE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a resuming connection waits for the host to load its state.
pub const RESUME_WAIT: Duration = Duration::from_secs(10);

/// The file system the FUSE server answers with: the passthrough, owners mapped, behind node
/// ids and handles of the server's own.
type Served = NodeMap<OwnerMapped<Arc<PassthroughFs>>>;

/// How a live share finds the host's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostChanges {
    /// Watched (`crate::watch`): pushed to the guest at once, and cached for long beneath
    /// watched directories.
    Watched,
    /// Polled: the guest asks again for every name and attribute after a second.
    Polled,
}

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
    /// The connection being served, held while a reply is written: notifications of host
    /// changes go on it between replies.
    wire: Mutex<Option<UnixStream>>,
    /// The host watch's events, until [`WorkspaceServer::start_watch`] takes them (a live
    /// share's; `None` for a copy-on-write one).
    host_events: Mutex<Option<inotify::Inotify>>,
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
        Self::with_host_changes(dir, mode, guest, HostChanges::Watched)
    }

    /// [`Self::new`], with the host's changes to a live share found as `changes` says.
    pub fn with_host_changes(
        dir: &Path,
        mode: WorkspaceMode,
        guest: Owner,
        changes: HostChanges,
    ) -> Result<Self, StartError> {
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
        let nodes = NodeMap::new(OwnerMapped {
            inner: fs,
            host: own_ids(),
            guest,
            listings: Listings::default(),
        });
        let (nodes, host_events) = match mode {
            WorkspaceMode::Live if changes == HostChanges::Polled => (nodes, None),
            WorkspaceMode::Live if crate::watch::changed_elsewhere(dir) => {
                tracing::info!(
                    "{}: on a network file system, whose changes no watch here sees: polled",
                    dir.display()
                );
                (nodes, None)
            }
            // Without a watch (the user's inotify instances used up) the share still works,
            // with every name and attribute asked for again after a second.
            WorkspaceMode::Live => match HostWatch::new(dir) {
                Ok((watch, events)) => (nodes.watching(watch), Some(events)),
                Err(e) => {
                    tracing::warn!(
                        "{}: host changes are polled, not watched: {e}",
                        dir.display()
                    );
                    (nodes, None)
                }
            },
            WorkspaceMode::Cow => (nodes, None),
        };
        let nodes = Arc::new(nodes);
        Ok(Self {
            server: Server::new(nodes.clone()),
            nodes,
            read_only: mode == WorkspaceMode::Cow,
            dir: dir.to_path_buf(),
            pending: PendingState::default(),
            resume_wait: RESUME_WAIT,
            wire: Mutex::new(None),
            host_events: Mutex::new(host_events),
        })
    }

    fn lock_wire(&self) -> MutexGuard<'_, Option<UnixStream>> {
        self.wire.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the thread that turns the host watch's events into notifications on the
    /// connection being served (a live share's; a copy-on-write one has none, and a second call
    /// starts nothing). Like [`Self::start_sessions`], it is running once this returns. It ends
    /// when the server is dropped and an event comes.
    pub fn start_watch(self: &Arc<Self>) -> io::Result<()> {
        let events = self
            .host_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut events) = events else {
            return Ok(());
        };
        let server = Arc::downgrade(self);
        let (started, running) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("workspace-watch".into())
            .spawn(move || {
                let _ = started.send(());
                pass_host_changes(&mut events, &server);
            })?;
        running
            .recv()
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// Tells the guest of the host's changes `events`, between two replies on the connection
    /// being served (held while the notifications are made, so none overtakes a reply it
    /// concerns).
    fn pass_host_events<'a>(&self, events: impl Iterator<Item = inotify::Event<&'a OsStr>>) {
        let wire = self.lock_wire();
        let mut notes = Notifications::default();
        for event in events {
            let name = event.name.map(OsStrExt::as_bytes);
            self.nodes
                .host_changed(&event.wd, event.mask, name, &mut notes);
        }
        if let (Some(stream), false) = (wire.as_ref(), notes.is_empty()) {
            let mut stream: &UnixStream = stream;
            // A failed write fails the session's next reply too, which ends it.
            let _ = stream.write_all(notes.bytes());
        }
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
    /// hands them over, and the host watch's ([`Self::start_watch`]). The threads are running
    /// once this returns (past the syscalls a thread makes as it starts), so the process can
    /// then be confined to a filter that allows none.
    pub fn start_sessions(self: &Arc<Self>) -> io::Result<Sessions> {
        self.start_watch()?;
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
        *self.lock_wire() = None;
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
            if !self.resume(session) {
                stream.write_all(&[NOT_RESUMED])?;
                return Err(SessionError::NotResumed(session));
            }
            stream.write_all(&[RESUMED])?;
            // Kept in guest memory since the snapshot while the host's files went on changing:
            // every attribute and name the guest's kernel cached is asked for again.
            let mut notes = Notifications::default();
            self.nodes.everything_changed(&mut notes);
            stream.write_all(notes.bytes())?;
        } else {
            return Err(SessionError::Hello);
        }
        self.serve_requests(stream)
    }

    /// Re-establishes `session` from the loaded state (waiting for one a while); whether it
    /// was.
    fn resume(&self, session: u64) -> bool {
        let Some(state) = self.pending.take_within(self.resume_wait) else {
            tracing::warn!("workspace session {session:#018x}: no state loaded to resume from");
            return false;
        };
        if state.session != session || state.read_only != self.read_only {
            tracing::warn!(
                "workspace session {session:#018x}: the loaded state is of session {:#018x}",
                state.session
            );
            return false;
        }
        match self.nodes.resume(&state, self.read_only) {
            Ok(found) => {
                tracing::info!("workspace session {session:#018x} resumed: {found:?}");
                true
            }
            Err(e) => {
                tracing::warn!("workspace session {session:#018x} not resumed: {e}");
                false
            }
        }
    }

    fn serve_requests(&self, mut stream: UnixStream) -> Result<(), SessionError> {
        let mut request = vec![0u8; MAX_MESSAGE];
        let mut reply = vec![0u8; MAX_MESSAGE];
        *self.lock_wire() = Some(stream.try_clone()?);
        loop {
            match stream.read_exact(&mut request[..IN_HEADER_LEN]) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let len = message_len(&request[..IN_HEADER_LEN], IN_HEADER_LEN)?;
            stream.read_exact(&mut request[IN_HEADER_LEN..len])?;
            let message = &mut request[..len];
            // Replies and notifications of host changes take turns on the connection.
            let _wire = self.lock_wire();
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

/// Reads the host watch's events and sends what they mean to the guest, until `server` is
/// gone or the events cannot be read.
fn pass_host_changes(events: &mut inotify::Inotify, server: &Weak<WorkspaceServer>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = match events.read_events_blocking(&mut buf) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("the host watch stopped: {e}");
                return;
            }
        };
        let Some(server) = server.upgrade() else {
            return;
        };
        server.pass_host_events(read);
    }
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
