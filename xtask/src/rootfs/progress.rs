//! Progress of a long image build on stderr: numbered steps, and while a step runs, a line every
//! few seconds with the bytes its output directory or file holds so far.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a running step reports its size.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Numbered build steps: `step 2/6: <label>`.
pub struct Steps {
    total: usize,
    done: usize,
    started: Instant,
}

impl Steps {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// Announces the next step and returns its header (`step 2/6: label`).
    pub fn next(&mut self, label: &str) -> String {
        self.done += 1;
        let header = format!("step {}/{}: {label}", self.done, self.total);
        eprintln!("xtask: {header} (at {}s)", self.started.elapsed().as_secs());
        header
    }

    /// Announces a step that has nothing to do (its result is cached).
    pub fn skip(&mut self, label: &str) {
        self.done += 1;
        eprintln!("xtask: step {}/{}: {label}", self.done, self.total);
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Reports the size of `path` every few seconds until dropped.
pub struct SizeWatch {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SizeWatch {
    /// Starts reporting `<header> … <size> so far` for `path` (a directory or a file).
    pub fn start(header: String, path: &Path) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.to_path_buf();
        let started = Instant::now();
        let thread = std::thread::spawn(move || loop {
            match stopped.recv_timeout(REPORT_EVERY) {
                Err(RecvTimeoutError::Timeout) => eprintln!(
                    "xtask: {header} … {} so far ({}s)",
                    human_bytes(disk_bytes(&path)),
                    started.elapsed().as_secs()
                ),
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for SizeWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The apparent size of the regular files under `path` (or of the file itself), staying on
/// its filesystem: a chroot being built has /proc, /sys and /dev mounted inside.
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(root) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !root.is_dir() {
        return root.len();
    }
    let device = root.dev();
    let mut total = 0;
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() && meta.dev() == device {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// `312 MiB`, `1.4 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_regular_files_below_a_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-progress-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/one"), [0u8; 1000]).unwrap();
        std::fs::write(dir.join("a/b/two"), [0u8; 24]).unwrap();
        std::os::unix::fs::symlink("one", dir.join("a/link")).unwrap();
        assert_eq!(disk_bytes(&dir), 1024);
        assert_eq!(disk_bytes(&dir.join("a/one")), 1000);
        assert_eq!(disk_bytes(&dir.join("missing")), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(312 * 1024 * 1024), "312 MiB");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.5 GiB");
    }
}
