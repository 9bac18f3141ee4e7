//! The bounded buffer of a detached session's output: the newest bytes, oldest dropped.

use std::collections::VecDeque;

/// At most `capacity` bytes of the most recent output.
#[derive(Debug)]
pub(super) struct OutputRing {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl OutputRing {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            capacity,
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity.
    pub(super) fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let excess = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..excess);
        self.bytes.extend(data);
    }

    /// The kept bytes, oldest first (the buffer stays as it is).
    pub(super) fn contents(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_within_the_capacity() {
        let mut ring = OutputRing::new(8);
        ring.push(b"abc");
        ring.push(b"defg");
        assert_eq!(ring.contents(), b"abcdefg");
        ring.push(b"hij");
        assert_eq!(ring.contents(), b"cdefghij");
        ring.push(b"0123456789");
        assert_eq!(ring.contents(), b"23456789");
        ring.push(b"");
        assert_eq!(ring.contents(), b"23456789");
        ring.clear();
        assert!(ring.contents().is_empty());
    }
}
