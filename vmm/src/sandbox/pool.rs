//! Warm VMMs: a pool of idle VMM processes, each with its VM, irqchip, PIT and first vCPU made
//! ahead, that `restore`, `fork`, `start` and `run` claim instead of starting a VMM process.
//!
//! There is no daemon. The pool is a directory (`STATE/pool/idle/ID`, one per warm VMM, holding
//! its claim socket, record and log). A caller claims an entry by renaming it to
//! `pool/taken/ID` (one rename wins), connects to its socket (a VMM that died while idle is
//! found out here, removed and skipped), moves what it prepared for its sandbox into it, and
//! renames it to the sandbox's directory; then it sends the claim (name, launch, CPU quota) and
//! reads the launch report, as from a VMM it started. A caller that claimed one starts a
//! replacement in the background. `paddock pool fill|show|drain` manage it; without a pool
//! nothing changes.

pub mod entry;
pub mod warm;

use crate::sandbox::daemon::Launch;
use crate::sandbox::paths::SandboxPaths;
use entry::{EntryConfig, EntryError, EntryRecord, PoolDirs, CLAIM_SOCKET, LOG_FILE};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most warm VMMs a pool keeps.
pub const MAX_POOL_SIZE: usize = 256;

/// What a caller sends the warm VMM it claimed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolClaim {
    /// The sandbox's name (its directory is the entry's, moved).
    pub name: String,
    /// What to restore.
    pub launch: Launch,
    /// Its CPU quota.
    pub cpus: Option<f64>,
}

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A directory or file of the pool could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The size asked for is too large.
    #[error("a pool of {0} warm VMMs is more than the {MAX_POOL_SIZE} allowed")]
    TooLarge(usize),
    /// The `paddock` binary to start warm VMMs from cannot be found.
    #[error("cannot find the paddock binary {0} to start warm VMMs from")]
    Binary(PathBuf),
    /// A record could not be written.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// Warm VMMs ended before they were ready (their logs say why).
    #[error("{count} warm VMM(s) ended while starting: {log}")]
    Died { count: usize, log: String },
    /// Warm VMMs did not become ready in time.
    #[error("{0} warm VMM(s) were not ready after {1:?}")]
    NotReady(usize, Duration),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PoolError {
    let path = path.to_path_buf();
    move |source| PoolError::Io { what, path, source }
}

/// One warm VMM as `paddock pool show` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    /// Its entry's name.
    pub id: String,
    /// "ready" (claimable), "starting", "stale" (of another binary, options or environment:
    /// never claimed by this caller) or "dead".
    pub state: &'static str,
    /// The supervisor's pid.
    pub pid: Option<u32>,
    /// Resident memory of the supervisor and the VMM together.
    pub rss_bytes: Option<u64>,
    /// Seconds since it started.
    pub age_secs: Option<u64>,
}

/// The pool as `paddock pool show` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    /// The size `paddock pool fill` asked for.
    pub size: usize,
    /// Its warm VMMs.
    pub entries: Vec<EntryStatus>,
}

/// A warm VMM a caller has claimed: the report comes on `stream`.
#[derive(Debug)]
pub struct ClaimedVmm {
    /// The connection the launch report comes back on.
    pub stream: UnixStream,
    /// The supervisor's host pid (the process whose end is the sandbox's end).
    pub pid: u32,
}

/// How the pool's warm VMMs are started: the binary and the options of the caller's
/// `Sandboxes` (a caller claims only VMMs started the same way).
#[derive(Debug, Clone)]
pub struct PoolLaunch {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The `paddock` binary.
    pub binary: PathBuf,
    /// Whether seccomp filters are on.
    pub seccomp: bool,
    /// The user the VMMs become, when started by root.
    pub vmm_user: Option<crate::sandbox::vmm_user::VmmUser>,
}

impl PoolLaunch {
    fn dirs(&self) -> PoolDirs {
        PoolDirs::new(&self.state_dir)
    }

    fn config(&self) -> Option<EntryConfig> {
        EntryConfig::current(
            &self.binary,
            self.seccomp,
            self.vmm_user.map(|user| (user.uid, user.gid)),
        )
    }

