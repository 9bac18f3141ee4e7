//! Keeps a running proxy's policy current: before each connection the proxy asks
//! [`PolicyWatcher::current`], which `stat`s the global and sandbox files and rereads them only
//! when one changed (device, inode, size, mtime or ctime differ, or it appeared or vanished).
//! A `paddock policy` edit so applies to the next connection, at the cost of two `stat`s.
//!
//! A file that cannot be read (out of file descriptors, …) is tried again on the next call; a
//! file that was read but is corrupt keeps the last good policy, with one warning, until it
//! changes.

use super::document::Policy;
use super::effective::EffectivePolicy;
use super::store::{read_policy, PolicyFileError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(test)]
mod tests;

/// What `stat` says about a file; a different stamp means the file may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// Stamps of the global and the sandbox file (`None`: missing or not watched).
type Stamps = (Option<FileStamp>, Option<FileStamp>);

#[derive(Debug)]
struct Loaded {
    stamps: Stamps,
    policy: Arc<EffectivePolicy>,
}

/// The effective policy of one sandbox, reloaded when its files change.
#[derive(Debug)]
pub struct PolicyWatcher {
    global_path: PathBuf,
    sandbox_path: Option<PathBuf>,
    loaded: Mutex<Loaded>,
    /// A read failure was already warned about; cleared by the next successful check.
    read_failure_warned: AtomicBool,
}

impl PolicyWatcher {
    /// Loads the global policy file and, if given, the sandbox's (either may be missing).
    pub fn new(
        global_path: impl Into<PathBuf>,
        sandbox_path: Option<PathBuf>,
    ) -> Result<Self, PolicyFileError> {
        let global_path = global_path.into();
        let stamps = stamp_both(&global_path, sandbox_path.as_deref())?;
        let policy = load_both(&global_path, sandbox_path.as_deref())?;
        Ok(PolicyWatcher {
            global_path,
            sandbox_path,
            loaded: Mutex::new(Loaded {
                stamps,
                policy: Arc::new(policy),
            }),
            read_failure_warned: AtomicBool::new(false),
        })
    }

    /// The current policy. If a changed file cannot be parsed, the last good policy stays in
    /// force and the error is logged once (until the file changes again); if it cannot be read,
    /// the last good policy is returned and the read is tried again on the next call (the error
    /// is logged once per run of failures).
    pub fn current(&self) -> Arc<EffectivePolicy> {
        match self.refresh() {
            Ok(policy) => {
                self.read_failure_warned.store(false, Ordering::Relaxed);
                policy
            }
            Err(error) => {
                let retried = is_retried(&error);
                if !retried || !self.read_failure_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error_chain(&error),
                        retried,
                        "egress policy not reloaded; the last good policy stays in force"
                    );
                }
                self.lock().policy.clone()
            }
        }
    }

    /// Rereads the files if they changed. A file that could not be read is tried again on the
    /// next call; one that is corrupt (or too large) is reported once, and until the files
    /// change again the last good policy is returned.
    pub fn refresh(&self) -> Result<Arc<EffectivePolicy>, PolicyFileError> {
        self.refresh_with(load_both)
    }

    /// [`PolicyWatcher::refresh`] with `load` reading the files (tests inject failures).
    fn refresh_with(
        &self,
        load: impl FnOnce(&Path, Option<&Path>) -> Result<EffectivePolicy, PolicyFileError>,
    ) -> Result<Arc<EffectivePolicy>, PolicyFileError> {
        let mut loaded = self.lock();
        let stamps = stamp_both(&self.global_path, self.sandbox_path.as_deref())?;
        if stamps == loaded.stamps {
            return Ok(loaded.policy.clone());
        }
        // The stamps are taken before reading: a change during the read shows up as a new stamp
        // next time. They are kept only once the content was read: a failed read is retried.
        match load(&self.global_path, self.sandbox_path.as_deref()) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                loaded.stamps = stamps;
                loaded.policy = policy.clone();
                Ok(policy)
            }
            Err(error) => {
                if !is_retried(&error) {
                    loaded.stamps = stamps;
                }
                Err(error)
            }
        }
    }

    pub fn global_path(&self) -> &Path {
        &self.global_path
    }

    pub fn sandbox_path(&self) -> Option<&Path> {
        self.sandbox_path.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Loaded> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a load that failed with `error` is tried again on the next call (the file could not
/// be read) rather than waiting for the file to change (its content is bad).
fn is_retried(error: &PolicyFileError) -> bool {
    match error {
        PolicyFileError::Read { .. } | PolicyFileError::Write { .. } => true,
        PolicyFileError::TooLarge { .. } | PolicyFileError::Corrupt { .. } => false,
    }
}

fn load_both(global: &Path, sandbox: Option<&Path>) -> Result<EffectivePolicy, PolicyFileError> {
    let global = read_policy(global)?.unwrap_or_default();
    let sandbox = match sandbox {
        Some(path) => read_policy(path)?,
        None => None,
    };
    Ok(Policy::layered(&global, sandbox.as_ref()))
}

fn stamp_both(global: &Path, sandbox: Option<&Path>) -> Result<Stamps, PolicyFileError> {
    let sandbox = match sandbox {
        Some(path) => stamp(path)?,
        None => None,
    };
    Ok((stamp(global)?, sandbox))
}

fn stamp(path: &Path) -> Result<Option<FileStamp>, PolicyFileError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PolicyFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
