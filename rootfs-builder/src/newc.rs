//! A writer for the newc (SVR4 "070701") cpio format, the format the Linux kernel unpacks as initramfs.
//!
//! Layout of each member: a 110-byte ASCII header (magic + 13 fields of 8 hex digits), the name with
//! its NUL terminator, zero padding so the data starts on a 4-byte boundary, the data, zero padding
//! to the next 4-byte boundary. The archive ends with a `TRAILER!!!` member. The output is
//! deterministic: inode numbers count up from 1, owners are root and every mtime is 0, so equal
//! inputs give byte-identical archives (and stable content hashes).

use std::io::{self, Read, Write};

/// The newc magic (no CRC variant: the kernel does not verify "070702" checksums either).
const MAGIC: &[u8; 6] = b"070701";
/// Size of a newc header in bytes.
pub const HEADER_LEN: usize = 110;
/// The name of the end-of-archive member.
pub const TRAILER: &str = "TRAILER!!!";
/// Longest member name accepted (Linux PATH_MAX, including the NUL).
pub const MAX_NAME_LEN: usize = 4096;
/// Archives are padded to a multiple of this, as GNU cpio does; the kernel skips the zeros.
const BLOCK: u64 = 512;

/// File-type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
/// Permission bits (including setuid/setgid/sticky) a caller may set.
const PERM_MASK: u32 = 0o7777;

/// Which kind of device node to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// A character device (e.g. `/dev/console`, c 5 1).
    Char,
    /// A block device.
    Block,
}

/// Errors writing a newc archive.
#[derive(Debug, thiserror::Error)]
pub enum NewcError {
    /// The member name is empty, contains a NUL byte, is `TRAILER!!!` or is too long.
    #[error("invalid cpio member name {0:?}")]
    InvalidName(String),
    /// A symlink target is empty or contains a NUL byte.
    #[error("invalid symlink target {target:?} for {name:?}")]
    InvalidSymlinkTarget { name: String, target: String },
    /// A file is larger than the 32-bit size field of newc allows.
    #[error("{name:?} is {size} bytes, more than newc's 4 GiB limit")]
    TooLarge { name: String, size: u64 },
    /// A file's reader gave fewer bytes than its declared size.
    #[error("{name:?}: expected {expected} bytes, the reader gave {got}")]
    ShortRead {
        name: String,
        expected: u64,
        got: u64,
    },
    /// More members than 32-bit inode numbers can count.
    #[error("too many archive members")]
    TooManyMembers,
    /// The underlying writer or a reader failed.
    #[error("writing cpio archive: {0}")]
    Io(#[from] io::Error),
}

/// The header fields that vary between members (the rest are fixed for determinism).
struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

/// Streams members into a newc archive. Call [`NewcWriter::finish`] to write the trailer.
pub struct NewcWriter<W: Write> {
    out: W,
    /// Bytes written so far, for alignment.
    offset: u64,
    next_inode: u32,
}

impl<W: Write> std::fmt::Debug for NewcWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewcWriter")
            .field("offset", &self.offset)
            .field("next_inode", &self.next_inode)
            .finish_non_exhaustive()
    }
}

impl<W: Write> NewcWriter<W> {
    /// Starts an archive on `out` (wrap files in a `BufWriter`: members are written in small pieces).
    pub fn new(out: W) -> Self {
        Self {
            out,
            offset: 0,
            next_inode: 1,
        }
    }

