//! A mount's state, saved with a snapshot: which node id and file handle the guest's kernel holds
//! means which file (by its name under its parent, and the host's identity of it), so a server
//! can answer them again after a restore ([`crate::nodes::NodeMap::resume`]).
//!
//! The bytes: [`MAGIC`], [`VERSION`] (`u32`), the payload's length (`u32`), its CRC-32, then the
//! payload, little-endian throughout. Decoding trusts nothing: every count and length is bounded
//! before anything is allocated for it, and what does not fit is a [`DecodeError`].

use paddock_protocol::workspace::MAX_STATE_BYTES;
use std::collections::HashSet;

/// The first bytes of a saved state.
pub const MAGIC: &[u8; 8] = b"PDKWSST\0";
/// The version of this encoding.
pub const VERSION: u32 = 1;
/// Most nodes a state holds.
pub const MAX_NODES: usize = 4 << 20;
/// Most open handles a state holds.
pub const MAX_HANDLES: usize = 1 << 20;
/// Longest name of a node (the host's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The FUSE root's node id (never saved: it is always there).
pub const ROOT: u64 = 1;

const HEADER_LEN: usize = MAGIC.len() + 4 + 4 + 4;
/// A node's bytes besides its name: five `u64`s, the file type and the name's length.
const NODE_LEN: usize = 5 * 8 + 4 + 2;
/// A handle's bytes: fh, node, flags, is_dir.
const HANDLE_LEN: usize = 8 + 8 + 4 + 1;

/// One node the guest's kernel holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedNode {
    /// Its guest node id.
    pub id: u64,
    /// Its parent's guest node id (meaningless without a name).
    pub parent: u64,
    /// Its name in the parent; empty: none known (it was unlinked or renamed over).
    pub name: Vec<u8>,
    /// How many lookups of it the guest's kernel holds.
    pub lookups: u64,
    /// The host's identity of the file: `st_dev`, `st_ino` and `st_mode & S_IFMT`.
    pub dev: u64,
    pub ino: u64,
    pub file_type: u32,
}

/// One open file or directory of the guest's kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedHandle {
    /// Its guest file handle.
    pub fh: u64,
    /// The guest node it was opened on.
    pub node: u64,
    /// The flags it was opened with.
    pub flags: u32,
    /// Opened as a directory.
    pub is_dir: bool,
}

/// A mount's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The mount's session id (what `RESUME_HELLO` carries).
    pub session: u64,
    /// The kernel's `FsOptions` bits at INIT.
    pub capable: u64,
    /// Served read-only (a copy-on-write share).
    pub read_only: bool,
    /// The next guest node id to give out.
    pub next_node: u64,
    /// The next guest file handle to give out.
    pub next_handle: u64,
    pub nodes: Vec<SavedNode>,
    pub handles: Vec<SavedHandle>,
}

/// A state that cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} nodes (at most {MAX_NODES})")]
    TooManyNodes(usize),
    #[error("{0} open handles (at most {MAX_HANDLES})")]
    TooManyHandles(usize),
    #[error("node {0}'s name is longer than {MAX_NAME} bytes")]
    NameTooLong(u64),
    #[error("the state takes {0} bytes (at most {MAX_STATE_BYTES})")]
    TooLarge(usize),
}

/// Bytes that are not a state this server made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a saved workspace state (bad magic)")]
    BadMagic,
    #[error("saved workspace state version {0} (this server reads {VERSION})")]
    Version(u32),
    #[error("the state is cut short")]
    Truncated,
    #[error("{0} bytes after the state's payload")]
    TrailingBytes(usize),
    #[error("the state takes {0} bytes (at most {MAX_STATE_BYTES})")]
    TooLarge(usize),
    #[error("the state's checksum does not match")]
    Checksum,
    #[error("{0} nodes (at most {MAX_NODES})")]
    TooManyNodes(u64),
    #[error("{0} open handles (at most {MAX_HANDLES})")]
    TooManyHandles(u64),
    #[error("node {0}'s name is longer than {MAX_NAME} bytes")]
    NameTooLong(u64),
    #[error("node {0}'s name is not a single path component")]
    BadName(u64),
    #[error("a boolean byte of {0}")]
    BadBool(u8),
    #[error("node id {0} is invalid, repeated or not below the next id")]
    BadNodeId(u64),
    #[error("node {0} has no lookups or no parent")]
    BadNode(u64),
    #[error("handle {0} is invalid, repeated, not below the next handle, or on an unknown node")]
    BadHandle(u64),
}

