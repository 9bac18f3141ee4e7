//! The pseudo-terminal pair itself: allocation, window size, and wiring a child to the slave.

use paddock_protocol::WindowSize;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// A freshly allocated pseudo-terminal.
pub(super) struct PtyPair {
    pub(super) master: OwnedFd,
    pub(super) slave: OwnedFd,
}

/// Allocates a pseudo-terminal of `size` (both ends close-on-exec, neither our controlling
/// terminal).
pub(super) fn open_pty(size: WindowSize) -> io::Result<PtyPair> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    // Opens the slave through the master: no path lookup in /dev/pts that could race.
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)?;
    set_window_size(&master, size)?;
    Ok(PtyPair { master, slave })
}

/// Sets the terminal's window size; the kernel signals SIGWINCH to the foreground process
/// group when it changed.
pub(super) fn set_window_size(master: impl AsFd, size: WindowSize) -> io::Result<()> {
    let winsize = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, winsize)?;
    Ok(())
}

/// The terminal's current window size.
pub(super) fn window_size(master: impl AsFd) -> io::Result<WindowSize> {
    let winsize = rustix::termios::tcgetwinsize(master)?;
    Ok(WindowSize {
        rows: winsize.ws_row,
        cols: winsize.ws_col,
    })
}

/// Sends `signal` to the terminal's foreground process group, if it has one.
pub(super) fn signal_foreground(master: impl AsFd, signal: rustix::process::Signal) {
    if let Ok(group) = rustix::termios::tcgetpgrp(master) {
        let _ = rustix::process::kill_process_group(group, signal);
    }
}

/// Makes `cmd` run on the terminal: the slave as stdin, stdout and stderr, in a new session
/// whose controlling terminal it is.
pub(super) fn attach_child(cmd: &mut Command, slave: &OwnedFd) -> io::Result<()> {
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: the closure runs in the forked child before exec, after std has put the slave on
    // fds 0-2; it only makes two raw system calls (setsid, ioctl TIOCSCTTY), which are
    // async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            // SAFETY: fd 0 is open (the slave, set up by std just before) for this call.
            let stdin = BorrowedFd::borrow_raw(0);
            rustix::process::ioctl_tiocsctty(stdin)?;
            Ok(())
        });
    }
    Ok(())
}
