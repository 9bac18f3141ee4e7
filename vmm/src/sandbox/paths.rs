//! Where sandboxes live on the host: the state directory, one directory per sandbox holding its
//! record (`info.json`), control socket, vsock socket, console log and VMM log.

use crate::artifacts::Profile;
use paddock_protocol::{BootInfo, EngineState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Longest sandbox name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name or the state directory is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// The name has characters or a length we do not accept.
    #[error("invalid sandbox name {0:?}: use 1-{MAX_NAME_LEN} of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    BadName(String),
    /// No sandbox by that name.
    #[error("no sandbox named {0:?}")]
    NotFound(String),
    /// A sandbox by that name exists already.
    #[error("a sandbox named {0:?} already exists (remove it with `paddock rm {0}`)")]
    Exists(String),
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A sandbox record is unreadable.
    #[error("sandbox record {path} is unreadable: {reason}")]
    BadRecord { path: PathBuf, reason: String },
}

/// Checks a sandbox name: safe as a single path component and in a Unix socket path.
pub fn validate_name(name: &str) -> Result<(), PathsError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PathsError::BadName(name.to_string()))
    }
}

/// The state directory: `explicit`, else `$XDG_STATE_HOME/paddock`, else `~/.local/state/paddock`.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("paddock");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(".local/state/paddock")
}

/// One sandbox's files.
#[derive(Clone, Debug)]
pub struct SandboxPaths {
    /// The sandbox's directory.
    pub dir: PathBuf,
}

