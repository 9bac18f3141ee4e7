//! Makes sure fds 0-2 are the console.
//!
//! The kernel opens `/dev/console` for init only if the initramfs contains that node; otherwise
//! Rust's runtime points closed fds 0-2 at `/dev/null` (or aborts if that is missing too) and
//! every log line is lost. Once devtmpfs is mounted we can repair that.

use crate::sys::cvt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Points every standard fd that is closed or `/dev/null` at `/dev/console`.
pub fn ensure_console_stdio() -> io::Result<()> {
    let broken: Vec<libc::c_int> = (0..=2).filter(|&fd| !usable(fd)).collect();
    if broken.is_empty() {
        return Ok(());
    }
    let console = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")?;
    for fd in broken {
        // SAFETY: dup2 onto a standard fd number; the console fd stays open during the call.
        cvt(unsafe { libc::dup2(console.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// Whether `fd` is open and is not `/dev/null` (character device 1:3).
fn usable(fd: libc::c_int) -> bool {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for the duration of the call.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return false;
    }
    let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    !(is_char && libc::major(st.st_rdev) == 1 && libc::minor(st.st_rdev) == 3)
}
