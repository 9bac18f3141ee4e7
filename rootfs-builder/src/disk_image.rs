//! The paddock disk image format: a read-only filesystem followed by one trailer block that
//! names, versions and checksums it.
//!
//! # Layout
//!
//! ```text
//! offset 0          the filesystem (erofs), zero-padded to a multiple of 4096 bytes = fs_len
//! offset fs_len     the trailer: one 4096-byte block
//! file size         fs_len + 4096
//! ```
//!
//! The guest sees only the first `fs_len` bytes (the VMM exposes that range as the block device);
//! the trailer lets the host recognise an image, refuse a version it does not understand and
//! detect corruption. Trailer fields, all little-endian:
//!
//! | offset | size | field                                                              |
//! |-------:|-----:|--------------------------------------------------------------------|
//! |      0 |    8 | magic `PDKIMAGE`                                                   |
//! |      8 |    4 | format version (u32), currently [`FORMAT_VERSION`]                 |
//! |     12 |    4 | block size (u32), always 4096: the padding unit and trailer size   |
//! |     16 |    8 | `fs_len` (u64): padded filesystem length, a multiple of 4096       |
//! |     24 |   32 | SHA-256 of the `fs_len` filesystem bytes (padding included)        |
//! |     56 |   32 | profile name, UTF-8, NUL-padded (a full 32 bytes has no NUL)       |
//! |     88 |   32 | creator (`rootfs-builder <version>`), UTF-8, NUL-padded            |
//! |    120 |    4 | agent manifest length `n` (u32), at most 3968                      |
//! |    124 |    n | agent manifest ([`manifest`]): `<name> <command> <version>\n` lines |
//! |  124+n |      | zero up to 4092                                                    |
//! |   4092 |    4 | CRC32 (IEEE) of bytes 0..4092 (u32)                                |
//!
//! The trailer holds no timestamp, so the same filesystem bytes give the same image. Version 1
//! had no agent manifest (bytes 120..4092 zero); it is refused like any other version.
//! Reading ([`read_trailer`]) checks the trailer only (cheap); [`verify_content`] re-hashes the
//! filesystem (reads the whole image).

pub mod manifest;
#[cfg(test)]
mod tests;

pub use manifest::{AgentEntry, AgentManifest, ManifestError};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The first 8 bytes of a trailer.
pub const MAGIC: [u8; 8] = *b"PDKIMAGE";
/// Bumped on any change of the layout or meaning of the trailer (2: the agent manifest).
pub const FORMAT_VERSION: u32 = 2;
/// The padding unit of the filesystem and the size of the trailer.
pub const BLOCK_SIZE: u64 = 4096;
/// [`BLOCK_SIZE`] as a buffer length.
// Bounded: 4096 fits every usize.
#[allow(clippy::cast_possible_truncation)]
const BLOCK_LEN: usize = BLOCK_SIZE as usize;
/// The longest profile name a trailer holds, in bytes.
pub const MAX_PROFILE_LEN: usize = 32;

const CREATOR_LEN: usize = 32;
const OFF_VERSION: usize = 8;
const OFF_BLOCK_SIZE: usize = 12;
const OFF_FS_LEN: usize = 16;
const OFF_SHA256: usize = 24;
const OFF_PROFILE: usize = 56;
const OFF_CREATOR: usize = OFF_PROFILE + MAX_PROFILE_LEN;
const OFF_MANIFEST_LEN: usize = OFF_CREATOR + CREATOR_LEN;
const OFF_MANIFEST: usize = OFF_MANIFEST_LEN + 4;
const OFF_CRC: usize = BLOCK_LEN - 4;
const HASH_CHUNK: usize = 1 << 20;

/// A decoded, validated trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    fs_len: u64,
    fs_sha256: [u8; 32],
    profile: String,
    creator: String,
    agents: AgentManifest,
}

impl Trailer {
    /// The padded filesystem length: the bytes the guest sees (a multiple of [`BLOCK_SIZE`]).
    pub fn fs_len(&self) -> u64 {
        self.fs_len
    }

