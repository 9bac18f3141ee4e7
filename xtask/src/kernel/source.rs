//! The kernel source to build: Debian's `linux-source` tarball by default, or a tarball or an
//! unpacked tree the user names. Gives each an identity for the cache key and an unpacked tree
//! outside the checkout.

use crate::tools::{self, Tool};
use crate::util;
use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian's `linux-source-<version>` packages put their tarball.
const DEBIAN_SOURCE_DIR: &str = "/usr/src";

pub enum KernelSource {
    /// A `.tar.{xz,gz,bz2}` holding one kernel tree (or the tree at its top level).
    Tarball(PathBuf),
    /// An unpacked, clean kernel tree; it is only read (the build goes to a separate `O=` dir).
    Directory(PathBuf),
}

impl KernelSource {
    /// The user's `--source`, else the newest `/usr/src/linux-source-*.tar.xz` (apt-installing
    /// Debian's `linux-source` when there is none).
    pub fn locate(explicit: Option<&Path>) -> Result<Self> {
        if let Some(path) = explicit {
            let path = fs::canonicalize(path)
                .with_context(|| format!("kernel source {}", path.display()))?;
            return Ok(if path.is_dir() {
                Self::Directory(path)
            } else {
                Self::Tarball(path)
            });
        }
        if let Some(tarball) = newest_debian_tarball()? {
            return Ok(Self::Tarball(tarball));
        }
        tools::ensure(&[Tool::LinuxSource])?;
        newest_debian_tarball()?
            .map(Self::Tarball)
            .with_context(|| format!("linux-source is installed but {DEBIAN_SOURCE_DIR} holds no linux-source-*.tar.xz"))
    }

    /// Changes whenever the source's content does. A tarball is identified by the SHA-256 of its
    /// bytes (so a copy or a re-download hits the same cache entry), remembered per file stat so
    /// a cache hit stays instant (hashing 140 MB takes seconds in xtask's debug build). A
    /// directory is too big to hash (~1 GB); it is identified by its path and every entry's
    /// relative path, size and mtime, which catches any edit made with ordinary tools.
    pub fn identity(&self) -> Result<String> {
        match self {
            Self::Tarball(path) => Ok(format!("tarball sha256:{}", tarball_sha256(path)?)),
            Self::Directory(path) => {
                let mut entries = Vec::new();
                list_tree(path, path, &mut entries)?;
                entries.sort();
                let listing = util::hash_parts(entries.iter().map(String::as_bytes));
                Ok(format!("directory {} listing:{listing}", path.display()))
            }
        }
    }

    /// A kernel tree ready for `make O=<build dir>`: the directory itself, or the tarball unpacked
    /// (once) into `<cache>/kernel-src/<identity hash>/`.
    pub fn tree(&self, identity: &str) -> Result<PathBuf> {
        let tree = match self {
            Self::Directory(path) => path.clone(),
            Self::Tarball(path) => unpack(path, identity)?,
        };
        ensure!(
            tree.join("scripts/kconfig/merge_config.sh").is_file()
                && tree.join("Kconfig").is_file(),
            "{} does not look like a Linux source tree",
            tree.display()
        );
        // Kbuild refuses O= builds from a tree configured in place; say how to fix it up front.
        if tree.join(".config").exists() || tree.join("include/config").exists() {
            bail!(
                "{} has been configured in place (it has .config or include/config); \
                 run `make mrproper` there or pass a clean tree",
                tree.display()
            );
        }
        Ok(tree)
    }
}

/// The newest `linux-source-<version>.tar.xz` under /usr/src, by version number.
fn newest_debian_tarball() -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(DEBIAN_SOURCE_DIR) else {
        return Ok(None);
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(version) = name
            .strip_prefix("linux-source-")
            .and_then(|rest| rest.strip_suffix(".tar.xz"))
        {
            found.push((version_key(version), path));
        }
    }
    found.sort();
    Ok(found.pop().map(|(_, path)| path))
}

