//! `paddock diff NAME [--patch]` and `paddock apply NAME [PATH...]`: reviewing the changes an
//! agent made in a copy-on-write workspace, and taking them into the host's directory.

use super::lifecycle::sandboxes;
use super::{ApplyArgs, DiffArgs};
use anyhow::Context;
use paddock_protocol::workspace::{ChangeKind, ChangedNode, WorkspaceChange};
use paddock_vmm::exit_codes;
use paddock_vmm::sandbox::review::{display_path, GuestReadError, MAX_PATCH_FILE};
use paddock_vmm::sandbox::{SandboxError, Sandboxes};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn letter(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Added => 'A',
        ChangeKind::Modified => 'M',
        ChangeKind::Deleted => 'D',
    }
}

fn line(change: &WorkspaceChange) -> String {
    let slash = if matches!(change.node, ChangedNode::Dir { .. }) {
        "/"
    } else {
        ""
    };
    format!(
        "{}  {}{slash}",
        letter(change.kind),
        display_path(&change.path)
    )
}

pub fn diff(args: DiffArgs) -> anyhow::Result<i32> {
    let sandboxes = sandboxes(&args.state);
    let (dir, changes) = sandboxes.workspace_changes(&args.name)?;
    let mut out = std::io::stdout().lock();
    for change in &changes {
        if !args.patch {
            writeln!(out, "{}", line(change))?;
            continue;
        }
        let host = dir.join(std::ffi::OsStr::from_bytes(&change.path));
        // The host's side is a file (what was there before), the guest's side is one.
        let host_file = change.kind != ChangeKind::Added && host.is_file();
        let guest_file =
            change.kind != ChangeKind::Deleted && matches!(change.node, ChangedNode::File { .. });
        if !host_file && !guest_file {
            // A directory, a link or a special file: named, not diffed.
            writeln!(out, "{}", line(change))?;
            continue;
        }
        let old = if host_file {
            host_side(&host, MAX_PATCH_FILE)?
        } else {
            Side::Bytes(Vec::new())
        };
        let new = if guest_file {
            guest_side(&sandboxes, &args.name, change)?
        } else {
            Side::Bytes(Vec::new())
        };
        write_patch(&mut out, &change.path, change.kind, &old, &new)?;
    }
    Ok(0)
}

/// One side of a patch: its bytes, or, too large to diff, its size where it is known.
#[derive(Debug)]
enum Side {
    Bytes(Vec<u8>),
    TooLarge { size: Option<u64> },
}

/// The host's file at `path`, read only if it has no more than `limit` bytes.
fn host_side(path: &Path, limit: u64) -> anyhow::Result<Side> {
    let reading = || format!("reading {}", path.display());
    let file = std::fs::File::open(path).with_context(reading)?;
    let size = file.metadata().with_context(reading)?.len();
    if size > limit {
        return Ok(Side::TooLarge { size: Some(size) });
    }
    let mut bytes = Vec::new();
    // It may have grown since.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(reading)?;
    if bytes.len() as u64 > limit {
        return Ok(Side::TooLarge { size: None });
    }
    Ok(Side::Bytes(bytes))
}

/// The guest's file of `change`, read only up to [`MAX_PATCH_FILE`] bytes.
fn guest_side(sandboxes: &Sandboxes, name: &str, change: &WorkspaceChange) -> anyhow::Result<Side> {
    // The size the guest listed: a file that says it is too large is not read at all.
    if let ChangedNode::File { size, .. } = change.node {
        if size > MAX_PATCH_FILE {
            return Ok(Side::TooLarge { size: Some(size) });
        }
    }
    match sandboxes.workspace_guest_file(name, &change.path, MAX_PATCH_FILE) {
        Ok(bytes) => Ok(Side::Bytes(bytes)),
        Err(SandboxError::Review(e)) if matches!(*e, GuestReadError::TooLarge { .. }) => {
            Ok(Side::TooLarge { size: None })
        }
        Err(e) => Err(e.into()),
    }
}

/// One file's change as a unified diff (`a/` is the host's, `b/` the guest's), or a line
/// saying the files differ (binary, or too large to diff).
fn write_patch(
    out: &mut impl Write,
    rel: &[u8],
    kind: ChangeKind,
    old: &Side,
    new: &Side,
) -> std::io::Result<()> {
    let name = display_path(rel);
    let (a, b) = match kind {
        ChangeKind::Added => ("/dev/null".to_string(), format!("b/{name}")),
        ChangeKind::Deleted => (format!("a/{name}"), "/dev/null".to_string()),
        ChangeKind::Modified => (format!("a/{name}"), format!("b/{name}")),
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .filter(|t| !t.contains('\0'))
            .map(str::to_string)
    };
    writeln!(out, "diff --paddock a/{name} b/{name}")?;
    let (old, new) = match (old, new) {
        (Side::Bytes(old), Side::Bytes(new)) => (old, new),
        (Side::TooLarge { size }, _) | (_, Side::TooLarge { size }) => {
            let size = match size {
                Some(size) => format!("{size} bytes"),
                None => format!("more than {MAX_PATCH_FILE} bytes"),
            };
            return writeln!(out, "Files {a} and {b} differ: too large to diff ({size})");
        }
    };
    match (text(old), text(new)) {
        (Some(old), Some(new)) => {
            let diff = similar::TextDiff::from_lines(&old, &new);
            write!(
                out,
                "{}",
                diff.unified_diff().context_radius(3).header(&a, &b)
            )
        }
        _ => writeln!(out, "Binary files {a} and {b} differ"),
    }
}

