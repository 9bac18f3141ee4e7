//! Where the guest console goes: an optional log file, plus an in-memory tail kept for error
//! reports (a boot that fails is explained by its last console lines).

use crate::capped_log::{CappedLog, CONSOLE_LOG_CAP};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Bytes of console output kept in memory.
pub const CONSOLE_TAIL_BYTES: usize = 64 * 1024;

/// The retained tail of the console, shared with whoever reports errors.
#[derive(Clone, Default)]
pub struct ConsoleTail(Arc<Mutex<VecDeque<u8>>>);

/// Opaque: the guest's output is not for debug logs.
impl std::fmt::Debug for ConsoleTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleTail").finish_non_exhaustive()
    }
}

impl ConsoleTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = crate::devices::bus::lock(&self.0);
        let bytes = &bytes[bytes.len().saturating_sub(CONSOLE_TAIL_BYTES)..];
        let overflow = (tail.len() + bytes.len()).saturating_sub(CONSOLE_TAIL_BYTES);
        tail.drain(..overflow);
        tail.extend(bytes);
    }

    /// The retained console text (lossily decoded).
    pub fn text(&self) -> String {
        let tail = crate::devices::bus::lock(&self.0);
        let (a, b) = tail.as_slices();
        let mut v = Vec::with_capacity(tail.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The last `n` lines of the retained console.
    pub fn last_lines(&self, n: usize) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The serial port's output: the tail, and a log file if one was given.
#[derive(Debug)]
pub struct ConsoleSink {
    tail: ConsoleTail,
    log: Option<CappedLog>,
}

impl ConsoleSink {
    /// A sink that keeps the tail and optionally appends to `log` (opened for appending),
    /// which starts over past [`CONSOLE_LOG_CAP`]: the guest decides how much it prints.
    pub fn new(tail: ConsoleTail, log: Option<File>) -> Self {
        Self {
            tail,
            log: log.map(|file| CappedLog::new(file, CONSOLE_LOG_CAP)),
        }
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tail.push(buf);
        if let Some(log) = &mut self.log {
            // A full disk must not stop the guest: the console log is best effort.
            let _ = log.append(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_only_the_newest_bytes() {
        let tail = ConsoleTail::default();
        let mut sink = ConsoleSink::new(tail.clone(), None);
        sink.write_all(&vec![b'a'; CONSOLE_TAIL_BYTES]).unwrap();
        sink.write_all(b"\nlast line\n").unwrap();
        assert_eq!(tail.text().len(), CONSOLE_TAIL_BYTES);
        assert_eq!(tail.last_lines(1), "last line");
    }
}
