//! The server driven as the guest kernel would: FUSE requests, built by hand, over a socket.

use super::*;
use std::os::unix::fs::MetadataExt;

const INIT: u32 = 26;
const LOOKUP: u32 = 1;
const OPEN: u32 = 14;
const READ: u32 = 15;
const MKNOD: u32 = 8;
const ROOT: u64 = 1;
const GETATTR: u32 = 3;
/// The guest's agent user in these tests.
const AGENT: Owner = Owner {
    uid: 4242,
    gid: 4343,
};

struct Guest {
    stream: UnixStream,
    unique: u64,
    server: std::thread::JoinHandle<Result<(), SessionError>>,
    /// The mount's session id, as the server gave it.
    session: u64,
    /// The nodes whose attributes the server told the kernel to drop (notifications).
    invalidated: Vec<u64>,
    /// The names the server told the kernel to expire: (directory node, name).
    expired: Vec<(u64, Vec<u8>)>,
}

struct Reply {
    error: i32,
    body: Vec<u8>,
}

impl Guest {
    fn connect(dir: &Path) -> Guest {
        Guest::to(WorkspaceServer::new(dir, WorkspaceMode::Live, AGENT).unwrap())
    }

    /// A new mount on `server`: the hello, the session id back, INIT.
    fn to(server: impl Into<Arc<WorkspaceServer>>) -> Guest {
        let mut guest = Guest::hello(server.into());
        // INIT 7.31, no flags.
        let init = guest.ask(
            INIT,
            0,
            &[&7u32.to_le_bytes(), &31u32.to_le_bytes(), &[0; 8]],
        );
        assert_eq!(init.error, 0);
        guest
    }

    /// A new mount's connection to `server`, past the hello (no INIT yet).
    fn hello(server: Arc<WorkspaceServer>) -> Guest {
        let (mut stream, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || server.serve(theirs));
        stream.write_all(HELLO).unwrap();
        let mut session = [0u8; SESSION_ID_LEN];
        stream.read_exact(&mut session).unwrap();
        Guest {
            stream,
            unique: 0,
            server,
            session: u64::from_le_bytes(session),
            invalidated: Vec::new(),
            expired: Vec::new(),
        }
    }

    /// Records notification `code` (`body` after its header): FUSE_NOTIFY_INVAL_INODE of
    /// attributes only, or FUSE_NOTIFY_INVAL_ENTRY expiring a name.
    fn noted(&mut self, code: i32, body: &[u8]) {
        let node = u64::from_le_bytes(body[..8].try_into().unwrap());
        match code {
            2 => {
                assert_eq!(body.len(), 24);
                assert_eq!(i64::from_le_bytes(body[8..16].try_into().unwrap()), -1);
                self.invalidated.push(node);
            }
            3 => {
                let len = u32::from_le_bytes(body[8..12].try_into().unwrap()) as usize;
                assert_eq!(u32::from_le_bytes(body[12..16].try_into().unwrap()), 1);
                assert_eq!(body.len(), 16 + len + 1);
                self.expired.push((node, body[16..16 + len].to_vec()));
            }
            other => panic!("notification {other}"),
        }
    }

