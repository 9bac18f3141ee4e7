//! `ImageSpec`: the declarative content of an image (directories, files, symlinks, device nodes),
//! its content fingerprint for caching, and its rendering as a newc archive.

use crate::newc::{NewcError, NewcWriter, NodeKind};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

/// Bumped whenever the meaning of a spec or its rendering changes, so old cache entries are not reused.
pub const SPEC_FORMAT_VERSION: u32 = 1;

/// Where a regular file's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// A file on the host, read when fingerprinting and again when writing.
    Host(PathBuf),
    /// Bytes held in memory (generated scripts, `/etc` files).
    Bytes(Vec<u8>),
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(FileSource),
    /// A symbolic link to the given target.
    Symlink(String),
    Node {
        kind: NodeKind,
        major: u32,
        minor: u32,
    },
}

/// One entry of an image: its kind and permission bits (ignored for symlinks, always 0777).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub perm: u32,
}

/// Errors building, fingerprinting or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Paths must be absolute and normal: `/a/b`, no `.`/`..`/empty components, no NUL.
    #[error(
        "invalid image path {0:?}: use an absolute path without '.', '..' or empty components"
    )]
    InvalidPath(String),
    /// Something other than an identical directory is already at this path.
    #[error("{0} is already in the image")]
    Duplicate(String),
    /// An ancestor of the path is not a directory.
    #[error("cannot add {path}: {parent} is not a directory")]
    ParentNotDir { path: String, parent: String },
    /// A host file could not be read.
    #[error("reading {path} for the image: {source}")]
    HostFile { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Newc(#[from] NewcError),
}

/// The content of an image. Entries are kept sorted by path, which puts every directory before its
/// contents (a parent path is a prefix of its children's) and makes the output deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// Keyed by the path without its leading '/', as stored in the archive.
    entries: BTreeMap<String, Entry>,
}