    /// The SHA-256 of the filesystem bytes.
    pub fn fs_sha256(&self) -> &[u8; 32] {
        &self.fs_sha256
    }

    /// The SHA-256 of the filesystem bytes in lowercase hex.
    pub fn digest_hex(&self) -> String {
        self.fs_sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The profile the image was built from (e.g. `agent`).
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The tool that wrote the trailer (`rootfs-builder <version>`).
    pub fn creator(&self) -> &str {
        &self.creator
    }

    /// The coding agents the image holds, with their versions (empty for an image without).
    pub fn agents(&self) -> &AgentManifest {
        &self.agents
    }

    /// The 4096-byte encoding of this trailer, CRC included.
    fn encode(&self) -> [u8; BLOCK_LEN] {
        let mut block = [0u8; BLOCK_LEN];
        block[..OFF_VERSION].copy_from_slice(&MAGIC);
        block[OFF_VERSION..OFF_BLOCK_SIZE].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // Bounded: BLOCK_SIZE is 4096.
        #[allow(clippy::cast_possible_truncation)]
        let block_size = BLOCK_SIZE as u32;
        block[OFF_BLOCK_SIZE..OFF_FS_LEN].copy_from_slice(&block_size.to_le_bytes());
        block[OFF_FS_LEN..OFF_SHA256].copy_from_slice(&self.fs_len.to_le_bytes());
        block[OFF_SHA256..OFF_PROFILE].copy_from_slice(&self.fs_sha256);
        block[OFF_PROFILE..OFF_PROFILE + self.profile.len()]
            .copy_from_slice(self.profile.as_bytes());
        block[OFF_CREATOR..OFF_CREATOR + self.creator.len()]
            .copy_from_slice(self.creator.as_bytes());
        let manifest = self.agents.encode();
        debug_assert!(manifest.len() <= manifest::MAX_MANIFEST_LEN);
        // Bounded: the manifest is copied into this 4096-byte block just below (a longer one
        // would not fit), so its length fits a u32.
        #[allow(clippy::cast_possible_truncation)]
        let manifest_len = manifest.len() as u32;
        block[OFF_MANIFEST_LEN..OFF_MANIFEST].copy_from_slice(&manifest_len.to_le_bytes());
        block[OFF_MANIFEST..OFF_MANIFEST + manifest.len()].copy_from_slice(&manifest);
        let crc = crc32fast::hash(&block[..OFF_CRC]);
        block[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Decodes and validates a trailer block (everything but the file-size check).
    fn decode(block: &[u8; BLOCK_LEN]) -> Result<Self, ImageError> {
        if block[..OFF_VERSION] != MAGIC {
            return Err(ImageError::NotPaddockImage);
        }
        let version = le_u32(block, OFF_VERSION);
        if version != FORMAT_VERSION {
            return Err(ImageError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored_crc = le_u32(block, OFF_CRC);
        let computed_crc = crc32fast::hash(&block[..OFF_CRC]);
        if stored_crc != computed_crc {
            return Err(TrailerDefect::Crc {
                stored: stored_crc,
                computed: computed_crc,
            }
            .into());
        }
        let block_size = le_u32(block, OFF_BLOCK_SIZE);
        if u64::from(block_size) != BLOCK_SIZE {
            return Err(TrailerDefect::BlockSize(block_size).into());
        }
        let mut fs_len_bytes = [0u8; 8];
        fs_len_bytes.copy_from_slice(&block[OFF_FS_LEN..OFF_SHA256]);
        let fs_len = u64::from_le_bytes(fs_len_bytes);
        if fs_len % BLOCK_SIZE != 0 {
            return Err(TrailerDefect::UnalignedFsLen(fs_len).into());
        }
        let manifest_len = le_u32(block, OFF_MANIFEST_LEN);
        let manifest_end = usize::try_from(manifest_len)
            .ok()
            .filter(|&len| len <= manifest::MAX_MANIFEST_LEN)
            .map(|len| OFF_MANIFEST + len)
            .ok_or(TrailerDefect::ManifestLength(manifest_len))?;
        if block[manifest_end..OFF_CRC].iter().any(|&b| b != 0) {
            return Err(TrailerDefect::ReservedNotZero.into());
        }
        let agents = AgentManifest::decode(&block[OFF_MANIFEST..manifest_end])
            .map_err(TrailerDefect::Manifest)?;
        let mut fs_sha256 = [0u8; 32];
        fs_sha256.copy_from_slice(&block[OFF_SHA256..OFF_PROFILE]);
        let profile =
            nul_padded_str(&block[OFF_PROFILE..OFF_CREATOR]).ok_or(TrailerDefect::ProfileName)?;
        if profile.is_empty() {
            return Err(TrailerDefect::ProfileName.into());
        }
        let creator =
            nul_padded_str(&block[OFF_CREATOR..OFF_MANIFEST_LEN]).ok_or(TrailerDefect::Creator)?;
        Ok(Self {
            fs_len,
            fs_sha256,
            profile: profile.to_owned(),
            creator: creator.to_owned(),
            agents,
        })
    }
}

/// Errors reading or verifying an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not a paddock image: {len} bytes is shorter than the {BLOCK_SIZE}-byte trailer")]
    TooShort { len: u64 },
    #[error("not a paddock image: no PDKIMAGE trailer at the end of the file")]
    NotPaddockImage,
    #[error(
        "paddock image format version {found} is not supported (this build reads {supported}); \
         rebuild the image (`cargo xtask rootfs --profile agent`)"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("corrupt paddock image trailer: {0}")]
    CorruptTrailer(#[from] TrailerDefect),
    #[error(
        "paddock image is truncated: the trailer says {expected} bytes, the file has {actual}"
    )]
    Truncated { expected: u64, actual: u64 },
    #[error(
        "paddock image has extra data: the trailer says {expected} bytes, the file has {actual}"
    )]
    ExtraData { expected: u64, actual: u64 },
    #[error(
        "paddock image is corrupt: filesystem SHA-256 is {computed}, the trailer says {expected}"
    )]
    ContentMismatch { expected: String, computed: String },
    #[error("reading the paddock image: {0}")]
    Io(#[from] io::Error),
}

