//! Child reaping shared by PID 1 and exec sessions.
//!
//! As PID 1, guest-init must reap every process that exits (orphans are re-parented to it),
//! yet each exec session needs the status of its own child. A central `waitpid(-1)` would
//! otherwise race with per-session waits, so one [`Reaper`] owns all waiting:
//!
//! - [`ReapMode::Central`] (PID 1): the SIGCHLD handler calls [`Reaper::reap_children`], which
//!   reaps everything and hands statuses of registered children to their sessions; unknown pids
//!   (orphans) are just reaped.
//! - [`ReapMode::PerChild`] (tests, non-PID-1 hosts): a small thread per child waits for that
//!   pid only, so the host process's other children are never touched.
//!
//! Races are closed by one lock around the child table: [`Reaper::spawn`] holds it while
//! forking and registering (so the central reaper cannot reap a child before it is registered,
//! nor reap a child whose exec failed while `std` still waits for it), reaping removes the
//! entry under the lock, and [`Reaper::signal_group`] signals only while the entry exists (so a
//! reaped, possibly reused pid is never signalled).

use crate::sys::{cvt, cvt_retry};
use paddock_protocol::ExitStatus;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

/// Who waits for children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapMode {
    /// The owner calls [`Reaper::reap_children`] on every SIGCHLD (guest-init as PID 1).
    Central,
    /// Each spawned child gets its own waiter thread; other children are left alone.
    PerChild,
}

/// Owns waiting for children; see the module documentation.
#[derive(Debug)]
pub struct Reaper {
    mode: ReapMode,
    children: Mutex<HashMap<libc::pid_t, Sender<ExitStatus>>>,
}

/// The exit side of a child spawned through a [`Reaper`].
#[derive(Debug)]
pub struct ChildExit {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    status: Receiver<ExitStatus>,
}

impl ChildExit {
    pub fn pid(&self) -> u32 {
        // Pids are always positive.
        self.pid.cast_unsigned()
    }

    /// A pidfd of the child: it polls readable once the child has exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Blocks until the child has been reaped; `None` if its status can no longer arrive.
    pub fn wait(&self) -> Option<ExitStatus> {
        self.status.recv().ok()
    }
}

impl Reaper {
    pub fn new(mode: ReapMode) -> Arc<Self> {
        Arc::new(Self {
            mode,
            children: Mutex::new(HashMap::new()),
        })
    }

    pub fn mode(&self) -> ReapMode {
        self.mode
    }

    fn table(&self) -> MutexGuard<'_, HashMap<libc::pid_t, Sender<ExitStatus>>> {
        // A panic elsewhere must not make reaping impossible; the table stays consistent because
        // every critical section is a single insert or remove.
        self.children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `cmd` and registers the child; its status arrives through the returned
    /// [`ChildExit`]. Never call `wait` on the returned `Child`.
    pub fn spawn(self: &Arc<Self>, cmd: &mut Command) -> io::Result<(Child, ChildExit)> {
        let mut table = self.table();
        let child = cmd.spawn()?;
        // Pids are at most pid_max (2^22), within pid_t.
        let pid = child.id().cast_signed();
        // The child cannot have been reaped yet (we hold the table lock), so the pid is ours.
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                drop(table);
                self.discard_child(pid);
                return Err(e);
            }
        };
        let (sender, status) = channel();
        table.insert(pid, sender);
        drop(table);

        if self.mode == ReapMode::PerChild {
            let reaper = Arc::clone(self);
            let waiter = std::thread::Builder::new()
                .name(format!("wait-{pid}"))
                .spawn(move || reaper.wait_one(pid));
            if let Err(e) = waiter {
                self.table().remove(&pid);
                self.discard_child(pid);
                return Err(e);
            }
        }
        Ok((child, ChildExit { pid, pidfd, status }))
    }

    /// Kills a child we could not register; in per-child mode nobody else would reap it.
    fn discard_child(&self, pid: libc::pid_t) {
        // SAFETY: plain syscall on a pid we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        if self.mode == ReapMode::PerChild {
            let mut raw = 0;
            // SAFETY: `raw` is a valid out-pointer for the duration of the call.
            let _ = cvt_retry(|| unsafe { libc::waitpid(pid, &mut raw, 0) });
        }
    }

    /// Per-child mode: waits for `pid` to exit without reaping, then reaps it under the lock.
    fn wait_one(&self, pid: libc::pid_t) {
        // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer for the duration of the call.
        let _ = cvt_retry(|| unsafe {
            libc::waitid(
                libc::P_PID,
                pid.cast_unsigned(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        });
        let mut table = self.table();
        let mut raw = 0;
        // SAFETY: `raw` is a valid out-pointer for the duration of the call.
        let reaped = cvt_retry(|| unsafe { libc::waitpid(pid, &mut raw, 0) });
        if let (Ok(_), Some(sender)) = (reaped, table.remove(&pid)) {
            let _ = sender.send(decode_wait_status(raw));
        }
    }

    /// Central mode: reaps every exited child, dispatching registered ones. Call on SIGCHLD.
    pub fn reap_children(&self) {
        let mut table = self.table();
        loop {
            let mut raw = 0;
            // SAFETY: `raw` is a valid out-pointer for the duration of the call.
            match cvt_retry(|| unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) }) {
                Ok(0) | Err(_) => break, // none exited yet, or no children at all (ECHILD)
                Ok(pid) => {
                    if let Some(sender) = table.remove(&pid) {
                        let _ = sender.send(decode_wait_status(raw));
                    }
                }
            }
        }
    }

    /// Sends `signal` to the process group led by the registered, not yet reaped child `pid`
    /// (or to the child alone if it left its group). Returns false if the child was reaped.
    pub fn signal_group(&self, pid: u32, signal: i32) -> io::Result<bool> {
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        let table = self.table();
        if !table.contains_key(&pid) {
            return Ok(false);
        }
        // SAFETY: plain syscall; the pid is our unreaped child, so neither it nor its group id
        // can have been reused.
        let group = cvt(unsafe { libc::kill(-pid, signal) });
        match group {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                // SAFETY: as above.
                cvt(unsafe { libc::kill(pid, signal) })?;
            }
            other => {
                other?;
            }
        }
        drop(table);
        Ok(true)
    }
}

/// Converts a raw `waitpid` status of a terminated child.
pub fn decode_wait_status(raw: libc::c_int) -> ExitStatus {
    if libc::WIFSIGNALED(raw) {
        ExitStatus::Signal(libc::WTERMSIG(raw))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(raw))
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "pidfd out of range"))?;
    // SAFETY: the syscall just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests;
