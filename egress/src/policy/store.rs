//! Policy files on disk: JSON, read with a size bound, written atomically (a temporary file
//! next to the target, then a rename) with mode 0644, so a reader — the proxy of a running
//! sandbox — sees the old policy or the new one, never half of one.

use super::document::Policy;
use super::preset::Preset;
use super::rule::Rule;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(test)]
mod tests;

/// Largest policy file read.
pub const MAX_POLICY_FILE_LEN: u64 = 1 << 20;
/// Mode of a written policy file: the proxy and the CLI read it, only its owner writes.
const POLICY_FILE_MODE: u32 = 0o644;

/// Why a policy file could not be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read policy file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("policy file {path} is {len} bytes, more than the {MAX_POLICY_FILE_LEN}-byte limit")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("policy file {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write policy file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A policy together with the file it lives in: what `paddock policy` edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    path: PathBuf,
    policy: Policy,
}

impl PolicyFile {
    /// A policy to be saved at `path`.
    pub fn new(path: impl Into<PathBuf>, policy: Policy) -> Self {
        PolicyFile {
            path: path.into(),
            policy,
        }
    }

    /// Reads the file; a missing file is an error.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, PolicyFileError> {
        let path = path.into();
        let policy = read_policy(&path)?.ok_or_else(|| PolicyFileError::Read {
            path: path.clone(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        Ok(PolicyFile { path, policy })
    }

    /// Reads the file; a missing file is an empty policy (which, as the global one, means
    /// `balanced` without rules).
    pub fn load_or_default(path: impl Into<PathBuf>) -> Result<Self, PolicyFileError> {
        let path = path.into();
        let policy = read_policy(&path)?.unwrap_or_default();
        Ok(PolicyFile { path, policy })
    }

    /// Writes the policy to its file atomically, creating the directory if needed.
    pub fn save(&self) -> Result<(), PolicyFileError> {
        let mut json =
            serde_json::to_vec_pretty(&self.policy).map_err(|source| PolicyFileError::Write {
                path: self.path.clone(),
                source: source.into(),
            })?;
        json.push(b'\n');
        write_atomically(&self.path, &json).map_err(|source| PolicyFileError::Write {
            path: self.path.clone(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    pub fn into_policy(self) -> Policy {
        self.policy
    }

    /// Sets (or, with `None`, clears) the preset. Returns whether it changed.
    pub fn set_preset(&mut self, preset: Option<Preset>) -> bool {
        std::mem::replace(&mut self.policy.preset, preset) != preset
    }

    /// See [`Policy::add_allow`].
    pub fn add_allow(&mut self, rule: Rule) -> bool {
        self.policy.add_allow(rule)
    }

    /// See [`Policy::add_deny`].
    pub fn add_deny(&mut self, rule: Rule) -> bool {
        self.policy.add_deny(rule)
    }

    /// See [`Policy::remove`].
    pub fn remove(&mut self, rule: &Rule) -> bool {
        self.policy.remove(rule)
    }
}

/// Reads a policy file; `Ok(None)` if it does not exist.
pub fn read_policy(path: &Path) -> Result<Option<Policy>, PolicyFileError> {
    let read_error = |source| PolicyFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let mut json = Vec::new();
    file.take(MAX_POLICY_FILE_LEN + 1)
        .read_to_end(&mut json)
        .map_err(read_error)?;
    let len = json.len() as u64;
    if len > MAX_POLICY_FILE_LEN {
        return Err(PolicyFileError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|source| PolicyFileError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to a fresh temporary file next to `path`, syncs it and renames it over
/// `path`; the temporary file is removed if anything fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(POLICY_FILE_MODE)
            .open(&temp)?;
        // The umask may have narrowed the mode given at creation.
        file.set_permissions(Permissions::from_mode(POLICY_FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    File::open(dir)?.sync_all()
}
