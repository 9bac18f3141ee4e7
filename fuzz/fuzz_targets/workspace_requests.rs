//! FUSE requests from the guest, from any bytes, against the real workspace server (the guard,
//! the owner mapping and fuse-backend-rs's passthrough file system) rooted at a scratch
//! directory. Whatever the requests do inside a live share, a file beside it never changes; a
//! copy-on-write (read-only) share never changes at all; nothing panics. Input: a flags byte
//! (bit 0: the copy-on-write share), then the bytes after the workspace hello.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_protocol::workspace::HELLO;
use paddock_workspace::WorkspaceServer;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;

const SENTINEL: &[u8] = b"outside the workspace\n";

/// The scratch area: `ws/` (served live, with a file, a directory and a hard link to the
/// sentinel) beside `sentinel`, and `ro/` (served read-only, with a file).
struct Scratch {
    root: PathBuf,
    live: WorkspaceServer,
    cow: WorkspaceServer,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("paddock-fuzz-ws-{}", std::process::id()));
        let (ws, ro) = (root.join("ws"), root.join("ro"));
        std::fs::create_dir_all(ws.join("dir")).unwrap();
        std::fs::create_dir_all(ro.join("dir")).unwrap();
        std::fs::write(ws.join("file"), b"inside\n").unwrap();
        std::fs::write(ro.join("file"), SENTINEL).unwrap();
        std::fs::write(root.join("sentinel"), SENTINEL).unwrap();
        let _ = std::fs::hard_link(root.join("sentinel"), ws.join("linked"));
        let agent = paddock_workspace::Owner {
            uid: 1000,
            gid: 1000,
        };
        let server = |dir: &PathBuf, mode| WorkspaceServer::new(dir, mode, agent).unwrap();
        Scratch {
            live: server(&ws, paddock_protocol::WorkspaceMode::Live),
            cow: server(&ro, paddock_protocol::WorkspaceMode::Cow),
            root,
        }
    })
}

/// The names in `dir` and their sizes.
fn listing(dir: &std::path::Path) -> Vec<(std::ffi::OsString, u64)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    names.sort();
    names
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, input)) = input.split_first() else {
        return;
    };
    let scratch = scratch();
    let server = if flags & 1 == 1 {
        &scratch.cow
    } else {
        &scratch.live
    };
    let ro = scratch.root.join("ro");
    let before = listing(&ro);
    let (mut guest, theirs) = UnixStream::pair().unwrap();
    // Replies are drained as they come, so the server never blocks on a full socket.
    let mut reader = guest.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    guest.write_all(HELLO).unwrap();
    guest.write_all(input).unwrap();
    guest.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = server.serve(theirs);
    drop(guest);
    drain.join().unwrap();
    assert_eq!(
        std::fs::read(scratch.root.join("sentinel")).unwrap(),
        SENTINEL
    );
    assert_eq!(std::fs::read(ro.join("file")).unwrap(), SENTINEL);
    assert_eq!(listing(&ro), before, "the read-only share changed");
});
