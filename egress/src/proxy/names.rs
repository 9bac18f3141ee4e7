//! Stable addresses: every name the guest may use gets one IPv4 address in `198.18.0.0/15`,
//! derived from a hash of the name (linear probing on collision) and kept in a JSON map file
//! shared by every proxy process, so a name keeps its address across restore, reset and fork.
//!
//! The map file is only ever replaced whole (write to a temporary file, then rename), under an
//! exclusive `flock` on a sidecar `.lock` file, so readers never see half a map and two proxies
//! never hand out one address to two names.
//!
//! A `TRANSPARENT` connection to an address this process does not know makes it reread the map
//! only if the file changed (device, inode, size or times) since it was last read: misses are
//! answered from memory until another proxy writes the map.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipnet::Ipv4Net;
use paddock_protocol::egress::MAX_NAME_LEN;
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The range stable addresses come from (RFC 2544 benchmarking, never routed).
pub const STABLE_RANGE: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15);
/// Most names one map holds; past it new names get no address (the range holds ~130,000).
pub const MAX_STABLE_NAMES: usize = 100_000;
/// Largest map file read (a full map is about 5 MiB).
const MAX_MAP_FILE_BYTES: u64 = 16 << 20;
/// Number of addresses in [`STABLE_RANGE`].
const RANGE_SIZE: u32 = 1 << 17;

/// Why a stable address could not be handed out or the map not read.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    /// The map or its lock file could not be opened, locked, read or written.
    #[error("stable-name map {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The map file is not a map this proxy wrote.
    #[error("stable-name map {path} is malformed: {source}")]
    Malformed {
        /// The map file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The map file is larger than any map this proxy writes.
    #[error("stable-name map {path} is larger than {MAX_MAP_FILE_BYTES} bytes")]
    TooLarge {
        /// The map file.
        path: PathBuf,
    },
    /// [`MAX_STABLE_NAMES`] names already have an address.
    #[error("stable-name map is full ({MAX_STABLE_NAMES} names)")]
    Full,
    /// The name is empty or longer than a DNS name may be.
    #[error("name of {len} bytes cannot have a stable address")]
    BadName {
        /// Its length.
        len: usize,
    },
}

/// The map file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MapFile {
    names: BTreeMap<String, Ipv4Addr>,
}

/// What `stat` says about the map file; a different stamp means it may hold other names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl MapStamp {
    fn of(metadata: &fs::Metadata) -> Self {
        MapStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The map file as read: its names and the stamp of the file they came from (`None`: missing).
#[derive(Debug, Default)]
struct ReadMap {
    map: MapFile,
    stamp: Option<MapStamp>,
}

/// What this process knows of the map (a copy of the file as last read or written).
#[derive(Debug, Default)]
struct Known {
    by_name: HashMap<String, Ipv4Addr>,
    by_address: HashMap<Ipv4Addr, String>,
    /// The stamp of the file this copy came from.
    stamp: Option<MapStamp>,
}

impl Known {
    fn from_file(read: ReadMap) -> Self {
        let ReadMap { map, stamp } = read;
        let mut known = Known {
            stamp,
            ..Known::default()
        };
        for (name, address) in map.names {
            if is_stable(IpAddr::V4(address)) {
                known.by_address.insert(address, name.clone());
                known.by_name.insert(name, address);
            }
        }
        known
    }

    fn to_file(&self) -> MapFile {
        MapFile {
            names: self
                .by_name
                .iter()
                .map(|(name, address)| (name.clone(), *address))
                .collect(),
        }
    }
}

/// The shared name ↔ stable address map of one proxy process.
#[derive(Debug)]
pub struct StableNames {
    path: PathBuf,
    known: Mutex<Known>,
    /// How often the map file was read after opening (a cheap check that misses are cached).
    rereads: AtomicU64,
}

/// Whether `ip` lies in [`STABLE_RANGE`].
pub fn is_stable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => STABLE_RANGE.contains(&v4),
        IpAddr::V6(_) => false,
    }
}

impl StableNames {
    /// Opens the map at `path` (a missing file is an empty map; its directory is created with the
    /// first name).
    pub fn open(path: &Path) -> Result<Self, NamesError> {
        let known = Known::from_file(read_map(path)?);
        Ok(StableNames {
            path: path.to_path_buf(),
            known: Mutex::new(known),
            rereads: AtomicU64::new(0),
        })
    }

