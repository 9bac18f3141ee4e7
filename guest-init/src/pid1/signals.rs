//! PID 1's signals, read synchronously from a signalfd.

use crate::sys::{cvt, cvt_retry};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Signals PID 1 handles: SIGCHLD (reap), SIGINT (Ctrl-Alt-Del) and SIGTERM (busybox `reboot`)
/// reboot, SIGUSR1/SIGUSR2/SIGPWR (busybox `halt`/`poweroff`, power button) power off, SIGHUP
/// is ignored.
pub const HANDLED: [libc::c_int; 7] = [
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPWR,
    libc::SIGHUP,
];

/// A signalfd for [`HANDLED`]; the signals are blocked in the calling thread, so create it on
/// the main thread before any other thread starts (threads inherit the mask).
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: sigset_t is plain old data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t for all calls below.
        unsafe {
            libc::sigemptyset(&mut set);
            for signal in HANDLED {
                libc::sigaddset(&mut set, signal);
            }
        }
        // SAFETY: `set` is initialised; the old mask is not wanted.
        let err = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        // SAFETY: `set` is initialised; -1 asks for a new fd.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })?;
        // SAFETY: the fd was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Blocks until a handled signal arrives; returns its number.
    pub fn next(&self) -> io::Result<libc::c_int> {
        // SAFETY: signalfd_siginfo is plain old data; all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = cvt_retry(|| {
            // SAFETY: `info` is a writable buffer of `size` bytes for the duration of the call.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            // -1 or at most `size` bytes; anything else fails the length check below.
            libc::c_int::try_from(read).unwrap_or(libc::c_int::MAX)
        })?;
        if usize::try_from(n).ok() != Some(size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short signalfd read",
            ));
        }
        libc::c_int::try_from(info.ssi_signo)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "signal number out of range"))
    }
}
