//! The VMM gives up every capability before it builds its VM: run by root, it keeps root's
//! user id (so it can still open root's own files) but none of root's powers (no reading
//! others' files, no mounts, no raw sockets, no module loading, no ptrace of other processes).
//! Run by an ordinary user it has none to give up.

/// Why the capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// `capset` refused to clear the sets.
    #[error("clearing the VMM's capabilities failed")]
    Capset(#[source] std::io::Error),
    /// `PR_SET_NO_NEW_PRIVS` failed.
    #[error("setting no_new_privs failed")]
    NoNewPrivs(#[source] std::io::Error),
    /// `PR_CAPBSET_DROP` failed although the process could drop from its bounding set.
    #[error("dropping capability {cap} from the bounding set failed")]
    Bounding {
        /// The capability number.
        cap: u32,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `CAP_SETPCAP`, needed to drop from the bounding set.
const CAP_SETPCAP: u32 = 8;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's capability sets (two words each).
fn capget() -> std::io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid for the kernel to read and write, sized for version 3.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(data)
}

/// Empties the bounding set (where allowed) and the effective, permitted and inheritable sets,
/// for good. Called with one thread, or before the others were started: capability sets are
/// per thread, and threads started afterwards inherit empty ones.
pub fn drop_capabilities() -> Result<(), PrivilegeError> {
    drop_bounding_set()?;
    clear_capability_sets()
}

/// Empties the bounding set, where this process may (it holds `CAP_SETPCAP`): no program it
/// executes can gain a capability back. Done before a uid change, which takes `CAP_SETPCAP`
/// with it.
pub fn drop_bounding_set() -> Result<(), PrivilegeError> {
    let held = capget().map_err(PrivilegeError::Capset)?;
    if held[0].effective & (1 << CAP_SETPCAP) != 0 {
        // The highest capability this kernel knows: drop every one up to it.
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(63);
        for cap in 0..=last_cap.min(63) {
            // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is passed.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                let source = std::io::Error::last_os_error();
                // EINVAL: a capability this kernel does not have.
                if source.raw_os_error() != Some(libc::EINVAL) {
                    return Err(PrivilegeError::Bounding { cap, source });
                }
            }
        }
    }
    Ok(())
}

/// Empties the effective, permitted and inheritable sets.
fn clear_capability_sets() -> Result<(), PrivilegeError> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = [CapData::default(); 2];
    // SAFETY: header and data are valid for the kernel to read, sized for version 3.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            empty.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(PrivilegeError::Capset(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`: nothing this process could execute gains privileges (set-user-ID
/// files, file capabilities), with or without seccomp filters (which set it too).
pub fn forbid_new_privileges() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_dropped_its_capabilities_has_none_left() {
        // In a child: the sets of the test process stay as they are.
        // SAFETY: the child makes raw syscalls and reads one /proc file, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = drop_capabilities().is_ok()
                && capget().is_ok_and(|sets| {
                    sets.iter()
                        .all(|s| s.effective == 0 && s.permitted == 0 && s.inheritable == 0)
                });
            // SAFETY: ends the child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
