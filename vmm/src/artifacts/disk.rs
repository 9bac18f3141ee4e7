//! Opening the disks a sandbox's virtio-blk devices serve, and finding them again on restore:
//! the read-only root image (a paddock image: a filesystem plus a trailer with magic, version,
//! SHA-256 and checksum) and an optional writable scratch disk (a raw file).
//!
//! A root image is identified by content: the SHA-256 its trailer records, checked against the
//! filesystem bytes the first time each version of the file is used (and remembered, so a
//! multi-GiB image is not re-read on every start). A snapshot records that identity; a restore
//! refuses an image whose content differs, and finds a moved identical one when pointed at it.

use super::digest::{ContentDigest, DigestCache, DigestError, Remembered};
use crate::devices::virtio::block::{BlockConfig, DiskIdentity, DiskSerial, SECTOR_SIZE};
use rootfs_builder::disk_image::{self, ImageError};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Why a disk could not be opened or was not the one expected.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file is not there.
    #[error("the {what} {path} does not exist{hint}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// Opening or examining it failed.
    #[error("cannot open the {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// It is not a usable paddock image (foreign file, damaged trailer, truncated, corrupt
    /// content).
    #[error("{path} is not a usable paddock root image: {source}")]
    BadImage { path: PathBuf, source: ImageError },
    /// Identifying it failed.
    #[error(transparent)]
    Identify(#[from] DigestError),
    /// A snapshot's image was replaced by one with other content.
    #[error(
        "the root image {path} changed since the snapshot was taken (its content is {found}, the \
         snapshot's was {saved}); restore with --image pointing at the original image, or make a \
         new snapshot"
    )]
    Changed {
        path: PathBuf,
        saved: String,
        found: String,
    },
    /// A scratch disk must hold whole sectors.
    #[error("the scratch disk {path} is {len} bytes: it must be a non-zero multiple of 512")]
    ScratchSize { path: PathBuf, len: u64 },
}

/// A disk ready to hand to a block device.
#[derive(Debug)]
pub struct OpenedDisk {
    /// The backing file (read-only for an image, read-write for a scratch disk).
    pub file: File,
    /// What the guest sees of it, and its identity.
    pub config: BlockConfig,
}

const MOVED_HINT: &str = " (if the image moved, pass its new path with --image)";