impl SavedState {
    /// The state's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.nodes.len() > MAX_NODES {
            return Err(EncodeError::TooManyNodes(self.nodes.len()));
        }
        if self.handles.len() > MAX_HANDLES {
            return Err(EncodeError::TooManyHandles(self.handles.len()));
        }
        let mut payload = Vec::new();
        payload.extend_from_slice(&self.session.to_le_bytes());
        payload.extend_from_slice(&self.capable.to_le_bytes());
        payload.push(u8::from(self.read_only));
        payload.extend_from_slice(&self.next_node.to_le_bytes());
        payload.extend_from_slice(&self.next_handle.to_le_bytes());
        put_count(&mut payload, self.nodes.len());
        for node in &self.nodes {
            let name_len = u16::try_from(node.name.len())
                .ok()
                .filter(|&n| usize::from(n) <= MAX_NAME)
                .ok_or(EncodeError::NameTooLong(node.id))?;
            for value in [node.id, node.parent, node.lookups, node.dev, node.ino] {
                payload.extend_from_slice(&value.to_le_bytes());
            }
            payload.extend_from_slice(&node.file_type.to_le_bytes());
            payload.extend_from_slice(&name_len.to_le_bytes());
            payload.extend_from_slice(&node.name);
        }
        put_count(&mut payload, self.handles.len());
        for handle in &self.handles {
            payload.extend_from_slice(&handle.fh.to_le_bytes());
            payload.extend_from_slice(&handle.node.to_le_bytes());
            payload.extend_from_slice(&handle.flags.to_le_bytes());
            payload.push(u8::from(handle.is_dir));
        }
        let total = HEADER_LEN + payload.len();
        let payload_len = u32::try_from(payload.len())
            .ok()
            .filter(|_| total <= MAX_STATE_BYTES)
            .ok_or(EncodeError::TooLarge(total))?;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&payload_len.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// The state `bytes` hold, checked whole: magic, version, length, checksum, bounds, and that
    /// its ids are consistent (unique, below the next ids, handles on nodes it has).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_STATE_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let mut header = Cursor(bytes);
        if header.take(MAGIC.len())? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = header.u32()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let len = usize::try_from(header.u32()?).map_err(|_| DecodeError::Truncated)?;
        let checksum = header.u32()?;
        let payload = header.take(len)?;
        if !header.0.is_empty() {
            return Err(DecodeError::TrailingBytes(header.0.len()));
        }
        if crc32fast::hash(payload) != checksum {
            return Err(DecodeError::Checksum);
        }
        let state = Self::decode_payload(&mut Cursor(payload))?;
        state.check()?;
        Ok(state)
    }

    fn decode_payload(payload: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        let session = payload.u64()?;
        let capable = payload.u64()?;
        let read_only = payload.bool()?;
        let next_node = payload.u64()?;
        let next_handle = payload.u64()?;
        let count = payload.u32()?;
        let nodes_len = bounded(count, MAX_NODES, NODE_LEN, payload)
            .ok_or(DecodeError::TooManyNodes(u64::from(count)))??;
        let mut nodes = Vec::with_capacity(nodes_len);
        for _ in 0..nodes_len {
            let id = payload.u64()?;
            let parent = payload.u64()?;
            let lookups = payload.u64()?;
            let dev = payload.u64()?;
            let ino = payload.u64()?;
            let file_type = payload.u32()?;
            let name_len = usize::from(payload.u16()?);
            if name_len > MAX_NAME {
                return Err(DecodeError::NameTooLong(id));
            }
            let name = payload.take(name_len)?.to_vec();
            nodes.push(SavedNode {
                id,
                parent,
                name,
                lookups,
                dev,
                ino,
                file_type,
            });
        }
        let count = payload.u32()?;
        let handles_len = bounded(count, MAX_HANDLES, HANDLE_LEN, payload)
            .ok_or(DecodeError::TooManyHandles(u64::from(count)))??;
        let mut handles = Vec::with_capacity(handles_len);
        for _ in 0..handles_len {
            handles.push(SavedHandle {
                fh: payload.u64()?,
                node: payload.u64()?,
                flags: payload.u32()?,
                is_dir: payload.bool()?,
            });
        }
        if !payload.0.is_empty() {
            return Err(DecodeError::TrailingBytes(payload.0.len()));
        }
        Ok(Self {
            session,
            capable,
            read_only,
            next_node,
            next_handle,
            nodes,
            handles,
        })
    }

    /// Ids unique and below the next ones, names single components, handles on known nodes.
    fn check(&self) -> Result<(), DecodeError> {
        let mut ids = HashSet::with_capacity(self.nodes.len());
        for node in &self.nodes {
            if node.id <= ROOT || node.id >= self.next_node || !ids.insert(node.id) {
                return Err(DecodeError::BadNodeId(node.id));
            }
            if node.lookups == 0 || node.parent == 0 {
                return Err(DecodeError::BadNode(node.id));
            }
            let name = node.name.as_slice();
            if name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0) {
                return Err(DecodeError::BadName(node.id));
            }
        }
        let mut fhs = HashSet::with_capacity(self.handles.len());
        for handle in &self.handles {
            let known_node = handle.node == ROOT || ids.contains(&handle.node);
            if handle.fh == 0 || handle.fh >= self.next_handle || !known_node {
                return Err(DecodeError::BadHandle(handle.fh));
            }
            if !fhs.insert(handle.fh) {
                return Err(DecodeError::BadHandle(handle.fh));
            }
        }
        Ok(())
    }
}

fn put_count(bytes: &mut Vec<u8>, count: usize) {
    // Bounded by MAX_NODES / MAX_HANDLES before this is called.
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&count.to_le_bytes());
}

/// `count` entries of at least `each` bytes: `None` if there are more than `max`, `Truncated`
/// if the rest of the payload cannot hold them (checked before anything is allocated for them).
fn bounded(
    count: u32,
    max: usize,
    each: usize,
    rest: &Cursor<'_>,
) -> Option<Result<usize, DecodeError>> {
    let count = usize::try_from(count).ok().filter(|&n| n <= max)?;
    let fits = count
        .checked_mul(each)
        .is_some_and(|len| len <= rest.0.len());
    Some(if fits {
        Ok(count)
    } else {
        Err(DecodeError::Truncated)
    })
}

/// Reads from the front of a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.array::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [other] => Err(DecodeError::BadBool(other)),
        }
    }
}

#[cfg(test)]
mod tests;
