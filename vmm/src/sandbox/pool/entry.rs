//! A warm VMM's entry in the pool: its directory, and the record of what it was started as
//! (which binary, options and environment), so that a caller claims only a VMM that behaves as
//! one it would start itself.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why an entry's record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The record is not a valid frame (corrupt, truncated, or of another version).
    #[error("the pool entry record {path} is unusable: {source}")]
    Frame {
        path: PathBuf,
        #[source]
        source: paddock_protocol::FrameError,
    },
}

/// The pool's directories under a state directory.
#[derive(Debug, Clone)]
pub struct PoolDirs {
    /// `STATE/pool`.
    pub root: PathBuf,
}

impl PoolDirs {
    /// The pool of the sandboxes under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join("pool"),
        }
    }

    /// Where idle entries wait (`pool/idle/ID`).
    pub fn idle(&self) -> PathBuf {
        self.root.join("idle")
    }

    /// Where a caller moves an entry it has taken (`pool/taken/ID`), before it becomes a
    /// sandbox's directory or is removed: the move is what makes it the caller's alone.
    pub fn taken(&self) -> PathBuf {
        self.root.join("taken")
    }

    /// The file holding how many idle VMMs the pool keeps.
    pub fn size_file(&self) -> PathBuf {
        self.root.join("size")
    }

    /// The pool's configured size (0 when never filled).
    pub fn size(&self) -> usize {
        std::fs::read_to_string(self.size_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The claim socket in an entry's directory: bound by the VMM once its VM is made.
pub const CLAIM_SOCKET: &str = "claim.sock";
/// The entry's record, written by the process that started the VMM.
pub const RECORD_FILE: &str = "entry.bin";
/// The VMM's log (its stderr), which becomes the sandbox's `vmm.log`.
pub const LOG_FILE: &str = "vmm.log";

/// What a warm VMM was started as. A caller claims it only if its own would be the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryConfig {
    /// The `paddock` binary (device, inode, size, modification time): a rebuilt or upgraded
    /// binary never gets a VMM of the old one.
    pub binary: (u64, u64, u64, i64),
    /// Whether the VMM runs under seccomp filters.
    pub seccomp: bool,
    /// The user the VMM becomes, when started by root.
    pub vmm_user: Option<(u32, u32)>,
    /// A digest of the `PADDOCK_*` and `RUST_LOG` environment the VMM was started with: those
    /// change what a VMM does (its jail, filters' mode, logging, test hooks).
    pub environment: u64,
}

impl EntryConfig {
    /// The configuration a VMM started now from `binary` with these options would have.
    pub fn current(binary: &Path, seccomp: bool, vmm_user: Option<(u32, u32)>) -> Option<Self> {
        // The binary as `Command` would find it: a bare name is looked up on PATH.
        let resolved = if binary.components().count() == 1 {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(binary))
                    .find(|candidate| candidate.is_file())
            })?
        } else {
            binary.to_path_buf()
        };
        let meta = std::fs::metadata(resolved).ok()?;
        Some(Self {
            binary: (meta.dev(), meta.ino(), meta.size(), meta.mtime()),
            seccomp,
            vmm_user,
            environment: environment_digest(std::env::vars_os()),
        })
    }
}

/// FNV-1a over the sorted `PADDOCK_*` and `RUST_LOG` variables of `vars` (stable across
/// processes and builds, unlike `std`'s hasher).
pub fn environment_digest(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut relevant: Vec<_> = vars
        .filter(|(key, _)| {
            let key = key.as_bytes();
            key.starts_with(b"PADDOCK_") || key == b"RUST_LOG"
        })
        .collect();
    relevant.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, value) in &relevant {
        for byte in key
            .as_bytes()
            .iter()
            .chain(b"=")
            .chain(value.as_bytes())
            .chain(b"\0")
        {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// An entry's record: the configuration and the host pid of the VMM's supervisor (the process
/// started; the VMM is its child).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// What the VMM was started as.
    pub config: EntryConfig,
    /// The supervisor's pid.
    pub pid: u32,
    /// When it was started (seconds since the epoch).
    pub created_unix_secs: u64,
}

impl EntryRecord {
    /// Writes the record into `dir` atomically, as a checksummed frame.
    pub fn write(&self, dir: &Path) -> Result<(), EntryError> {
        let path = dir.join(RECORD_FILE);
        let temporary = dir.join(format!("{RECORD_FILE}.new"));
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| EntryError::Io { what, path, source }
        };
        let bytes = paddock_protocol::encode_frame(self).map_err(|source| EntryError::Frame {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&temporary, bytes).map_err(io("writing", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io("renaming", &temporary))
    }

    /// Reads the record in `dir`: `None` if there is none yet.
    pub fn read(dir: &Path) -> Result<Option<Self>, EntryError> {
        let path = dir.join(RECORD_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(EntryError::Io {
                    what: "reading",
                    path,
                    source,
                })
            }
        };
        paddock_protocol::read_frame(&mut bytes.as_slice())
            .map(Some)
            .map_err(|source| EntryError::Frame { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn vars(list: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_environment_digest_covers_paddock_variables_in_any_order_and_nothing_else() {
        let base = environment_digest(vars(&[("PADDOCK_JAIL", "off"), ("RUST_LOG", "debug")]));
        let reordered = environment_digest(vars(&[
            ("HOME", "/x"),
            ("RUST_LOG", "debug"),
            ("PADDOCK_JAIL", "off"),
        ]));
        assert_eq!(base, reordered);
        assert_ne!(base, environment_digest(vars(&[("PADDOCK_JAIL", "off")])));
        assert_ne!(
            base,
            environment_digest(vars(&[("PADDOCK_JAIL", "on"), ("RUST_LOG", "debug")]))
        );
        // A value may not shift into the next variable's name.
        assert_ne!(
            environment_digest(vars(&[("PADDOCK_A", "B=C")])),
            environment_digest(vars(&[("PADDOCK_AB", "C")]))
        );
    }

    #[test]
    fn a_record_round_trips_and_a_corrupt_one_is_an_error_not_a_record() {
        let dir = tempfile::tempdir().unwrap();
        assert!(EntryRecord::read(dir.path()).unwrap().is_none());
        let record = EntryRecord {
            config: EntryConfig {
                binary: (1, 2, 3, 4),
                seccomp: true,
                vmm_user: Some((1000, 1000)),
                environment: 7,
            },
            pid: 42,
            created_unix_secs: 5,
        };
        record.write(dir.path()).unwrap();
        assert_eq!(EntryRecord::read(dir.path()).unwrap(), Some(record));
        let path = dir.path().join(RECORD_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            EntryRecord::read(dir.path()),
            Err(EntryError::Frame { .. })
        ));
    }
}
