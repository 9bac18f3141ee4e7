//! A daemon's stdout and stderr, copied from a pipe into a size-bounded log file.
//!
//! One pipe per supervised daemon lives as long as guest-init (every restart writes into the
//! same pipe); a thread copies it into the log file, which is rotated to `<name>.1` (replacing
//! the previous one) when it would grow past its limit. The log lives in guest memory, so at
//! most twice the limit is ever kept.

use crate::sys::cvt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Size at which a daemon's log is rotated.
pub const LOG_LIMIT: u64 = 2 << 20;

/// A log file that rotates itself at a size limit.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    limit: u64,
}

impl RotatingLog {
    /// Opens `path` for appending (creating it and its directory).
    pub fn open(path: &Path, limit: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            limit,
        })
    }

    /// Appends `data`, first rotating if the file would pass its limit. Data larger than the
    /// limit keeps only its tail.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let data = &data[data.len().saturating_sub(limit)..];
        if self.size + data.len() as u64 > self.limit {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The write end of a daemon's output pipe; its read end is copied into a [`RotatingLog`].
#[derive(Debug)]
pub struct LogSink {
    writer: OwnedFd,
    path: PathBuf,
}

impl LogSink {
    /// Opens the log at `path` and starts the copying thread.
    pub fn start(path: &Path, limit: u64) -> io::Result<Self> {
        let log = RotatingLog::open(path, limit)?;
        let (reader, writer) = pipe()?;
        let name = path
            .file_stem()
            .map(|stem| format!("log-{}", stem.to_string_lossy()))
            .unwrap_or_else(|| "log".into());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || copy_forever(File::from(reader), log))?;
        Ok(Self {
            writer,
            path: path.to_path_buf(),
        })
    }

    /// Stdout or stderr for a child writing into the log.
    pub fn stdio(&self) -> io::Result<Stdio> {
        Ok(Stdio::from(self.writer.try_clone()?))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn copy_forever(mut pipe: File, mut log: RotatingLog) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut complained = false;
    loop {
        match pipe.read(&mut buf) {
            // Every writer is gone: only when guest-init drops the sink.
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = log.append(&buf[..n]) {
                    if !complained {
                        crate::console_log!("cannot write {}: {e}", log.path.display());
                        complained = true;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                crate::console_log!("cannot read the output for {}: {e}", log.path.display());
                return;
            }
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two fds and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Log lines copied to the console when a daemon fails, and how far back they are looked for.
const CONSOLE_TAIL_LINES: usize = 20;
const CONSOLE_TAIL_BYTES: u64 = 8 * 1024;
/// Longest log line copied to the console.
const CONSOLE_LINE_MAX: usize = 300;

/// Copies the end of the log at `path` to the console (after a daemon failed).
pub fn copy_tail_to_console(path: &Path) {
    match tail(path, CONSOLE_TAIL_LINES, CONSOLE_TAIL_BYTES) {
        Ok(lines) => {
            crate::console_log!("last lines of {}:", path.display());
            for line in lines {
                let line = paddock_protocol::engine::truncate(&line, CONSOLE_LINE_MAX);
                crate::console_log!("| {line}");
            }
        }
        Err(e) => crate::console_log!("cannot read {}: {e}", path.display()),
    }
}

/// The last `lines` whole lines of the file at `path`, reading at most its last `max_bytes`.
pub fn tail(path: &Path, lines: usize, max_bytes: u64) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(max_bytes);
    // One byte earlier: it tells whether the first line read is whole.
    let seek = from.saturating_sub(1);
    file.seek(SeekFrom::Start(seek))?;
    let mut bytes = Vec::new();
    file.take(len - seek).read_to_end(&mut bytes)?;
    let text = if from > 0 {
        match bytes.iter().position(|&b| b == b'\n') {
            Some(newline) => &bytes[newline + 1..],
            None => &[][..],
        }
    } else {
        &bytes[..]
    };
    Ok(last_lines(text, lines))
}

/// The last `count` lines of `text`.
pub fn last_lines(text: &[u8], count: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(count);
    all[skip..].iter().map(|line| line.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("guest-init-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_log_rotates_at_its_limit() {
        let dir = scratch("rotate");
        let path = dir.join("docker.log");
        let mut log = RotatingLog::open(&path, 10).unwrap();
        log.append(b"12345678\n").unwrap();
        log.append(b"abc\n").unwrap(); // 9 + 4 > 10: rotates first
        assert_eq!(
            std::fs::read(dir.join("docker.log.1")).unwrap(),
            b"12345678\n"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"abc\n");
        // Larger than the limit: only the tail is kept.
        log.append(b"0123456789ABCDEF").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"6789ABCDEF");
        assert_eq!(std::fs::read(dir.join("docker.log.1")).unwrap(), b"abc\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_child_writes_through_the_sink() {
        let dir = scratch("sink");
        let path = dir.join("containerd.log");
        let sink = LogSink::start(&path, LOG_LIMIT).unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(sink.stdio().unwrap())
            .stderr(sink.stdio().unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        let start = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("out\n") && text.contains("err\n") {
                break;
            }
            assert!(start.elapsed().as_secs() < 10, "log has {text:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_returns_the_last_whole_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines(b"a\nb\nc", 5), ["a", "b", "c"]);
        assert!(last_lines(b"", 3).is_empty());

        let dir = scratch("tail");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        std::fs::write(&path, "first line\nsecond\nthird\n").unwrap();
        // 13 bytes start exactly at "second": it is whole and kept.
        assert_eq!(tail(&path, 10, 13).unwrap(), ["second", "third"]);
        // 12 bytes start inside "second": the partial line is dropped.
        assert_eq!(tail(&path, 10, 12).unwrap(), ["third"]);
        assert_eq!(tail(&path, 1, 1000).unwrap(), ["third"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
