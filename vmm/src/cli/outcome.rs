//! How a command in the guest ended for paddock, and the exit status and message for it.

use super::interactive::TerminalEnd;
use paddock_protocol::{ErrorKind, ExitStatus};
use paddock_vmm::client::{ExecError, PtyError};
use paddock_vmm::exit_codes;

/// What the exec ended with.
pub(super) enum Outcome {
    Status(ExitStatus),
    TimedOut(u64),
    Disconnected,
    Failed(ExecError),
    /// A terminal session left running in the guest (the detach keys).
    Detached {
        pid: u32,
    },
    /// A terminal session hung up because paddock got this signal.
    HungUp(i32),
    TerminalFailed(PtyError),
}

/// The outcome of a terminal session.
pub(super) fn terminal_outcome(end: TerminalEnd) -> Outcome {
    match end {
        TerminalEnd::Exited(status) => Outcome::Status(status),
        TerminalEnd::Detached { pid } => Outcome::Detached { pid },
        TerminalEnd::HungUp(sig) => Outcome::HungUp(sig),
        TerminalEnd::Failed(PtyError::Disconnected) => Outcome::Disconnected,
        TerminalEnd::Failed(e) => Outcome::TerminalFailed(e),
    }
}

/// The exit status for the outcomes `run`, `exec` and `attach` share (explained on stderr);
/// `None` for `Disconnected`, which each explains its own way. `sandbox` names the sandbox in
/// the detach hint.
pub(super) fn shared_code(outcome: &Outcome, sandbox: Option<&str>) -> Option<i32> {
    Some(match outcome {
        Outcome::Status(status) => status.shell_code(),
        Outcome::TimedOut(secs) => {
            eprintln!("paddock: the command timed out after {secs} s and was killed");
            exit_codes::TIMEOUT
        }
        Outcome::Disconnected => return None,
        Outcome::Failed(e) => failed(e),
        Outcome::Detached { pid } => {
            match sandbox {
                Some(name) => eprintln!(
                    "paddock: detached from process {pid}, still running in {name}; `paddock attach {name}` returns to it"
                ),
                None => eprintln!("paddock: detached from process {pid}"),
            }
            0
        }
        Outcome::HungUp(sig) => {
            eprintln!("paddock: signal {sig}: the terminal session was hung up");
            128 + sig
        }
        Outcome::TerminalFailed(e) => failed_terminal(e),
    })
}

/// Maps an exec failure to paddock's exit codes, explaining it on stderr.
fn failed(e: &ExecError) -> i32 {
    eprintln!("paddock: {e}");
    match e {
        ExecError::Guest { kind, .. } => guest_failure_code(*kind),
        _ => exit_codes::PADDOCK_ERROR,
    }
}

/// Maps a terminal session's failure to paddock's exit codes, explaining it on stderr.
fn failed_terminal(e: &PtyError) -> i32 {
    eprintln!("paddock: {e}");
    match e {
        PtyError::Guest { kind, .. } => guest_failure_code(*kind),
        _ => exit_codes::PADDOCK_ERROR,
    }
}

/// The guest could not start the command: not found, or not executable.
fn guest_failure_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::CommandNotFound => exit_codes::NOT_FOUND,
        _ => exit_codes::CANNOT_EXECUTE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(outcome: Outcome) -> Option<i32> {
        shared_code(&outcome, Some("box"))
    }

    #[test]
    fn outcomes_map_to_documented_exit_statuses() {
        assert_eq!(code(Outcome::Status(ExitStatus::Code(3))), Some(3));
        assert_eq!(code(Outcome::Status(ExitStatus::Signal(9))), Some(137));
        assert_eq!(code(Outcome::TimedOut(5)), Some(exit_codes::TIMEOUT));
        assert_eq!(code(Outcome::Disconnected), None);
        assert_eq!(code(Outcome::Detached { pid: 7 }), Some(0));
        assert_eq!(code(Outcome::HungUp(libc::SIGTERM)), Some(143));
        let missing = "cannot run \"x\": No such file or directory (os error 2)".to_string();
        assert_eq!(
            code(Outcome::TerminalFailed(PtyError::Guest {
                kind: ErrorKind::CommandNotFound,
                message: missing.clone()
            })),
            Some(exit_codes::NOT_FOUND)
        );
        assert_eq!(
            code(Outcome::Failed(ExecError::Guest {
                kind: ErrorKind::CommandNotFound,
                message: missing
            })),
            Some(exit_codes::NOT_FOUND)
        );
        assert_eq!(
            code(Outcome::TerminalFailed(PtyError::Guest {
                kind: ErrorKind::CannotExecute,
                message: "permission denied".into()
            })),
            Some(exit_codes::CANNOT_EXECUTE)
        );
        assert_eq!(
            code(Outcome::TerminalFailed(PtyError::NoTerminalRequested)),
            Some(exit_codes::PADDOCK_ERROR)
        );
    }

    #[test]
    fn a_lost_connection_is_a_disconnect_not_a_failure() {
        assert!(matches!(
            terminal_outcome(TerminalEnd::Failed(PtyError::Disconnected)),
            Outcome::Disconnected
        ));
        assert!(matches!(
            terminal_outcome(TerminalEnd::Detached { pid: 4 }),
            Outcome::Detached { pid: 4 }
        ));
    }
}
