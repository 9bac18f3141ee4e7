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

/// Sets the hostname from `/proc/cmdline` or the default; returns it.
pub fn set_hostname() -> io::Result<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let name = hostname_from_cmdline(&cmdline).unwrap_or(DEFAULT_HOSTNAME);
    // SAFETY: the pointer and length describe `name`, which outlives the call.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(name.to_string())
}

/// `hosts` with a line resolving `name` to 127.0.1.1 (as Debian's installer writes it) when no
/// line names it yet; `None` when one does. Programs like sudo look the hostname up.
pub fn with_hosts_entry(hosts: &str, name: &str) -> Option<String> {
    let named = hosts.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        line.split_ascii_whitespace()
            .skip(1)
            .any(|alias| alias == name)
    });
    if named {
        return None;
    }
    let mut out = hosts.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out
        .lines()
        .any(|l| l.split_ascii_whitespace().nth(1) == Some("localhost"))
    {
        out.push_str("127.0.0.1\tlocalhost\n");
    }
    out.push_str(&format!("127.0.1.1\t{name}\n"));
    Some(out)
}

/// Makes `/etc/hosts` resolve `name` (on a writable root: the agent profile's).
pub fn ensure_hosts_entry(name: &str) -> io::Result<()> {
    let path = "/etc/hosts";
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    match with_hosts_entry(&current, name) {
        Some(updated) => std::fs::write(path, updated),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_gains_the_hostname_once() {
        let debian = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n";
        let updated = with_hosts_entry(debian, "paddock").unwrap();
        assert!(updated.starts_with(debian));
        assert!(updated.ends_with("127.0.1.1\tpaddock\n"));
        assert_eq!(with_hosts_entry(&updated, "paddock"), None);
        let fresh = with_hosts_entry("", "box").unwrap();
        assert_eq!(fresh, "127.0.0.1\tlocalhost\n127.0.1.1\tbox\n");
        assert_eq!(
            with_hosts_entry("# paddock\n", "paddock").unwrap(),
            "# paddock\n127.0.0.1\tlocalhost\n127.0.1.1\tpaddock\n"
        );
    }

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