    /// The stable address of `name`, handing out a new one (and writing the map) if it has none.
    /// Blocks on the map's lock: call it off the async workers.
    pub fn address_for(&self, name: &str) -> Result<Ipv4Addr, NamesError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(NamesError::BadName { len: name.len() });
        }
        if let Some(address) = self.cached_address(name) {
            return Ok(address);
        }
        let lock = self.lock_map()?;
        let mut known = Known::from_file(read_map(&self.path)?);
        self.rereads.fetch_add(1, Ordering::Relaxed);
        let address = match known.by_name.get(name) {
            Some(address) => *address,
            None => {
                if known.by_name.len() >= MAX_STABLE_NAMES {
                    return Err(NamesError::Full);
                }
                let address = free_address_for(name, &known);
                known.by_name.insert(name.to_string(), address);
                known.by_address.insert(address, name.to_string());
                known.stamp = Some(write_map(&self.path, &known.to_file())?);
                address
            }
        };
        drop(lock);
        *self.known_guard() = known;
        Ok(address)
    }

    /// The address of `name` if this process already knows it (no file access).
    pub fn cached_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.known_guard().by_name.get(name).copied()
    }

    /// The name `address` stands for; an address this process does not know makes it reread
    /// the map if the file changed since it was last read (another proxy may have handed the
    /// address out). Blocks on a `stat`, and on file reads.
    pub fn name_for(&self, address: Ipv4Addr) -> Option<String> {
        let known_stamp = {
            let known = self.known_guard();
            if let Some(name) = known.by_address.get(&address) {
                return Some(name.clone());
            }
            known.stamp
        };
        if !is_stable(IpAddr::V4(address)) {
            return None;
        }
        match stamp_of(&self.path) {
            Ok(stamp) if stamp == known_stamp => return None,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "checking the stable-name map");
                return None;
            }
        }
        self.rereads.fetch_add(1, Ordering::Relaxed);
        match read_map(&self.path) {
            Ok(read) => {
                let known = Known::from_file(read);
                let name = known.by_address.get(&address).cloned();
                *self.known_guard() = known;
                name
            }
            Err(error) => {
                tracing::warn!(%error, "rereading the stable-name map");
                None
            }
        }
    }

    /// How often the map file was read since it was opened.
    #[cfg(test)]
    pub(crate) fn rereads(&self) -> u64 {
        self.rereads.load(Ordering::Relaxed)
    }

    fn known_guard(&self) -> MutexGuard<'_, Known> {
        // A panic while holding the lock leaves a consistent map (every update is one assignment).
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the exclusive lock shared by every proxy; released when the file is dropped.
    fn lock_map(&self) -> Result<File, NamesError> {
        let lock_path = sidecar(&self.path, ".lock");
        let io_error = |source| NamesError::Io {
            path: lock_path.clone(),
            source,
        };
        if let Some(parent) = lock_path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::create_dir_all(parent).map_err(io_error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error)?;
        flock(&file, FlockOperation::LockExclusive).map_err(|errno| io_error(errno.into()))?;
        Ok(file)
    }
}

/// The hash-derived first choice for `name`, then the next free usable address.
fn free_address_for(name: &str, known: &Known) -> Ipv4Addr {
    let digest: [u8; 32] = Sha256::digest(name.as_bytes()).into();
    let [a, b, c, d, ..] = digest;
    let mut index = u32::from_be_bytes([a, b, c, d]) % RANGE_SIZE;
    let base = u32::from(STABLE_RANGE.network());
    // The caller keeps the map below MAX_STABLE_NAMES, far under the range's usable size, so a
    // free usable address exists and this loop ends.
    loop {
        let candidate = Ipv4Addr::from(base + index);
        let last_octet = candidate.octets()[3];
        if last_octet != 0 && last_octet != 255 && !known.by_address.contains_key(&candidate) {
            return candidate;
        }
        index = (index + 1) % RANGE_SIZE;
    }
}

/// The stamp of the map file (`None`: missing).
fn stamp_of(path: &Path) -> Result<Option<MapStamp>, NamesError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(Some(MapStamp::of(&metadata))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NamesError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads the map file, stamped with the `stat` of the file actually read.
fn read_map(path: &Path) -> Result<ReadMap, NamesError> {
    let io_error = |source| NamesError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(ReadMap::default()),
        Err(error) => return Err(io_error(error)),
    };
    let stamp = Some(MapStamp::of(&file.metadata().map_err(io_error)?));
    let mut text = Vec::new();
    file.take(MAX_MAP_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io_error)?;
    if text.len() as u64 > MAX_MAP_FILE_BYTES {
        return Err(NamesError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(ReadMap {
            map: MapFile::default(),
            stamp,
        });
    }
    let map = serde_json::from_slice(&text).map_err(|source| NamesError::Malformed {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ReadMap { map, stamp })
}

/// Replaces the map file whole: temporary file, fsync, rename. Returns the new file's stamp.
fn write_map(path: &Path, map: &MapFile) -> Result<MapStamp, NamesError> {
    let temporary = sidecar(path, &format!(".tmp-{}", std::process::id()));
    let io_error = |source| NamesError::Io {
        path: temporary.clone(),
        source,
    };
    let text = serde_json::to_vec(map).map_err(|source| NamesError::Malformed {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error)?;
    file.write_all(&text).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    let placed_error = |source| NamesError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::rename(&temporary, path).map_err(placed_error)?;
    // Stamped after the rename (which may change the ctime), from the file now in place: the
    // caller holds the lock, so it is the one just written.
    let stamp = file.metadata().map_err(placed_error)?;
    Ok(MapStamp::of(&stamp))
}

/// `path` with `suffix` appended to its file name.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;
