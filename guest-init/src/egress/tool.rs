//! Runs a system tool (iptables-restore) to completion as a child of PID 1: spawned through the
//! [`Reaper`], its input written, its error output kept (bounded), killed after a deadline.
//! Safe to call before PID 1's signal loop runs: the child's pidfd says when it ended and the
//! reaping is done here.

use crate::reaper::{ChildExit, ReapMode, Reaper};
use paddock_protocol::ExitStatus;
use rustix::event::{PollFd, PollFlags};
use std::io::{self, ErrorKind, Read, Write};
use std::process::{ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where tools are looked for.
const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Error output kept for the report.
const MAX_KEPT_OUTPUT: usize = 2048;

/// A tool to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCommand {
    pub program: String,
    pub args: Vec<String>,
}

/// Why a tool run failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} is not installed")]
    Missing { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("cannot give {program} its input: {source}")]
    Input { program: String, source: io::Error },
    #[error("{program} did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} {}: {output}", exit_text(*.status))]
    Failed {
        program: String,
        status: ExitStatus,
        /// The end of its error output.
        output: String,
    },
    #[error("the exit status of {program} was lost")]
    StatusLost { program: String },
}

/// How a tool ended, for humans.
fn exit_text(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(signal) => format!("was killed by signal {signal}"),
    }
}

impl ToolCommand {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.to_string(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    /// Runs the tool with `input` on its stdin; succeeds if it exits with code 0 in time.
    pub fn run(
        &self,
        reaper: &Arc<Reaper>,
        input: &[u8],
        timeout: Duration,
    ) -> Result<(), ToolError> {
        let program = || self.program.clone();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", TOOL_PATH)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        crate::sys::with_default_signals(&mut command);
        let (mut child, exit) = reaper.spawn(&mut command).map_err(|source| {
            if source.kind() == ErrorKind::NotFound {
                ToolError::Missing { program: program() }
            } else {
                ToolError::Spawn {
                    program: program(),
                    source,
                }
            }
        })?;
        // The input is small (well under a pipe's buffer); a tool that exits without reading
        // it all is judged by its exit status.
        let fed = child
            .stdin
            .take()
            .map_or(Ok(()), |mut stdin| stdin.write_all(input));
        let deadline = Instant::now() + timeout;
        let mut output = Vec::new();
        let ended = collect_until_exit(child.stderr.take(), &exit, deadline, &mut output);
        if !ended {
            let _ = reaper.signal_group(exit.pid(), libc::SIGKILL);
            return Err(ToolError::Timeout {
                program: program(),
                timeout,
            });
        }
        if reaper.mode() == ReapMode::Central {
            // PID 1's signal loop may not run yet: reap here (it is safe to race with it).
            reaper.reap_children();
        }
        match exit.wait() {
            Some(ExitStatus::Code(0)) => fed.map_err(|source| ToolError::Input {
                program: program(),
                source,
            }),
            Some(status) => Err(ToolError::Failed {
                program: program(),
                status,
                output: String::from_utf8_lossy(&output).trim().to_string(),
            }),
            None => Err(ToolError::StatusLost { program: program() }),
        }
    }
}

/// Keeps the first [`MAX_KEPT_OUTPUT`] bytes `stderr` gives until the child has exited; false
/// if `deadline` passed first.
fn collect_until_exit(
    mut stderr: Option<ChildStderr>,
    exit: &ChildExit,
    deadline: Instant,
    output: &mut Vec<u8>,
) -> bool {
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let wait = super::poll_timeout(left);
        let mut fds = vec![PollFd::from_borrowed_fd(exit.pidfd(), PollFlags::IN)];
        if let Some(stderr) = &stderr {
            fds.push(PollFd::new(stderr, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
        let exited = fds.first().is_some_and(|fd| !fd.revents().is_empty());
        let readable = fds.get(1).is_some_and(|fd| !fd.revents().is_empty());
        drop(fds);
        if let (true, Some(pipe)) = (readable, stderr.as_mut()) {
            match pipe.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    let room = MAX_KEPT_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EOF or broken: nothing more to read.
                _ => stderr = None,
            }
        }
        // Exited with its output read to the end: done. A descendant that keeps stderr open
        // does not hold us past the exit once nothing more is readable.
        if exited && (stderr.is_none() || !readable) {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaper() -> Arc<Reaper> {
        Reaper::new(ReapMode::PerChild)
    }

    #[test]
    fn a_tool_reads_its_input_and_succeeds() {
        let dir = std::env::temp_dir().join(format!("guest-init-tool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("input");
        let script = format!("cat > {}", file.display());
        ToolCommand::new("sh", &["-c", &script])
            .run(&reaper(), b"*nat\nCOMMIT\n", Duration::from_secs(10))
            .unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"*nat\nCOMMIT\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_carry_status_and_output() {
        let err = ToolCommand::new("sh", &["-c", "echo no nat table >&2; exit 3"])
            .run(&reaper(), b"", Duration::from_secs(10))
            .unwrap_err();
        match err {
            ToolError::Failed { status, output, .. } => {
                assert_eq!(status, ExitStatus::Code(3));
                assert_eq!(output, "no nat table");
                let shown = ToolError::Failed {
                    program: "sh".into(),
                    status,
                    output,
                };
                assert_eq!(shown.to_string(), "sh exited with code 3: no nat table");
            }
            other => panic!("{other:?}"),
        }
        let missing = ToolCommand::new("/nonexistent/iptables-restore", &[])
            .run(&reaper(), b"", Duration::from_secs(10))
            .unwrap_err();
        assert!(matches!(missing, ToolError::Missing { .. }), "{missing:?}");
    }

    #[test]
    fn a_hanging_tool_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = ToolCommand::new("sleep", &["30"])
            .run(&reaper(), b"", Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn error_output_is_bounded() {
        let err = ToolCommand::new(
            "sh",
            &["-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1"],
        )
        .run(&reaper(), b"", Duration::from_secs(10))
        .unwrap_err();
        let ToolError::Failed { output, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(output.len(), MAX_KEPT_OUTPUT);
    }
}
