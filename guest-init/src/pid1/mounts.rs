//! Mounting: the filesystems guest-init mounts at boot, one at a time or as a best-effort
//! table. Which mounts a profile needs, in which order, is [`super::mount_plan`].

use crate::sys::{cstring, cvt};
use std::borrow::Cow;
use std::io;
use std::os::unix::fs::DirBuilderExt;

/// One mount guest-init performs at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: Cow<'static, str>,
    pub target: Cow<'static, str>,
    pub fstype: Cow<'static, str>,
    pub flags: libc::c_ulong,
    pub data: Cow<'static, str>,
}

impl MountSpec {
    /// A mount described by constant strings (the boot tables).
    pub const fn fixed(
        source: &'static str,
        target: &'static str,
        fstype: &'static str,
        flags: libc::c_ulong,
        data: &'static str,
    ) -> Self {
        Self {
            source: Cow::Borrowed(source),
            target: Cow::Borrowed(target),
            fstype: Cow::Borrowed(fstype),
            flags,
            data: Cow::Borrowed(data),
        }
    }
}

/// A mount that failed (the rest still went ahead).
#[derive(Debug)]
pub struct MountFailure {
    pub target: String,
    pub error: io::Error,
}

/// Mounts everything in `table`. `EBUSY` (already mounted, e.g. by the kernel) counts as
/// success; other failures are collected so boot continues with what works.
pub fn mount_all(table: &[MountSpec]) -> Vec<MountFailure> {
    table
        .iter()
        .filter_map(|spec| {
            mount_one(spec).err().map(|error| MountFailure {
                target: spec.target.to_string(),
                error,
            })
        })
        .collect()
}

fn mount_one(spec: &MountSpec) -> io::Result<()> {
    match mount(spec) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other,
    }
}

/// Creates the target directory (and its parents) if missing, then mounts `spec`.
pub fn mount(spec: &MountSpec) -> io::Result<()> {
    make_dir(&spec.target)?;
    let source = cstring(&spec.source)?;
    let target = cstring(&spec.target)?;
    let fstype = cstring(&spec.fstype)?;
    let data = cstring(&spec.data)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let result = cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            spec.flags,
            data.as_ptr().cast(),
        )
    });
    result.map(drop)
}

/// Creates `path` and its parents (mode 0755) unless it exists.
pub fn make_dir(path: &str) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
    {
        // A read-only root may already have the directory; mount(2) tells us if not.
        Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => Ok(()),
        other => other,
    }
}

/// Moves the mount at `from` (with everything mounted below it) to `to`.
pub fn move_mount(from: &str, to: &str) -> io::Result<()> {
    let from = cstring(from)?;
    let to = cstring(to)?;
    // SAFETY: valid NUL-terminated strings that outlive the call; MS_MOVE ignores the fs type
    // and data pointers.
    cvt(unsafe {
        libc::mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// Detaches the mount at `target` (lazily: it goes once nothing uses it).
pub fn detach(target: &str) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: a valid NUL-terminated string that outlives the call.
    cvt(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_collected_not_fatal() {
        // An fs type that does not exist fails with ENODEV (or EPERM unprivileged); the target
        // directory is created either way.
        let dir = std::env::temp_dir().join(format!("guest-init-mounts-{}", std::process::id()));
        let target = dir.join("x").to_string_lossy().into_owned();
        let table = [MountSpec {
            target: Cow::Owned(target.clone()),
            ..MountSpec::fixed("none", "", "no-such-fs", 0, "")
        }];
        let failures = mount_all(&table);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].target, target);
        assert!(std::path::Path::new(&target).is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