    /// Sets the pool's size to `size` and starts warm VMMs until that many are idle (removing
    /// dead and stale ones, and stopping any beyond `size`); waits up to `timeout` for the new
    /// ones to be ready.
    pub fn fill(&self, size: usize, timeout: Duration) -> Result<PoolStatus, PoolError> {
        if size > MAX_POOL_SIZE {
            return Err(PoolError::TooLarge(size));
        }
        let dirs = self.dirs();
        std::fs::create_dir_all(dirs.idle()).map_err(io_err("creating", &dirs.idle()))?;
        let size_file = dirs.size_file();
        std::fs::write(&size_file, format!("{size}\n")).map_err(io_err("writing", &size_file))?;
        self.sweep();
        let mut live = self.usable_entries();
        while live.len() > size {
            if let Some(id) = live.pop() {
                self.discard(&id);
            }
        }
        for _ in live.len()..size {
            self.start_one()?;
        }
        // Those started earlier (by a refill, say) may not be ready yet either.
        self.await_ready(&self.usable_entries(), timeout)?;
        Ok(self.status())
    }

    /// Starts warm VMMs in the background until the pool holds its size again (after a claim).
    /// Failures are logged, never returned: the caller's sandbox is up either way.
    pub fn refill(&self) {
        let size = self.dirs().size();
        if size == 0 {
            return;
        }
        let live = self.usable_entries().len();
        for _ in live..size {
            if let Err(e) = self.start_one() {
                tracing::warn!("the pool was not refilled: {e}");
                return;
            }
        }
    }

    /// [`refill`](Self::refill) on a thread of its own, off the caller's path; a process that
    /// is about to exit waits for it with [`await_refills`].
    pub fn refill_in_background(&self) {
        let pool = self.clone();
        let refill = std::thread::spawn(move || pool.refill());
        crate::devices::bus::lock(&REFILLS).push(refill);
    }

    /// Sets the size to 0 and stops every warm VMM.
    pub fn drain(&self) -> Result<usize, PoolError> {
        let dirs = self.dirs();
        if !dirs.root.exists() {
            return Ok(0);
        }
        let size_file = dirs.size_file();
        std::fs::write(&size_file, "0\n").map_err(io_err("writing", &size_file))?;
        let ids = list(&dirs.idle());
        let mut stopped = 0;
        for id in &ids {
            if self.discard(id) {
                stopped += 1;
            }
        }
        Ok(stopped)
    }

    /// The pool's size and its warm VMMs.
    pub fn status(&self) -> PoolStatus {
        let dirs = self.dirs();
        let config = self.config();
        let now = super::daemon::now_secs();
        let entries = list(&dirs.idle())
            .into_iter()
            .map(|id| {
                let dir = dirs.idle().join(&id);
                let found = EntryState::of(&dir, config.as_ref());
                let record = found.record();
                let pid = record.map(|r| r.pid);
                let state = match &found {
                    EntryState::Dead(_) => "dead",
                    EntryState::Foreign(_) => "stale",
                    EntryState::Ours(_) if dir.join(CLAIM_SOCKET).exists() => "ready",
                    _ => "starting",
                };
                EntryStatus {
                    id,
                    state,
                    pid,
                    rss_bytes: pid.filter(|_| found.alive()).and_then(process_tree_rss),
                    age_secs: record.map(|r| now.saturating_sub(r.created_unix_secs)),
                }
            })
            .collect();
        PoolStatus {
            size: dirs.size(),
            entries,
        }
    }

    /// Claims an idle warm VMM for sandbox `paths` (reserved, possibly prepared): `None` when
    /// there is none usable, and the caller starts a VMM itself.
    pub fn claim(
        &self,
        paths: &SandboxPaths,
        name: &str,
        launch: &Launch,
        cpus: Option<f64>,
    ) -> Option<ClaimedVmm> {
        let dirs = self.dirs();
        if !dirs.idle().exists() {
            return None;
        }
        let config = self.config()?;
        for id in list(&dirs.idle()) {
            let entry = dirs.idle().join(&id);
            let Ok(Some(record)) = EntryRecord::read(&entry) else {
                continue;
            };
            if record.config != config || !entry.join(CLAIM_SOCKET).exists() {
                continue;
            }
            let Some(taken) = self.take(&id) else {
                continue;
            };
            // A VMM killed while idle is found out here, and skipped.
            let Ok(stream) = UnixStream::connect(taken.join(CLAIM_SOCKET)) else {
                let _ = std::fs::remove_dir_all(&taken);
                continue;
            };
            // On failure what the caller prepared is back in its directory, untouched.
            let prepared = match move_into_place(&taken, &paths.dir) {
                Ok(prepared) => prepared,
                Err(e) => {
                    tracing::warn!("a warm VMM could not be given its sandbox's directory: {e}");
                    let _ = std::fs::remove_dir_all(&taken);
                    return None;
                }
            };
            let claim = PoolClaim {
                name: name.to_string(),
                // Against this caller's working directory: the warm VMM's is another.
                launch: launch.clone().absolute(),
                cpus,
            };
            let mut stream = stream;
            if paddock_protocol::write_frame(&mut stream, &claim).is_err() {
                // It ended between the connect and the claim: the sandbox's directory keeps
                // only what the caller prepared, and the caller starts a VMM itself.
                if let Err(e) = take_entry_back(&paths.dir, &taken, &prepared) {
                    tracing::warn!(
                        "a dead warm VMM's files stay in {}: {e}",
                        paths.dir.display()
                    );
                }
                return None;
            }
            return Some(ClaimedVmm {
                stream,
                pid: record.pid,
            });
        }
        None
    }

