//! The workspace server process beside a sandbox's VMM (docs/WORKSPACE.md): where its files
//! are, starting and stopping it, and asking guest-init to mount the share. The VMM never
//! touches the project directory; the server sees nothing else.

use super::helper::HelperLaunch;
use super::paths::SandboxPaths;
use crate::client::{self, MountWorkspaceError};
pub use paddock_protocol::WorkspaceMode;
use paddock_protocol::{CONTROL_PORT, WORKSPACE_PORT};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// How long a new server may take to listen.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long guest-init may take to mount the share.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// The record's file name in the sandbox directory.
const RECORD: &str = "workspace.json";

/// Why a sandbox's workspace could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The directory is not one (or cannot be resolved).
    #[error("workspace {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `paddock` executable could not be run.
    #[error("cannot start the workspace server ({bin}): {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    /// It exited before listening, or did not listen in time.
    #[error("the workspace server {0}")]
    Start(#[from] super::helper::HelperStartError),
    /// The record could not be written.
    #[error("writing {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
    /// guest-init could not be reached.
    #[error("connecting to guest-init: {0}")]
    Connect(#[from] client::ConnectError),
    /// guest-init did not mount the share.
    #[error(transparent)]
    Mount(#[from] MountWorkspaceError),
    /// The connection to guest-init failed.
    #[error("talking to guest-init: {0}")]
    Io(#[source] std::io::Error),
    /// The snapshot's state file could not be read for the mount it carries.
    #[error("reading the workspace mount the snapshot holds: {0}")]
    Snapshot(#[source] crate::snapshot::store::StoreError),
}

/// A sandbox's workspace record: the shared directory and its server process.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkspaceRecord {
    /// The host directory, absolute and without symlinks; the guest sees it at this path.
    pub dir: PathBuf,
    /// The server process, while it runs.
    pub server_pid: Option<u32>,
    /// Live, or copy-on-write.
    #[serde(default)]
    pub mode: WorkspaceMode,
    /// When the guest's current mount was made (ns since the epoch): in copy-on-write mode, a
    /// host file whose ctime is later changed under the guest's copy, and is not overwritten.
    #[serde(default)]
    pub mounted_ns: u64,
    /// Host files `paddock apply` wrote since then, with their ctimes (ns): writing them again
    /// is not overwriting a change of the host's.
    #[serde(default)]
    pub applied: Vec<(Vec<u8>, u64)>,
}

impl WorkspaceRecord {
    /// The sandbox's record, if it shares a workspace.
    pub fn read(paths: &SandboxPaths) -> Option<Self> {
        Self::read_in(&paths.dir)
    }

    /// The record in directory `dir` (a sandbox's, or a snapshot's), if there is one.
    pub fn read_in(dir: &Path) -> Option<Self> {
        let text = std::fs::read(dir.join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Forgets the sandbox's record (its share was not mounted after all).
    pub fn remove(paths: &SandboxPaths) {
        let _ = std::fs::remove_file(paths.dir.join(RECORD));
    }

    /// Writes the record (atomically).
    pub fn write(&self, paths: &SandboxPaths) -> Result<(), WorkspaceError> {
        self.write_in(&paths.dir)
    }

    /// Writes the record into directory `dir` (atomically).
    pub fn write_in(&self, dir: &Path) -> Result<(), WorkspaceError> {
        let path = dir.join(RECORD);
        let tmp = dir.join(format!(".{RECORD}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other);
        text.and_then(|text| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| WorkspaceError::Record { path, source })
    }
}

/// The share a snapshot holds: what the sandbox shared when it was taken, and the workspace
/// server's state of that moment (kept by the VMM), with which a restore, fork or reset
/// carries the guest's mount on instead of mounting it anew.
#[derive(Clone, Debug)]
pub struct SnapshotShare {
    /// The directory, mode, mount time and applied files as they were.
    pub record: WorkspaceRecord,
    /// The server's state (`None`: the VMM could not get it; the mount is made anew).
    pub state: Option<Vec<u8>>,
}

impl SnapshotShare {
    /// The share the snapshot in `dir` holds, if its sandbox shared a workspace.
    pub fn read(dir: &Path) -> Result<Option<Self>, WorkspaceError> {
        let Some(mut record) = WorkspaceRecord::read_in(dir) else {
            return Ok(None);
        };
        record.server_pid = None;
        let (state, _) = crate::snapshot::store::read::<crate::snapshot::state::SnapshotState>(
            dir,
            crate::snapshot::state::SnapshotState::memory,
        )
        .map_err(WorkspaceError::Snapshot)?;
        let state = state
            .companion(super::workspace_control::COMPANION_NAME)
            .map(<[u8]>::to_vec);
        Ok(Some(Self { record, state }))
    }

    /// Records, in the snapshot just written to `snapshot_dir`, the share of the sandbox at
    /// `paths` (or that there is none: a record left there by an earlier snapshot goes).
    pub fn keep(paths: &SandboxPaths, snapshot_dir: &Path) -> Result<(), WorkspaceError> {
        match WorkspaceRecord::read(paths) {
            Some(record) => WorkspaceRecord {
                server_pid: None,
                ..record
            }
            .write_in(snapshot_dir),
            None => match std::fs::remove_file(snapshot_dir.join(RECORD)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(WorkspaceError::Record {
                    path: snapshot_dir.join(RECORD),
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }
}

/// `dir` as the guest will see it: absolute, symlinks resolved once, here; a directory.
pub fn resolve(dir: &Path) -> Result<PathBuf, WorkspaceError> {
    let error = |source| WorkspaceError::Directory {
        path: dir.to_path_buf(),
        source,
    };
    let resolved = std::fs::canonicalize(dir).map_err(error)?;
    if !resolved.is_dir() {
        return Err(error(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    if resolved.to_str().is_none() {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path is not UTF-8",
        )));
    }
    Ok(resolved)
}

/// The sandbox's workspace socket: where the guest's connections to host port
/// [`WORKSPACE_PORT`] land.
pub fn socket(paths: &SandboxPaths) -> PathBuf {
    let mut name = paths.vsock().into_os_string();
    name.push(format!("_{WORKSPACE_PORT}"));
    PathBuf::from(name)
}

/// The server's own log.
pub fn server_log(paths: &SandboxPaths) -> PathBuf {
    paths.dir.join("workspace-server.log")
}

/// The empty directory the server's jail is built on.
pub fn jail_root(paths: &SandboxPaths) -> PathBuf {
    paths.dir.join("workspace-jail")
}

/// Starts the workspace server for `dir` (see [`resolve`]) beside the sandbox whose VMM is
/// `vmm_pid`, waits until it listens and records it.
pub fn start_server(
    launch: HelperLaunch<'_>,
    paths: &SandboxPaths,
    dir: &Path,
    mode: WorkspaceMode,
    vmm_pid: u32,
) -> Result<Child, WorkspaceError> {
    let log_path = server_log(paths);
    let log = std::fs::File::create(&log_path).map_err(|source| WorkspaceError::Record {
        path: log_path.clone(),
        source,
    })?;
    let socket = socket(paths);
    let _ = std::fs::remove_file(&socket);
    let mut child = launch
        .command(super::helper::WORKSPACE_PROCESS)
        .arg("--dir")
        .arg(dir)
        .arg("--socket")
        .arg(&socket)
        .arg("--control-socket")
        .arg(super::workspace_control::socket(paths))
        .arg("--jail-root")
        .arg(jail_root(paths))
        .arg("--vmm-pid")
        .arg(vmm_pid.to_string())
        .args((mode == WorkspaceMode::Cow).then_some("--cow"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| WorkspaceError::Spawn {
            bin: launch.bin.to_path_buf(),
            source,
        })?;
    super::helper::wait_listening(&mut child, &socket, &log_path, SERVER_START_TIMEOUT)?;
    let record = WorkspaceRecord {
        dir: dir.to_path_buf(),
        server_pid: Some(child.id()),
        mode,
        mounted_ns: 0,
        applied: Vec::new(),
    };
    if let Err(e) = record.write(paths) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// Ends the sandbox's server, if it runs (it also ends by itself once the VMM is gone).
pub fn stop_server(paths: &SandboxPaths) {
    let Some(WorkspaceRecord {
        server_pid: Some(pid),
        ..
    }) = WorkspaceRecord::read(paths)
    else {
        return;
    };
    super::helper::stop(pid, super::helper::WORKSPACE_PROCESS, &socket(paths));
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Asks guest-init (reached through the sandbox's vsock socket `uds`) to mount the workspace
/// at `dir`, its host path, as `mode` says. Returns whether the guest's mount was there
/// already, carried across a snapshot, rather than made now.
pub fn mount(uds: &Path, dir: &Path, mode: WorkspaceMode) -> Result<bool, WorkspaceError> {
    let (mut conn, path) = guest_init_for(uds, dir, MOUNT_TIMEOUT)?;
    Ok(conn.mount_workspace(path, mode)?)
}

/// A connection to guest-init behind `uds` that gives up after `timeout`, and the workspace
/// `dir` as the text the guest takes.
pub(crate) fn guest_init_for<'a>(
    uds: &Path,
    dir: &'a Path,
    timeout: Duration,
) -> Result<(client::Connection, &'a str), WorkspaceError> {
    let path = dir.to_str().ok_or_else(|| WorkspaceError::Directory {
        path: dir.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
    })?;
    let conn = client::connect(uds, CONTROL_PORT)?;
    conn.set_timeout(Some(timeout))
        .map_err(WorkspaceError::Io)?;
    Ok((conn, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_name_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SandboxPaths::new(dir.path(), "a").unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        assert_eq!(WorkspaceRecord::read(&paths), None);
        let record = WorkspaceRecord {
            dir: "/home/me/project".into(),
            server_pid: Some(42),
            mode: WorkspaceMode::Cow,
            mounted_ns: 7,
            applied: vec![(b"a/b\xff".to_vec(), 9)],
        };
        record.write(&paths).unwrap();
        assert_eq!(WorkspaceRecord::read(&paths), Some(record));
        assert!(socket(&paths).ends_with("vsock.sock_1082"));
    }

    #[test]
    fn only_directories_are_shared_and_symlinks_are_resolved_once() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let resolved = resolve(&dir.path().join("link")).unwrap();
        assert_eq!(resolved, std::fs::canonicalize(&real).unwrap());
        assert!(matches!(
            resolve(&dir.path().join("file")),
            Err(WorkspaceError::Directory { .. })
        ));
        assert!(matches!(
            resolve(&dir.path().join("missing")),
            Err(WorkspaceError::Directory { .. })
        ));
    }

    #[test]
    fn a_server_that_fails_at_start_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SandboxPaths::new(dir.path(), "a").unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        let err = start_server(
            HelperLaunch {
                bin: Path::new("/bin/false"),
                seccomp: true,
            },
            &paths,
            dir.path(),
            WorkspaceMode::Live,
            1,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                WorkspaceError::Start(super::super::helper::HelperStartError::Exited { .. })
            ),
            "{err}"
        );
        let err = start_server(
            HelperLaunch {
                bin: Path::new("/nonexistent/paddock"),
                seccomp: true,
            },
            &paths,
            dir.path(),
            WorkspaceMode::Live,
            1,
        )
        .unwrap_err();
        assert!(matches!(err, WorkspaceError::Spawn { .. }), "{err}");
    }
}
