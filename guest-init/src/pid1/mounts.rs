//! The guest's mount table: pseudo filesystems every program expects.

use crate::sys::{cstring, cvt};
use std::io;
use std::os::unix::fs::DirBuilderExt;

/// One mount guest-init performs at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: libc::c_ulong,
    pub data: &'static str,
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// In mount order: a target's parent is always mounted before it.
pub const MOUNTS: [MountSpec; 8] = [
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: "mode=0620,ptmxmode=0666",
    },
    MountSpec {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=0755",
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "nsdelegate",
    },
];

/// A mount that failed (the rest still went ahead).
#[derive(Debug)]
pub struct MountFailure {
    pub target: &'static str,
    pub error: io::Error,
}

/// Mounts everything in `table`. `EBUSY` (already mounted, e.g. by the kernel) counts as
/// success; other failures are collected so boot continues with what works.
pub fn mount_all(table: &[MountSpec]) -> Vec<MountFailure> {
    table
        .iter()
        .filter_map(|spec| {
            mount_one(spec).err().map(|error| MountFailure {
                target: spec.target,
                error,
            })
        })
        .collect()
}

fn mount_one(spec: &MountSpec) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(spec.target)
    {
        Ok(()) => {}
        // A read-only root may already have the directory; mount(2) tells us if not.
        Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => {}
        Err(e) => return Err(e),
    }
    let source = cstring(spec.source)?;
    let target = cstring(spec.target)?;
    let fstype = cstring(spec.fstype)?;
    let data = cstring(spec.data)?;
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
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_mounted_before_children() {
        for (i, spec) in MOUNTS.iter().enumerate() {
            for later in &MOUNTS[i + 1..] {
                let child_first = spec.target.starts_with(&format!("{}/", later.target));
                assert!(
                    !child_first,
                    "{} is mounted before its parent {}",
                    spec.target, later.target
                );
            }
        }
    }

    #[test]
    fn failures_are_collected_not_fatal() {
        // An fs type that does not exist fails with ENODEV (or EPERM unprivileged); the tmpfs
        // target directory is created either way.
        let dir = std::env::temp_dir().join(format!("guest-init-mounts-{}", std::process::id()));
        let target: &'static str = Box::leak(
            dir.join("x")
                .to_string_lossy()
                .into_owned()
                .into_boxed_str(),
        );
        let table = [MountSpec {
            source: "none",
            target,
            fstype: "no-such-fs",
            flags: 0,
            data: "",
        }];
        let failures = mount_all(&table);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].target, target);
        assert!(std::path::Path::new(target).is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
