//! Long-lived sandboxes: one background VMM process each, managed through a state directory.
//! This is the library API behind `paddock start|exec|ls|stop|rm|snapshot|restore|reset|fork`.
//!
//! ```no_run
//! use paddock_vmm::sandbox::{Sandboxes, Launch};
//! let sandboxes = Sandboxes::new(None);
//! let base = sandboxes.start(Some("base"), Launch::Boot {
//!     kernel: "vmlinux".into(), rootfs: "rootfs.cpio".into(), image: None, disk: None,
//!     vcpus: 1, memory_mib: 256, console: Default::default(), kernel_args: None,
//! })?;
//! sandboxes.snapshot("base", "/tmp/snap".as_ref(), false)?;
//! sandboxes.reset("base", None)?; // back to the snapshot, in place
//! # Ok::<(), paddock_vmm::sandbox::SandboxError>(())
//! ```

pub mod cgroup;
pub mod control;
pub mod daemon;
pub mod egress;
pub mod guest;
pub mod helper;
pub mod jail;
pub mod paths;
pub mod pool;
pub mod privileges;
pub mod review;
pub mod rlimits;
pub mod supervisor;
pub mod vmm_user;
pub mod workspace;
pub mod workspace_control;

pub use daemon::{ConsoleLog, Launch};
pub use paths::{SandboxInfo, SandboxPaths};

use control::{ControlError, ControlRequest, ControlResponse};
use daemon::LaunchReport;
use paths::PathsError;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Names, records or the state directory.
    #[error(transparent)]
    Paths(#[from] PathsError),
    /// The VMM process could not be started.
    #[error("starting the VMM process ({bin}) failed: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    /// The VMM process reported a failure (nothing is left running).
    #[error("{0}")]
    Launch(String),
    /// The control socket exchange failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Something unexpected came back.
    #[error("unexpected answer from the VMM: {0}")]
    Unexpected(String),
    /// The sandbox is still running.
    #[error("sandbox {0:?} is running; stop it first or use --force")]
    Running(String),
    /// Preparing the sandbox's directory (the caller's `prepare` step) failed.
    #[error("preparing the sandbox: {0}")]
    Prepare(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sandbox's egress proxy could not be started (the sandbox was not started either).
    #[error(transparent)]
    Egress(#[from] egress::EgressStartError),
    /// The sandbox's workspace could not be shared (or shared again after a reset).
    #[error(transparent)]
    Workspace(#[from] workspace::WorkspaceError),
    /// The sandbox shares no workspace.
    #[error("sandbox {0:?} shares no workspace")]
    NoWorkspace(String),
    /// The sandbox's workspace is live: there is nothing to review.
    #[error(
        "sandbox {0:?} shares its workspace live: the guest's changes are on the host already"
    )]
    NotCopyOnWrite(String),
    /// A guest file of the workspace could not be read.
    #[error(transparent)]
    Review(Box<review::GuestReadError>),
    /// The VMM's own user (`--vmm-user`) cannot be used, or a directory not opened to it.
    #[error(transparent)]
    VmmUser(#[from] vmm_user::VmmUserError),
}

/// A sandbox as `ls` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxStatus {
    /// Its record.
    #[serde(flatten)]
    pub info: SandboxInfo,
    /// "running" or "stopped".
    pub state: &'static str,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The VMM's resident memory (running sandboxes only).
    pub rss_bytes: Option<u64>,
    /// The agent `paddock run AGENT DIR` started it for.
    pub agent: Option<String>,
    /// The host directory `paddock run AGENT DIR` started it for.
    pub workspace: Option<PathBuf>,
    /// The template it was restored from (its key), if it came from the template store.
    pub template: Option<String>,
}

/// What a reset took, as the VMM measured it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResetReport {
    /// From the request to the VM running again, ms.
    pub reset_ms: f64,
    /// From the request to guest-init answering, ms.
    pub ready_ms: f64,
    /// Where the time went (docs/BENCHMARKS.md).
    pub spans: Vec<crate::timings::Span>,
}

/// A sandbox's VMM, just started: a process of ours, or a warm VMM of the pool claimed for it.
#[derive(Debug)]
enum StartedVmm {
    /// Started for the sandbox: its launch report comes on its stdout.
    Spawned(Child),
    /// Claimed from the pool: its launch report comes on the claim connection.
    Claimed(pool::ClaimedVmm),
}

impl StartedVmm {
    /// The host pid whose end is the sandbox's end (the VMM's supervisor).
    fn pid(&self) -> u32 {
        match self {
            Self::Spawned(child) => child.id(),
            Self::Claimed(claimed) => claimed.pid,
        }
    }

