//! Spotting the detach key sequence (Docker's default, Ctrl-P Ctrl-Q) in typed input.

/// How the detach sequence is described to users.
pub const DETACH_KEYS_HELP: &str = "Ctrl-P Ctrl-Q";
/// Ctrl-P then Ctrl-Q.
const DEFAULT_SEQUENCE: [u8; 2] = [0x10, 0x11];

/// Filters typed input: bytes pass through unless they complete the detach sequence. A
/// partial sequence is held back until the next byte shows whether it completes (then it is
/// dropped and the session detaches) or not (then it is passed on, followed by that byte).
#[derive(Debug, Clone)]
pub struct DetachKeys {
    sequence: Vec<u8>,
    /// How many bytes of `sequence` the latest input ended with.
    matched: usize,
}

impl Default for DetachKeys {
    fn default() -> Self {
        Self::new(DEFAULT_SEQUENCE.to_vec())
    }
}

impl DetachKeys {
    /// A filter for `sequence` (not empty).
    pub fn new(sequence: Vec<u8>) -> Self {
        assert!(!sequence.is_empty(), "a detach sequence needs a key");
        Self {
            sequence,
            matched: 0,
        }
    }

    /// Appends to `forward` what of `input` is for the session; returns true once the detach
    /// sequence was typed (the rest of `input` is then dropped).
    pub fn feed(&mut self, input: &[u8], forward: &mut Vec<u8>) -> bool {
        for &byte in input {
            if byte == self.sequence[self.matched] {
                self.matched += 1;
                if self.matched == self.sequence.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            // Not the sequence after all: what was held back goes out, and this byte may
            // start the sequence again.
            forward.extend_from_slice(&self.sequence[..self.matched]);
            self.matched = 0;
            if byte == self.sequence[0] {
                self.matched = 1;
            } else {
                forward.push(byte);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut keys = DetachKeys::default();
        let mut forward = Vec::new();
        for chunk in chunks {
            if keys.feed(chunk, &mut forward) {
                return (forward, true);
            }
        }
        (forward, false)
    }

    #[test]
    fn ordinary_input_passes_through() {
        assert_eq!(
            feed_all(&[b"ls -l\r", b"\x03\x04\x1a"]),
            (b"ls -l\r\x03\x04\x1a".to_vec(), false)
        );
    }

    #[test]
    fn ctrl_p_ctrl_q_detaches_and_is_not_forwarded() {
        assert_eq!(feed_all(&[b"ab\x10\x11cd"]), (b"ab".to_vec(), true));
        // Split across reads.
        assert_eq!(feed_all(&[b"ab\x10", b"\x11cd"]), (b"ab".to_vec(), true));
    }

    #[test]
    fn a_lone_ctrl_p_is_passed_on_with_what_follows() {
        assert_eq!(feed_all(&[b"\x10x"]), (b"\x10x".to_vec(), false));
        assert_eq!(feed_all(&[b"\x10", b"x"]), (b"\x10x".to_vec(), false));
        // Ctrl-P Ctrl-P Ctrl-Q: the first Ctrl-P is typed, the rest detaches.
        assert_eq!(feed_all(&[b"\x10\x10\x11"]), (b"\x10".to_vec(), true));
        // Ctrl-Q alone is ordinary input.
        assert_eq!(feed_all(&[b"\x11"]), (b"\x11".to_vec(), false));
    }

    #[test]
    fn a_held_ctrl_p_waits_for_the_next_byte() {
        let mut keys = DetachKeys::default();
        let mut forward = Vec::new();
        assert!(!keys.feed(b"a\x10", &mut forward));
        assert_eq!(forward, b"a");
        assert!(!keys.feed(b"b", &mut forward));
        assert_eq!(forward, b"a\x10b");
    }

    #[test]
    fn longer_sequences_work_too() {
        let mut keys = DetachKeys::new(b"~.x".to_vec());
        let mut forward = Vec::new();
        assert!(!keys.feed(b"~~.", &mut forward));
        assert!(keys.feed(b"x", &mut forward));
        assert_eq!(forward, b"~");
    }
}
