//! The egress proxy process beside each sandbox's VMM (docs/EGRESS.md): where its files are,
//! starting and stopping it, and which CA a sandbox's guest trusts. The VMM maps guest memory
//! and opens no internet socket; the proxy holds the secrets and opens no guest memory.

use super::helper::HelperLaunch;
use super::jail::JailPlan;
use super::paths::SandboxPaths;
use paddock_protocol::EGRESS_PORT;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// Why the egress proxy of a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EgressStartError {
    /// The `paddock` executable could not be run.
    #[error("cannot start the egress proxy ({bin}): {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    /// It exited before listening; its log says why.
    #[error("the egress proxy exited at start: {log}")]
    Exited { log: String },
    /// Its socket could not be bound.
    #[error(transparent)]
    Listen(paddock_egress::proxy::ListenError),
    /// A record could not be written.
    #[error("writing {path}: {source}")]
    Record {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the egress files of one host live: configuration (policy, secrets) and state (the
/// decision log, the stable-address map, the sandboxes' CAs).
#[derive(Clone, Debug)]
pub struct EgressFiles {
    config: PathBuf,
    state: PathBuf,
}

/// The configuration directory: `$PADDOCK_CONFIG_DIR`, else `$XDG_CONFIG_HOME/paddock`, else
/// `~/.config/paddock`; absolute (a jailed proxy has another working directory).
pub fn config_dir() -> PathBuf {
    let from_env = |var: &str| std::env::var_os(var).filter(|d| !d.is_empty());
    let dir = if let Some(dir) = from_env("PADDOCK_CONFIG_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = from_env("XDG_CONFIG_HOME") {
        PathBuf::from(dir).join("paddock")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".config/paddock")
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

impl EgressFiles {
    /// The files for sandboxes under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            config: config_dir(),
            state: state_dir.join("egress"),
        }
    }
    /// The global policy (`paddock policy`).
    pub fn global_policy(&self) -> PathBuf {
        self.config.join("policy.json")
    }
    /// The secrets (`paddock secret`), 0600.
    pub fn secrets(&self) -> PathBuf {
        self.config.join("secrets.json")
    }
    /// Every sandbox's decisions, one JSON line each (`paddock policy log`).
    pub fn log(&self) -> PathBuf {
        self.state.join("log.jsonl")
    }
    /// The names the DNS stubs were given stable addresses for (shared by all proxies).
    pub fn names(&self) -> PathBuf {
        self.state.join("names.json")
    }
    /// The CA with this id (its key never leaves the host).
    pub fn ca_dir(&self, id: &str) -> PathBuf {
        self.state.join("ca").join(id)
    }
    /// Creates the state directory.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.state.join("ca"))
    }
    /// Creates the configuration directory (0700) if it is missing: a jailed proxy sees a policy
    /// written later only inside a directory that existed when it started.
    pub fn create_config(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.config)
    }
}

/// A sandbox's egress record (`egress.json`): which CA its guest trusts, and its proxy. A
/// snapshot keeps the CA's id (never its key), so restores and forks of it trust the same CA.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EgressRecord {
    /// The CA's id (a directory under `<state>/egress/ca`).
    pub ca: String,
    /// The proxy process, while it runs.
    #[serde(default)]
    pub proxy_pid: Option<u32>,
    /// The secrets file as the proxy read it (see [`secrets_stamp`]).
    #[serde(default)]
    pub secrets: Option<String>,
}