    /// Moves idle entry `id` to `taken/`: it is then this caller's alone.
    fn take(&self, id: &str) -> Option<PathBuf> {
        let dirs = self.dirs();
        let _ = std::fs::create_dir_all(dirs.taken());
        let taken = dirs.taken().join(id);
        std::fs::rename(dirs.idle().join(id), &taken).ok()?;
        Some(taken)
    }

    /// Takes idle entry `id` and lets its VMM go (it ends when its claim connection closes
    /// unclaimed, or is dead already); removes the entry. Whether a live VMM was stopped.
    fn discard(&self, id: &str) -> bool {
        let Some(taken) = self.take(id) else {
            return false;
        };
        let stopped = UnixStream::connect(taken.join(CLAIM_SOCKET)).is_ok();
        let _ = std::fs::remove_dir_all(&taken);
        stopped
    }

    /// Removes dead and stale entries, and entries left taken by a caller that died mid-claim.
    fn sweep(&self) {
        let dirs = self.dirs();
        let config = self.config();
        for id in list(&dirs.idle()) {
            let dir = dirs.idle().join(&id);
            match EntryState::of(&dir, config.as_ref()) {
                EntryState::Ours(_) => {}
                // Being written by the process starting it, unless that is long ago.
                EntryState::Unwritten => {
                    if older_than(&dir, Duration::from_secs(60)) {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
                EntryState::Foreign(_) | EntryState::Dead(_) | EntryState::Corrupt => {
                    self.discard(&id);
                }
            }
        }
        for id in list(&dirs.taken()) {
            let dir = dirs.taken().join(&id);
            if older_than(&dir, Duration::from_secs(60)) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Idle entries that are alive and of this caller's configuration.
    fn usable_entries(&self) -> Vec<String> {
        let dirs = self.dirs();
        let config = self.config();
        list(&dirs.idle())
            .into_iter()
            .filter(|id| {
                matches!(
                    EntryState::of(&dirs.idle().join(id), config.as_ref()),
                    EntryState::Ours(_)
                )
            })
            .collect()
    }

    /// Starts one warm VMM in a new entry; returns its id.
    fn start_one(&self) -> Result<String, PoolError> {
        let config = self
            .config()
            .ok_or_else(|| PoolError::Binary(self.binary.clone()))?;
        let dirs = self.dirs();
        let id = format!("w-{}", super::random_suffix());
        let dir = dirs.idle().join(&id);
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        if let Some(user) = self.vmm_user {
            if let Err(e) = crate::sandbox::vmm_user::share_dir(&dir, user.gid) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(PoolError::Io {
                    what: "sharing",
                    path: dir,
                    source: std::io::Error::other(e),
                });
            }
        }
        let log_path = dir.join(LOG_FILE);
        let log = std::fs::File::create(&log_path).map_err(io_err("creating", &log_path))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg(crate::sandbox::helper::VMM_PROCESS)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--pool-entry")
            .arg(&id)
            .args((!self.seccomp).then_some("--no-seccomp"))
            .args(
                self.vmm_user
                    .map(|user| format!("--vmm-user={}", user.to_arg())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(PoolError::Io {
                    what: "starting a warm VMM from",
                    path: self.binary.clone(),
                    source,
                });
            }
        };
        let record = EntryRecord {
            config,
            pid: child.id(),
            created_unix_secs: super::daemon::now_secs(),
        };
        if let Err(e) = record.write(&dir) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        // Reaped whenever it ends (a long-lived library caller must not collect zombies).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(id)
    }

    /// Waits until every entry of `ids` is ready (its claim socket bound) or gone.
    fn await_ready(&self, ids: &[String], timeout: Duration) -> Result<(), PoolError> {
        let dirs = self.dirs();
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = 0;
            let mut died = Vec::new();
            for id in ids {
                let dir = dirs.idle().join(id);
                if dir.join(CLAIM_SOCKET).exists() {
                    continue;
                }
                if EntryState::of(&dir, None).alive() {
                    waiting += 1;
                } else {
                    died.push(id);
                }
            }
            if !died.is_empty() {
                let log = died
                    .iter()
                    .filter_map(|id| {
                        std::fs::read_to_string(dirs.idle().join(id).join(LOG_FILE)).ok()
                    })
                    .map(|log| log.trim().to_string())
                    .find(|log| !log.is_empty())
                    .unwrap_or_else(|| "no log".into());
                for id in &died {
                    self.discard(id);
                }
                return Err(PoolError::Died {
                    count: died.len(),
                    log,
                });
            }
            if waiting == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PoolError::NotReady(waiting, timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Refills started in the background and not yet waited for.
static REFILLS: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits for the refills this process started in the background (call before exiting, or the
/// pool stays short until the next claim).
pub fn await_refills() {
    let refills = std::mem::take(&mut *crate::devices::bus::lock(&REFILLS));
    for refill in refills {
        let _ = refill.join();
    }
}

/// What an idle entry's record says of it.
enum EntryState {
    /// Its VMM is alive and of the caller's configuration.
    Ours(EntryRecord),
    /// Its VMM is alive but of another configuration (binary, options, environment).
    Foreign(EntryRecord),
    /// Its VMM is gone.
    Dead(EntryRecord),
    /// No record yet: the process starting it has not written it.
    Unwritten,
    /// An unreadable record.
    Corrupt,
}

impl EntryState {
    /// The state of entry `dir` for a caller of configuration `ours` (none: every live VMM is
    /// foreign, for callers that only ask whether it is alive).
    fn of(dir: &Path, ours: Option<&EntryConfig>) -> Self {
        match EntryRecord::read(dir) {
            Ok(Some(record)) if !super::process_alive(record.pid) => Self::Dead(record),
            Ok(Some(record)) if Some(&record.config) == ours => Self::Ours(record),
            Ok(Some(record)) => Self::Foreign(record),
            Ok(None) => Self::Unwritten,
            Err(_) => Self::Corrupt,
        }
    }

    fn record(&self) -> Option<&EntryRecord> {
        match self {
            Self::Ours(r) | Self::Foreign(r) | Self::Dead(r) => Some(r),
            Self::Unwritten | Self::Corrupt => None,
        }
    }

    fn alive(&self) -> bool {
        matches!(self, Self::Ours(_) | Self::Foreign(_))
    }
}

/// Moves everything in `sandbox_dir` (what the caller prepared) into the taken entry `taken`,
/// then renames `taken` over the now empty `sandbox_dir`; returns the names moved. On failure
/// (a name both hold, a rename refused) whatever was moved is moved back first, so the caller's
/// directory is as it was and `taken` holds only the entry's own files.
fn move_into_place(taken: &Path, sandbox_dir: &Path) -> std::io::Result<Vec<OsString>> {
    let prepared: Vec<OsString> = std::fs::read_dir(sandbox_dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    // Checked before anything moves: the usual failure then moves nothing.
    if let Some(both) = prepared.iter().find(|name| taken.join(name).exists()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} is in both", both.to_string_lossy()),
        ));
    }
    let mut moved = 0;
    let result = prepared
        .iter()
        .try_for_each(|name| {
            std::fs::rename(sandbox_dir.join(name), taken.join(name))?;
            moved += 1;
            Ok(())
        })
        .and_then(|()| std::fs::rename(taken, sandbox_dir));
    if let Err(e) = result {
        for name in &prepared[..moved] {
            if let Err(back) = std::fs::rename(taken.join(name), sandbox_dir.join(name)) {
                tracing::warn!(
                    "{} could not be moved back into {}: {back}",
                    name.to_string_lossy(),
                    sandbox_dir.display()
                );
            }
        }
        return Err(e);
    }
    Ok(prepared)
}

/// Undoes a completed [`move_into_place`] whose VMM is gone: moves the entry's own files (all
/// but `prepared`) out of `sandbox_dir` into `taken` (free again) and removes them. The
/// sandbox's directory stays in place throughout, so its name stays reserved.
fn take_entry_back(sandbox_dir: &Path, taken: &Path, prepared: &[OsString]) -> std::io::Result<()> {
    std::fs::create_dir(taken)?;
    for entry in std::fs::read_dir(sandbox_dir)? {
        let name = entry?.file_name();
        if !prepared.contains(&name) {
            std::fs::rename(sandbox_dir.join(&name), taken.join(&name))?;
        }
    }
    std::fs::remove_dir_all(taken)
}

/// The names in `dir` (none if it cannot be read), sorted.
fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// Resident memory of `pid` and its children (a supervisor and its VMM).
fn process_tree_rss(pid: u32) -> Option<u64> {
    let own = super::process_rss(pid)?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    Some(
        own + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .filter_map(super::process_rss)
            .sum::<u64>(),
    )
}

#[cfg(test)]
mod tests;