impl ImageSpec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ensures a directory exists with `perm` (adding an existing directory just sets its permissions).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<&mut Self, SpecError> {
        self.add(
            path,
            Entry {
                kind: EntryKind::Dir,
                perm,
            },
        )
    }

    /// Adds a regular file copied from `host` when the image is written.
    pub fn host_file(
        &mut self,
        path: &str,
        perm: u32,
        host: impl Into<PathBuf>,
    ) -> Result<&mut Self, SpecError> {
        self.add(
            path,
            Entry {
                kind: EntryKind::File(FileSource::Host(host.into())),
                perm,
            },
        )
    }

    /// Adds a regular file with the given content.
    pub fn bytes_file(
        &mut self,
        path: &str,
        perm: u32,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, SpecError> {
        self.add(
            path,
            Entry {
                kind: EntryKind::File(FileSource::Bytes(bytes.into())),
                perm,
            },
        )
    }

    /// Adds a symbolic link `path` -> `target` (the target is stored as given, relative or absolute).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, SpecError> {
        self.add(
            path,
            Entry {
                kind: EntryKind::Symlink(target.to_owned()),
                perm: 0o777,
            },
        )
    }

    /// Adds a character device node.
    pub fn char_device(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, SpecError> {
        self.add(
            path,
            Entry {
                kind: EntryKind::Node {
                    kind: NodeKind::Char,
                    major,
                    minor,
                },
                perm,
            },
        )
    }

    /// Adds a block device node.
    pub fn block_device(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, SpecError> {
        self.add(
            path,
            Entry {
                kind: EntryKind::Node {
                    kind: NodeKind::Block,
                    major,
                    minor,
                },
                perm,
            },
        )
    }

    /// Adds an entry; missing parent directories are created with mode 0755.
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<&mut Self, SpecError> {
        let key = archive_name(path)?;
        // Every ancestor must be (or become) a directory.
        for (end, _) in key.match_indices('/') {
            let parent = &key[..end];
            match self.entries.get(parent) {
                None => {
                    self.entries.insert(
                        parent.to_owned(),
                        Entry {
                            kind: EntryKind::Dir,
                            perm: 0o755,
                        },
                    );
                }
                Some(Entry {
                    kind: EntryKind::Dir,
                    ..
                }) => {}
                Some(_) => {
                    return Err(SpecError::ParentNotDir {
                        path: path.to_owned(),
                        parent: format!("/{parent}"),
                    });
                }
            }
        }
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(key.to_owned(), entry);
            }
            Some(existing) if existing.kind == EntryKind::Dir && entry.kind == EntryKind::Dir => {
                existing.perm = entry.perm;
            }
            Some(_) => return Err(SpecError::Duplicate(path.to_owned())),
        }
        Ok(self)
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        archive_name(path)
            .ok()
            .and_then(|key| self.entries.get(key))
    }

    /// All entries in archive order, with absolute paths.
    pub fn entries(&self) -> impl Iterator<Item = (String, &Entry)> {
        self.entries
            .iter()
            .map(|(key, entry)| (format!("/{key}"), entry))
    }

    /// Adds every entry of `other` (layering: a profile builds on a base).
    pub fn extend(&mut self, other: &ImageSpec) -> Result<&mut Self, SpecError> {
        for (path, entry) in other.entries() {
            self.add(&path, entry.clone())?;
        }
        Ok(self)
    }

    /// A hex SHA-256 over the spec and the content of every file: equal fingerprints give
    /// byte-identical archives, so it serves as a cache key.
    pub fn fingerprint(&self) -> Result<String, SpecError> {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(b"paddock-image-spec");
        part(&SPEC_FORMAT_VERSION.to_le_bytes());
        for (name, entry) in &self.entries {
            part(name.as_bytes());
            part(&entry.perm.to_le_bytes());
            match &entry.kind {
                EntryKind::Dir => part(b"dir"),
                EntryKind::File(source) => {
                    part(b"file");
                    part(&content_digest(source)?);
                }
                EntryKind::Symlink(target) => {
                    part(b"symlink");
                    part(target.as_bytes());
                }
                EntryKind::Node { kind, major, minor } => {
                    part(match kind {
                        NodeKind::Char => b"char",
                        NodeKind::Block => b"block",
                    });
                    part(&major.to_le_bytes());
                    part(&minor.to_le_bytes());
                }
            }
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Writes the image as a newc archive to `out` and returns it.
    pub fn write_newc<W: Write>(&self, out: W) -> Result<W, SpecError> {
        let mut writer = NewcWriter::new(out);
        for (name, entry) in &self.entries {
            match &entry.kind {
                EntryKind::Dir => writer.dir(name, entry.perm)?,
                EntryKind::File(FileSource::Bytes(bytes)) => {
                    writer.file_bytes(name, entry.perm, bytes)?
                }
                EntryKind::File(FileSource::Host(path)) => {
                    let host_err = |source| SpecError::HostFile {
                        path: path.clone(),
                        source,
                    };
                    let mut file = File::open(path).map_err(host_err)?;
                    let size = file.metadata().map_err(host_err)?.len();
                    writer.file(name, entry.perm, size, &mut file)?;
                }
                EntryKind::Symlink(target) => writer.symlink(name, target)?,
                EntryKind::Node { kind, major, minor } => {
                    writer.node(name, entry.perm, *kind, *major, *minor)?
                }
            }
        }
        Ok(writer.finish()?)
    }
}

/// Checks `path` is absolute and normal and returns it without the leading '/'.
fn archive_name(path: &str) -> Result<&str, SpecError> {
    let invalid = || SpecError::InvalidPath(path.to_owned());
    let rest = path.strip_prefix('/').ok_or_else(invalid)?;
    if rest.is_empty()
        || path.contains('\0')
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid());
    }
    Ok(rest)
}

/// SHA-256 of a file's content, streamed for host files.
fn content_digest(source: &FileSource) -> Result<Vec<u8>, SpecError> {
    let mut hasher = Sha256::new();
    match source {
        FileSource::Bytes(bytes) => hasher.update(bytes),
        FileSource::Host(path) => {
            let host_err = |source| SpecError::HostFile {
                path: path.clone(),
                source,
            };
            let mut file = File::open(path).map_err(host_err)?;
            io::copy(&mut file, &mut hasher).map_err(host_err)?;
        }
    }
    Ok(hasher.finalize().to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