/// What identifies a version of the secrets file (inode, size, mtime), so a session can tell
/// that its sandbox's proxy read an older one.
pub fn secrets_stamp(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(format!(
        "{}:{}:{}.{}",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

impl EgressRecord {
    /// The record in `dir` (a sandbox or snapshot directory), if any.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read(dir.join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the record into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(RECORD);
        let tmp = dir.join(format!(".{RECORD}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }
}

const RECORD: &str = "egress.json";

/// The sandbox's egress socket: where the guest's connections to host port [`EGRESS_PORT`] land.
pub fn socket(paths: &SandboxPaths) -> PathBuf {
    let mut name = paths.vsock().into_os_string();
    name.push(format!("_{EGRESS_PORT}"));
    PathBuf::from(name)
}

/// The empty directory the proxy's jail is built on.
pub fn jail_root(paths: &SandboxPaths) -> PathBuf {
    paths.dir.join("egress-jail")
}

/// Files the C library's resolver reads (the proxy resolves names with it): bound read-only
/// into the proxy's jail where the host has them.
pub const RESOLVER_FILES: [&str; 5] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// What the proxy of the sandbox at `paths` sees once jailed: its sandbox directory (its socket,
/// the sandbox's policy), the egress state directory (the decision log, the name map), the
/// configuration directory read-only (the global policy, re-read when it changes: bound as a
/// directory, so a policy replaced by rename shows), the resolver's files and `extra_roots`
/// read-only. Nothing else of the host's file system.
pub fn jail_plan(files: &EgressFiles, paths: &SandboxPaths, extra_roots: &[PathBuf]) -> JailPlan {
    let mut plan = JailPlan {
        binds: Vec::new(),
        bare: true,
        keep_network: true,
    };
    plan.bind(&paths.dir, true);
    plan.bind(&files.state, true);
    plan.bind(&files.config, false);
    for path in RESOLVER_FILES.iter().map(Path::new).filter(|p| p.exists()) {
        plan.bind(path, false);
    }
    for root in extra_roots {
        plan.bind(root, false);
    }
    plan
}

/// A sandbox's (or snapshot's) own policy file name.
pub const POLICY_FILE: &str = "policy.json";

/// The sandbox's own policy (`--policy`, `--allow`, `--deny`, `paddock policy --sandbox`).
pub fn sandbox_policy(paths: &SandboxPaths) -> PathBuf {
    paths.dir.join(POLICY_FILE)
}

/// Copies a policy file into `dir`, atomically, or removes `dir`'s when there is none (so a
/// snapshot rewritten in place keeps no stale policy); a snapshot keeps its sandbox's policy
/// this way, and a sandbox restored from it gets it back.
pub fn keep_policy(policy: &Path, dir: &Path) -> std::io::Result<()> {
    let text = match std::fs::read(policy) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match std::fs::remove_file(dir.join(POLICY_FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        Err(e) => return Err(e),
    };
    let tmp = dir.join(format!(".{POLICY_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join(POLICY_FILE))
}

/// The proxy process's own log.
pub fn proxy_log(paths: &SandboxPaths) -> PathBuf {
    paths.dir.join("egress-proxy.log")
}

/// A new CA id: 16 hex digits from the kernel's random source (never a fixed fallback: two
/// sandboxes must not share a CA by accident).
pub fn new_ca_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The descriptor the proxy finds its listening socket on (`paddock __egress --listen-fd`).
pub const LISTEN_FD: i32 = 3;

/// Starts the egress proxy of sandbox `name` (whose VMM is `vmm_pid`) and records it with the
/// CA `ca` in the sandbox's `egress.json`. Its socket is bound here and handed to it (socket
/// activation): a guest connection made before the proxy serves waits in the socket's backlog,
/// so nobody waits for the proxy to start. [`confirm_started`] tells whether it ended at start.
pub fn start_proxy(
    launch: HelperLaunch<'_>,
    state_dir: &Path,
    paths: &SandboxPaths,
    name: &str,
    vmm_pid: u32,
    ca: &str,
) -> Result<Child, EgressStartError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let log_path = proxy_log(paths);
    let log = std::fs::File::create(&log_path).map_err(|source| EgressStartError::Record {
        path: log_path.clone(),
        source,
    })?;
    let socket = socket(paths);
    let listener =
        paddock_egress::proxy::bind_listening(&socket).map_err(EgressStartError::Listen)?;
    let fd = listener.as_raw_fd();
    // Read before the proxy reads the file: a change in between shows as a newer file.
    let stamp = secrets_stamp(&EgressFiles::new(state_dir).secrets());
    let mut command = launch.command(super::helper::EGRESS_PROCESS);
    command
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--name")
        .arg(name)
        .arg("--vmm-pid")
        .arg(vmm_pid.to_string())
        .arg("--ca")
        .arg(ca)
        .arg("--listen-fd")
        .arg(LISTEN_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls are
    // allowed: dup2 and fcntl act on descriptors only.
    unsafe {
        command.pre_exec(move || {
            let kept = if fd == LISTEN_FD {
                // Already in place: only its close-on-exec flag must go.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LISTEN_FD)
            };
            if kept < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let child = command.spawn().map_err(|source| {
        let _ = std::fs::remove_file(&socket);
        EgressStartError::Spawn {
            bin: launch.bin.to_path_buf(),
            source,
        }
    })?;
    // The proxy holds its own copy now.
    drop(listener);
    let record = EgressRecord {
        ca: ca.to_string(),
        proxy_pid: Some(child.id()),
        secrets: stamp,
    };
    record
        .write(&paths.dir)
        .map_err(|source| EgressStartError::Record {
            path: paths.dir.join(RECORD),
            source,
        })?;
    Ok(child)
}

/// Whether the proxy started as `pid` for `paths` still runs: checked once the sandbox is up,
/// so that a proxy that ended at start (its log says why) fails the start as it would have
/// before socket activation.
pub fn confirm_started(pid: u32, paths: &SandboxPaths) -> Result<(), EgressStartError> {
    if super::process_alive(pid) {
        return Ok(());
    }
    let log = std::fs::read_to_string(proxy_log(paths)).unwrap_or_default();
    Err(EgressStartError::Exited {
        log: log.trim().to_string(),
    })
}

/// Ends the proxy recorded for a sandbox (it also ends by itself once its VMM is gone).
pub fn stop_proxy(paths: &SandboxPaths) {
    let Some(EgressRecord {
        proxy_pid: Some(pid),
        ..
    }) = EgressRecord::read(&paths.dir)
    else {
        return;
    };
    super::helper::stop(pid, super::helper::EGRESS_PROCESS, &socket(paths));
}

/// Restarts a running sandbox's proxy when the secrets changed since it read them (a
/// `paddock secret set` after the sandbox started), so the session's placeholders are honoured.
/// Returns whether it restarted; the guest's connections out are made per use, so none breaks.
pub fn refresh_proxy(
    launch: HelperLaunch<'_>,
    state_dir: &Path,
    paths: &SandboxPaths,
    name: &str,
    vmm_pid: u32,
) -> Result<bool, EgressStartError> {
    let Some(record) = EgressRecord::read(&paths.dir) else {
        return Ok(false);
    };
    let now = secrets_stamp(&EgressFiles::new(state_dir).secrets());
    let alive = record.proxy_pid.is_some_and(|pid| {
        super::process_alive(pid) && super::helper::runs(pid, super::helper::EGRESS_PROCESS)
    });
    if alive && record.secrets == now {
        return Ok(false);
    }
    stop_proxy(paths);
    let mut child = start_proxy(launch, state_dir, paths, name, vmm_pid, &record.ca)?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_jail_holds_its_directories_the_resolver_files_and_the_extra_roots() {
        let dir = tempfile::tempdir().unwrap();
        let files = EgressFiles {
            config: dir.path().join("config"),
            state: dir.path().join("state/egress"),
        };
        let paths = SandboxPaths::new(&dir.path().join("state"), "s").unwrap();
        let root = dir.path().join("extra.pem");
        let plan = jail_plan(&files, &paths, std::slice::from_ref(&root));
        assert!(plan.bare && plan.keep_network);
        let bound = |path: &Path| {
            plan.binds
                .iter()
                .find(|b| b.path == path)
                .map(|b| b.writable)
        };
        assert_eq!(bound(&paths.dir), Some(true), "its socket and policy");
        assert_eq!(bound(&files.state), Some(true), "the log and the name map");
        assert_eq!(
            bound(&files.config),
            Some(false),
            "the global policy, read only"
        );
        assert_eq!(bound(&root), Some(false));
        for resolver in RESOLVER_FILES.iter().map(Path::new) {
            assert_eq!(bound(resolver).is_some(), resolver.exists(), "{resolver:?}");
        }
        let others = plan.binds.len() - 4;
        assert_eq!(
            others,
            RESOLVER_FILES
                .iter()
                .filter(|f| Path::new(f).exists())
                .count(),
            "nothing else: {:?}",
            plan.binds
        );
        // Its jail is built in its sandbox's directory.
        assert!(jail_root(&paths).starts_with(&paths.dir));
    }

    #[test]
    fn records_round_trip_and_name_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(EgressRecord::read(dir.path()), None);
        let record = EgressRecord {
            ca: new_ca_id().unwrap(),
            proxy_pid: Some(42),
            secrets: None,
        };
        assert_eq!(record.ca.len(), 16);
        record.write(dir.path()).unwrap();
        assert_eq!(EgressRecord::read(dir.path()), Some(record));
        let paths = SandboxPaths::new(dir.path(), "a").unwrap();
        assert!(socket(&paths).ends_with("vsock.sock_1080"));
    }

    #[test]
    fn a_kept_policy_follows_its_source_and_none_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let (source, snapshot) = (dir.path().join("sandbox"), dir.path().join("snapshot"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(source.join(POLICY_FILE), b"{\"deny\": [\"a.test\"]}").unwrap();
        keep_policy(&source.join(POLICY_FILE), &snapshot).unwrap();
        assert_eq!(
            std::fs::read(snapshot.join(POLICY_FILE)).unwrap(),
            b"{\"deny\": [\"a.test\"]}"
        );
        std::fs::remove_file(source.join(POLICY_FILE)).unwrap();
        keep_policy(&source.join(POLICY_FILE), &snapshot).unwrap();
        assert!(!snapshot.join(POLICY_FILE).exists());
        keep_policy(&source.join(POLICY_FILE), &snapshot).unwrap();
    }

    #[test]
    fn a_proxy_that_fails_at_start_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SandboxPaths::new(dir.path(), "a").unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        let launch = |bin: &'static str| HelperLaunch {
            bin: Path::new(bin),
            seccomp: true,
        };
        // Started on its socket at once; that it ended shows when the sandbox is up.
        let mut child = start_proxy(launch("/bin/false"), dir.path(), &paths, "a", 1, "ab")
            .expect("started without waiting for it");
        assert!(
            socket(&paths).exists(),
            "the socket is bound before the proxy runs"
        );
        let pid = child.id();
        child.wait().unwrap();
        let err = confirm_started(pid, &paths).unwrap_err();
        assert!(matches!(err, EgressStartError::Exited { .. }), "{err}");
        std::fs::remove_file(socket(&paths)).unwrap();
        let err = start_proxy(
            launch("/nonexistent/paddock"),
            dir.path(),
            &paths,
            "a",
            1,
            "ab",
        )
        .unwrap_err();
        assert!(matches!(err, EgressStartError::Spawn { .. }), "{err}");
    }
}
