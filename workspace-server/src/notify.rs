//! FUSE notifications the server sends the guest's kernel unasked (`unique` 0, the code in the
//! header's error field): a node's cached attributes invalidated, a name's cached entry expired.
//! Built as one buffer of whole messages, each at most once, to go on the guest's connection
//! between replies. guest-init's relay writes them to `/dev/fuse` from a thread of its own:
//! expiring an entry takes its directory's lock, which a request waiting for its reply may hold.

use std::collections::HashSet;

/// `FUSE_NOTIFY_INVAL_INODE`.
const INVAL_INODE: i32 = 2;
/// `FUSE_NOTIFY_INVAL_ENTRY`.
const INVAL_ENTRY: i32 = 3;
/// `FUSE_EXPIRE_ONLY` (protocol 7.38): the entry is expired, not dropped, so a process whose
/// working directory it is keeps a path; the next use looks the name up again. A kernel that
/// predates it drops the entry instead.
const EXPIRE_ONLY: u32 = 1;
/// `fuse_out_header`'s length.
const HEADER_LEN: usize = 16;
/// The longest name the kernel takes in a notification (`FUSE_NAME_MAX`).
const NAME_MAX: usize = 1024;

/// What one notification asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Notice {
    Attributes(u64),
    Entry(u64, Vec<u8>),
}

/// Notifications to send, each once, in the order first asked.
#[derive(Debug, Default)]
pub struct Notifications {
    bytes: Vec<u8>,
    sent: HashSet<Notice>,
}

impl Notifications {
    /// The kernel drops the attributes it cached of guest node `node` (its next look asks; with
    /// `AUTO_INVAL_DATA`, a changed size or time then drops the node's cached pages). Attributes
    /// only (offset -1): the pages go by that check, not from here.
    pub fn attributes(&mut self, node: u64) {
        if !self.sent.insert(Notice::Attributes(node)) {
            return;
        }
        self.header(24, INVAL_INODE);
        // fuse_notify_inval_inode_out: ino, off (-1: attributes only), len.
        self.bytes.extend_from_slice(&node.to_le_bytes());
        self.bytes.extend_from_slice(&(-1i64).to_le_bytes());
        self.bytes.extend_from_slice(&0i64.to_le_bytes());
    }

    /// The kernel's entry for `name` in directory node `parent` expires: its next use looks the
    /// name up again. A name the kernel cannot take (empty, too long, with a slash or a NUL) is
    /// left out; the guest cannot have cached it.
    pub fn entry(&mut self, parent: u64, name: &[u8]) {
        let fits = !name.is_empty() && name.len() <= NAME_MAX;
        if !fits || name.contains(&b'/') || name.contains(&0) {
            return;
        }
        if !self.sent.insert(Notice::Entry(parent, name.to_vec())) {
            return;
        }
        let Ok(name_len) = u32::try_from(name.len()) else {
            return;
        };
        self.header(16 + name.len() + 1, INVAL_ENTRY);
        // fuse_notify_inval_entry_out: parent, namelen, flags; then the name and a NUL.
        self.bytes.extend_from_slice(&parent.to_le_bytes());
        self.bytes.extend_from_slice(&name_len.to_le_bytes());
        self.bytes.extend_from_slice(&EXPIRE_ONLY.to_le_bytes());
        self.bytes.extend_from_slice(name);
        self.bytes.push(0);
    }

    fn header(&mut self, body_len: usize, code: i32) {
        let len = u32::try_from(HEADER_LEN + body_len).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(&code.to_le_bytes());
        self.bytes.extend_from_slice(&0u64.to_le_bytes());
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The messages, one after another.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notification_goes_once_with_the_length_its_header_gives() {
        let mut notes = Notifications::default();
        notes.attributes(7);
        notes.entry(1, b"file");
        notes.attributes(7);
        notes.entry(1, b"file");
        notes.entry(1, b"");
        notes.entry(1, b"a/b");
        notes.entry(1, &[b'x'; NAME_MAX + 1]);
        let bytes = notes.bytes();
        assert_eq!(bytes.len(), 40 + 16 + 16 + 5);
        let first = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(first, 40);
        assert_eq!(i32::from_le_bytes(bytes[4..8].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 7);
        let entry = &bytes[40..];
        assert_eq!(u32::from_le_bytes(entry[..4].try_into().unwrap()), 37);
        assert_eq!(i32::from_le_bytes(entry[4..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(entry[16..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(entry[24..28].try_into().unwrap()), 4);
        assert_eq!(&entry[32..], b"file\0");
    }
}
