//! Sets the guest's hostname: `paddock.hostname=` on the kernel command line, else "paddock".

use crate::sys::cvt;
use std::io;

/// Hostname when the command line names none.
pub const DEFAULT_HOSTNAME: &str = "paddock";
const CMDLINE_KEY: &str = "paddock.hostname=";

/// The hostname requested on `cmdline`, if present and valid (RFC 1123 characters, <= 64 bytes).
pub fn hostname_from_cmdline(cmdline: &str) -> Option<&str> {
    let name = cmdline
        .split_ascii_whitespace()
        .find_map(|arg| arg.strip_prefix(CMDLINE_KEY))?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then_some(name)
}

/// Sets the hostname from `/proc/cmdline` or the default.
pub fn set_hostname() -> io::Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let name = hostname_from_cmdline(&cmdline).unwrap_or(DEFAULT_HOSTNAME);
    // SAFETY: the pointer and length describe `name`, which outlives the call.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_names_and_rejects_bad_ones() {
        let line = "console=ttyS0 paddock.hostname=box-1.lab reboot=k\n";
        assert_eq!(hostname_from_cmdline(line), Some("box-1.lab"));
        assert_eq!(hostname_from_cmdline("console=ttyS0"), None);
        assert_eq!(hostname_from_cmdline("paddock.hostname="), None);
        assert_eq!(hostname_from_cmdline("paddock.hostname=a/b"), None);
        assert_eq!(
            hostname_from_cmdline(&format!("paddock.hostname={}", "a".repeat(65))),
            None
        );
    }
}
