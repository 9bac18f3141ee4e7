//! Content digests of host artifacts (kernels, initramfs, disk images), remembered per file
//! version: a file is hashed once, and again only when its identity (device, inode, size,
//! modification and change times) changes, so identifying a multi-GiB image costs a `stat` on
//! every start after the first.

use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A SHA-256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ContentDigest(pub [u8; 32]);

impl ContentDigest {
    /// Lower-case hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentDigest({})", self.hex())
    }
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Why a file's digest could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The file could not be opened, read or examined.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileVersion {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    fn render(&self, digest: &ContentDigest) -> String {
        format!(
            "paddock-digest-1 {} {} {} {} {} {}\n",
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            digest.hex()
        )
    }

    fn parse(text: &str) -> Option<(Self, ContentDigest)> {
        let mut fields = text.split_ascii_whitespace();
        if fields.next()? != "paddock-digest-1" {
            return None;
        }
        let version = Self {
            dev: fields.next()?.parse().ok()?,
            ino: fields.next()?.parse().ok()?,
            size: fields.next()?.parse().ok()?,
            mtime_ns: fields.next()?.parse().ok()?,
            ctime_ns: fields.next()?.parse().ok()?,
        };
        let digest = ContentDigest::from_hex(fields.next()?)?;
        fields.next().is_none().then_some((version, digest))
    }
}

/// Why [`DigestCache::remembered`] failed.
#[derive(Debug)]
pub enum Remembered<E> {
    /// The file could not be opened or examined.
    Read(DigestError),
    /// The computation refused the file.
    Compute(E),
}

/// Remembered digests under one directory (`<cache>/digests`), one small file per artifact path.
/// Losing or corrupting the directory only costs a re-hash.
#[derive(Clone, Debug)]
pub struct DigestCache {
    dir: PathBuf,
}

impl DigestCache {
    /// Digests remembered under `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The default cache: `<paddock cache>/digests`.
    pub fn default_location() -> Self {
        Self::new(crate::config::cache_dir().join("digests"))
    }

    /// The SHA-256 of `path`'s content, hashed now unless this exact file version was hashed before.
    pub fn digest(&self, path: &Path) -> Result<ContentDigest, DigestError> {
        self.remembered(path, "file", |file| {
            hash_reader(file).map_err(|source| DigestError::Read {
                path: path.to_path_buf(),
                source,
            })
        })
        .map_err(|e| match e {
            Remembered::Read(e) | Remembered::Compute(e) => e,
        })
    }

    /// A digest of `path` that `compute` derives from the open file (e.g. a verified image
    /// identity), computed once per file version and kind and remembered.
    pub fn remembered<E>(
        &self,
        path: &Path,
        kind: &str,
        compute: impl FnOnce(&mut File) -> Result<ContentDigest, E>,
    ) -> Result<ContentDigest, Remembered<E>> {
        let read_err = |source| {
            Remembered::Read(DigestError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut file = File::open(path).map_err(read_err)?;
        let before = FileVersion::of(&file.metadata().map_err(read_err)?);
        let entry = self.entry_path(path, kind);
        if let Some((version, digest)) = std::fs::read_to_string(&entry)
            .ok()
            .as_deref()
            .and_then(FileVersion::parse)
        {
            if version == before {
                return Ok(digest);
            }
        }
        let digest = compute(&mut file).map_err(Remembered::Compute)?;
        // A file changed while it was read is not remembered (the next call computes again).
        let after = FileVersion::of(&file.metadata().map_err(read_err)?);
        if after == before {
            self.remember(&entry, &before.render(&digest));
        }
        Ok(digest)
    }

    fn entry_path(&self, path: &Path, kind: &str) -> PathBuf {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut hasher = Sha256::new();
        hasher.update(kind.as_bytes());
        hasher.update([0]);
        hasher.update(absolute.as_os_str().as_encoded_bytes());
        self.dir.join(ContentDigest(hasher.finalize().into()).hex())
    }

    /// Best effort: a cache that cannot be written is only slower.
    fn remember(&self, entry: &Path, line: &str) {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let tmp = entry.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&tmp, line).is_ok() && std::fs::rename(&tmp, entry).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// SHA-256 of everything `reader` yields.
pub fn hash_reader(reader: &mut impl Read) -> std::io::Result<ContentDigest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ContentDigest(hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let d = ContentDigest([0xab; 32]);
        assert_eq!(ContentDigest::from_hex(&d.hex()), Some(d));
        assert_eq!(ContentDigest::from_hex("ab"), None);
        assert_eq!(ContentDigest::from_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_file_is_hashed_once_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new(dir.path().join("digests"));
        let file = dir.path().join("artifact");
        std::fs::write(&file, b"hello").unwrap();
        let first = cache.digest(&file).unwrap();
        assert_eq!(
            first.hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        // The remembered entry is used: poison it with another digest but the same version and
        // the cache answers from it (proving no re-hash happened).
        let entry = cache.entry_path(&file, "file");
        let text = std::fs::read_to_string(&entry).unwrap();
        let (version, _) = FileVersion::parse(&text).unwrap();
        std::fs::write(&entry, version.render(&ContentDigest([7; 32]))).unwrap();
        assert_eq!(cache.digest(&file).unwrap(), ContentDigest([7; 32]));
        // A new version of the file is hashed again.
        std::fs::write(&file, b"hello, world").unwrap();
        let second = cache.digest(&file).unwrap();
        assert_ne!(second, first);
        assert_ne!(second, ContentDigest([7; 32]));
    }

    #[test]
    fn a_corrupt_entry_only_costs_a_rehash() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new(dir.path().join("digests"));
        let file = dir.path().join("artifact");
        std::fs::write(&file, b"x").unwrap();
        let good = cache.digest(&file).unwrap();
        std::fs::write(cache.entry_path(&file, "file"), b"garbage\0\xff").unwrap();
        assert_eq!(cache.digest(&file).unwrap(), good);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new(dir.path().join("digests"));
        let err = cache.digest(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
