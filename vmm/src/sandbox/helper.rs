//! The host helper processes beside a sandbox's VMM (the egress proxy, the workspace server):
//! waiting until a new one listens, and ending one without ever signalling a recycled pid.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The first argument of a sandbox's VMM process (`paddock __vmm ...`).
pub const VMM_PROCESS: &str = "__vmm";
/// The first argument of a sandbox's egress proxy (`paddock __egress ...`).
pub const EGRESS_PROCESS: &str = "__egress";
/// The first argument of a sandbox's workspace server (`paddock __workspace ...`).
pub const WORKSPACE_PROCESS: &str = "__workspace";

/// How a sandbox's helpers are started: the `paddock` binary, and whether each confines itself
/// with its seccomp filter (off only with `--no-seccomp`, for debugging).
#[derive(Debug, Clone, Copy)]
pub struct HelperLaunch<'a> {
    /// The `paddock` binary.
    pub bin: &'a Path,
    /// Whether the helper installs its seccomp filter.
    pub seccomp: bool,
}

impl HelperLaunch<'_> {
    /// `paddock SUBCOMMAND` (and `--no-seccomp` when off).
    pub fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(self.bin);
        command.arg(subcommand);
        if !self.seccomp {
            command.arg("--no-seccomp");
        }
        command
    }
}

/// Why a helper did not come up.
#[derive(Debug, thiserror::Error)]
pub enum HelperStartError {
    /// It exited before listening; its log says why.
    #[error("exited at start: {log}")]
    Exited { log: String },
    /// It did not listen in time (it was killed).
    #[error("did not listen within {timeout:?}: {log}")]
    Timeout { timeout: Duration, log: String },
}

/// Waits until `child` has created `socket`; kills it when `timeout` passes first. Either
/// failure carries its log (`log`).
pub fn wait_listening(
    child: &mut Child,
    socket: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<(), HelperStartError> {
    let read_log = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let deadline = Instant::now() + timeout;
    while !socket.exists() {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(HelperStartError::Exited { log: read_log() });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperStartError::Timeout {
                timeout,
                log: read_log(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Ends helper `pid` if it still runs `paddock <subcommand>` (SIGTERM, up to 2 s), and removes
/// its socket.
pub fn stop(pid: u32, subcommand: &str, socket: &Path) {
    if super::process_alive(pid) && runs(pid, subcommand) {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) on a pid we recorded and just checked is our helper; no memory
            // effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while super::process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = std::fs::remove_file(socket);
}

/// Whether `pid` runs `paddock <subcommand>` (so a recycled pid is never signalled).
pub fn runs(pid: u32, subcommand: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| {
            cmd.split(|b| *b == 0)
                .any(|arg| arg == subcommand.as_bytes())
        })
        .unwrap_or(false)
}