    /// Records the notifications that come until `done` holds (within 10 s, or it panics).
    fn notified_until(&mut self, done: impl Fn(&Guest) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done(self) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "notified of {:?} {:?}",
                self.invalidated,
                self.expired
            );
            self.await_notification(left.as_secs().max(1));
        }
    }

    /// Waits up to `secs` for a notification and records it.
    fn await_notification(&mut self, secs: u64) {
        self.stream
            .set_read_timeout(Some(std::time::Duration::from_secs(secs)))
            .unwrap();
        let mut header = [0u8; 16];
        self.stream.read_exact(&mut header).expect("a notification");
        self.stream.set_read_timeout(None).unwrap();
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let code = i32::from_le_bytes(header[4..8].try_into().unwrap());
        assert_eq!(u64::from_le_bytes(header[8..].try_into().unwrap()), 0);
        let mut body = vec![0u8; len - 16];
        self.stream.read_exact(&mut body).unwrap();
        self.noted(code, &body);
    }

    /// Sends a request that has no reply (FORGET, BATCH_FORGET).
    fn tell(&mut self, opcode: u32, node: u64, body: &[&[u8]]) {
        self.unique += 1;
        let body = body.concat();
        self.stream
            .write_all(&request(opcode, self.unique, node, &body))
            .unwrap();
    }

    fn ask(&mut self, opcode: u32, node: u64, body: &[&[u8]]) -> Reply {
        self.unique += 1;
        let body = body.concat();
        self.stream
            .write_all(&request(opcode, self.unique, node, &body))
            .unwrap();
        loop {
            let mut header = [0u8; 16];
            self.stream.read_exact(&mut header).unwrap();
            let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
            let error = i32::from_le_bytes(header[4..8].try_into().unwrap());
            let unique = u64::from_le_bytes(header[8..].try_into().unwrap());
            let mut body = vec![0u8; len - 16];
            self.stream.read_exact(&mut body).unwrap();
            if unique == 0 {
                self.noted(error, &body);
                continue;
            }
            assert_eq!(unique, self.unique);
            return Reply { error, body };
        }
    }

    /// The node `name` in `parent` is, or the errno (node 0, an absent name the kernel may
    /// cache, is `ENOENT` as the kernel takes it).
    fn lookup(&mut self, parent: u64, name: &str) -> Result<u64, i32> {
        let reply = self.ask(LOOKUP, parent, &[name.as_bytes(), &[0]]);
        match reply.error {
            0 => match u64::from_le_bytes(reply.body[..8].try_into().unwrap()) {
                0 => Err(libc::ENOENT),
                node => Ok(node),
            },
            e => Err(-e),
        }
    }

    fn open(&mut self, node: u64, flags: i32) -> Result<u64, i32> {
        let reply = self.ask(OPEN, node, &[&flags.to_le_bytes(), &[0; 4]]);
        match reply.error {
            0 => Ok(u64::from_le_bytes(reply.body[..8].try_into().unwrap())),
            e => Err(-e),
        }
    }

    fn read(&mut self, node: u64, fh: u64, size: u32) -> Vec<u8> {
        self.try_read(node, fh, size).unwrap()
    }

    fn try_read(&mut self, node: u64, fh: u64, size: u32) -> Result<Vec<u8>, i32> {
        let reply = self.ask(
            READ,
            node,
            &[&fh.to_le_bytes(), &[0; 8], &size.to_le_bytes(), &[0; 20]],
        );
        match reply.error {
            0 => Ok(reply.body),
            e => Err(-e),
        }
    }

    /// The node's `st_ino` on the host, or the errno.
    fn getattr(&mut self, node: u64) -> Result<u64, i32> {
        let reply = self.ask(GETATTR, node, &[&[0; 16]]);
        match reply.error {
            // fuse_attr_out: attr_valid, attr_valid_nsec, dummy, then fuse_attr (ino first).
            0 => Ok(u64::from_le_bytes(reply.body[16..24].try_into().unwrap())),
            e => Err(-e),
        }
    }

    fn hang_up(self) -> Result<(), SessionError> {
        drop(self.stream);
        self.server.join().unwrap()
    }
}

/// A whole FUSE request: header (uid and gid 1000, as a guest's agent sends) and body.
fn request(opcode: u32, unique: u64, node: u64, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(IN_HEADER_LEN + body.len()).unwrap();
    let mut m = Vec::new();
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&opcode.to_le_bytes());
    m.extend_from_slice(&unique.to_le_bytes());
    m.extend_from_slice(&node.to_le_bytes());
    m.extend_from_slice(&[0xE8, 0x03, 0, 0, 0xE8, 0x03, 0, 0]); // uid, gid 1000
    m.extend_from_slice(&[0; 8]); // pid, padding
    m.extend_from_slice(body);
    m
}

/// A workspace `ws` beside a host-only file `outside`, hard-linked into it as `linked`.
fn host_tree() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("file"), b"hello").unwrap();
    std::fs::write(root.path().join("outside"), b"secret").unwrap();
    std::fs::hard_link(root.path().join("outside"), ws.join("linked")).unwrap();
    (root, ws)
}

#[test]
fn files_in_the_directory_are_served() {
    let (_root, ws) = host_tree();
    let mut guest = Guest::connect(&ws);
    let file = guest.lookup(ROOT, "file").unwrap();
    let fh = guest.open(file, libc::O_RDONLY).unwrap();
    assert_eq!(guest.read(file, fh, 4096), b"hello");
    assert_eq!(guest.lookup(ROOT, "missing"), Err(libc::ENOENT));
    guest.hang_up().unwrap();
}