impl SandboxPaths {
    /// The paths of sandbox `name` under `state_dir`.
    pub fn new(state_dir: &Path, name: &str) -> Result<Self, PathsError> {
        validate_name(name)?;
        Ok(Self {
            dir: state_dir.join("sandboxes").join(name),
        })
    }
    /// The record.
    pub fn info(&self) -> PathBuf {
        self.dir.join("info.json")
    }
    /// The VMM's control socket.
    pub fn control(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
    /// The vsock Unix socket (`CONNECT <port>` to reach the guest).
    pub fn vsock(&self) -> PathBuf {
        self.dir.join("vsock.sock")
    }
    /// The guest console log.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The working set the VMM recorded on the first restore of its snapshot, for the
    /// launching process to move beside the snapshot (the jailed VMM cannot write there).
    pub fn recorded_working_set(&self) -> PathBuf {
        self.dir.join(crate::snapshot::working_set::FILE_NAME)
    }
    /// Present while the working set recorded at the first restore of the sandbox's snapshot
    /// waits to be recorded again through the first exec
    /// ([`crate::sandbox::Sandboxes::exec_ended`]).
    pub fn working_set_pending(&self) -> PathBuf {
        self.dir.join("working-set.pending")
    }
    /// The VMM process's own log.
    pub fn vmm_log(&self) -> PathBuf {
        self.dir.join("vmm.log")
    }
    /// What `paddock run AGENT DIR` started the sandbox for.
    pub fn agent_record(&self) -> PathBuf {
        self.dir.join("agent.json")
    }
}

/// Writes `value` as JSON to `path` through a temporary file next to it and a rename, so a
/// reader sees the old record or the new one, never half of one.
fn write_json_atomically(value: &impl Serialize, path: &Path) -> Result<(), PathsError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let json = serde_json::to_vec_pretty(value).map_err(|e| PathsError::BadRecord {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(&tmp, json).map_err(|source| PathsError::Io {
        what: "writing",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| PathsError::Io {
        what: "renaming",
        path: tmp,
        source,
    })
}

/// What a sandbox is for, as `paddock run AGENT DIR` recorded it (`agent.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's name (`claude`, `gemini`, `codex`, `shell`).
    pub agent: String,
    /// The host directory it was started for.
    pub workspace: PathBuf,
}

impl AgentRecord {
    /// Writes the record atomically.
    pub fn write(&self, paths: &SandboxPaths) -> Result<(), PathsError> {
        write_json_atomically(self, &paths.agent_record())
    }

    /// The record, if the sandbox has one (`None` also for an unreadable one: it only labels).
    pub fn read(paths: &SandboxPaths) -> Option<Self> {
        let bytes = std::fs::read(paths.agent_record()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// What `paddock ls` shows about a sandbox; stored as `info.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SandboxInfo {
    /// The sandbox's name.
    pub name: String,
    /// The VMM process.
    pub pid: u32,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// When the VMM started (seconds since the Unix epoch).
    pub created_unix_secs: u64,
    /// The snapshot it was restored from (or last reset to), if any.
    pub origin_snapshot: Option<PathBuf>,
    /// The latest snapshot taken of it since then, if any: where `reset` without `--to` goes.
    #[serde(default)]
    pub latest_snapshot: Option<PathBuf>,
    /// Milliseconds from VMM start to guest-init ready.
    pub ready_ms: f64,
    /// Whether the kernel booted or a snapshot (a template) was restored: the VMM's own record.
    #[serde(default)]
    pub launched: LaunchKind,
    /// What guest-init reported when the sandbox became ready (kernel, guest-init, engine).
    #[serde(default)]
    pub guest: Option<BootInfo>,
    /// The VMM's cgroup and its limits, or why it runs without.
    #[serde(default)]
    pub resources: super::cgroup::Placement,
    /// Where the time from the VMM's start to guest-init ready went.
    #[serde(default)]
    pub spans: Vec<crate::timings::Span>,
    /// Whether a warm VMM of the pool was claimed for it (`paddock pool`), rather than a VMM
    /// process started for it.
    #[serde(default)]
    pub from_pool: bool,
    /// Where the caller's time went, from its request to the launch report (the VMM's
    /// `spans` run meanwhile): set by the caller, not recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caller_spans: Vec<crate::timings::Span>,
    /// Page faults the VMM process took from its start to guest-init ready (minor, that is
    /// served from memory: the guest's first touches of its pages among them).
    #[serde(default)]
    pub minor_faults: Option<u64>,
    /// Guest pages prefetched into the page cache from the snapshot's working-set record
    /// before the vCPUs ran.
    #[serde(default)]
    pub prefetched_pages: Option<u64>,
    /// Of those, the pages mapped into KVM's stage-2 tables before the vCPUs ran
    /// (`KVM_PRE_FAULT_MEMORY`, where the host's KVM has it).
    #[serde(default)]
    pub pre_faulted_pages: Option<u64>,
}

/// How a sandbox's VM came to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchKind {
    /// The kernel booted.
    #[default]
    Boot,
    /// A snapshot was restored.
    Restore,
}

impl SandboxInfo {
    /// One line on the guest: kernel, guest-init and the engine.
    pub fn guest_summary(&self) -> String {
        match &self.guest {
            Some(boot) => format!(
                "kernel {}, guest-init {}, engine {}",
                boot.kernel_release,
                boot.init_version,
                describe_engine(&boot.engine)
            ),
            None => "no report from guest-init".to_string(),
        }
    }

    /// A note for the user when the engine is not up (empty otherwise).
    pub fn guest_note(&self) -> String {
        match self.guest.as_ref().map(|b| &b.engine) {
            Some(engine @ EngineState::Failed { .. }) => format!(
                "\npaddock: warning: the sandbox's Docker engine is not running: {} \
                 (see `paddock logs {}` and /var/log/docker.log in the guest)",
                describe_engine(engine),
                self.name
            ),
            _ => String::new(),
        }
    }

    /// Why the guest does not offer what `profile` promises (the engine), if it does not.
    pub fn unusable_reason(&self, profile: Profile) -> Option<String> {
        if !profile.uses_image() {
            return None;
        }
        match self.guest.as_ref().map(|b| &b.engine) {
            Some(EngineState::Up { .. }) => None,
            Some(engine) => Some(format!("Docker engine {}", describe_engine(engine))),
            None => Some("guest-init sent no report".to_string()),
        }
    }
}

/// Human words for an engine state.
pub fn describe_engine(engine: &EngineState) -> String {
    match engine {
        EngineState::Absent => "none".to_string(),
        EngineState::Up { version } => format!("up (Docker {version})"),
        EngineState::Failed { stage, detail } => format!("failed at {stage:?}: {detail}"),
    }
}

impl SandboxInfo {
    /// Writes the record atomically.
    pub fn write(&self, paths: &SandboxPaths) -> Result<(), PathsError> {
        write_json_atomically(self, &paths.info())
    }

    /// Reads a record.
    pub fn read(paths: &SandboxPaths) -> Result<Self, PathsError> {
        let path = paths.info();
        let bytes = std::fs::read(&path).map_err(|source| PathsError::Io {
            what: "reading",
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| PathsError::BadRecord {
            path,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "sb-1", "bench_7.x", &"n".repeat(MAX_NAME_LEN)] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "sp ace",
            &"n".repeat(MAX_NAME_LEN + 1),
            "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn info_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SandboxPaths::new(dir.path(), "x").unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        let info = SandboxInfo {
            name: "x".into(),
            pid: 42,
            vcpus: 2,
            memory_mib: 256,
            created_unix_secs: 1,
            origin_snapshot: None,
            latest_snapshot: None,
            ready_ms: 3.5,
            launched: LaunchKind::Restore,
            guest: None,
            resources: crate::sandbox::cgroup::Placement::Limited(
                "/sys/fs/cgroup/paddock/x-42".into(),
            ),
            spans: vec![crate::timings::Span {
                span: "guest answered".into(),
                ms: 1.5,
            }],
            minor_faults: Some(1234),
            prefetched_pages: Some(56),
            pre_faulted_pages: Some(56),
            from_pool: true,
            caller_spans: Vec::new(),
        };
        info.write(&paths).unwrap();
        assert_eq!(SandboxInfo::read(&paths).unwrap(), info);
    }
}
