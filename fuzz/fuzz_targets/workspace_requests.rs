//! FUSE requests from the guest, from any bytes, against the real workspace server (the guard
//! and fuse-backend-rs's passthrough file system) rooted at a scratch directory. Whatever the
//! requests do inside that directory, a file beside it never changes and nothing panics.
//! Input: the bytes after the workspace hello.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_protocol::workspace::HELLO;
use paddock_workspace::WorkspaceServer;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;

const SENTINEL: &[u8] = b"outside the workspace\n";

/// The scratch area: `ws/` (served, with a file, a directory and a hard link to the sentinel)
/// beside `sentinel`.
fn scratch() -> &'static (PathBuf, WorkspaceServer) {
    static SCRATCH: OnceLock<(PathBuf, WorkspaceServer)> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("paddock-fuzz-ws-{}", std::process::id()));
        let ws = root.join("ws");
        std::fs::create_dir_all(ws.join("dir")).unwrap();
        std::fs::write(ws.join("file"), b"inside\n").unwrap();
        std::fs::write(root.join("sentinel"), SENTINEL).unwrap();
        let _ = std::fs::hard_link(root.join("sentinel"), ws.join("linked"));
        let server = WorkspaceServer::new(&ws).unwrap();
        (root, server)
    })
}

fuzz_target!(|input: &[u8]| {
    let (root, server) = scratch();
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
    assert_eq!(std::fs::read(root.join("sentinel")).unwrap(), SENTINEL);
});
