//! Hostile FUSE requests to the sandbox's workspace server, sent over the guest kernel's own
//! vsock to the server's port, as guest-init's relay would send the kernel's requests: escapes
//! through `..`, names holding `/`, symlinks to host paths (created, then opened and read),
//! device nodes, FIFOs and sockets, hard links to unknown nodes, writes whose sizes lie, random
//! requests on random nodes, broken framing, a forged resume and the host's control commands
//! on the guest's port. A read that returns the host's
//! `/etc/passwd` is reported as `ESCAPED`; the run ends by checking that the server answers a
//! new connection.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use crate::rng::Rng;
use crate::say;

/// Host vsock port of the workspace server, and the framing's first bytes (`protocol::workspace`).
const WORKSPACE_PORT: u32 = 1082;
const HELLO: &[u8; 20] = b"PADDOCK-WORKSPACE/2\n";
/// A resume of a mount (`protocol::workspace::RESUME_HELLO`), and the host's control hello,
/// which the guest's port must not answer.
const RESUME_HELLO: &[u8; 20] = b"PADDOCK-WS-RESUME/2\n";
const CONTROL_HELLO: &[u8; 20] = b"PADDOCK-WS-CONTROL1\n";
const HOST_CID: u32 = 2;
/// The largest message the server accepts (`protocol::workspace::MAX_MESSAGE`).
const MAX_MESSAGE: u32 = (1 << 20) + 4096;
const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
const ROOT: u64 = 1;

// Opcodes (linux/fuse.h).
const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const SYMLINK: u32 = 6;
const MKNOD: u32 = 8;
const MKDIR: u32 = 9;
const RENAME: u32 = 12;
const LINK: u32 = 13;
const OPEN: u32 = 14;
const READ: u32 = 15;
const WRITE: u32 = 16;
const INIT: u32 = 26;
const OPENDIR: u32 = 27;
const CREATE: u32 = 35;

/// What the host's `/etc/passwd` starts with: seeing it means the server left the workspace.
const HOST_SECRET: &[u8] = b"root:x:0:0";

/// One connection to the server: requests out, replies read by a thread of their own (some
/// requests have none, and a hostile client does not wait).
struct Conn {
    stream: std::fs::File,
    replies: mpsc::Receiver<Vec<u8>>,
    unique: u64,
}

/// A bare connection to the server's port, `first` sent on it.
fn dial(first: &[u8]) -> io::Result<std::fs::File> {
    // SAFETY: plain syscall creating a new fd.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = HOST_CID;
    addr.svm_port = WORKSPACE_PORT;
    // SAFETY: `addr` is a valid sockaddr_vm for the duration of the call.
    let rc = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stream = std::fs::File::from(fd);
    stream.write_all(first)?;
    Ok(stream)
}