/// The verified content identity of the paddock image at `path`: its trailer's SHA-256, once
/// the filesystem bytes are checked against it (remembered per file version).
pub fn image_identity(path: &Path, digests: &DigestCache) -> Result<ContentDigest, DiskError> {
    let verified = digests.remembered(path, "paddock-image", |file| {
        let trailer = disk_image::read_trailer(file)?;
        disk_image::verify_content(file, &trailer)?;
        Ok::<_, ImageError>(ContentDigest(*trailer.fs_sha256()))
    });
    verified.map_err(|e| match e {
        Remembered::Read(DigestError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            DiskError::Missing {
                what: "root image",
                path: path.to_path_buf(),
                hint: "",
            }
        }
        Remembered::Read(e) => DiskError::Identify(e),
        Remembered::Compute(source) => DiskError::BadImage {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Opens the root image at `path` read-only: checks its format and content, and describes it
/// for the block device (the guest sees the filesystem, not the trailer).
pub fn open_root_image(path: &Path, digests: &DigestCache) -> Result<OpenedDisk, DiskError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let digest = image_identity(&path, digests)?;
    let mut file = File::open(&path).map_err(|source| open_err("root image", &path, source))?;
    let trailer = disk_image::read_trailer(&mut file).map_err(|source| DiskError::BadImage {
        path: path.clone(),
        source,
    })?;
    if trailer.fs_sha256() != &digest.0 {
        // Replaced between the check and the open: refuse rather than serve unverified bytes.
        return Err(DiskError::Changed {
            path,
            saved: digest.hex(),
            found: trailer.digest_hex(),
        });
    }
    let len = file
        .metadata()
        .map_err(|source| open_err("root image", &path, source))?
        .len();
    Ok(OpenedDisk {
        file,
        config: BlockConfig {
            exposed_len: trailer.fs_len(),
            read_only: true,
            serial: DiskSerial::from_digest(&digest.0),
            identity: DiskIdentity {
                path,
                digest: Some(digest.0),
                len,
                read_only: true,
            },
        },
    })
}

/// Opens a writable scratch disk (a raw file of whole sectors).
pub fn open_scratch_disk(path: &Path) -> Result<OpenedDisk, DiskError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| open_err("scratch disk", &path, source))?;
    let len = file
        .metadata()
        .map_err(|source| open_err("scratch disk", &path, source))?
        .len();
    if len == 0 || len % SECTOR_SIZE != 0 {
        return Err(DiskError::ScratchSize { path, len });
    }
    let serial =
        DiskSerial::new(b"paddock-scratch").unwrap_or_else(|_| DiskSerial::from_digest(&[0; 32]));
    Ok(OpenedDisk {
        file,
        config: BlockConfig {
            exposed_len: len,
            read_only: false,
            serial,
            identity: DiskIdentity {
                path,
                digest: None,
                len,
                read_only: false,
            },
        },
    })
}

/// Reopens the disk a snapshot names: an image by content (at `moved_to` when given, else at
/// its recorded path), a scratch disk at its recorded path. Returns the file and the identity
/// the restored device carries (the path where it was found).
pub fn reopen(
    saved: &DiskIdentity,
    moved_to: Option<&Path>,
    digests: &DigestCache,
) -> Result<(File, DiskIdentity), DiskError> {
    let Some(saved_digest) = saved.digest else {
        let disk = open_scratch_disk(&saved.path)?;
        return Ok((disk.file, saved.clone()));
    };
    let path = moved_to.map_or_else(|| saved.path.clone(), Path::to_path_buf);
    if !path.exists() {
        return Err(DiskError::Missing {
            what: "root image",
            path,
            hint: MOVED_HINT,
        });
    }
    let disk = open_root_image(&path, digests)?;
    let found = disk.config.identity.digest.unwrap_or_default();
    if found != saved_digest || disk.config.identity.len != saved.len {
        return Err(DiskError::Changed {
            path,
            saved: ContentDigest(saved_digest).hex(),
            found: ContentDigest(found).hex(),
        });
    }
    Ok((disk.file, disk.config.identity))
}

fn open_err(what: &'static str, path: &Path, source: std::io::Error) -> DiskError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DiskError::Missing {
            what,
            path: path.to_path_buf(),
            hint: "",
        }
    } else {
        DiskError::Open {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A small paddock image: `fs` bytes of "filesystem" and a trailer.
    fn image(dir: &Path, name: &str, fs: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(fs).unwrap();
        disk_image::write_trailer(&mut f, fs.len() as u64, "agent").unwrap();
        path
    }

    #[test]
    fn an_image_opens_read_only_and_the_guest_sees_no_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let digests = DigestCache::new(dir.path().join("d"));
        let path = image(dir.path(), "a.img", &[7u8; 10_000]);
        let disk = open_root_image(&path, &digests).unwrap();
        assert_eq!(
            disk.config.exposed_len, 12_288,
            "padded to 4 KiB, trailer excluded"
        );
        assert!(disk.config.read_only);
        assert_eq!(disk.config.identity.len, 12_288 + 4096);
        assert!(disk.config.identity.digest.is_some());
    }

    #[test]
    fn foreign_corrupt_and_missing_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let digests = DigestCache::new(dir.path().join("d"));
        let foreign = dir.path().join("foreign.img");
        std::fs::write(&foreign, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            open_root_image(&foreign, &digests),
            Err(DiskError::BadImage { .. })
        ));
        let path = image(dir.path(), "b.img", &[1u8; 4096]);
        {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(b"X", 100).unwrap();
        }
        let err = open_root_image(&path, &digests).unwrap_err();
        assert!(matches!(err, DiskError::BadImage { .. }), "{err}");
        let err = open_root_image(&dir.path().join("nope.img"), &digests).unwrap_err();
        assert!(matches!(err, DiskError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope.img"));
    }

    #[test]
    fn a_moved_image_is_found_and_a_changed_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let digests = DigestCache::new(dir.path().join("d"));
        let path = image(dir.path(), "c.img", &[3u8; 4096]);
        let saved = open_root_image(&path, &digests).unwrap().config.identity;
        let moved = dir.path().join("moved.img");
        std::fs::rename(&path, &moved).unwrap();
        let err = reopen(&saved, None, &digests).unwrap_err();
        assert!(err.to_string().contains("--image"), "{err}");
        let (_, identity) = reopen(&saved, Some(&moved), &digests).unwrap();
        assert!(identity.same_disk(&saved));
        assert_eq!(identity.path, moved);
        let other = image(dir.path(), "other.img", &[4u8; 4096]);
        let err = reopen(&saved, Some(&other), &digests).unwrap_err();
        assert!(matches!(err, DiskError::Changed { .. }), "{err}");
    }

    #[test]
    fn scratch_disks_need_whole_sectors() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("odd");
        std::fs::write(&odd, vec![0; 1000]).unwrap();
        assert!(matches!(
            open_scratch_disk(&odd),
            Err(DiskError::ScratchSize { len: 1000, .. })
        ));
        let good = dir.path().join("good");
        std::fs::write(&good, vec![0; 4096]).unwrap();
        let disk = open_scratch_disk(&good).unwrap();
        assert!(!disk.config.read_only);
        assert_eq!(disk.config.identity.digest, None);
        let (_, identity) = reopen(
            &disk.config.identity,
            None,
            &DigestCache::new(dir.path().join("d")),
        )
        .unwrap();
        assert_eq!(identity, disk.config.identity);
    }
}