    fn is_claimed(&self) -> bool {
        matches!(self, Self::Claimed(_))
    }

    /// Ends it (a failed start).
    fn kill(self) {
        match self {
            Self::Spawned(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Self::Claimed(claimed) => {
                let pid = libc::pid_t::try_from(claimed.pid).unwrap_or(0);
                if pid > 0 {
                    // SAFETY: kill takes a pid and a signal; the supervisor's end takes its
                    // VMM with it (PR_SET_PDEATHSIG).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    /// Reads the launch report line (empty if the VMM ended without one). A process of ours
    /// is reaped whenever it ends, so it never lingers as a zombie.
    fn report_line(self) -> String {
        let mut line = String::new();
        match self {
            Self::Spawned(mut child) => {
                if let Some(out) = child.stdout.take() {
                    let _ = BufReader::new(out).read_line(&mut line);
                }
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
            }
            Self::Claimed(claimed) => {
                let _ = BufReader::new(&claimed.stream).read_line(&mut line);
            }
        }
        line
    }
}

/// Moves the working set a VMM recorded on the first restore of `snapshot` beside it (atomically:
/// concurrent first restores each write a whole record). The VMM's file is decoded and checked
/// first and only the re-encoded record is written: a VMM taken over by its guest cannot plant
/// other bytes (or, through a symlink, a host file) where later VMMs read. A snapshot directory
/// this user cannot write keeps restoring without one.
fn publish_working_set(paths: &SandboxPaths, snapshot: &Path) {
    use crate::snapshot::working_set::{WorkingSet, FILE_NAME};
    let recorded = paths.recorded_working_set();
    let read = WorkingSet::read(&recorded);
    let _ = std::fs::remove_file(&recorded);
    let published = match read {
        Ok(Some(set)) => set.write(&snapshot.join(FILE_NAME)),
        Ok(None) => return,
        Err(e) => Err(e),
    };
    if let Err(e) = published {
        tracing::debug!(
            "working set not kept beside {}: {}",
            snapshot.display(),
            crate::seccomp::describe(&e)
        );
    }
}

/// The sandboxes under one state directory.
#[derive(Clone, Debug)]
pub struct Sandboxes {
    state_dir: PathBuf,
    paddock_bin: PathBuf,
    /// The CPU quota of the sandboxes started (`--cpus`); none: unbounded.
    cpus: Option<f64>,
    /// Whether their VMMs run under seccomp filters (`--no-seccomp` turns them off).
    seccomp: bool,
    /// The user their VMMs become when this process is root (`--vmm-user`).
    vmm_user: Option<vmm_user::VmmUser>,
}

const CONTROL_TIMEOUT: Duration = Duration::from_secs(300);

fn random_suffix() -> String {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `pid` is a live (non-zombie) process.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain spaces.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

impl Sandboxes {
    /// Sandboxes under `state_dir` (default: `$XDG_STATE_HOME/paddock`). VMM processes are
    /// started from `$PADDOCK_BIN`, else this executable if it is `paddock`, else `paddock` on PATH.
    pub fn new(state_dir: Option<&Path>) -> Self {
        let paddock_bin = std::env::var_os("PADDOCK_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .filter(|p| p.file_name().is_some_and(|n| n == "paddock"))
                    .unwrap_or_else(|| PathBuf::from("paddock"))
            });
        Self {
            state_dir: paths::state_dir(state_dir),
            paddock_bin,
            cpus: None,
            seccomp: true,
            vmm_user: None,
        }
    }

    /// Runs the VMMs of the sandboxes started from now on as `user` (see [`vmm_user`]); only
    /// root may. Their directories, and the snapshots they write, are opened to its group.
    pub fn with_vmm_user(
        mut self,
        user: Option<vmm_user::VmmUser>,
    ) -> Result<Self, vmm_user::VmmUserError> {
        if user.is_some() {
            vmm_user::VmmUser::check_caller()?;
        }
        self.vmm_user = user;
        Ok(self)
    }

    /// Gives the sandboxes started from now on a CPU quota of `cpus` CPUs (cgroup v2, see
    /// [`cgroup`]); memory and process limits follow from each guest's size.
    pub fn with_cpus(mut self, cpus: Option<f64>) -> Self {
        self.cpus = cpus;
        self
    }

    /// How this sandbox's helper processes (egress proxy, workspace server) are started.
    fn helper_launch(&self) -> helper::HelperLaunch<'_> {
        helper::HelperLaunch {
            bin: &self.paddock_bin,
            seccomp: self.seccomp,
        }
    }

    /// Runs the VMMs of the sandboxes started from now on without seccomp filters when
    /// `seccomp` is false: for debugging only (see `--no-seccomp`).
    pub fn with_seccomp(mut self, seccomp: bool) -> Self {
        self.seccomp = seccomp;
        self
    }

    /// Uses `bin` as the `paddock` executable for VMM processes.
    pub fn with_binary(mut self, bin: PathBuf) -> Self {
        self.paddock_bin = bin;
        self
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The files of sandbox `name`.
    pub fn paths(&self, name: &str) -> Result<SandboxPaths, SandboxError> {
        Ok(SandboxPaths::new(&self.state_dir, name)?)
    }

    fn reserve(&self, name: &str) -> Result<SandboxPaths, SandboxError> {
        let paths = self.paths(name)?;
        std::fs::create_dir_all(paths.dir.parent().unwrap_or(&self.state_dir)).map_err(
            |source| PathsError::Io {
                what: "creating",
                path: self.state_dir.clone(),
                source,
            },
        )?;
        match std::fs::create_dir(&paths.dir) {
            Ok(()) => {
                if let Some(user) = self.vmm_user {
                    if let Err(e) = vmm_user::share_dir(&paths.dir, user.gid) {
                        let _ = std::fs::remove_dir(&paths.dir);
                        return Err(e.into());
                    }
                }
                Ok(paths)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(PathsError::Exists(name.to_string()).into())
            }
            Err(source) => Err(PathsError::Io {
                what: "creating",
                path: paths.dir,
                source,
            }
            .into()),
        }
    }

    /// The pool of warm VMMs this caller's sandboxes may claim (`paddock pool`).
    pub fn pool(&self) -> pool::PoolLaunch {
        pool::PoolLaunch {
            state_dir: self.state_dir.clone(),
            binary: self.paddock_bin.clone(),
            seccomp: self.seccomp,
            vmm_user: self.vmm_user,
        }
    }

    /// Starts the VMM of a launch: a warm one of the pool claimed for a restore when there is
    /// one, else a VMM process started for it.
    fn spawn(
        &self,
        paths: &SandboxPaths,
        name: &str,
        launch: &Launch,
        clock: &mut crate::timings::SpanClock,
    ) -> Result<(StartedVmm, u32), SandboxError> {
        let claimed = match launch {
            Launch::Restore { .. } => self.pool().claim(paths, name, launch, self.cpus),
            Launch::Boot { .. } => None,
        };
        let vmm = match claimed {
            Some(claimed) => {
                clock.lap("warm VMM claimed");
                StartedVmm::Claimed(claimed)
            }
            None => {
                let child = self.spawn_process(paths, name, launch)?;
                clock.lap("VMM process spawned");
                StartedVmm::Spawned(child)
            }
        };
        let started = self.start_egress(paths, name, launch, vmm)?;
        clock.lap("egress proxy started");
        Ok(started)
    }

    /// Starts a VMM process for a launch.
    fn spawn_process(
        &self,
        paths: &SandboxPaths,
        name: &str,
        launch: &Launch,
    ) -> Result<Child, SandboxError> {
        let log = std::fs::File::create(paths.vmm_log()).map_err(|source| PathsError::Io {
            what: "creating",
            path: paths.vmm_log(),
            source,
        })?;
        let launch_json =
            serde_json::to_string(launch).map_err(|e| SandboxError::Launch(e.to_string()))?;
        let mut cmd = Command::new(&self.paddock_bin);
        cmd.arg(helper::VMM_PROCESS)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--name")
            .arg(name)
            .arg("--launch")
            .arg(launch_json)
            .args(self.cpus.map(|cpus| format!("--cpus={cpus}")))
            .args((!self.seccomp).then_some("--no-seccomp"))
            .args(
                self.vmm_user
                    .map(|user| format!("--vmm-user={}", user.to_arg())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own session: the sandbox outlives this process and its terminal's signals.
            .process_group(0);
        cmd.spawn().map_err(|source| SandboxError::Spawn {
            bin: self.paddock_bin.clone(),
            source,
        })
    }

    /// Starts the egress proxy of a sandbox whose VMM was just started.
    fn start_egress(
        &self,
        paths: &SandboxPaths,
        name: &str,
        launch: &Launch,
        vmm: StartedVmm,
    ) -> Result<(StartedVmm, u32), SandboxError> {
        // The proxy starts while the VMM restores, on a socket bound here: a guest connection
        // out made before it serves waits in the socket's backlog.
        let kept_ca = match launch {
            Launch::Restore { dir, .. } => {
                // A snapshot's own policy comes with it, unless this sandbox was given one.
                let own = egress::sandbox_policy(paths);
                if !own.exists() {
                    let _ = egress::keep_policy(&dir.join(egress::POLICY_FILE), &paths.dir);
                }
                egress::EgressRecord::read(dir).map(|r| r.ca)
            }
            Launch::Boot { .. } => None,
        };
        let ca = match kept_ca {
            Some(ca) => Ok(ca),
            None => egress::new_ca_id().map_err(|source| egress::EgressStartError::Record {
                path: PathBuf::from("/dev/urandom"),
                source,
            }),
        };
        let proxy = egress::EgressFiles::new(&self.state_dir)
            .create()
            .map_err(|source| egress::EgressStartError::Record {
                path: self.state_dir.join("egress"),
                source,
            })
            .and(ca)
            .and_then(|ca| {
                egress::start_proxy(
                    self.helper_launch(),
                    &self.state_dir,
                    paths,
                    name,
                    vmm.pid(),
                    &ca,
                )
            });
        match proxy {
            Ok(mut proxy) => {
                let pid = proxy.id();
                // Reaped whenever it ends; it ends by itself once the VMM is gone.
                std::thread::spawn(move || {
                    let _ = proxy.wait();
                });
                Ok((vmm, pid))
            }
            Err(e) => {
                vmm.kill();
                Err(e.into())
            }
        }
    }

    /// [`await_report`](Self::await_report), then checks that the egress proxy `proxy` did not
    /// end at start (the sandbox is removed if it did).
    fn await_ready(
        &self,
        paths: &SandboxPaths,
        vmm: StartedVmm,
        proxy: u32,
    ) -> Result<SandboxInfo, SandboxError> {
        let info = match self.await_report(paths, vmm) {
            Ok(info) => info,
            Err(e) => {
                // The proxy may still be starting (nobody waited for it): it is stopped before
                // the sandbox's directory goes again, so that nothing of it is left behind.
                helper::stop(proxy, helper::EGRESS_PROCESS, &egress::socket(paths));
                let _ = std::fs::remove_dir_all(&paths.dir);
                return Err(e);
            }
        };
        if let Err(e) = egress::confirm_started(proxy, paths) {
            let _ = self.remove(&info.name, true);
            return Err(e.into());
        }
        Ok(info)
    }

    fn await_report(
        &self,
        paths: &SandboxPaths,
        vmm: StartedVmm,
    ) -> Result<SandboxInfo, SandboxError> {
        let line = vmm.report_line();
        let report: Option<LaunchReport> = serde_json::from_str(line.trim()).ok();
        match report {
            Some(LaunchReport::Ready(info)) => {
                cgroup::note_once(&self.state_dir, &info.resources);
                if let Some(snapshot) = &info.origin_snapshot {
                    publish_working_set(paths, snapshot);
                }
                Ok(*info)
            }
            Some(LaunchReport::Failed(message)) => {
                let _ = std::fs::remove_dir_all(&paths.dir);
                Err(SandboxError::Launch(message))
            }
            None => {
                let log = std::fs::read_to_string(paths.vmm_log()).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&paths.dir);
                Err(SandboxError::Launch(format!(
                    "the VMM process died during start-up: {}",
                    log.trim()
                )))
            }
        }
    }

    /// Starts a sandbox in the background; returns once guest-init is ready.
    pub fn start(&self, name: Option<&str>, launch: Launch) -> Result<SandboxInfo, SandboxError> {
        self.start_prepared(name, launch, &|_| Ok(()))
    }

    /// Starts a sandbox like [`start`](Self::start), calling `prepare` with its directory
    /// before anything runs (e.g. to write its own egress policy).
    pub fn start_prepared(
        &self,
        name: Option<&str>,
        launch: Launch,
        prepare: &dyn Fn(&SandboxPaths) -> Result<(), SandboxError>,
    ) -> Result<SandboxInfo, SandboxError> {
        let mut clock = crate::timings::SpanClock::starting_at(Instant::now());
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| format!("sb-{}", random_suffix()));
        let paths = self.reserve(&name)?;
        if let Err(e) = prepare(&paths) {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e);
        }
        clock.lap("sandbox directory made");
        let (vmm, proxy) = match self.spawn(&paths, &name, &launch, &mut clock) {
            Ok(started) => started,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&paths.dir);
                return Err(e);
            }
        };
        let claimed = vmm.is_claimed();
        let started = self.await_ready(&paths, vmm, proxy).map(|mut info| {
            clock.lap("launch report read");
            info.caller_spans = clock.into_spans();
            info
        });
        if claimed {
            self.pool().refill_in_background();
        }
        started
    }

    /// Starts `count` sandboxes from one snapshot, in parallel; they share its memory file.
    pub fn fork(
        &self,
        dir: &Path,
        count: usize,
        prefix: &str,
        console: bool,
    ) -> Result<Vec<SandboxInfo>, SandboxError> {
        let mut pending = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("{prefix}-{i}");
            let paths = self.reserve(&name)?;
            let launch = Launch::Restore {
                dir: dir.to_path_buf(),
                console: if console {
                    ConsoleLog::Sandbox
                } else {
                    ConsoleLog::Off
                },
                image: None,
            };
            let mut clock = crate::timings::SpanClock::starting_at(Instant::now());
            match self.spawn(&paths, &name, &launch, &mut clock) {
                Ok((vmm, proxy)) => pending.push((paths, vmm, proxy)),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&paths.dir);
                    return Err(e);
                }
            }
        }
        let mut up = Vec::with_capacity(count);
        let mut first_error = None;
        let mut claimed = false;
        for (paths, vmm, proxy) in pending {
            claimed |= vmm.is_claimed();
            match self.await_ready(&paths, vmm, proxy) {
                Ok(info) => up.push(info),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if claimed {
            self.pool().refill_in_background();
        }
        match first_error {
            Some(e) => {
                // All or nothing: stop the ones that came up.
                for info in &up {
                    let _ = self.remove(&info.name, true);
                }
                Err(e)
            }
            None => Ok(up),
        }
    }

    /// Every sandbox under the state directory.
    pub fn list(&self) -> Result<Vec<SandboxStatus>, SandboxError> {
        let root = self.state_dir.join("sandboxes");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(out);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(paths) = self.paths(&name) else {
                continue;
            };
            let Ok(info) = SandboxInfo::read(&paths) else {
                continue;
            };
            let running = process_alive(info.pid) && paths.control().exists();
            let record = paths::AgentRecord::read(&paths);
            let rss_bytes = running.then(|| process_rss(info.pid)).flatten();
            out.push(SandboxStatus {
                state: if running { "running" } else { "stopped" },
                uptime_secs: if running {
                    now.saturating_sub(info.created_unix_secs)
                } else {
                    0
                },
                rss_bytes,
                agent: record.as_ref().map(|r| r.agent.clone()),
                workspace: record.map(|r| r.workspace),
                template: template_of(&info),
                info,
            });
        }
        out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        Ok(out)
    }