    /// Adds a directory with permission bits `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), NewcError> {
        let header = Header {
            name,
            mode: S_IFDIR | (perm & PERM_MASK),
            nlink: 2,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&header)
    }

    /// Adds a regular file whose content is `data`.
    pub fn file_bytes(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), NewcError> {
        self.file(name, perm, data.len() as u64, &mut &data[..])
    }

    /// Adds a regular file of exactly `size` bytes read from `data` (extra bytes are not read).
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut impl Read,
    ) -> Result<(), NewcError> {
        let size32 = u32::try_from(size).map_err(|_| NewcError::TooLarge {
            name: name.to_owned(),
            size,
        })?;
        let header = Header {
            name,
            mode: S_IFREG | (perm & PERM_MASK),
            nlink: 1,
            size: size32,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&header)?;
        let got = io::copy(&mut data.take(size), &mut self.out)?;
        self.offset += got;
        if got != size {
            return Err(NewcError::ShortRead {
                name: name.to_owned(),
                expected: size,
                got,
            });
        }
        self.pad_to(4)
    }

    /// Adds a symbolic link `name` pointing at `target` (stored as the member's data, no NUL).
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), NewcError> {
        let invalid = || NewcError::InvalidSymlinkTarget {
            name: name.to_owned(),
            target: target.to_owned(),
        };
        if target.is_empty() || target.contains('\0') || target.len() >= MAX_NAME_LEN {
            return Err(invalid());
        }
        let size = u32::try_from(target.len()).map_err(|_| invalid())?; // < MAX_NAME_LEN
        let header = Header {
            name,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            size,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&header)?;
        self.raw(target.as_bytes())?;
        self.pad_to(4)
    }

    /// Adds a device node (the kernel needs `/dev/console` before devtmpfs is mounted).
    pub fn node(
        &mut self,
        name: &str,
        perm: u32,
        kind: NodeKind,
        major: u32,
        minor: u32,
    ) -> Result<(), NewcError> {
        let type_bits = match kind {
            NodeKind::Char => S_IFCHR,
            NodeKind::Block => S_IFBLK,
        };
        let header = Header {
            name,
            mode: type_bits | (perm & PERM_MASK),
            nlink: 1,
            size: 0,
            rdev_major: major,
            rdev_minor: minor,
        };
        self.header(&header)
    }

    /// Writes the trailer, pads the archive to a 512-byte block and returns the writer (flushed).
    pub fn finish(mut self) -> Result<W, NewcError> {
        self.member_header(
            &Header {
                name: TRAILER,
                mode: 0,
                nlink: 1,
                size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
            0,
        )?;
        self.pad_to(BLOCK)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Validates the name, assigns the next inode number and writes header + name + padding.
    fn header(&mut self, header: &Header<'_>) -> Result<(), NewcError> {
        let name = header.name;
        if name.is_empty() || name.contains('\0') || name == TRAILER || name.len() >= MAX_NAME_LEN {
            return Err(NewcError::InvalidName(name.to_owned()));
        }
        let inode = self.next_inode;
        self.next_inode = inode.checked_add(1).ok_or(NewcError::TooManyMembers)?;
        self.member_header(header, inode)
    }

    fn member_header(&mut self, h: &Header<'_>, inode: u32) -> Result<(), NewcError> {
        // < MAX_NAME_LEN, checked by the callers.
        let name_size = u32::try_from(h.name.len() + 1)
            .map_err(|_| NewcError::InvalidName(h.name.to_owned()))?;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            inode,
            h.mode,
            0,
            0,
            h.nlink,
            0,
            h.size,
            0,
            0,
            h.rdev_major,
            h.rdev_minor,
            name_size,
            0,
        ];
        let mut buf = Vec::with_capacity(HEADER_LEN + h.name.len() + 4);
        buf.extend_from_slice(MAGIC);
        for field in fields {
            buf.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        debug_assert_eq!(buf.len(), HEADER_LEN);
        buf.extend_from_slice(h.name.as_bytes());
        buf.push(0);
        self.raw(&buf)?;
        self.pad_to(4)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), NewcError> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes zeros up to the next multiple of `align`.
    fn pad_to(&mut self, align: u64) -> Result<(), NewcError> {
        // Bounded: BLOCK is 512.
        #[allow(clippy::cast_possible_truncation)]
        const ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
        // Bounded: below `align`, which is at most BLOCK.
        #[allow(clippy::cast_possible_truncation)]
        let pad = ((align - self.offset % align) % align) as usize;
        self.raw(&ZEROS[..pad])
    }
}

#[cfg(test)]
pub(crate) mod tests;