/// "6.10" sorts after "6.9": compare the dot-separated numeric parts as numbers.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(['.', '-'])
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// The tarball's SHA-256, memoised under `<cache>/kernel-src/sha256/` by a key over its path,
/// size, inode, mtime and ctime (git's index trusts the same stat data; ctime cannot be set back
/// by `touch`, so a rewritten file always gets hashed again).
fn tarball_sha256(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("kernel source {}", path.display()))?;
    let stat = format!(
        "{}\0{}\0{}\0{}.{}\0{}.{}",
        path.display(),
        meta.len(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let memo = util::cache_dir()
        .join("kernel-src/sha256")
        .join(util::hash_parts([stat]));
    if let Ok(known) = fs::read_to_string(&memo) {
        if known.len() == 64 && known.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(known);
        }
    }
    let digest = sha256_file(path)?;
    fs::create_dir_all(memo.parent().context("memo has a parent")?)?;
    fs::write(&memo, &digest)?;
    Ok(digest)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Appends `relative path, size, mtime` for every entry below `dir` (symlinks not followed).
fn list_tree(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        let relative = path.strip_prefix(root).unwrap_or(&path);
        out.push(format!(
            "{}\0{}\0{}.{}",
            relative.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        ));
        if meta.is_dir() {
            list_tree(root, &path, out)?;
        }
    }
    Ok(())
}

/// Unpacks `tarball` into `<cache>/kernel-src/<hash>/` unless already there (an interrupted
/// unpack is redone: it only ever lands in place by a final rename) and returns the kernel tree.
fn unpack(tarball: &Path, identity: &str) -> Result<PathBuf> {
    let sources = util::cache_dir().join("kernel-src");
    let key = util::hash_parts([identity]);
    let dest = sources.join(&key);
    if !dest.is_dir() {
        let partial = sources.join(format!(".{key}.partial"));
        if partial.exists() {
            fs::remove_dir_all(&partial)?;
        }
        fs::create_dir_all(&partial)?;
        tools::ensure(&[Tool::Tar, decompressor(tarball)])?;
        eprintln!(
            "xtask: unpacking {} into {}",
            tarball.display(),
            dest.display()
        );
        util::run(
            Command::new("tar")
                .arg("-xf")
                .arg(tarball)
                .arg("-C")
                .arg(&partial)
                .stdout(Stdio::from(std::io::stderr())),
        )?;
        fs::rename(&partial, &dest)?;
    }
    top_level_tree(&dest)
}

/// The program tar runs to decompress `tarball` (by its name: .xz, .bz2, else gzip).
fn decompressor(tarball: &Path) -> Tool {
    let name = tarball.to_string_lossy();
    if name.ends_with(".xz") {
        Tool::Xz
    } else if name.ends_with(".bz2") {
        Tool::Bzip2
    } else {
        Tool::Gzip
    }
}

/// Tarballs hold the tree either at their top level or inside a single directory.
fn top_level_tree(unpacked: &Path) -> Result<PathBuf> {
    if unpacked.join("Makefile").is_file() {
        return Ok(unpacked.to_path_buf());
    }
    let dirs: Vec<PathBuf> = fs::read_dir(unpacked)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("Makefile").is_file())
        .collect();
    match dirs.as_slice() {
        [tree] => Ok(tree.clone()),
        _ => bail!("{} holds no single kernel tree", unpacked.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_key("6.10") > version_key("6.9"));
        assert!(version_key("6.1.0") > version_key("6.1"));
        assert_eq!(version_key("6.1"), [6, 1]);
    }

    #[test]
    fn directory_identity_follows_content_changes() {
        let dir = std::env::temp_dir().join(format!("xtask-kernel-src-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/file.c"), "int a;").unwrap();
        let source = KernelSource::Directory(dir.clone());
        let before = source.identity().unwrap();
        assert_eq!(
            before,
            source.identity().unwrap(),
            "stable while nothing changes"
        );
        fs::write(dir.join("sub/file.c"), "int ab;").unwrap();
        let edited = source.identity().unwrap();
        assert_ne!(before, edited, "a size change must change the identity");
        fs::write(dir.join("new.c"), "").unwrap();
        assert_ne!(
            edited,
            source.identity().unwrap(),
            "a new file must change the identity"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_the_tree_inside_a_single_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-kernel-top-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("linux-6.1")).unwrap();
        assert!(top_level_tree(&dir).is_err(), "no Makefile anywhere");
        fs::write(dir.join("linux-6.1/Makefile"), "").unwrap();
        assert_eq!(top_level_tree(&dir).unwrap(), dir.join("linux-6.1"));
        fs::write(dir.join("Makefile"), "").unwrap();
        assert_eq!(top_level_tree(&dir).unwrap(), dir);
        fs::remove_dir_all(&dir).unwrap();
    }
}