    fn control(
        &self,
        name: &str,
        request: &ControlRequest,
    ) -> Result<ControlResponse, SandboxError> {
        let paths = self.paths(name)?;
        if !paths.dir.exists() {
            return Err(PathsError::NotFound(name.to_string()).into());
        }
        // The directory a request names goes to the (jailed) VMM open, opened here.
        let dir = match request.directory() {
            Some(dir) => {
                if matches!(request, ControlRequest::Snapshot { .. }) {
                    std::fs::create_dir_all(dir).map_err(|source| PathsError::Io {
                        what: "creating",
                        path: dir.to_path_buf(),
                        source,
                    })?;
                    // A VMM that runs as its own user writes there through its group, as it
                    // does in its own directory.
                    if let Some(gid) = vmm_user::shared_group(&paths.dir) {
                        vmm_user::share_dir(dir, gid)?;
                    }
                }
                let opened = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(dir)
                    .map_err(|source| PathsError::Io {
                        what: "opening",
                        path: dir.to_path_buf(),
                        source,
                    })?;
                Some(opened)
            }
            None => None,
        };
        Ok(control::request(
            &paths.control(),
            request,
            dir.as_ref(),
            CONTROL_TIMEOUT,
        )?)
    }

    /// Writes a snapshot of sandbox `name` into `dir`; stops the sandbox afterwards if `stop`.
    /// Returns (vCPU pause time in ms, memory bytes written).
    pub fn snapshot(&self, name: &str, dir: &Path, stop: bool) -> Result<(f64, u64), SandboxError> {
        let dir = std::path::absolute(dir).map_err(|source| PathsError::Io {
            what: "resolving",
            path: dir.to_path_buf(),
            source,
        })?;
        match self.control(
            name,
            &ControlRequest::Snapshot {
                dir: dir.clone(),
                stop,
            },
        )? {
            ControlResponse::Snapshotted {
                paused_ms,
                memory_written,
            } => {
                // Restores and forks of it trust the CA this guest trusts (its id, not its key)
                // and follow the sandbox's own policy.
                let paths = self.paths(name)?;
                egress::keep_policy(&egress::sandbox_policy(&paths), &dir).map_err(|source| {
                    PathsError::Io {
                        what: "copying the policy into",
                        path: dir.clone(),
                        source,
                    }
                })?;
                if let Some(record) = egress::EgressRecord::read(&paths.dir) {
                    let keep = egress::EgressRecord {
                        ca: record.ca,
                        proxy_pid: None,
                        secrets: None,
                    };
                    keep.write(&dir).map_err(|source| PathsError::Io {
                        what: "writing",
                        path: dir.join("egress.json"),
                        source,
                    })?;
                } else {
                    // No CA to name: nothing stale from a snapshot written there before.
                    let _ = std::fs::remove_file(dir.join("egress.json"));
                }
                // What the sandbox shared: a restore shares it again and carries the guest's
                // mount on (the VMM kept the workspace server's state in the snapshot).
                workspace::SnapshotShare::keep(&paths, &dir)?;
                if stop {
                    self.wait_stopped(name, Duration::from_secs(10));
                }
                Ok((paused_ms, memory_written))
            }
            other => Err(SandboxError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Tells sandbox `name` that an exec in it ended. After the first exec since the first
    /// restore of its snapshot (once), its VMM records the snapshot's working set again, now
    /// through that exec, and this moves the record beside the snapshot: later restores
    /// prefetch (and pre-fault) what a restore and a first command touch. Any other time it
    /// costs one file check. Returns the pages recorded, if it recorded. `paddock exec` calls
    /// it; library callers that run commands through [`Self::vsock_path`] may too.
    pub fn exec_ended(&self, name: &str) -> Result<Option<u64>, SandboxError> {
        let paths = self.paths(name)?;
        // Only one caller wins the removal, so the VMM is asked once.
        if std::fs::remove_file(paths.working_set_pending()).is_err() {
            return Ok(None);
        }
        match self.control(name, &ControlRequest::RecordWorkingSet)? {
            ControlResponse::WorkingSetRecorded { pages: Some(pages) } => {
                if let Some(snapshot) = SandboxInfo::read(&paths)
                    .ok()
                    .and_then(|info| info.origin_snapshot)
                {
                    publish_working_set(&paths, &snapshot);
                }
                Ok(Some(pages))
            }
            ControlResponse::WorkingSetRecorded { pages: None } => Ok(None),
            ControlResponse::Error { message } => Err(ControlError::Remote(message).into()),
            other => Err(SandboxError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Resets sandbox `name` in place to `to`, else its latest snapshot, else its origin.
    pub fn reset(&self, name: &str, to: Option<&Path>) -> Result<ResetReport, SandboxError> {
        let to = match to {
            Some(dir) => Some(std::path::absolute(dir).map_err(|source| PathsError::Io {
                what: "resolving",
                path: dir.to_path_buf(),
                source,
            })?),
            None => None,
        };
        match self.control(name, &ControlRequest::Reset { to })? {
            ControlResponse::Reset {
                reset_ms,
                ready_ms,
                mut spans,
            } => {
                // A mount the snapshot held carries on (the VMM gave the server its state of
                // that moment before the guest ran); without one, the guest mounts the share
                // anew, served by the same server, before the reset is done.
                let paths = self.paths(name)?;
                if let Some(mut record) = workspace::WorkspaceRecord::read(&paths) {
                    let start = Instant::now();
                    let carried = workspace::mount(&paths.vsock(), &record.dir, record.mode)?;
                    // Copy-on-write, the guest's changes are the snapshot's, checked against
                    // the host as of the snapshot's mount; a new mount starts over.
                    let kept = carried
                        .then(|| SandboxInfo::read(&paths).ok()?.origin_snapshot)
                        .flatten()
                        .and_then(|origin| workspace::WorkspaceRecord::read_in(&origin))
                        .filter(|kept| kept.dir == record.dir);
                    match kept {
                        Some(kept) => {
                            record.mounted_ns = kept.mounted_ns;
                            record.applied = kept.applied;
                        }
                        None => {
                            record.mounted_ns = workspace::now_ns();
                            record.applied.clear();
                        }
                    }
                    record.write(&paths)?;
                    spans.push(crate::timings::Span {
                        span: if carried {
                            "workspace carried on"
                        } else {
                            "workspace mounted"
                        }
                        .into(),
                        ms: start.elapsed().as_secs_f64() * 1e3,
                    });
                }
                Ok(ResetReport {
                    reset_ms,
                    ready_ms,
                    spans,
                })
            }
            other => Err(SandboxError::Unexpected(format!("{other:?}"))),
        }
    }

    fn wait_stopped(&self, name: &str, timeout: Duration) -> bool {
        let Ok(paths) = self.paths(name) else {
            return true;
        };
        let Ok(info) = SandboxInfo::read(&paths) else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while process_alive(info.pid) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops sandbox `name` (its VMM process exits); its record stays until `remove`.
    pub fn stop(&self, name: &str) -> Result<(), SandboxError> {
        let paths = self.paths(name)?;
        let info = SandboxInfo::read(&paths).map_err(|_| PathsError::NotFound(name.to_string()))?;
        if !process_alive(info.pid) {
            return Ok(());
        }
        match self.control(name, &ControlRequest::Stop) {
            Ok(_) | Err(SandboxError::Control(ControlError::NotRunning { .. })) => {}
            Err(e) => return Err(e),
        }
        if !self.wait_stopped(name, Duration::from_secs(10)) && process_alive(info.pid) {
            if let Ok(pid) = libc::pid_t::try_from(info.pid) {
                // SAFETY: kill(2) with a pid we recorded and checked is alive has no memory
                // effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            self.wait_stopped(name, Duration::from_secs(5));
        }
        egress::stop_proxy(&paths);
        workspace::stop_server(&paths);
        cgroup::remove(&info.resources);
        let _ = std::fs::remove_file(paths.control());
        let _ = std::fs::remove_file(paths.vsock());
        Ok(())
    }

    /// Removes sandbox `name`'s record and files; a running sandbox only with `force` (stopped first).
    pub fn remove(&self, name: &str, force: bool) -> Result<(), SandboxError> {
        let paths = self.paths(name)?;
        if !paths.dir.exists() {
            return Err(PathsError::NotFound(name.to_string()).into());
        }
        if let Ok(info) = SandboxInfo::read(&paths) {
            if process_alive(info.pid) {
                if !force {
                    return Err(SandboxError::Running(name.to_string()));
                }
                self.stop(name)?;
            }
            cgroup::remove(&info.resources);
        }
        std::fs::remove_dir_all(&paths.dir).map_err(|source| PathsError::Io {
            what: "removing",
            path: paths.dir.clone(),
            source,
        })?;
        Ok(())
    }

    /// Makes sure a running sandbox's egress proxy runs with the current secrets (restarting
    /// it if they changed or it is gone); see [`egress::refresh_proxy`].
    pub fn refresh_egress(&self, name: &str) -> Result<bool, SandboxError> {
        let paths = self.paths(name)?;
        let info = SandboxInfo::read(&paths).map_err(|_| PathsError::NotFound(name.to_string()))?;
        Ok(egress::refresh_proxy(
            self.helper_launch(),
            &self.state_dir,
            &paths,
            name,
            info.pid,
        )?)
    }

    /// Shares host directory `dir` with running sandbox `name`: guest-init mounts it at the
    /// same absolute path (symlinks resolved here, once), live or copy-on-write as `mode` says,
    /// served by a workspace server process of its own that sees nothing else. Returns the
    /// path. A sandbox shares one directory.
    pub fn share_workspace(
        &self,
        name: &str,
        dir: &Path,
        mode: workspace::WorkspaceMode,
    ) -> Result<PathBuf, SandboxError> {
        self.share_workspace_from(name, dir, mode, None)
    }

    /// [`Self::share_workspace`] for a sandbox restored or forked from a snapshot that held
    /// a share (`kept`): the guest's mount from the snapshot carries on, its open files and
    /// all, when `dir` is the directory it held and the snapshot kept the server's state;
    /// otherwise it is mounted anew.
    pub fn share_workspace_from(
        &self,
        name: &str,
        dir: &Path,
        mode: workspace::WorkspaceMode,
        kept: Option<&workspace::SnapshotShare>,
    ) -> Result<PathBuf, SandboxError> {
        let paths = self.paths(name)?;
        let info = SandboxInfo::read(&paths).map_err(|_| PathsError::NotFound(name.to_string()))?;
        let dir = workspace::resolve(dir)?;
        let uds = self.vsock_path(name)?;
        let mut server =
            workspace::start_server(self.helper_launch(), &paths, &dir, mode, info.pid)?;
        let carry = kept.filter(|k| k.record.dir == dir && k.record.mode == mode);
        // The guest's mount from the snapshot (if any) is waiting to carry on: the state it
        // carries on from, or word that none comes (it is then mounted anew at once).
        let state = carry.and_then(|k| k.state.as_deref());
        if kept.is_some() {
            if let Err(e) = workspace_control::load(&workspace_control::socket(&paths), state) {
                tracing::warn!("the snapshot's workspace mount is mounted anew: {e}");
            }
        }
        let mounted_ns = workspace::now_ns();
        let mounted = workspace::mount(&uds, &dir, mode).and_then(|carried| {
            let mut record = workspace::WorkspaceRecord::read(&paths).ok_or_else(|| {
                workspace::WorkspaceError::Record {
                    path: paths.dir.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                }
            })?;
            match carry.filter(|_| carried) {
                Some(kept) => {
                    record.mounted_ns = kept.record.mounted_ns;
                    record.applied = kept.record.applied.clone();
                }
                None => record.mounted_ns = mounted_ns,
            }
            record.write(&paths)
        });
        if let Err(e) = mounted {
            workspace::stop_server(&paths);
            let _ = server.wait();
            workspace::WorkspaceRecord::remove(&paths);
            return Err(e.into());
        }
        // Reaped whenever it ends; it ends by itself once the VMM is gone.
        std::thread::spawn(move || {
            let _ = server.wait();
        });
        Ok(dir)
    }

    /// The shared workspace of running sandbox `name`, which must be copy-on-write, and its
    /// vsock socket.
    fn cow_workspace(
        &self,
        name: &str,
    ) -> Result<(workspace::WorkspaceRecord, PathBuf), SandboxError> {
        let paths = self.paths(name)?;
        let uds = self.vsock_path(name)?;
        match workspace::WorkspaceRecord::read(&paths) {
            Some(record) if record.mode == workspace::WorkspaceMode::Cow => Ok((record, uds)),
            Some(_) => Err(SandboxError::NotCopyOnWrite(name.to_string())),
            None => Err(SandboxError::NoWorkspace(name.to_string())),
        }
    }

    /// What the guest changed in sandbox `name`'s copy-on-write workspace, parents first.
    pub fn workspace_changes(
        &self,
        name: &str,
    ) -> Result<(PathBuf, Vec<paddock_protocol::workspace::WorkspaceChange>), SandboxError> {
        let (record, uds) = self.cow_workspace(name)?;
        let changes = review::changes(&uds, &record.dir)?;
        Ok((record.dir, changes))
    }

    /// The guest's bytes of `rel` in sandbox `name`'s copy-on-write workspace, if there are
    /// no more than `limit` of them (see [`review::guest_file`]).
    pub fn workspace_guest_file(
        &self,
        name: &str,
        rel: &[u8],
        limit: u64,
    ) -> Result<Vec<u8>, SandboxError> {
        let (record, uds) = self.cow_workspace(name)?;
        review::guest_file(&uds, &record.dir, rel, limit)
            .map_err(|e| SandboxError::Review(Box::new(e)))
    }

    /// Applies the changes of sandbox `name`'s copy-on-write workspace at or beneath
    /// `selected` (relative paths; all when empty) to the host directory: see [`review`].
    pub fn apply_workspace(
        &self,
        name: &str,
        selected: &[Vec<u8>],
    ) -> Result<Vec<review::Outcome>, SandboxError> {
        let (mut record, uds) = self.cow_workspace(name)?;
        let changes: Vec<_> = review::changes(&uds, &record.dir)?
            .into_iter()
            .filter(|c| review::is_selected(&c.path, selected))
            .collect();
        let outcomes = review::apply(&uds, &mut record, &changes);
        record.write(&self.paths(name)?)?;
        Ok(outcomes)
    }

    /// The vsock socket of a running sandbox (for exec).
    pub fn vsock_path(&self, name: &str) -> Result<PathBuf, SandboxError> {
        let paths = self.paths(name)?;
        let info = SandboxInfo::read(&paths).map_err(|_| PathsError::NotFound(name.to_string()))?;
        if !process_alive(info.pid) || !paths.vsock().exists() {
            return Err(ControlError::NotRunning {
                path: paths.vsock(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
            .into());
        }
        Ok(paths.vsock())
    }
}

/// Resident memory of process `pid` in bytes.
pub fn process_rss(pid: u32) -> Option<u64> {
    rss_from(&format!("/proc/{pid}/statm"))
}

/// Resident memory of this process in bytes (its pid may be another inside its jail).
pub fn own_rss() -> Option<u64> {
    rss_from("/proc/self/statm")
}

fn rss_from(statm_path: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(statm_path).ok()?;
    statm
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|p| p * 4096)
}

/// The key of the template a sandbox was restored from, when its origin is in the template
/// store.
fn template_of(info: &SandboxInfo) -> Option<String> {
    let origin = info.origin_snapshot.as_deref()?;
    let store = crate::template::TemplateStore::default_location();
    (origin.parent()? == store.dir())
        .then(|| origin.file_name())
        .flatten()
        .map(|key| key.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_bogus_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
        assert!(process_rss(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn unknown_sandboxes_are_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sandboxes::new(Some(dir.path()));
        assert!(s.list().unwrap().is_empty());
        let err = s.reset("nope", None).unwrap_err();
        assert!(
            err.to_string().contains("no sandbox named \"nope\""),
            "{err}"
        );
        assert!(matches!(
            s.remove("nope", false),
            Err(SandboxError::Paths(PathsError::NotFound(_)))
        ));
        assert!(matches!(
            s.paths("../etc"),
            Err(SandboxError::Paths(PathsError::BadName(_)))
        ));
    }
}
