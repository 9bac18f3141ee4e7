//! Reviewing a copy-on-write workspace from the host: what the guest changed (`paddock diff`)
//! and taking chosen changes into the host's directory (`paddock apply`) — one file at a time,
//! each written beside its target and renamed over it, and never over a file the host changed
//! since the guest's share was mounted (nothing is lost on either side: a refused change stays
//! in the sandbox).

mod guest_read;

pub use guest_read::{guest_file, guest_file_into, GuestReadError, MAX_PATCH_FILE};

use super::workspace::{WorkspaceError, WorkspaceRecord};
use paddock_protocol::workspace::{ChangeKind, ChangedNode, WorkspaceChange};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long listing the changes or reading one guest file may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(300);

/// The changes of the copy-on-write workspace at `dir` in the guest behind `uds`.
pub fn changes(uds: &Path, dir: &Path) -> Result<Vec<WorkspaceChange>, WorkspaceError> {
    let (mut conn, path) = super::workspace::guest_init_for(uds, dir, REVIEW_TIMEOUT)?;
    Ok(conn.workspace_changes(path)?)
}

/// Why a change was not applied.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The host changed (or made, or removed) the file since the guest's share was mounted.
    #[error("the host changed it since the sandbox's share was mounted")]
    HostChanged,
    /// Not a file, directory or symbolic link.
    #[error("not a file, directory or symbolic link")]
    Unsupported,
    /// The guest's copy could not be read.
    #[error(transparent)]
    Guest(#[from] GuestReadError),
    /// Writing on the host failed.
    #[error("writing it: {0}")]
    Host(#[from] std::io::Error),
}

/// What became of one change.
#[derive(Debug)]
pub struct Outcome {
    pub change: WorkspaceChange,
    pub result: Result<(), Refusal>,
}

/// A change's path on the host.
pub fn host_path(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(rel))
}

/// Whether `rel` is one of `selected` or beneath one (all, when none is selected).
pub fn is_selected(rel: &[u8], selected: &[Vec<u8>]) -> bool {
    selected.is_empty()
        || selected
            .iter()
            .any(|s| rel == s.as_slice() || (rel.starts_with(s) && rel.get(s.len()) == Some(&b'/')))
}

/// File times come from the kernel's coarse clock, up to a tick behind the clock the mount time
/// was read from: a host write just after the mount could look older than it. A file whose
/// ctime is within this of the mount counts as changed (a refusal, never a loss).
const CTIME_SLACK_NS: u64 = 20_000_000;

