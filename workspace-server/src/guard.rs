//! The rules the server applies to each guest request before the passthrough file system sees
//! it: every request runs as the host user who started the sandbox (the guest's user ids mean
//! nothing on the host), no special files are made, and no file is opened or truncated for
//! writing unless it is a regular file with a single link (a hard link made on the host to a
//! file outside the directory must not let the guest change that file).

use fuse_backend_rs::abi::fuse_abi::Opcode;
use paddock_protocol::workspace::IN_HEADER_LEN;

/// Offsets in the kernel's `fuse_in_header`.
const OPCODE_AT: usize = 4;
const UNIQUE_AT: usize = 8;
const NODEID_AT: usize = 16;
const UID_AT: usize = 24;
const GID_AT: usize = 28;
/// `FATTR_SIZE` in `fuse_setattr_in.valid`.
const FATTR_SIZE: u32 = 1 << 3;

/// What the server does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the file system.
    Serve,
    /// Answer it with this errno, unserved.
    Refuse(i32),
}

/// What the guard needs to know about a node: its `st_mode` and `st_nlink`.
pub trait NodeFacts {
    /// `(st_mode, st_nlink)` of the node, or the errno that finding out gave.
    fn mode_and_links(&self, node: u64) -> Result<(u32, u64), i32>;
}

fn u32_at(message: &[u8], at: usize) -> Option<u32> {
    let bytes = message.get(at..at + 4)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(message: &[u8], at: usize) -> Option<u64> {
    let bytes = message.get(at..at + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The request's `unique` (what its reply must carry); 0 when the message is too short.
pub fn unique(message: &[u8]) -> u64 {
    u64_at(message, UNIQUE_AT).unwrap_or(0)
}

/// Opcodes that change the directory (refused in a read-only share with `EROFS`). Not
/// `IOCTL`: the passthrough file system serves none (the kernel hears `ENOTTY`), and overlayfs
/// asks the lower for file attributes that way on every copy-up — `EROFS` would fail it.
const WRITES: [Opcode; 16] = [
    Opcode::Setattr,
    Opcode::Symlink,
    Opcode::Mknod,
    Opcode::Mkdir,
    Opcode::Unlink,
    Opcode::Rmdir,
    Opcode::Rename,
    Opcode::Link,
    Opcode::Write,
    Opcode::Setxattr,
    Opcode::Removexattr,
    Opcode::Create,
    Opcode::Fallocate,
    Opcode::Rename2,
    Opcode::CopyFileRange,
    Opcode::SetupMapping,
];

/// Checks one request (a whole message, its length already checked) and makes it run as the
/// server's own user: uid and gid become 0, which the passthrough file system reads as "do not
/// switch credentials". With `read_only`, nothing that would change the directory passes.
pub fn vet(message: &mut [u8], nodes: &impl NodeFacts, read_only: bool) -> Verdict {
    if message.len() < IN_HEADER_LEN {
        return Verdict::Refuse(libc::EINVAL);
    }
    message[UID_AT..UID_AT + 4].fill(0);
    message[GID_AT..GID_AT + 4].fill(0);
    let opcode = u32_at(message, OPCODE_AT).unwrap_or(0);
    let node = u64_at(message, NODEID_AT).unwrap_or(0);
    let body = &message[IN_HEADER_LEN..];
    if read_only && WRITES.iter().any(|w| *w as u32 == opcode) {
        return Verdict::Refuse(libc::EROFS);
    }
    match opcode {
        // fuse_mknod_in: mode first. Regular files only (the kernel uses CREATE for those
        // anyway): no device nodes, FIFOs or sockets on the host.
        x if x == Opcode::Mknod as u32 => match u32_at(body, 0) {
            Some(mode) if mode & libc::S_IFMT == libc::S_IFREG => Verdict::Serve,
            Some(_) => Verdict::Refuse(libc::EPERM),
            None => Verdict::Refuse(libc::EINVAL),
        },
        // fuse_open_in: flags first.
        x if x == Opcode::Open as u32 => match u32_at(body, 0) {
            Some(flags) => {
                let flags = flags.cast_signed();
                let writes =
                    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
                if read_only && writes {
                    return Verdict::Refuse(libc::EROFS);
                }
                openable(nodes, node, writes)
            }
            None => Verdict::Refuse(libc::EINVAL),
        },
        // fuse_setattr_in: valid first; a size change writes the file.
        x if x == Opcode::Setattr as u32 => match u32_at(body, 0) {
            Some(valid) if valid & FATTR_SIZE != 0 => openable(nodes, node, true),
            Some(_) => Verdict::Serve,
            None => Verdict::Refuse(libc::EINVAL),
        },
        _ => Verdict::Serve,
    }
}

/// Only regular files are opened (a FIFO or device node the host put in the directory is never
/// opened by the server), and only singly linked ones for writing.
fn openable(nodes: &impl NodeFacts, node: u64, writes: bool) -> Verdict {
    match nodes.mode_and_links(node) {
        Ok((mode, _)) if mode & libc::S_IFMT != libc::S_IFREG => Verdict::Refuse(libc::EPERM),
        Ok((_, links)) if writes && links > 1 => Verdict::Refuse(libc::EPERM),
        Ok(_) => Verdict::Serve,
        Err(errno) => Verdict::Refuse(errno),
    }
}

/// The reply that refuses request `unique` with `errno`: a bare `fuse_out_header`.
pub fn error_reply(unique: u64, errno: i32) -> [u8; 16] {
    let mut reply = [0u8; 16];
    reply[..4].copy_from_slice(&16u32.to_le_bytes());
    reply[4..8].copy_from_slice(&(-errno).to_le_bytes());
    reply[8..].copy_from_slice(&unique.to_le_bytes());
    reply
}

#[cfg(test)]
mod tests;