/// What is wrong with a trailer whose magic and version are right.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrailerDefect {
    #[error("CRC32 is {computed:#010x}, the trailer says {stored:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("block size {0} (expected 4096)")]
    BlockSize(u32),
    #[error("filesystem length {0} is not a multiple of 4096")]
    UnalignedFsLen(u64),
    #[error("reserved bytes are not zero")]
    ReservedNotZero,
    #[error("profile name is empty, not UTF-8 or not NUL-padded")]
    ProfileName,
    #[error("creator is not UTF-8 or not NUL-padded")]
    Creator,
    #[error("agent manifest length {0} is larger than {max}", max = manifest::MAX_MANIFEST_LEN)]
    ManifestLength(u32),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Errors appending a trailer.
#[derive(Debug, thiserror::Error)]
pub enum WriteTrailerError {
    #[error("profile name {0:?} must be 1 to {MAX_PROFILE_LEN} bytes without NUL")]
    ProfileName(String),
    #[error("the file holds {actual} bytes, not the {expected}-byte filesystem (trailer already written?)")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("writing the paddock image trailer: {0}")]
    Io(#[from] io::Error),
}

/// Turns `file`, holding exactly a filesystem of `fs_len` bytes, into a paddock image: pads the
/// filesystem with zeros to a multiple of [`BLOCK_SIZE`], hashes it and appends the trailer
/// (with an empty agent manifest). Returns the trailer written. The caller syncs the file.
pub fn write_trailer<F: Read + Write + Seek>(
    file: &mut F,
    fs_len: u64,
    profile: &str,
) -> Result<Trailer, WriteTrailerError> {
    write_trailer_with_agents(file, fs_len, profile, &AgentManifest::new())
}

/// [`write_trailer`] recording the image's coding agents.
pub fn write_trailer_with_agents<F: Read + Write + Seek>(
    file: &mut F,
    fs_len: u64,
    profile: &str,
    agents: &AgentManifest,
) -> Result<Trailer, WriteTrailerError> {
    if profile.is_empty() || profile.len() > MAX_PROFILE_LEN || profile.contains('\0') {
        return Err(WriteTrailerError::ProfileName(profile.to_owned()));
    }
    let actual = file.seek(SeekFrom::End(0))?;
    if actual != fs_len {
        return Err(WriteTrailerError::LengthMismatch {
            expected: fs_len,
            actual,
        });
    }
    let padded_len = fs_len.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    // Bounded: the padding is less than one block.
    #[allow(clippy::cast_possible_truncation)]
    let padding = vec![0u8; (padded_len - fs_len) as usize];
    file.write_all(&padding)?;
    file.seek(SeekFrom::Start(0))?;
    let fs_sha256 = sha256_of_prefix(file, padded_len)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while it was hashed",
        )
    })?;
    let trailer = Trailer {
        fs_len: padded_len,
        fs_sha256,
        profile: profile.to_owned(),
        creator: format!("rootfs-builder {}", env!("CARGO_PKG_VERSION")),
        agents: agents.clone(),
    };
    file.seek(SeekFrom::Start(padded_len))?;
    file.write_all(&trailer.encode())?;
    file.flush()?;
    Ok(trailer)
}

