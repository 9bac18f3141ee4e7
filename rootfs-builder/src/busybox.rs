//! Busybox: the applet list of a given binary, and the base layer every busybox-based image shares.

use crate::spec::{ImageSpec, SpecError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `busybox-static` package installs its binary.
pub const DEBIAN_BUSYBOX_STATIC: &str = "/bin/busybox";

/// Errors asking a busybox binary for its applets.
#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    #[error("running {path} --list: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} --list failed with {status}")]
    Failed {
        path: PathBuf,
        status: std::process::ExitStatus,
    },
    /// An applet name that could not be a file name in /bin.
    #[error("{path} --list printed an invalid applet name {name:?}")]
    InvalidApplet { path: PathBuf, name: String },
    #[error("{path} --list printed no applets")]
    NoApplets { path: PathBuf },
}

/// The applets `busybox` was built with (`busybox --list`), sorted, without `busybox` itself.
/// Derived from the binary rather than a fixed list, so the symlinks always match what it provides.
pub fn applets(busybox: &Path) -> Result<Vec<String>, BusyboxError> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|source| BusyboxError::Spawn {
            path: busybox.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(BusyboxError::Failed {
            path: busybox.to_owned(),
            status: output.status,
        });
    }
    parse_applet_list(&String::from_utf8_lossy(&output.stdout))
        .map_err(|name| BusyboxError::InvalidApplet {
            path: busybox.to_owned(),
            name,
        })
        .and_then(|list| {
            if list.is_empty() {
                Err(BusyboxError::NoApplets {
                    path: busybox.to_owned(),
                })
            } else {
                Ok(list)
            }
        })
}

/// Parses `busybox --list` output (one name a line); returns the offending name if one is invalid.
fn parse_applet_list(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let valid = name.len() <= 64 && name != "." && name != ".." && !name.contains(['/', '\0']);
        if !valid {
            return Err(name.to_owned());
        }
        if name != "busybox" {
            names.push(name.to_owned());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The layout every busybox-based image starts from: the standard directories, the device nodes the
/// kernel and early userspace need before devtmpfs is mounted, `/bin/busybox` (copied from
/// `busybox`) with a `/bin/<applet>` symlink per applet, and minimal `/etc` files for root.
pub fn base_layer(busybox: &Path, applets: &[String]) -> Result<ImageSpec, SpecError> {
    let mut spec = ImageSpec::new();
    for dir in [
        "/bin",
        "/dev",
        "/etc",
        "/proc",
        "/sys",
        "/run",
        "/usr/bin",
        "/workspace",
    ] {
        spec.dir(dir, 0o755)?;
    }
    spec.dir("/tmp", 0o1777)?;
    spec.dir("/root", 0o700)?;
    // Scripts that call /sbin/... or /usr/sbin/... find the same applets.
    spec.symlink("/sbin", "bin")?;
    spec.symlink("/usr/sbin", "../bin")?;
    spec.char_device("/dev/console", 0o600, 5, 1)?;
    spec.char_device("/dev/null", 0o666, 1, 3)?;
    spec.host_file("/bin/busybox", 0o755, busybox)?;
    for applet in applets {
        spec.symlink(&format!("/bin/{applet}"), "busybox")?;
    }
    spec.bytes_file(
        "/etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
    )?;
    spec.bytes_file("/etc/group", 0o644, b"root:x:0:\n".to_vec())?;
    spec.bytes_file("/etc/hostname", 0o644, b"paddock\n".to_vec())?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EntryKind;

    #[test]
    fn applet_list_is_sorted_deduplicated_and_excludes_busybox() {
        let list = parse_applet_list("sh\n[\nls\nbusybox\n\n[[\nls\n").unwrap();
        assert_eq!(list, ["[", "[[", "ls", "sh"]);
    }

    #[test]
    fn applet_names_that_escape_bin_are_rejected() {
        assert_eq!(
            parse_applet_list("sh\n../etc/passwd\n").unwrap_err(),
            "../etc/passwd"
        );
        assert_eq!(parse_applet_list("..\n").unwrap_err(), "..");
    }

    #[test]
    fn base_layer_has_console_busybox_and_applets() {
        let applets = vec!["sh".to_owned(), "mount".to_owned()];
        let spec = base_layer(Path::new("/host/busybox"), &applets).unwrap();
        assert_eq!(
            spec.get("/bin/sh").unwrap().kind,
            EntryKind::Symlink("busybox".into())
        );
        assert_eq!(
            spec.get("/bin/mount").unwrap().kind,
            EntryKind::Symlink("busybox".into())
        );
        assert!(matches!(
            spec.get("/dev/console").unwrap().kind,
            EntryKind::Node {
                major: 5,
                minor: 1,
                ..
            }
        ));
        assert_eq!(spec.get("/tmp").unwrap().perm, 0o1777);
        for dir in [
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/root",
            "/workspace",
            "/etc",
        ] {
            assert_eq!(spec.get(dir).unwrap().kind, EntryKind::Dir, "{dir}");
        }
    }

    /// Runs the real binary when Debian's busybox-static is installed (xtask installs it).
    #[test]
    fn host_busybox_lists_its_applets() {
        let path = Path::new(DEBIAN_BUSYBOX_STATIC);
        if !path.exists() {
            eprintln!("{DEBIAN_BUSYBOX_STATIC} not installed; skipping");
            return;
        }
        let list = applets(path).unwrap();
        for needed in ["sh", "mount", "insmod", "poweroff", "ls", "cat"] {
            assert!(list.iter().any(|a| a == needed), "busybox lacks {needed}");
        }
    }
}