/// A new mount's connection: the hello, the session id back.
fn connect() -> io::Result<Conn> {
    let mut stream = dial(HELLO)?;
    let mut session = [0u8; 8];
    stream.read_exact(&mut session)?;
    let mut reader = stream.try_clone()?;
    let (tx, replies) = mpsc::channel();
    std::thread::spawn(move || loop {
        let mut header = [0u8; OUT_HEADER];
        if reader.read_exact(&mut header).is_err() {
            return;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut reply = header.to_vec();
        if len > OUT_HEADER {
            reply.resize(len.min(MAX_MESSAGE as usize), 0);
            if reader.read_exact(&mut reply[OUT_HEADER..]).is_err() {
                return;
            }
        }
        if tx.send(reply).is_err() {
            return;
        }
    });
    Ok(Conn {
        stream,
        replies,
        unique: 0,
    })
}

impl Conn {
    /// Sends one request; returns its unique id.
    fn send(&mut self, opcode: u32, node: u64, body: &[u8]) -> io::Result<u64> {
        self.unique += 1;
        let mut message = Vec::with_capacity(IN_HEADER + body.len());
        message.extend_from_slice(&((IN_HEADER + body.len()) as u32).to_le_bytes());
        message.extend_from_slice(&opcode.to_le_bytes());
        message.extend_from_slice(&self.unique.to_le_bytes());
        message.extend_from_slice(&node.to_le_bytes());
        message.extend_from_slice(&[0u8; 16]); // uid, gid, pid: root; no extensions
        message.extend_from_slice(body);
        self.stream.write_all(&message)?;
        Ok(self.unique)
    }

    /// Waits for the reply to `unique` (others are checked for the host's secret and dropped):
    /// its error (0 or a negative errno) and body.
    fn reply(&mut self, unique: u64, escaped: &mut bool) -> Option<(i32, Vec<u8>)> {
        loop {
            let reply = self.replies.recv_timeout(Duration::from_secs(20)).ok()?;
            *escaped |= holds_secret(&reply);
            let error = i32::from_le_bytes([reply[4], reply[5], reply[6], reply[7]]);
            let id = u64::from_le_bytes(reply[8..16].try_into().unwrap_or([0; 8]));
            if id == unique {
                return Some((error, reply[OUT_HEADER..].to_vec()));
            }
        }
    }

    /// Sends a request and waits for its reply.
    fn call(
        &mut self,
        opcode: u32,
        node: u64,
        body: &[u8],
        escaped: &mut bool,
    ) -> Option<(i32, Vec<u8>)> {
        let unique = self.send(opcode, node, body).ok()?;
        self.reply(unique, escaped)
    }

    /// Drains the replies that came so far, checking each.
    fn drain(&mut self, escaped: &mut bool) -> usize {
        let mut n = 0;
        while let Ok(reply) = self.replies.recv_timeout(Duration::from_millis(200)) {
            *escaped |= holds_secret(&reply);
            n += 1;
        }
        n
    }
}

fn holds_secret(reply: &[u8]) -> bool {
    reply.windows(HOST_SECRET.len()).any(|w| w == HOST_SECRET)
}

fn name(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn init_body() -> Vec<u8> {
    // major 7, minor 31, max_readahead 128 KiB, no flags; then flags2 and 11 unused words.
    let mut body = u32s(&[7, 31, 128 << 10, 0, 0]);
    body.extend_from_slice(&[0u8; 44]);
    body
}

/// The node id a LOOKUP (or MKNOD, SYMLINK...) reply names, if it succeeded.
fn entry_node(reply: Option<(i32, Vec<u8>)>) -> Option<u64> {
    match reply {
        Some((0, body)) if body.len() >= 8 => body[..8].try_into().ok().map(u64::from_le_bytes),
        _ => None,
    }
}

/// Opens `node` and reads its start; the bytes read.
fn open_and_read(conn: &mut Conn, node: u64, escaped: &mut bool) -> Option<Vec<u8>> {
    let (error, body) = conn.call(OPEN, node, &u32s(&[0, 0]), escaped)?;
    if error != 0 || body.len() < 8 {
        return None;
    }
    let fh = u64::from_le_bytes(body[..8].try_into().ok()?);
    let mut read = fh.to_le_bytes().to_vec();
    read.extend_from_slice(&0u64.to_le_bytes()); // offset
    read.extend_from_slice(&u32s(&[4096, 0]));
    read.extend_from_slice(&0u64.to_le_bytes()); // lock owner
    read.extend_from_slice(&u32s(&[0, 0]));
    let (error, data) = conn.call(READ, node, &read, escaped)?;
    (error == 0).then_some(data)
}

/// Runs the attack; `rounds` random requests. Returns whether anything of the host's leaked.
pub fn attack(rng: &mut Rng, rounds: u32) -> io::Result<bool> {
    let mut escaped = false;
    let mut conn = connect()?;
    let init = conn.call(INIT, 0, &init_body(), &mut escaped);
    say(&format!("fuse: init answered {:?}", init.map(|(e, _)| e)));

    // Escapes by name.
    for bad in ["..", "../etc", "/etc/passwd", "a/../../etc", ".", ""] {
        let reply = conn.call(LOOKUP, ROOT, &name(bad), &mut escaped);
        say(&format!(
            "fuse: lookup {bad:?}: {:?}",
            reply.map(|(e, _)| e)
        ));
    }
    // Up from the root by `..` nodes, then down to the host's /etc/passwd.
    let mut node = Some(ROOT);
    for _ in 0..4 {
        node = node.and_then(|n| entry_node(conn.call(LOOKUP, n, &name(".."), &mut escaped)));
    }
    say(&format!(
        "fuse: four lookups of \"..\" from the root: node {node:?}"
    ));
    let passwd = node
        .and_then(|n| entry_node(conn.call(LOOKUP, n, &name("etc"), &mut escaped)))
        .and_then(|etc| entry_node(conn.call(LOOKUP, etc, &name("passwd"), &mut escaped)));
    if let Some(passwd) = passwd {
        let read = open_and_read(&mut conn, passwd, &mut escaped);
        say(&format!(
            "fuse: etc/passwd above the root read: {:?} bytes",
            read.map(|d| d.len())
        ));
    } else {
        say("fuse: no etc/passwd above the root");
    }
    // Symlinks to the host's files: created in the workspace, then followed by the server?
    for (link, target, then) in [
        ("esc", "/etc/passwd", None),
        ("escdir", "/etc", Some("passwd")),
        ("escup", "../../../../../../etc/passwd", None),
    ] {
        let mut body = name(link);
        body.extend_from_slice(&name(target));
        let made = conn.call(SYMLINK, ROOT, &body, &mut escaped);
        say(&format!(
            "fuse: symlink {link} -> {target}: {:?}",
            made.as_ref().map(|(e, _)| *e)
        ));
        let mut node = entry_node(conn.call(LOOKUP, ROOT, &name(link), &mut escaped));
        if let (Some(dir), Some(child)) = (node, then) {
            node = entry_node(conn.call(LOOKUP, dir, &name(child), &mut escaped));
        }
        if let Some(node) = node {
            let read = open_and_read(&mut conn, node, &mut escaped);
            say(&format!(
                "fuse: open {link} and read: {:?} bytes",
                read.map(|d| d.len())
            ));
        }
    }
    // Special files the host must never get.
    for (file, mode) in [
        ("chr", libc::S_IFCHR | 0o666),
        ("blk", libc::S_IFBLK | 0o666),
        ("fifo", libc::S_IFIFO | 0o666),
        ("sock", libc::S_IFSOCK | 0o666),
    ] {
        let mut body = u32s(&[mode, libc::makedev(1, 3) as u32, 0, 0]);
        body.extend_from_slice(&name(file));
        let reply = conn.call(MKNOD, ROOT, &body, &mut escaped);
        say(&format!("fuse: mknod {file}: {:?}", reply.map(|(e, _)| e)));
    }
    // Hard links to nodes the guest never looked up (a host inode number, a wild id).
    for old in [2u64, 0xdead_beef, u64::MAX] {
        let mut body = old.to_le_bytes().to_vec();
        body.extend_from_slice(&name("hard"));
        let reply = conn.call(LINK, ROOT, &body, &mut escaped);
        say(&format!(
            "fuse: link node {old:#x}: {:?}",
            reply.map(|(e, _)| e)
        ));
    }
    // A rename out of the root and a write whose size lies about its payload.
    let mut body = ROOT.to_le_bytes().to_vec();
    body.extend_from_slice(&name("esc"));
    body.extend_from_slice(&name("../esc"));
    let reply = conn.call(RENAME, ROOT, &body, &mut escaped);
    say(&format!(
        "fuse: rename to ../esc: {:?}",
        reply.map(|(e, _)| e)
    ));
    let mut create = u32s(&[(libc::O_RDWR | libc::O_CREAT) as u32, 0o644, 0, 0]);
    create.extend_from_slice(&name("liar"));
    if let Some((0, body)) = conn.call(CREATE, ROOT, &create, &mut escaped) {
        let node = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
        // fuse_entry_out is 128 bytes, then fuse_open_out's fh.
        let fh = body
            .get(128..136)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        let mut write = fh.to_le_bytes().to_vec();
        write.extend_from_slice(&0u64.to_le_bytes());
        write.extend_from_slice(&u32s(&[1 << 20, 0]));
        write.extend_from_slice(&0u64.to_le_bytes());
        write.extend_from_slice(&u32s(&[0, 0]));
        write.extend_from_slice(b"short");
        let reply = conn.call(WRITE, node, &write, &mut escaped);
        say(&format!(
            "fuse: write claiming 1 MiB with 5 bytes: {:?}",
            reply.map(|(e, _)| e)
        ));
    }
    // Random requests on random nodes.
    let opcodes = [
        LOOKUP, FORGET, SYMLINK, MKNOD, MKDIR, RENAME, LINK, OPEN, READ, WRITE, OPENDIR, CREATE,
    ];
    let mut sent = 0u32;
    for _ in 0..rounds {
        let opcode = if rng.below(4) == 0 {
            rng.below(64) as u32
        } else {
            opcodes[rng.below(opcodes.len() as u64) as usize]
        };
        let node = match rng.below(3) {
            0 => ROOT,
            1 => rng.below(16),
            _ => rng.next_u64(),
        };
        let len = rng.below(160) as usize;
        let body: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        if conn.send(opcode, node, &body).is_err() {
            break;
        }
        sent += 1;
    }
    let answered = conn.drain(&mut escaped);
    say(&format!(
        "fuse: {sent} random requests sent, {answered} replies"
    ));
    // Broken framing: a length below the header's, then above the maximum.
    let mut short = conn.stream.try_clone()?;
    let _ = short.write_all(&u32s(&[8, LOOKUP, 0, 0, 0, 0, 0, 0, 0, 0]));
    drop(conn);
    let mut conn = connect()?;
    let _ = conn
        .stream
        .write_all(&u32s(&[MAX_MESSAGE + 1, LOOKUP, 0, 0, 0, 0, 0, 0, 0, 0]));
    drop(conn);
    // A resume of a session the guest makes up, and the host's control commands on the
    // guest's port: neither may be taken up.
    let mut forged = RESUME_HELLO.to_vec();
    forged.extend_from_slice(&rng.next_u64().to_le_bytes());
    let answer = dial(&forged).and_then(|mut stream| {
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).map(|()| answer[0])
    });
    say(&format!("fuse: a forged resume answered {:?}", answer.ok()));
    for command in [b'S', b'L'] {
        let mut control = CONTROL_HELLO.to_vec();
        control.push(command);
        control.extend_from_slice(&[0; 4]);
        let got = dial(&control).map(|mut stream| {
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got);
            got.len()
        });
        say(&format!(
            "fuse: control {:?} on the guest's port answered {:?} bytes",
            command as char,
            got.ok()
        ));
    }
    // The server still answers a well-behaved newcomer.
    let mut conn = connect()?;
    let init = conn.call(INIT, 0, &init_body(), &mut escaped);
    say(&format!(
        "fuse: a new connection's init answered {:?}",
        init.map(|(e, _)| e)
    ));
    say(if escaped {
        "fuse: ESCAPED"
    } else {
        "fuse: nothing of the host leaked"
    });
    Ok(escaped)
}