#[test]
fn nothing_outside_the_directory_can_be_reached_or_changed() {
    let (root, ws) = host_tree();
    let mut guest = Guest::connect(&ws);
    // ".." of the root is the root; names with a slash are refused.
    assert_eq!(guest.lookup(ROOT, ".."), Ok(ROOT));
    assert_eq!(guest.lookup(ROOT, "../outside"), Err(libc::EINVAL));
    // The hard link to the outside file reads, but never opens for writing.
    let linked = guest.lookup(ROOT, "linked").unwrap();
    assert_eq!(guest.open(linked, libc::O_RDWR), Err(libc::EPERM));
    assert_eq!(
        guest.open(linked, libc::O_WRONLY | libc::O_TRUNC),
        Err(libc::EPERM)
    );
    assert!(guest.open(linked, libc::O_RDONLY).is_ok());
    // No FIFO or device node is made on the host.
    for kind in [libc::S_IFIFO, libc::S_IFCHR] {
        let mknod = guest.ask(
            MKNOD,
            ROOT,
            &[
                &(kind | 0o666).to_le_bytes(),
                &0x0103u32.to_le_bytes(),
                &[0; 8],
                b"node\0",
            ],
        );
        assert_eq!(mknod.error, -libc::EPERM);
    }
    assert!(!ws.join("node").exists());
    guest.hang_up().unwrap();
    assert_eq!(
        std::fs::read(root.path().join("outside")).unwrap(),
        b"secret"
    );
    assert_eq!(
        std::fs::metadata(root.path().join("outside"))
            .unwrap()
            .nlink(),
        2
    );
}

#[test]
fn a_connection_without_the_hello_or_with_a_bad_length_ends_alone() {
    let (_root, ws) = host_tree();
    let server = WorkspaceServer::new(&ws, WorkspaceMode::Live, AGENT).unwrap();
    let (mut guest, theirs) = UnixStream::pair().unwrap();
    guest.write_all(b"GET / HTTP/1.1\r\n\r\nxx").unwrap();
    assert!(matches!(server.serve(theirs), Err(SessionError::Hello)));
    let (mut guest, theirs) = UnixStream::pair().unwrap();
    guest.write_all(HELLO).unwrap();
    guest.write_all(&[0xFF; IN_HEADER_LEN]).unwrap();
    assert!(matches!(server.serve(theirs), Err(SessionError::Length(_))));
    // The same server serves the next connection.
    let mut next = Guest::to(server);
    assert!(next.lookup(ROOT, "file").is_ok());
    next.hang_up().unwrap();
}

#[test]
fn a_directory_that_is_not_absolute_is_refused() {
    assert!(matches!(
        WorkspaceServer::new(Path::new("relative"), WorkspaceMode::Live, AGENT),
        Err(StartError::Path(_))
    ));
    assert!(matches!(
        WorkspaceServer::new(
            Path::new("/no/such/dir/anywhere"),
            WorkspaceMode::Live,
            AGENT
        ),
        Err(StartError::Serve { .. })
    ));
}

#[test]
fn a_copy_on_write_share_reads_and_never_writes() {
    let (_root, ws) = host_tree();
    let mut guest = Guest::to(WorkspaceServer::new(&ws, WorkspaceMode::Cow, AGENT).unwrap());
    let file = guest.lookup(ROOT, "file").unwrap();
    let fh = guest.open(file, libc::O_RDONLY).unwrap();
    assert_eq!(guest.read(file, fh, 4096), b"hello");
    assert_eq!(guest.open(file, libc::O_RDWR), Err(libc::EROFS));
    let mkdir = guest.ask(9, ROOT, &[&0o755u32.to_le_bytes(), &[0; 4], b"d\0"]);
    assert_eq!(mkdir.error, -libc::EROFS);
    assert!(!ws.join("d").exists());
    guest.hang_up().unwrap();
}

