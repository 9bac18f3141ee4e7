//! The requests a relay forwarded and still awaits replies to, kept whole by their `unique`, so
//! that after the host connection breaks they can be sent again on the next one (or, when the
//! relay dies, answered with an error so no guest process waits for ever).

use paddock_protocol::workspace::{IN_HEADER_LEN, OUT_HEADER_LEN};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most requests kept at once, and most bytes of them. The kernel has far fewer outstanding in
/// practice (one per waiting guest thread, a dozen in the background); past either bound a
/// request is forwarded but not kept: only its `unique` is, and if the connection breaks
/// before its reply, it is answered with `ENOTCONN` instead of being sent again.
pub(crate) const MAX_KEPT: usize = 1024;
pub(crate) const MAX_KEPT_BYTES: usize = 64 << 20;

/// Opcodes the kernel expects no reply to: FORGET, INTERRUPT, NOTIFY_REPLY, BATCH_FORGET.
const NO_REPLY: [u32; 4] = [2, 36, 41, 42];

/// The requests awaiting replies.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Whole requests by unique (ascending: the order the kernel sent them in).
    messages: BTreeMap<u64, Arc<[u8]>>,
    /// Bytes in `messages`.
    bytes: usize,
    /// Uniques of requests forwarded past the bounds, not kept.
    unkept: BTreeSet<u64>,
}

/// Field `at` of a message, little-endian (0 when the message is too short for it).
fn field<const N: usize>(message: &[u8], at: usize) -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Some(src) = message.get(at..at + N) {
        bytes.copy_from_slice(src);
    }
    bytes
}

/// The `unique` of a request or reply (header offset 8 in both).
pub(crate) fn unique(message: &[u8]) -> u64 {
    u64::from_le_bytes(field(message, 8))
}

/// Whether the kernel awaits a reply to `request` (its opcode is at header offset 4).
pub(crate) fn expects_reply(request: &[u8]) -> bool {
    request.len() >= IN_HEADER_LEN && !NO_REPLY.contains(&u32::from_le_bytes(field(request, 4)))
}

/// A reply with no data carrying `-errno` for request `unique` (a `fuse_out_header`).
pub(crate) fn error_reply(unique: u64, errno: i32) -> [u8; OUT_HEADER_LEN] {
    let mut reply = [0u8; OUT_HEADER_LEN];
    // OUT_HEADER_LEN is 16.
    reply[..4].copy_from_slice(&16u32.to_le_bytes());
    reply[4..8].copy_from_slice(&(-errno).to_le_bytes());
    reply[8..].copy_from_slice(&unique.to_le_bytes());
    reply
}

impl Kept {
    /// Notes a request about to be forwarded: kept whole when it awaits a reply and the bounds
    /// allow, else (awaiting a reply) its unique alone.
    pub(crate) fn record(&mut self, request: &[u8]) {
        if !expects_reply(request) {
            return;
        }
        let unique = unique(request);
        if self.messages.len() < MAX_KEPT && self.bytes + request.len() <= MAX_KEPT_BYTES {
            self.bytes += request.len();
            if let Some(old) = self.messages.insert(unique, Arc::from(request)) {
                self.bytes -= old.len();
            }
        } else {
            self.unkept.insert(unique);
        }
    }

    /// A reply came: its request is answered and no longer kept.
    pub(crate) fn answered(&mut self, reply: &[u8]) {
        let unique = unique(reply);
        if let Some(old) = self.messages.remove(&unique) {
            self.bytes -= old.len();
        }
        self.unkept.remove(&unique);
    }

    /// The uniques of the kept requests, in the order they were sent.
    pub(crate) fn uniques(&self) -> Vec<u64> {
        self.messages.keys().copied().collect()
    }

    /// The kept request `unique`, if it still awaits its reply.
    pub(crate) fn get(&self, unique: u64) -> Option<Arc<[u8]>> {
        self.messages.get(&unique).cloned()
    }

    /// Takes the uniques of the requests awaiting replies that were not kept (they cannot be
    /// sent again).
    pub(crate) fn take_unkept(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.unkept).into_iter().collect()
    }

    /// Takes every request awaiting a reply, kept or not: the relay is over.
    pub(crate) fn take_all(&mut self) -> Vec<u64> {
        let mut all = self.take_unkept();
        all.extend(std::mem::take(&mut self.messages).into_keys());
        self.bytes = 0;
        all.sort_unstable();
        all
    }

    /// How many requests await replies, kept or not.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.messages.len() + self.unkept.len()
    }
}
