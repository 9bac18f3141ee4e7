//! A snapshot directory on disk: `state.bin` (the envelope in `format`) naming its memory file
//! `memory-<id>.bin`. Written crash-safely: the memory file and the state are each written to a
//! temporary name, fsynced and renamed, the state last; the directory is fsynced; only then is
//! the previous generation's memory file removed. A crash at any point leaves the earlier
//! snapshot (or none) complete and usable.

use super::format::{self, FormatError, MAX_STATE_BYTES};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The state file's name inside a snapshot directory.
pub const STATE_FILE: &str = "state.bin";
const MEMORY_PREFIX: &str = "memory-";
const MEMORY_SUFFIX: &str = ".bin";
/// Prefix of the temporaries written in a snapshot directory (a crashed writer's are removed).
pub const TMP_PREFIX: &str = ".tmp-";

/// Why a snapshot directory could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory holds no snapshot.
    #[error("{0} holds no paddock snapshot (no {STATE_FILE})")]
    Missing(PathBuf),
    /// The state file is damaged or foreign.
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    /// The state names a memory file that is not a plain name inside the directory.
    #[error("snapshot state names an invalid memory file {0:?}")]
    BadMemoryName(String),
    /// The memory file is shorter (or longer) than the guest's memory.
    #[error("snapshot memory file {path} is {have} bytes, expected {want} (truncated or foreign)")]
    MemorySize { path: PathBuf, have: u64, want: u64 },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// A fresh memory file name for a new snapshot generation.
pub fn new_memory_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{MEMORY_PREFIX}{nanos:x}-{}{MEMORY_SUFFIX}",
        std::process::id()
    )
}

fn valid_memory_name(name: &str) -> bool {
    name.starts_with(MEMORY_PREFIX)
        && name.ends_with(MEMORY_SUFFIX)
        && !name.contains('/')
        && name.len() < 128
}

/// Writes a snapshot into `dir`: `fill_memory` writes the (pre-sized, temporary) memory file,
/// then `state` is written naming `memory_name`. Replaces any earlier snapshot atomically.
pub fn write<S, F>(
    dir: &Path,
    memory_name: &str,
    memory_size: u64,
    state: &S,
    fill_memory: F,
) -> Result<(), StoreError>
where
    S: Serialize,
    F: FnOnce(&File) -> Result<(), std::io::Error>,
{
    if !valid_memory_name(memory_name) {
        return Err(StoreError::BadMemoryName(memory_name.to_string()));
    }
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    remove_stale_temporaries(dir);

    let mem_tmp = dir.join(format!("{TMP_PREFIX}{memory_name}"));
    let mem_final = dir.join(memory_name);
    {
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&mem_tmp)
            .map_err(io_err("creating", &mem_tmp))?;
        file.set_len(memory_size)
            .map_err(io_err("sizing", &mem_tmp))?;
        fill_memory(&file).map_err(io_err("writing", &mem_tmp))?;
        file.sync_all().map_err(io_err("syncing", &mem_tmp))?;
    }
    std::fs::rename(&mem_tmp, &mem_final).map_err(io_err("renaming", &mem_tmp))?;

    let bytes = format::encode(state).map_err(|source| StoreError::Format {
        path: dir.join(STATE_FILE),
        source,
    })?;
    let state_tmp = dir.join(format!("{TMP_PREFIX}{STATE_FILE}"));
    {
        let mut file = File::create(&state_tmp).map_err(io_err("creating", &state_tmp))?;
        file.write_all(&bytes)
            .map_err(io_err("writing", &state_tmp))?;
        file.sync_all().map_err(io_err("syncing", &state_tmp))?;
    }
    std::fs::rename(&state_tmp, dir.join(STATE_FILE)).map_err(io_err("renaming", &state_tmp))?;
    fsync_dir(dir)?;

    // The new generation is durable: older memory files are unreferenced now, and so is the
    // working set recorded from the old one.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if (valid_memory_name(&name) && name != memory_name)
                || name == super::working_set::FILE_NAME
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// Removes temporaries a crashed writer left behind (never anything a state file names).
fn remove_stale_temporaries(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads and checks `dir/state.bin`; returns the state and the path of its memory file.
/// `memory_name` and `memory_size` extract those fields from the decoded state.
pub fn read<S: DeserializeOwned>(
    dir: &Path,
    memory_of: impl Fn(&S) -> (&str, u64),
) -> Result<(S, PathBuf), StoreError> {
    let state_path = dir.join(STATE_FILE);
    let file = match File::open(&state_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing(dir.to_path_buf()))
        }
        Err(e) => {
            return Err(StoreError::Io {
                what: "opening",
                path: state_path,
                source: e,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES + format::HEADER_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", &state_path))?;
    let state: S = format::decode(&bytes).map_err(|source| StoreError::Format {
        path: state_path.clone(),
        source,
    })?;
    let (name, size) = memory_of(&state);
    if !valid_memory_name(name) {
        return Err(StoreError::BadMemoryName(name.to_string()));
    }
    let mem_path = dir.join(name);
    let have = std::fs::metadata(&mem_path)
        .map_err(io_err("opening", &mem_path))?
        .len();
    if have != size {
        return Err(StoreError::MemorySize {
            path: mem_path,
            have,
            want: size,
        });
    }
    Ok((state, mem_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct St {
        mem: String,
        size: u64,
        tag: u32,
    }

    fn snap(dir: &Path, tag: u32) -> String {
        let name = new_memory_name();
        let st = St {
            mem: name.clone(),
            size: 8192,
            tag,
        };
        write(dir, &name, 8192, &st, |f| {
            f.write_all_at(&[u8::try_from(tag).unwrap(); 10], 0)
        })
        .unwrap();
        name
    }

    use std::os::unix::fs::FileExt;

    #[test]
    fn write_read_and_replace() {
        let d = tempfile::tempdir().unwrap();
        let first = snap(d.path(), 1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = snap(d.path(), 2);
        assert_ne!(first, second);
        let (st, mem): (St, _) = read(d.path(), |s: &St| (s.mem.as_str(), s.size)).unwrap();
        assert_eq!(st.tag, 2);
        assert!(!d.path().join(&first).exists(), "old generation removed");
        let mut b = [0u8; 1];
        File::open(mem).unwrap().read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b, [2]);
    }

    #[test]
    fn interrupted_writer_leaves_the_previous_snapshot_usable() {
        let d = tempfile::tempdir().unwrap();
        snap(d.path(), 1);
        let name = new_memory_name();
        let st = St {
            mem: name.clone(),
            size: 8192,
            tag: 9,
        };
        let err = write(d.path(), &name, 8192, &st, |_| {
            Err(std::io::Error::other("killed"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("killed"));
        let (st, _): (St, _) = read(d.path(), |s: &St| (s.mem.as_str(), s.size)).unwrap();
        assert_eq!(st.tag, 1);
        // The next write cleans the temporaries up.
        snap(d.path(), 3);
        assert!(std::fs::read_dir(d.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(TMP_PREFIX)));
    }

    #[test]
    fn truncated_memory_and_missing_state_are_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(d.path(), |s: &St| (s.mem.as_str(), s.size)),
            Err(StoreError::Missing(_))
        ));
        let name = snap(d.path(), 1);
        OpenOptions::new()
            .write(true)
            .open(d.path().join(&name))
            .unwrap()
            .set_len(4096)
            .unwrap();
        let err = read(d.path(), |s: &St| (s.mem.as_str(), s.size)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::MemorySize {
                    have: 4096,
                    want: 8192,
                    ..
                }
            ),
            "{err}"
        );
    }
}
