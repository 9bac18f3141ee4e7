//! Small helpers around raw libc calls.

use std::ffi::CString;
use std::io;
use std::process::Command;

/// Turns a libc return value into `io::Result`, reading `errno` on failure.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], retrying while the call is interrupted by a signal.
pub(crate) fn cvt_retry(mut call: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(call()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A C string from Rust text, refusing interior NUL bytes.
pub(crate) fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

/// The kernel's signals on x86-64 (`_NSIG`), and the size of its signal set.
const KERNEL_SIGNALS: libc::c_int = 64;
const KERNEL_SIGSET_BYTES: usize = 8;

/// Makes `cmd`'s child start with no signal blocked and none ignored. PID 1 blocks the signals
/// it reads from its signalfd (SIGINT, SIGTERM, SIGHUP, SIGCHLD, ...) in every thread, a child
/// inherits the mask across exec, and `std::process::Command` does not reset it: without this,
/// Ctrl-C, a hang-up or `kill` would never reach the commands, the engine or its containers.
/// Ignored signals survive exec too (a guest-init started under `nohup`, as its tests may be,
/// ignores SIGHUP): they go back to their defaults, as a freshly started program expects.
pub(crate) fn with_default_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; sigemptyset, pthread_sigmask
    // and rt_sigaction are async-signal-safe and only read the closure's own local values (the
    // all-zero action is a valid kernel `struct sigaction` of KERNEL_SIGSET_BYTES mask bytes).
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            let err = libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
            // The kernel's own `struct sigaction` (handler, flags, restorer, mask), all zero:
            // SIG_DFL. Through the raw system call, since the C library refuses the signals it
            // reserves (32 and 33), which an ignoring parent may have ignored too.
            let default = [0u64; 4];
            for signal in 1..=KERNEL_SIGNALS {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        signal,
                        default.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        KERNEL_SIGSET_BYTES,
                    );
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of the `/proc/self/status` of the process `cmd` runs (`SigBlk`, `SigIgn`: hexadecimal
    /// signal sets), read by that process itself (`grep`).
    fn status_line_in_child(cmd: &mut Command, field: &str) -> String {
        let out = cmd
            .args([field, "/proc/self/status"])
            .output()
            .expect("run grep");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn blocked_in_child(cmd: &mut Command) -> String {
        status_line_in_child(cmd, "SigBlk")
    }

    #[test]
    fn children_start_with_no_signal_blocked_whatever_the_parent_blocks() {
        // A thread of its own: the mask set here must not leak into other tests.
        std::thread::spawn(|| {
            // SAFETY: a local, initialised set; changes only this thread's mask.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            let inherited = blocked_in_child(&mut Command::new("grep"));
            assert_ne!(inherited, "SigBlk:\t0000000000000000", "std resets nothing");
            let mut cmd = Command::new("grep");
            with_default_signals(&mut cmd);
            assert_eq!(blocked_in_child(&mut cmd), "SigBlk:\t0000000000000000");
        })
        .join()
        .expect("test thread");
    }

    /// The child's ignored signals, from /proc (`SigIgn`), when whatever ran before it in the
    /// child ignored SIGHUP (as an inherited `nohup` would).
    fn ignored_in_child_of_an_ignoring_parent(reset: bool) -> String {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("grep");
        // SAFETY: runs in the forked child before exec; signal(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            });
        }
        if reset {
            with_default_signals(&mut cmd);
        }
        status_line_in_child(&mut cmd, "SigIgn")
    }

    #[test]
    fn children_start_with_no_signal_ignored_whatever_the_parent_ignores() {
        assert_ne!(
            ignored_in_child_of_an_ignoring_parent(false),
            "SigIgn:\t0000000000000000",
            "an ignored signal survives exec"
        );
        assert_eq!(
            ignored_in_child_of_an_ignoring_parent(true),
            "SigIgn:\t0000000000000000"
        );
    }
}