fn ctime_ns(meta: &std::fs::Metadata) -> u64 {
    let secs = u64::try_from(meta.ctime()).unwrap_or(0);
    let nanos = u64::try_from(meta.ctime_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The host's side of one path against the record.
#[derive(Debug, PartialEq, Eq)]
enum HostSide {
    /// Not there.
    Absent,
    /// There, unchanged since the mount.
    Unchanged,
    /// There as `apply` last wrote it.
    Applied,
    /// Changed by the host since the mount.
    Changed,
}

fn host_side(record: &WorkspaceRecord, rel: &[u8]) -> std::io::Result<HostSide> {
    match std::fs::symlink_metadata(host_path(&record.dir, rel)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostSide::Absent),
        Err(e) => Err(e),
        Ok(meta) => {
            let ctime = ctime_ns(&meta);
            let applied = record
                .applied
                .iter()
                .any(|(path, at)| path.as_slice() == rel && *at == ctime);
            Ok(if applied {
                HostSide::Applied
            } else if ctime.saturating_add(CTIME_SLACK_NS) <= record.mounted_ns {
                HostSide::Unchanged
            } else {
                HostSide::Changed
            })
        }
    }
}

/// Whether everything beneath the host directory `rel` is unchanged since the mount.
fn tree_unchanged(record: &WorkspaceRecord, rel: &[u8]) -> std::io::Result<bool> {
    if host_side(record, rel)? == HostSide::Changed {
        return Ok(false);
    }
    let path = host_path(&record.dir, rel);
    if !std::fs::symlink_metadata(&path)?.is_dir() {
        return Ok(true);
    }
    for entry in std::fs::read_dir(&path)? {
        let name = entry?.file_name();
        if !tree_unchanged(record, &[rel, b"/", name.as_bytes()].concat())? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Applies `changes` (as listed, parents first) to the host directory of `record`, reading
/// the guest's files through `uds`; records what it wrote in `record.applied`.
pub fn apply(
    uds: &Path,
    record: &mut WorkspaceRecord,
    changes: &[WorkspaceChange],
) -> Vec<Outcome> {
    changes
        .iter()
        .map(|change| {
            let result = apply_one(uds, record, change);
            if result.is_ok() {
                if let Ok(meta) = std::fs::symlink_metadata(host_path(&record.dir, &change.path)) {
                    record.applied.retain(|(p, _)| p != &change.path);
                    record.applied.push((change.path.clone(), ctime_ns(&meta)));
                }
            }
            Outcome {
                change: change.clone(),
                result,
            }
        })
        .collect()
}

fn apply_one(
    uds: &Path,
    record: &WorkspaceRecord,
    change: &WorkspaceChange,
) -> Result<(), Refusal> {
    let rel = &change.path;
    let side = host_side(record, rel)?;
    let allowed = match change.kind {
        ChangeKind::Added => matches!(side, HostSide::Absent | HostSide::Applied),
        ChangeKind::Modified => matches!(side, HostSide::Unchanged | HostSide::Applied),
        ChangeKind::Deleted => side != HostSide::Changed,
    };
    if !allowed {
        return Err(Refusal::HostChanged);
    }
    let target = host_path(&record.dir, rel);
    if change.kind == ChangeKind::Deleted {
        if side == HostSide::Absent {
            return Ok(());
        }
        if std::fs::symlink_metadata(&target)?.is_dir() {
            if !tree_unchanged(record, rel)? {
                return Err(Refusal::HostChanged);
            }
            std::fs::remove_dir_all(&target)?;
        } else {
            std::fs::remove_file(&target)?;
        }
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match &change.node {
        ChangedNode::Dir { mode } => {
            if side != HostSide::Absent && !std::fs::symlink_metadata(&target)?.is_dir() {
                std::fs::remove_file(&target)?;
            }
            if !target.is_dir() {
                std::fs::create_dir(&target)?;
            }
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))?;
        }
        ChangedNode::File { mode, .. } => {
            replace(&target, |tmp| -> Result<(), Refusal> {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(*mode)
                    .open(tmp)?;
                guest_file_into(uds, &record.dir, rel, &mut file)?;
                file.set_permissions(std::fs::Permissions::from_mode(*mode))?;
                file.sync_all()?;
                Ok(())
            })?;
        }
        ChangedNode::Symlink { target: link } => {
            replace(&target, |tmp| {
                std::os::unix::fs::symlink(OsStr::from_bytes(link), tmp)
            })?;
        }
        ChangedNode::Other => return Err(Refusal::Unsupported),
    }
    Ok(())
}

/// Makes `target` anew: `make` writes a temporary beside it (a file's bytes go straight
/// there from the guest), which is renamed over it (a directory in its way is refused by the
/// rename).
fn replace<E: From<std::io::Error>>(
    target: &Path,
    make: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let name = target.file_name().unwrap_or_default().as_bytes();
    let tmp_name = [b".", name, b".paddock-apply"].concat();
    let tmp = target.with_file_name(OsStr::from_bytes(&tmp_name));
    let _ = std::fs::remove_file(&tmp);
    let made = make(&tmp).and_then(|()| std::fs::rename(&tmp, target).map_err(E::from));
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made
}

/// A path for people: as is when UTF-8, else with the other bytes escaped (`\xff`).
pub fn display_path(rel: &[u8]) -> String {
    match std::str::from_utf8(rel) {
        Ok(text) => text.to_string(),
        Err(_) => rel
            .iter()
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect(),
    }
}

#[cfg(test)]
mod tests;
