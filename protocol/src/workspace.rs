//! The workspace link: the guest's FUSE mount of the shared project directory is served on the
//! host. guest-init mounts FUSE at the directory's path and relays the kernel's requests, as
//! they are, over one vsock connection to host port [`WORKSPACE_PORT`]; the sandbox's workspace
//! server (a host process of its own) answers them. The connection opens with [`HELLO`]; after
//! it, each direction carries whole FUSE messages, each starting with its own length (the
//! kernel's `fuse_in_header` towards the host, `fuse_out_header` back). Both sides bound that
//! length by [`MAX_MESSAGE`] before reading the rest.
//!
//! In [`WorkspaceMode::Cow`] the FUSE mount is read-only and guest-init puts an overlay with an
//! upper layer in guest memory over it; `Request::WorkspaceChanges` lists that layer's changes.

use serde::{Deserialize, Serialize};

/// How the guest sees the workspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceMode {
    /// Changes go straight to the host's directory, both ways.
    #[default]
    Live,
    /// The host's directory is read-only to the guest; its writes land in an upper layer in
    /// guest memory, listed by `WorkspaceChanges` and copied to the host only when asked.
    Cow,
}

/// What a copy-on-write workspace's file became in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Not in the host's directory.
    Added,
    /// In the host's directory, different in the guest (content, mode or link target).
    Modified,
    /// In the host's directory, gone in the guest.
    Deleted,
}

/// What a changed path is in the guest (for `Deleted`: what it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangedNode {
    /// A regular file with this permission mode (`0o7777` bits) and size.
    File { mode: u32, size: u64 },
    /// A directory with this permission mode.
    Dir { mode: u32 },
    /// A symbolic link to this target.
    Symlink { target: Vec<u8> },
    /// Anything else (the host applies none of these).
    Other,
}

/// One change of a copy-on-write workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceChange {
    /// The path relative to the workspace, as bytes (names need not be UTF-8).
    pub path: Vec<u8>,
    pub kind: ChangeKind,
    pub node: ChangedNode,
}

/// Most changes' path bytes one `WorkspaceChanges` response carries (the rest follow in more).
pub const MAX_CHANGES_BYTES: usize = 256 * 1024;

/// Host vsock port of the workspace server.
pub const WORKSPACE_PORT: u32 = 1082;
/// The first bytes on a workspace connection that starts a new mount: magic and version of
/// this framing. The server answers with the mount's session id ([`SESSION_ID_LEN`] bytes,
/// little-endian), which guest-init keeps (in guest memory, so a snapshot holds it too).
pub const HELLO: &[u8; 20] = b"PADDOCK-WORKSPACE/2\n";
/// The first bytes on a connection that carries on a mount a snapshot held (after a restore,
/// reset or fork, whose vsock resets ended the mount's old connection): followed by the mount's
/// session id. The server answers one byte, [`RESUMED`] when it re-established the nodes and
/// open files the guest's kernel holds (saved with the snapshot) and serves the mount on, else
/// [`NOT_RESUMED`] and closes. guest-init then sends again every request it had sent without
/// an answer: whole FUSE messages follow as on a new mount.
pub const RESUME_HELLO: &[u8; 20] = b"PADDOCK-WS-RESUME/2\n";
/// Size of a mount's session id.
pub const SESSION_ID_LEN: usize = 8;
/// The server's answer to [`RESUME_HELLO`]: it serves the mount on.
pub const RESUMED: u8 = 1;
/// The server's answer to [`RESUME_HELLO`]: no saved state for that session; the mount is over.
pub const NOT_RESUMED: u8 = 0;

/// The host side's control connection to the workspace server (its own socket beside the
/// guest's, which the guest cannot reach): [`CONTROL_HELLO`], then one command byte.
/// [`SAVE_STATE`]: the server answers with its state (a `u32` little-endian length, then that
/// many bytes, at most [`MAX_STATE_BYTES`]; length 0 when no mount is served) — the VMM asks
/// while the vCPUs are paused for a snapshot and keeps the bytes in it. [`LOAD_STATE`]: a
/// length and that many bytes follow (0: no state comes; a resume is refused at once), the state the next
/// [`RESUME_HELLO`] carries on from; the server answers one byte, [`STATE_LOADED`] or
/// [`STATE_REFUSED`] (not a state it made: bad magic, version or checksum, or another mode).
pub const CONTROL_HELLO: &[u8; 20] = b"PADDOCK-WS-CONTROL1\n";
/// Control command: send the server's state.
pub const SAVE_STATE: u8 = b'S';
/// Control command: take this state for the next resume.
pub const LOAD_STATE: u8 = b'L';
/// Answer to [`LOAD_STATE`]: taken.
pub const STATE_LOADED: u8 = 1;
/// Answer to [`LOAD_STATE`]: refused.
pub const STATE_REFUSED: u8 = 0;
/// Largest state either side accepts.
pub const MAX_STATE_BYTES: usize = 64 << 20;
/// Size of the kernel's `fuse_in_header` (every request starts with it).
pub const IN_HEADER_LEN: usize = 40;
/// Size of the kernel's `fuse_out_header` (every reply starts with it).
pub const OUT_HEADER_LEN: usize = 16;
/// Largest message either way: 1 MiB of data (the most the server lets the kernel send or ask
/// for at once) and a page for headers.
pub const MAX_MESSAGE: usize = (1 << 20) + 4096;

/// A message length the peer announced that no valid message has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("FUSE message of {len} bytes (valid: {min}..={MAX_MESSAGE})")]
pub struct BadLength {
    /// What the header said.
    pub len: u32,
    /// The header's own size.
    pub min: usize,
}

/// The length a message header announces (its first four bytes, little-endian, as the kernel
/// writes them), checked against the header's size and [`MAX_MESSAGE`].
pub fn message_len(header: &[u8], min: usize) -> Result<usize, BadLength> {
    let mut len = [0u8; 4];
    len.copy_from_slice(header.get(..4).unwrap_or(&[0; 4]));
    let len = u32::from_le_bytes(len);
    match usize::try_from(len) {
        Ok(n) if (min..=MAX_MESSAGE).contains(&n) && header.len() >= min => Ok(n),
        _ => Err(BadLength { len, min }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bounded_by_the_header_and_the_maximum() {
        let header = |len: u32| {
            let mut h = [0u8; IN_HEADER_LEN];
            h[..4].copy_from_slice(&len.to_le_bytes());
            h
        };
        assert_eq!(message_len(&header(40), IN_HEADER_LEN), Ok(40));
        assert_eq!(message_len(&header(4096), IN_HEADER_LEN), Ok(4096));
        assert!(message_len(&header(39), IN_HEADER_LEN).is_err());
        assert!(message_len(&header(0), IN_HEADER_LEN).is_err());
        assert!(message_len(&header(u32::MAX), IN_HEADER_LEN).is_err());
        let too_big = u32::try_from(MAX_MESSAGE + 1).unwrap();
        assert!(message_len(&header(too_big), IN_HEADER_LEN).is_err());
        assert_eq!(message_len(&header(16)[..16], OUT_HEADER_LEN), Ok(16));
        assert!(message_len(&[16, 0], OUT_HEADER_LEN).is_err());
    }
}
