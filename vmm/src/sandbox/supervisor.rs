//! The VMM process's parent: it forks the VMM off first thing and waits for it, so that when a
//! seccomp filter kills the VMM (SIGSYS, which the VMM cannot report itself) someone says so in
//! the sandbox's log, naming the syscall when the kernel's log can be read.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Which side of the fork this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The VMM: go on (in a PID namespace of its own when `jailed`, to be jailed further).
    Vmm {
        /// Whether the VMM is to enter its jail (see `jail`).
        jailed: bool,
    },
    /// The supervisor, whose VMM has ended: exit with this status.
    Ended(i32),
}

/// Why the VMM could not be forked.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// The PID namespace could not be created.
    #[error(transparent)]
    Jail(#[from] super::jail::JailError),
    /// fork or pipe failed.
    #[error("forking the VMM failed")]
    Fork(#[source] std::io::Error),
}

/// Forks. The child (the VMM) returns [`Side::Vmm`] and dies with its parent; the parent
/// waits for it, logs a seccomp kill, and returns [`Side::Ended`] with the VMM's status (128 +
/// the signal when a signal ended it). With `jail`, the child is PID 1 of a new PID namespace
/// (where the host lets this user create one: else a warning, and no jail). Call it while the
/// process has one thread.
pub fn fork_vmm(jail: bool) -> Result<Side, ForkError> {
    let jailed = jail
        && match super::jail::new_pid_namespace() {
            Ok(()) => true,
            Err(e) if e.is_unavailable() => {
                tracing::warn!(
                    "the VMM runs without its jail: this host does not let this user create \
                     namespaces ({}). Enable unprivileged user namespaces, or run paddock as \
                     root, to confine it (docs/SECURITY.md).",
                    crate::seccomp::describe(&e)
                );
                false
            }
            Err(e) => return Err(e.into()),
        };
    // The child learns that its supervisor is gone by this pipe's hang-up (getppid says nothing
    // across a PID namespace).
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ForkError::Fork(std::io::Error::last_os_error()));
    }
    let [alive_read, alive_write] = fds;
    // SAFETY: called while the process is single-threaded (first thing in `paddock __vmm`), so
    // the child's copy of every lock and allocator is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ForkError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; close and poll act on the
        // pipe's descriptors, which this process owns.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::close(alive_write);
            let mut pfd = libc::pollfd {
                fd: alive_read,
                events: libc::POLLIN,
                revents: 0,
            };
            let gone = libc::poll(&mut pfd, 1, 0) != 0;
            libc::close(alive_read);
            if gone {
                // The supervisor is gone already: nobody would report on this VMM.
                libc::_exit(1);
            }
        }
        return Ok(Side::Vmm { jailed });
    }
    // SAFETY: the parent closes its copy of the read end; the write end stays open (and
    // closes with this process).
    unsafe { libc::close(alive_read) };
    // The launch report on stdout is the VMM's to write; the supervisor keeps stderr (the
    // sandbox's vmm.log) for its own message.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are valid; dup2 replaces stdout with /dev/null.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
    Ok(Side::Ended(wait_for(pid)))
}

/// Waits for the VMM `pid`; its exit status, or 128 + the signal that ended it.
fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return crate::exit_codes::PADDOCK_ERROR;
        }
    }
    if libc::WIFEXITED(status) {
        return libc::WEXITSTATUS(status);
    }
    let signal = libc::WTERMSIG(status);
    if signal == libc::SIGSYS {
        tracing::error!("{}", seccomp_kill_message(pid, find_audit_record(pid)));
    }
    128 + signal
}

/// What the kernel logged about the kill: the thread's name and the syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The thread that made the syscall (`comm`).
    pub thread: String,
    /// The syscall number.
    pub syscall: i64,
}

/// The message for a VMM its filter killed.
pub fn seccomp_kill_message(pid: libc::pid_t, record: Option<AuditRecord>) -> String {
    let what = match record {
        Some(AuditRecord { thread, syscall }) => format!(
            "its thread {thread:?} called {} (syscall {syscall}), which that thread's filter \
             does not allow",
            crate::seccomp::syscall_name(syscall).unwrap_or("an unknown syscall")
        ),
        None => format!(
            "it called a syscall its filter does not allow; the kernel's log names it \
             (`dmesg | grep 'type=1326.*pid={pid}'`)"
        ),
    };
    format!(
        "the VMM (pid {pid}) was killed by its seccomp filter (SIGSYS): {what}. A bug in paddock \
         or an attack from inside the guest: please report it (docs/SECURITY.md). \
         `--no-seccomp` runs without filters, for debugging only."
    )
}

/// Looks for the kernel's record of the seccomp kill of `pid` in /dev/kmsg (readable by root,
/// or by anyone where dmesg is not restricted). The kernel writes it asynchronously: a few
/// tries.
fn find_audit_record(pid: libc::pid_t) -> Option<AuditRecord> {
    for _ in 0..10 {
        let mut kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()?;
        let mut record = vec![0u8; 8192];
        loop {
            match kmsg.read(&mut record) {
                Ok(0) => break,
                Ok(n) => {
                    let line = String::from_utf8_lossy(&record[..n]);
                    if let Some(found) = parse_audit_record(&line, pid) {
                        return Some(found);
                    }
                }
                // EPIPE: records were overwritten while reading; go on with the next.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Reads a kernel log record `... type=1326 ... pid=PID comm="NAME" ... sig=31 ... syscall=N`.
pub fn parse_audit_record(line: &str, pid: libc::pid_t) -> Option<AuditRecord> {
    if !line.contains("type=1326") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
    };
    if field("pid")? != pid.to_string() || field("sig")? != libc::SIGSYS.to_string() {
        return None;
    }
    let syscall = field("syscall")?.parse().ok()?;
    let thread = field("comm").unwrap_or("?").trim_matches('"').to_string();
    Some(AuditRecord { thread, syscall })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "6,1234,5678,-;audit: type=1326 audit(1764770000.123:45): \
        auid=4294967295 uid=0 gid=0 ses=4294967295 subj=unconfined pid=4242 comm=\"vcpu0\" \
        exe=\"/usr/bin/paddock\" sig=31 arch=c000003e syscall=59 compat=0 ip=0x7f code=0x80000000";

    #[test]
    fn the_kernel_record_of_a_kill_names_the_thread_and_syscall() {
        assert_eq!(
            parse_audit_record(RECORD, 4242),
            Some(AuditRecord {
                thread: "vcpu0".into(),
                syscall: 59
            })
        );
        assert_eq!(parse_audit_record(RECORD, 4243), None, "another process");
        let logged = RECORD.replace("sig=31", "sig=0");
        assert_eq!(parse_audit_record(&logged, 4242), None, "a logged syscall");
        assert_eq!(
            parse_audit_record("6,1,2,-;random line pid=4242", 4242),
            None
        );
    }

    #[test]
    fn the_message_names_the_syscall_or_where_to_find_it() {
        let named = seccomp_kill_message(
            4242,
            Some(AuditRecord {
                thread: "vcpu0".into(),
                syscall: 59,
            }),
        );
        assert!(
            named.contains("\"vcpu0\" called execve (syscall 59)"),
            "{named}"
        );
        let unnamed = seccomp_kill_message(4242, None);
        assert!(unnamed.contains("pid=4242"), "{unnamed}");
        assert!(unnamed.contains("SIGSYS"), "{unnamed}");
    }
}
