//! Resource limits of the VMM process: open files bounded (the vsock muxer holds at most
//! `MAX_CONNECTIONS` + `MAX_HANDSHAKES` sockets), files it writes no larger than guest RAM or
//! its largest disk (a snapshot's memory file is the largest thing it writes), and no core dump
//! (one would hold guest memory). A write past the size limit fails with `EFBIG` instead of
//! killing the VMM.

use crate::devices::virtio::vsock::{MAX_CONNECTIONS, MAX_HANDSHAKES};

/// Why a limit could not be set.
#[derive(Debug, thiserror::Error)]
#[error("setting the VMM's {which} limit failed")]
pub struct RlimitError {
    /// `RLIMIT_NOFILE`, `RLIMIT_FSIZE` or `RLIMIT_CORE`.
    pub which: &'static str,
    /// What the kernel said.
    #[source]
    pub source: std::io::Error,
}

/// The VMM's open-file limit: every vsock connection and handshake the muxer allows, and room
/// for the VMM's own descriptors (KVM, vCPUs, eventfds, disks, logs, sockets).
pub const OPEN_FILES: u64 = (MAX_CONNECTIONS + MAX_HANDSHAKES) as u64 + 512;

/// Slack above the largest file the VMM must write (state files, logs below their caps).
const FILE_SIZE_SLACK: u64 = 256 << 20;

/// The limits for a VMM whose guest has `guest_ram` bytes and whose largest writable disk has
/// `largest_disk` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`, in bytes.
    pub file_size: u64,
}

impl Limits {
    /// The limits for this guest.
    pub fn for_guest(guest_ram: u64, largest_disk: u64) -> Self {
        Limits {
            open_files: OPEN_FILES,
            file_size: guest_ram.max(largest_disk).saturating_add(FILE_SIZE_SLACK),
        }
    }

    /// Sets them (never above a hard limit the process already has) and ignores `SIGXFSZ`.
    pub fn apply(&self) -> Result<(), RlimitError> {
        lower(libc::RLIMIT_NOFILE, "open-file", self.open_files)?;
        lower(libc::RLIMIT_FSIZE, "file-size", self.file_size)?;
        lower(libc::RLIMIT_CORE, "core-dump", 0)?;
        // SAFETY: SIG_IGN for SIGXFSZ has no memory effects.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        Ok(())
    }
}

/// The most descriptors the kernel lets one process have (`fs.nr_open`).
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// Raises this process's open-file limit as far as it may, returning the new limit: to the
/// kernel's maximum (`fs.nr_open`) where it is privileged (root, before it drops its
/// capabilities), else to its hard limit. For the workspace server, which holds a descriptor
/// for every file the guest's kernel has looked up and keeps cached (a checkout of tens of
/// thousands of files): the usual soft limit of 1024, or a hard limit of 4096, would fail a
/// `git clone` with `EMFILE`.
pub fn raise_open_files() -> Result<u64, RlimitError> {
    let err = |source| RlimitError {
        which: "open-file",
        source,
    };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `current`, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let kernel_max = std::fs::read_to_string(NR_OPEN)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    if let Some(max) = kernel_max.filter(|&max| max > current.rlim_max) {
        let raised = libc::rlimit {
            rlim_cur: max,
            rlim_max: max,
        };
        // SAFETY: setrlimit reads `raised`, which we own. Refused (EPERM) without privilege,
        // and then the hard limit below is the most there is.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(max);
        }
    }
    let raised = libc::rlimit {
        rlim_cur: current.rlim_max,
        rlim_max: current.rlim_max,
    };
    // SAFETY: setrlimit reads `raised`, which we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(current.rlim_max)
}

fn lower(
    resource: libc::__rlimit_resource_t,
    which: &'static str,
    value: u64,
) -> Result<(), RlimitError> {
    let err = |source| RlimitError { which, source };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `current`, which we own.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let value = value.min(current.rlim_max);
    let wanted = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads `wanted`, which we own.
    if unsafe { libc::setrlimit(resource, &wanted) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_as_far_as_the_process_may() {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into `before`, which we own.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) };
        assert_eq!(rc, 0);
        let raised = raise_open_files().unwrap();
        let mut after = before;
        // SAFETY: as above.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut after) };
        assert_eq!(rc, 0);
        assert_eq!((after.rlim_cur, after.rlim_max), (raised, raised));
        assert!(raised >= before.rlim_max);
        // Never past the kernel's maximum (a process with CAP_SYS_RESOURCE goes up to it).
        let max: u64 = std::fs::read_to_string(NR_OPEN)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(raised <= max.max(before.rlim_max));
    }

    #[test]
    fn the_file_size_limit_covers_the_memory_file_and_every_disk() {
        let small = Limits::for_guest(256 << 20, 0);
        assert_eq!(small.file_size, (256 << 20) + FILE_SIZE_SLACK);
        let big_disk = Limits::for_guest(256 << 20, 8 << 30);
        assert_eq!(big_disk.file_size, (8 << 30) + FILE_SIZE_SLACK);
        assert!(small.open_files > (MAX_CONNECTIONS + MAX_HANDSHAKES) as u64);
    }

    #[test]
    fn a_process_with_the_limits_gets_efbig_not_sigxfsz_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        // SAFETY: the child sets limits, writes one file and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let limits = Limits {
                open_files: 64,
                file_size: 4096,
            };
            let ok = limits.apply().is_ok() && {
                use std::io::Write;
                let mut file = std::fs::File::create(&path).unwrap();
                let fits = file.write_all(&[0; 4096]).is_ok();
                let past = file.write_all(&[0; 1]);
                fits && past.is_err_and(|e| e.raw_os_error() == Some(libc::EFBIG))
            };
            // SAFETY: ends the child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }
}
