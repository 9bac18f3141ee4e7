//! Log files the guest can make grow (its console; the VMM's log, whose warnings it can
//! trigger) with a size cap: past the cap the file starts over, with a line saying so, so a
//! guest that writes without end cannot fill the host's disk. The newest output is kept.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Mutex;

/// The cap of a sandbox's console log.
pub const CONSOLE_LOG_CAP: u64 = 16 << 20;
/// The cap of a VMM process's own log (`vmm.log`).
pub const VMM_LOG_CAP: u64 = 8 << 20;

/// An append-only file that starts over once it would pass `cap` bytes.
#[derive(Debug)]
pub struct CappedLog {
    file: File,
    len: u64,
    cap: u64,
}

impl CappedLog {
    /// Appends to `file` (opened for appending), which may already hold some bytes.
    pub fn new(file: File, cap: u64) -> Self {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self {
            file,
            len,
            cap: cap.max(1024),
        }
    }

    /// Appends `bytes`; when they would pass the cap, the file is emptied first (and a single
    /// write larger than half the cap keeps only its end).
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let half = crate::cast::u64_to_usize(self.cap / 2);
        let bytes = &bytes[bytes.len().saturating_sub(half)..];
        if self.len + bytes.len() as u64 > self.cap {
            self.file.set_len(0)?;
            self.len = 0;
            let note = format!(
                "[paddock: this log reached {} KiB and started over; older output is gone]\n",
                self.cap >> 10
            );
            self.file.write_all(note.as_bytes())?;
            self.len += note.len() as u64;
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// The VMM process's log: stderr (the sandbox's `vmm.log`), capped at [`VMM_LOG_CAP`].
static VMM_LOG: Mutex<Option<CappedLog>> = Mutex::new(None);

/// Sends this process's `tracing` output (see [`VmmLogWriter`]) to stderr with a cap. Stderr is
/// switched to append mode so that a restart at offset zero is where the next line goes (and
/// so that another process writing the same file never writes over it).
pub fn cap_stderr() -> std::io::Result<()> {
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    // SAFETY: F_GETFL / F_SETFL on a descriptor we own; only the status flags change.
    unsafe {
        let flags = libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&stderr), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&stderr),
                libc::F_SETFL,
                flags | libc::O_APPEND,
            );
        }
    }
    *crate::devices::bus::lock(&VMM_LOG) = Some(CappedLog::new(File::from(stderr), VMM_LOG_CAP));
    Ok(())
}

/// A `tracing` writer for the VMM's log: capped when [`cap_stderr`] was called, plain stderr
/// otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmmLogWriter;

impl Write for VmmLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = crate::devices::bus::lock(&VMM_LOG);
        match log.as_mut() {
            Some(log) => log.append(buf).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn appending(path: &std::path::Path) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_log_past_its_cap_starts_over_with_the_newest_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, vec![b'#'; 1000]).unwrap();
        let mut log = CappedLog::new(appending(&path), 4096);
        for i in 0..400 {
            log.append(format!("line {i:03}\n").as_bytes()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{}", text.len());
        assert!(
            text.starts_with("[paddock: this log reached 4 KiB"),
            "{text}"
        );
        assert!(text.ends_with("line 399\n"), "{text}");
        assert!(!text.contains('#'), "the old content is gone");
    }

    #[test]
    fn one_huge_write_keeps_its_end_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmm.log");
        let mut log = CappedLog::new(appending(&path), 4096);
        let mut huge = vec![b'x'; 100_000];
        huge.extend_from_slice(b"end\n");
        log.append(&huge).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{}", text.len());
        assert!(text.ends_with("xend\n"));
    }
}