pub fn apply(args: ApplyArgs) -> anyhow::Result<i32> {
    let sandboxes = sandboxes(&args.state);
    let paths = sandboxes.paths(&args.name)?;
    let dir = paddock_vmm::sandbox::workspace::WorkspaceRecord::read(&paths)
        .map(|r| r.dir)
        .with_context(|| format!("sandbox {} shares no workspace", args.name))?;
    let selected = args
        .paths
        .iter()
        .map(|p| relative(&dir, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outcomes = sandboxes.apply_workspace(&args.name, &selected)?;
    let mut refused = 0;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(()) => println!("{}", line(&outcome.change)),
            Err(why) => {
                refused += 1;
                eprintln!("paddock: refused {}: {why}", line(&outcome.change));
            }
        }
    }
    eprintln!(
        "paddock: applied {} change(s) to {}{}",
        outcomes.len() - refused,
        dir.display(),
        if refused > 0 {
            format!(", refused {refused} (they stay in the sandbox)")
        } else {
            String::new()
        }
    );
    Ok(if refused > 0 {
        exit_codes::PADDOCK_ERROR
    } else {
        0
    })
}

/// `path` as bytes relative to the workspace `dir`: absolute paths must lie within it.
fn relative(dir: &Path, path: &Path) -> anyhow::Result<Vec<u8>> {
    let rel = if path.is_absolute() {
        path.strip_prefix(dir).with_context(|| {
            format!(
                "{} is not in the workspace {}",
                path.display(),
                dir.display()
            )
        })?
    } else {
        path
    };
    let bytes = rel.as_os_str().as_bytes();
    let trimmed = bytes.strip_suffix(b"/").unwrap_or(bytes);
    anyhow::ensure!(
        !trimmed.split(|b| *b == b'/').any(|c| c == b".."),
        "{}: `..` is not allowed",
        path.display()
    );
    Ok(trimmed.strip_prefix(b"./").unwrap_or(trimmed).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_relative_to_the_workspace() {
        let dir = Path::new("/home/me/project");
        assert_eq!(
            relative(dir, Path::new("src/main.rs")).unwrap(),
            b"src/main.rs"
        );
        assert_eq!(
            relative(dir, Path::new("/home/me/project/src/")).unwrap(),
            b"src"
        );
        assert_eq!(relative(dir, Path::new("./README")).unwrap(), b"README");
        assert!(relative(dir, Path::new("/etc/passwd")).is_err());
        assert!(relative(dir, Path::new("../other")).is_err());
    }

    fn bytes(b: &[u8]) -> Side {
        Side::Bytes(b.to_vec())
    }

    #[test]
    fn patches_are_unified_diffs_and_binary_files_are_named() {
        let mut out = Vec::new();
        let (old, new) = (bytes(b"a\nb\n"), bytes(b"a\nc\n"));
        write_patch(&mut out, b"f", ChangeKind::Modified, &old, &new).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("--- a/f\n+++ b/f\n"), "{text}");
        assert!(text.contains("-b\n+c\n"), "{text}");
        let mut out = Vec::new();
        let (old, new) = (bytes(b""), bytes(b"\0\x01"));
        write_patch(&mut out, b"bin", ChangeKind::Added, &old, &new).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Binary files /dev/null and b/bin differ"));
    }

    #[test]
    fn a_side_too_large_to_diff_is_named_with_its_size() {
        let mut out = Vec::new();
        let big = Side::TooLarge {
            size: Some(1 << 30),
        };
        write_patch(&mut out, b"f", ChangeKind::Modified, &bytes(b"a\n"), &big).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "diff --paddock a/f b/f\n\
             Files a/f and b/f differ: too large to diff (1073741824 bytes)\n"
        );
        let mut out = Vec::new();
        let grown = Side::TooLarge { size: None };
        write_patch(&mut out, b"f", ChangeKind::Deleted, &grown, &bytes(b"")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(&format!(
                "too large to diff (more than {MAX_PATCH_FILE} bytes)\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn a_host_file_over_the_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert!(matches!(
            host_side(&path, 10).unwrap(),
            Side::Bytes(b) if b == b"0123456789"
        ));
        assert!(matches!(
            host_side(&path, 9).unwrap(),
            Side::TooLarge { size: Some(10) }
        ));
        assert!(host_side(&dir.path().join("missing"), 10).is_err());
    }
}
