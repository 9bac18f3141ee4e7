//! The changes of a copy-on-write workspace, read from overlayfs's upper layer against the
//! lower (the host's directory, read-only): what the guest added, modified and deleted. A file
//! the guest copied up but left as the lower has it (same kind, mode, content or target) is no
//! change, so a workspace whose changes were applied to the host lists nothing.

use paddock_protocol::workspace::{ChangeKind, ChangedNode, WorkspaceChange};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Every change in `upper` against `lower`, parents before their contents, names sorted.
/// The walk keeps its own stack of directories: however deep the guest nests them, it never
/// runs out of thread stack.
pub fn list(upper: &Path, lower: &Path) -> io::Result<Vec<WorkspaceChange>> {
    let mut out = Vec::new();
    let mut open = vec![Dir::read(
        upper.to_path_buf(),
        Some(lower.to_path_buf()),
        Vec::new(),
    )?];
    while let Some(dir) = open.last_mut() {
        let Some(name) = dir.names.next() else {
            open.pop();
            continue;
        };
        if let Some(below) = visit(dir, &name, &mut out)? {
            open.push(below);
        }
    }
    Ok(out)
}

/// An upper directory being walked: where it is, where the lower's directory of the same path
/// is (if the lower has one), and the names not yet visited, sorted.
struct Dir {
    upper: PathBuf,
    lower: Option<PathBuf>,
    rel: Vec<u8>,
    names: std::vec::IntoIter<OsString>,
}

impl Dir {
    fn read(upper: PathBuf, lower: Option<PathBuf>, rel: Vec<u8>) -> io::Result<Self> {
        let names = sorted_names(&upper)?;
        Ok(Self {
            upper,
            lower,
            rel,
            names: names.into_iter(),
        })
    }
}

/// The names in the directory `dir`, sorted.
fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

/// Lists the changes of `name` in `dir`; a directory comes back, to be walked next.
fn visit(dir: &Dir, name: &OsStr, out: &mut Vec<WorkspaceChange>) -> io::Result<Option<Dir>> {
    let path = join(&dir.rel, name.as_bytes());
    let upper_child = dir.upper.join(name);
    let meta = std::fs::symlink_metadata(&upper_child)?;
    let lower_child = dir.lower.as_ref().map(|l| l.join(name));
    let lower_meta = lower_child
        .as_deref()
        .and_then(|l| std::fs::symlink_metadata(l).ok());
    if is_whiteout(&meta) {
        if let (Some(lm), Some(lc)) = (&lower_meta, &lower_child) {
            push(out, path, ChangeKind::Deleted, node(lm, lc));
        }
        return Ok(None);
    }
    if meta.is_dir() {
        let lower_dir = lower_meta.as_ref().filter(|lm| lm.is_dir());
        match (&lower_meta, lower_dir) {
            (None, _) => push(
                out,
                path.clone(),
                ChangeKind::Added,
                node(&meta, &upper_child),
            ),
            (Some(_), None) => push(
                out,
                path.clone(),
                ChangeKind::Modified,
                node(&meta, &upper_child),
            ),
            (Some(lm), Some(_)) => {
                if lm.mode() & 0o7777 != meta.mode() & 0o7777 {
                    push(
                        out,
                        path.clone(),
                        ChangeKind::Modified,
                        node(&meta, &upper_child),
                    );
                }
                if is_opaque(&upper_child) {
                    if let Some(lc) = &lower_child {
                        deleted_below(lc, &upper_child, &path, out)?;
                    }
                }
            }
        }
        let below = lower_child.filter(|_| lower_dir.is_some());
        return Dir::read(upper_child, below, path).map(Some);
    }
    match (&lower_meta, &lower_child) {
        (Some(lm), Some(lc)) => {
            if !same(&meta, &upper_child, lm, lc)? {
                push(out, path, ChangeKind::Modified, node(&meta, &upper_child));
            }
        }
        _ => push(out, path, ChangeKind::Added, node(&meta, &upper_child)),
    }
    Ok(None)
}

/// In an opaque directory (the guest removed the lower's one and made a new one), every lower
/// entry the upper does not have again is deleted.
fn deleted_below(
    lower: &Path,
    upper: &Path,
    rel: &[u8],
    out: &mut Vec<WorkspaceChange>,
) -> io::Result<()> {
    for name in sorted_names(lower)? {
        if std::fs::symlink_metadata(upper.join(&name)).is_ok() {
            continue;
        }
        let child = lower.join(&name);
        let meta = std::fs::symlink_metadata(&child)?;
        push(
            out,
            join(rel, name.as_bytes()),
            ChangeKind::Deleted,
            node(&meta, &child),
        );
    }
    Ok(())
}

fn push(out: &mut Vec<WorkspaceChange>, path: Vec<u8>, kind: ChangeKind, node: ChangedNode) {
    out.push(WorkspaceChange { path, kind, node });
}

/// overlayfs's mark of a deleted name: a character device 0:0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// overlayfs's mark of a directory that hides the lower's contents.
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let name = c"trusted.overlay.opaque";
    let mut value = [0u8; 4];
    // SAFETY: both strings are valid C strings and `value` has room for the length passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

fn node(meta: &Metadata, path: &Path) -> ChangedNode {
    let mode = meta.mode() & 0o7777;
    if meta.is_file() {
        ChangedNode::File {
            mode,
            size: meta.len(),
        }
    } else if meta.is_dir() {
        ChangedNode::Dir { mode }
    } else if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| t.into_os_string().into_vec())
            .unwrap_or_default();
        ChangedNode::Symlink { target }
    } else {
        ChangedNode::Other
    }
}

/// Whether the upper's node is what the lower has: same kind and mode, and the same bytes (a
/// file) or target (a link).
fn same(meta: &Metadata, upper: &Path, lower_meta: &Metadata, lower: &Path) -> io::Result<bool> {
    if meta.file_type() != lower_meta.file_type() || meta.mode() != lower_meta.mode() {
        return Ok(false);
    }
    if meta.file_type().is_symlink() {
        return Ok(std::fs::read_link(upper)? == std::fs::read_link(lower)?);
    }
    if !meta.is_file() {
        return Ok(true);
    }
    if meta.len() != lower_meta.len() {
        return Ok(false);
    }
    same_bytes(&mut File::open(upper)?, &mut File::open(lower)?)
}

fn same_bytes(a: &mut impl Read, b: &mut impl Read) -> io::Result<bool> {
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(a, &mut x)?;
        let m = read_full(b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
