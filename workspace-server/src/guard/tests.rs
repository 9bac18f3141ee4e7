//! The guard's rules on hand-built requests, with a table standing in for the file system.

use super::*;
use std::collections::HashMap;

struct Nodes(HashMap<u64, (u32, u64)>);

impl NodeFacts for Nodes {
    fn mode_and_links(&self, node: u64) -> Result<(u32, u64), i32> {
        self.0.get(&node).copied().ok_or(libc::ENOENT)
    }
}

const FILE: u64 = 2;
const LINKED: u64 = 3;
const FIFO: u64 = 4;
const DIR: u64 = 5;

fn nodes() -> Nodes {
    Nodes(HashMap::from([
        (FILE, (libc::S_IFREG | 0o644, 1)),
        (LINKED, (libc::S_IFREG | 0o644, 2)),
        (FIFO, (libc::S_IFIFO | 0o644, 1)),
        (DIR, (libc::S_IFDIR | 0o755, 3)),
    ]))
}

fn request(opcode: Opcode, node: u64, body: &[u32]) -> Vec<u8> {
    let mut m = vec![0u8; IN_HEADER_LEN];
    m[OPCODE_AT..OPCODE_AT + 4].copy_from_slice(&(opcode as u32).to_le_bytes());
    m[UNIQUE_AT..UNIQUE_AT + 8].copy_from_slice(&77u64.to_le_bytes());
    m[NODEID_AT..NODEID_AT + 8].copy_from_slice(&node.to_le_bytes());
    m[UID_AT..UID_AT + 4].copy_from_slice(&1000u32.to_le_bytes());
    m[GID_AT..GID_AT + 4].copy_from_slice(&1000u32.to_le_bytes());
    for word in body {
        m.extend_from_slice(&word.to_le_bytes());
    }
    let len = u32::try_from(m.len()).unwrap();
    m[..4].copy_from_slice(&len.to_le_bytes());
    m
}

#[test]
fn every_request_runs_as_the_servers_own_user() {
    let mut m = request(Opcode::Getattr, FILE, &[0, 0, 0, 0]);
    assert_eq!(vet(&mut m, &nodes(), false), Verdict::Serve);
    assert_eq!(&m[UID_AT..GID_AT + 4], &[0; 8]);
    assert_eq!(unique(&m), 77);
}

#[test]
fn special_files_are_never_made() {
    for kind in [libc::S_IFCHR, libc::S_IFBLK, libc::S_IFIFO, libc::S_IFSOCK] {
        let mut m = request(Opcode::Mknod, DIR, &[kind | 0o666, 0x0103, 0, 0]);
        assert_eq!(vet(&mut m, &nodes(), false), Verdict::Refuse(libc::EPERM));
    }
    let mut m = request(Opcode::Mknod, DIR, &[libc::S_IFREG | 0o644, 0, 0, 0]);
    assert_eq!(vet(&mut m, &nodes(), false), Verdict::Serve);
    let mut short = request(Opcode::Mknod, DIR, &[]);
    assert_eq!(
        vet(&mut short, &nodes(), false),
        Verdict::Refuse(libc::EINVAL)
    );
}

#[test]
fn opens_for_writing_need_a_singly_linked_regular_file() {
    let rdonly = libc::O_RDONLY as u32;
    let rdwr = libc::O_RDWR as u32;
    let trunc = (libc::O_RDONLY | libc::O_TRUNC) as u32;
    let cases = [
        (FILE, rdonly, Verdict::Serve),
        (FILE, rdwr, Verdict::Serve),
        (LINKED, rdonly, Verdict::Serve),
        (LINKED, rdwr, Verdict::Refuse(libc::EPERM)),
        (LINKED, trunc, Verdict::Refuse(libc::EPERM)),
        (FIFO, rdonly, Verdict::Refuse(libc::EPERM)),
        (DIR, rdonly, Verdict::Refuse(libc::EPERM)),
        (99, rdonly, Verdict::Refuse(libc::ENOENT)),
    ];
    for (node, flags, want) in cases {
        let mut m = request(Opcode::Open, node, &[flags, 0]);
        assert_eq!(
            vet(&mut m, &nodes(), false),
            want,
            "node {node} flags {flags:#o}"
        );
    }
}

#[test]
fn truncating_a_multiply_linked_file_is_refused_other_setattrs_pass() {
    let mut size = request(Opcode::Setattr, LINKED, &[FATTR_SIZE, 0, 0, 0, 0, 0]);
    assert_eq!(
        vet(&mut size, &nodes(), false),
        Verdict::Refuse(libc::EPERM)
    );
    let mut size = request(Opcode::Setattr, FILE, &[FATTR_SIZE, 0, 0, 0, 0, 0]);
    assert_eq!(vet(&mut size, &nodes(), false), Verdict::Serve);
    let mode_only = 1;
    let mut chmod = request(Opcode::Setattr, LINKED, &[mode_only, 0, 0, 0, 0, 0]);
    assert_eq!(vet(&mut chmod, &nodes(), false), Verdict::Serve);
}

#[test]
fn a_message_shorter_than_a_header_is_refused_and_errors_are_bare_headers() {
    let mut short = vec![0u8; 12];
    assert_eq!(
        vet(&mut short, &nodes(), false),
        Verdict::Refuse(libc::EINVAL)
    );
    let reply = error_reply(77, libc::EPERM);
    assert_eq!(&reply[..4], &16u32.to_le_bytes());
    assert_eq!(&reply[4..8], &(-libc::EPERM).to_le_bytes());
    assert_eq!(&reply[8..], &77u64.to_le_bytes());
}

#[test]
fn a_read_only_share_refuses_every_change_and_serves_reads() {
    for opcode in [
        Opcode::Setattr,
        Opcode::Mkdir,
        Opcode::Unlink,
        Opcode::Rename,
        Opcode::Rename2,
        Opcode::Write,
        Opcode::Create,
        Opcode::Symlink,
        Opcode::Link,
    ] {
        let mut m = request(opcode, FILE, &[0, 0, 0, 0]);
        assert_eq!(
            vet(&mut m, &nodes(), true),
            Verdict::Refuse(libc::EROFS),
            "{opcode:?}"
        );
    }
    // An ioctl goes on (to an ENOSYS): overlayfs reads file attributes that way on copy-up.
    let mut ioctl = request(Opcode::Ioctl, FILE, &[0, 0, 0, 0]);
    assert_eq!(vet(&mut ioctl, &nodes(), true), Verdict::Serve);
    let mut write_open = request(Opcode::Open, FILE, &[libc::O_WRONLY as u32, 0]);
    assert_eq!(
        vet(&mut write_open, &nodes(), true),
        Verdict::Refuse(libc::EROFS)
    );
    for (opcode, body) in [
        (Opcode::Open, [libc::O_RDONLY as u32, 0]),
        (Opcode::Getattr, [0, 0]),
    ] {
        let mut m = request(opcode, FILE, &body);
        assert_eq!(vet(&mut m, &nodes(), true), Verdict::Serve, "{opcode:?}");
    }
}