#[test]
fn the_host_users_files_show_as_the_agents_and_others_as_they_are() {
    let (_root, ws) = host_tree();
    let mut guest = Guest::connect(&ws);
    let file = guest.lookup(ROOT, "file").unwrap();
    let attr = guest.ask(GETATTR, file, &[&[0; 16]]);
    assert_eq!(attr.error, 0);
    // fuse_attr_out: attr_valid (8), attr_valid_nsec (4), dummy (4), then fuse_attr, whose uid
    // and gid follow ino, size, blocks, three times, three nanoseconds, mode and nlink.
    let at = 16 + 8 * 6 + 4 * 3 + 4 + 4;
    let uid = u32::from_le_bytes(attr.body[at..at + 4].try_into().unwrap());
    let gid = u32::from_le_bytes(attr.body[at + 4..at + 8].try_into().unwrap());
    assert_eq!((uid, gid), (AGENT.uid, AGENT.gid));
    guest.hang_up().unwrap();
}

#[test]
fn init_offers_one_mebibyte_writes_when_the_kernel_can_take_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = WorkspaceServer::new(dir.path(), WorkspaceMode::Live, AGENT).unwrap();
    let mut guest = Guest::hello(Arc::new(server));
    const BIG_WRITES: u32 = 1 << 5;
    const MAX_PAGES: u32 = 1 << 22;
    let init = guest.ask(
        INIT,
        0,
        &[
            &7u32.to_le_bytes(),
            &31u32.to_le_bytes(),
            &(128u32 << 10).to_le_bytes(),
            &(BIG_WRITES | MAX_PAGES).to_le_bytes(),
        ],
    );
    assert_eq!(init.error, 0);
    let flags = u32::from_le_bytes(init.body[12..16].try_into().unwrap());
    let max_write = u32::from_le_bytes(init.body[20..24].try_into().unwrap());
    let max_pages = u16::from_le_bytes(init.body[28..30].try_into().unwrap());
    assert_eq!(flags & (BIG_WRITES | MAX_PAGES), BIG_WRITES | MAX_PAGES);
    assert_eq!(max_write, 1 << 20);
    assert_eq!(max_pages, 256);
    // A whole 1 MiB request fits the relay's bound.
    assert!(usize::try_from(max_write).unwrap() + 80 <= MAX_MESSAGE);
    guest.hang_up().unwrap();
}

#[test]
fn each_new_mount_gets_a_session_id_of_its_own() {
    let (_root, ws) = host_tree();
    let server = Arc::new(WorkspaceServer::new(&ws, WorkspaceMode::Live, AGENT).unwrap());
    let first = Guest::to(server.clone());
    let first_id = first.session;
    first.hang_up().unwrap();
    let second = Guest::to(server);
    assert_ne!(first_id, second.session);
    second.hang_up().unwrap();
}

mod resume;
mod watch;

#[test]
fn a_session_that_ends_closes_its_connection_though_another_handle_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(WorkspaceServer::new(dir.path(), WorkspaceMode::Live, AGENT).unwrap());
    let (mut guest, theirs) = UnixStream::pair().unwrap();
    // What the accepting side keeps of each connection.
    let _kept = theirs.try_clone().unwrap();
    let serving = std::thread::spawn(move || server.serve(theirs));
    guest.write_all(b"PADDOCK-WS-CONTROL1\nS\0\0\0\0").unwrap();
    guest
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    guest
        .read_to_end(&mut got)
        .expect("the connection ends (not a timeout)");
    assert!(
        got.is_empty(),
        "a control command on the guest's socket: {got:?}"
    );
    assert!(matches!(serving.join().unwrap(), Err(SessionError::Hello)));
}

#[test]
fn a_read_whose_flags_cannot_be_applied_leaves_the_handle_its_own_file() {
    let (_root, ws) = host_tree();
    std::fs::write(ws.join("other"), b"another file").unwrap();
    let mut guest = Guest::connect(&ws);
    let file = guest.lookup(ROOT, "file").unwrap();
    // A handle whose flags differ from those a read names: fuse-backend-rs applies a read's
    // flags with F_SETFL, which fails on an O_PATH descriptor, and on failure it used to close
    // the handle's descriptor while the handle kept its number.
    let path_only = guest.open(file, libc::O_PATH).unwrap();
    assert!(guest.try_read(file, path_only, 64).is_err());
    // An open that would reuse that number, then the first handle again.
    let other = guest.lookup(ROOT, "other").unwrap();
    let other_fh = guest.open(other, libc::O_RDONLY).unwrap();
    assert_eq!(guest.read(other, other_fh, 64), b"another file");
    assert!(
        guest.try_read(file, path_only, 64).is_err(),
        "the O_PATH handle reads another file's bytes"
    );
    guest.hang_up().unwrap();
}