/// Reads and validates the trailer of a paddock image: magic, version, CRC, fields, and that the
/// file is exactly `fs_len + 4096` bytes. Does not hash the filesystem (see [`verify_content`]).
pub fn read_trailer<F: Read + Seek>(file: &mut F) -> Result<Trailer, ImageError> {
    let len = file.seek(SeekFrom::End(0))?;
    if len < BLOCK_SIZE {
        return Err(ImageError::TooShort { len });
    }
    file.seek(SeekFrom::Start(len - BLOCK_SIZE))?;
    let mut block = [0u8; BLOCK_LEN];
    file.read_exact(&mut block)?;
    let trailer = Trailer::decode(&block)?;
    let expected = trailer.fs_len.saturating_add(BLOCK_SIZE);
    if len < expected {
        return Err(ImageError::Truncated {
            expected,
            actual: len,
        });
    }
    if len > expected {
        return Err(ImageError::ExtraData {
            expected,
            actual: len,
        });
    }
    Ok(trailer)
}

/// Re-hashes the filesystem bytes of `file` and compares them with `trailer`.
pub fn verify_content<F: Read + Seek>(file: &mut F, trailer: &Trailer) -> Result<(), ImageError> {
    file.seek(SeekFrom::Start(0))?;
    let Some(computed) = sha256_of_prefix(file, trailer.fs_len)? else {
        let actual = file.seek(SeekFrom::End(0))?;
        return Err(ImageError::Truncated {
            expected: trailer.fs_len.saturating_add(BLOCK_SIZE),
            actual,
        });
    };
    if &computed != trailer.fs_sha256() {
        return Err(ImageError::ContentMismatch {
            expected: trailer.digest_hex(),
            computed: computed.iter().map(|b| format!("{b:02x}")).collect(),
        });
    }
    Ok(())
}

/// The SHA-256 of the next `len` bytes of `reader`, or `None` when it ends first.
fn sha256_of_prefix<R: Read>(reader: &mut R, len: u64) -> io::Result<Option<[u8; 32]>> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(HASH_CHUNK, |l| l.min(HASH_CHUNK));
        let got = match reader.read(&mut buf[..want]) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(Some(hasher.finalize().into()))
}

fn le_u32(block: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&block[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

/// The UTF-8 string in a NUL-padded field: bytes up to the first NUL, all NUL after it.
fn nul_padded_str(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if field[end..].iter().any(|&b| b != 0) {
        return None;
    }
    std::str::from_utf8(&field[..end]).ok()
}
