//! Writes a root tree as a paddock disk image: an uncompressed erofs filesystem (mkfs.erofs)
//! followed by the paddock trailer (`rootfs_builder::disk_image`), checked by reading it back.

use super::progress::SizeWatch;
use anyhow::{Context, Result};
use rootfs_builder::disk_image::{self, AgentManifest, Trailer};
use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::Command;

/// Makes the erofs filesystem `image` from `tree`. Reproducible for the same tree: the UUID is
/// given, the build time is `epoch` (SOURCE_DATE_EPOCH: files newer than it are clamped to it,
/// older ones keep their time, so the .pyc files of the base stay valid). Owners, modes and
/// xattrs are kept as in the tree. Uncompressed: the emulated lab would pay for every
/// decompression.
pub fn make_filesystem(
    tree: &Path,
    image: &Path,
    epoch: u64,
    uuid: &str,
    header: String,
) -> Result<()> {
    let _watch = SizeWatch::start(header, image);
    crate::util::run(
        Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg(format!("-U{uuid}"))
            .arg(image)
            .arg(tree)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    )
}

/// Turns the filesystem `image` into a paddock disk image (padding + trailer recording
/// `agents`), then reads the trailer back and re-hashes the filesystem to check it.
pub fn seal(image: &Path, profile: &str, agents: &AgentManifest) -> Result<Trailer> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("opening {}", image.display()))?;
    let fs_len = file.metadata()?.len();
    let written = disk_image::write_trailer_with_agents(&mut file, fs_len, profile, agents)?;
    file.sync_all()?;
    let read_back = disk_image::read_trailer(&mut file)?;
    disk_image::verify_content(&mut file, &read_back)?;
    anyhow::ensure!(read_back == written, "the trailer read back differs");
    Ok(read_back)
}

/// A filesystem UUID derived from a hex cache key (its first 32 digits), so the same recipe
/// gives the same UUID.
pub fn uuid_from_key(key: &str) -> Result<String> {
    let hex = key
        .get(..32)
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .context("the cache key is not hex")?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Removes a leftover file, if any.
pub fn remove_stale(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_comes_from_the_key() {
        let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            uuid_from_key(key).unwrap(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert!(uuid_from_key("short").is_err());
        assert!(uuid_from_key(&"z".repeat(64)).is_err());
    }
}
