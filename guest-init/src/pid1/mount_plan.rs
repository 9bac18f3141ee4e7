//! Which mounts each guest profile needs, in which order: pure data, executed by
//! [`super::mounts`] and [`super::root_switch`].
//!
//! Minimal profile: the system mounts at the initramfs root, as always.
//!
//! Agent profile: the system mounts the switch needs (`/proc`, `/sys`, `/dev`) first; then the
//! root image (erofs, read-only) is stacked under a writable tmpfs layer in an overlay, those
//! mounts are carried into it and it becomes `/` (guest-init stays PID 1); then the rest of the
//! system mounts and the engine's data directories (tmpfs: overlay2 cannot use an overlay as
//! its upper layer) are mounted in the new root. Every change to the root lives in guest
//! memory, so a snapshot captures it and a reset drops it.

use super::mounts::MountSpec;
use std::borrow::Cow;

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// System mounts needed before the root switch (the device node, `/proc/cmdline`).
pub const SYSTEM_EARLY: [MountSpec; 3] = [
    MountSpec::fixed("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
    MountSpec::fixed("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
    MountSpec::fixed("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
];

/// System mounts made in the final root.
pub const SYSTEM_LATE: [MountSpec; 5] = [
    MountSpec::fixed(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "mode=0620,ptmxmode=0666",
    ),
    MountSpec::fixed(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    ),
    MountSpec::fixed(
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    ),
    MountSpec::fixed(
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    ),
    MountSpec::fixed(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        NOSUID_NODEV_NOEXEC,
        "nsdelegate",
    ),
];

/// The engine's data directories in the agent root: tmpfs (with xattrs), since overlay2 and
/// containerd's overlay snapshotter cannot put their layers on the root's overlay.
pub const ENGINE_DATA: [MountSpec; 2] = [
    MountSpec::fixed("tmpfs", "/var/lib/docker", "tmpfs", 0, "mode=0711"),
    MountSpec::fixed("tmpfs", "/var/lib/containerd", "tmpfs", 0, "mode=0711"),
];

/// Where the root is assembled, in the initramfs (hidden once the switch is done).
pub const STAGING_DIR: &str = "/run/paddock";
/// The root image's mount point.
pub const LOWER_DIR: &str = "/run/paddock/lower";
/// The tmpfs holding the writable layer.
pub const RW_DIR: &str = "/run/paddock/rw";
/// The overlay's upper layer: every change to the root.
pub const UPPER_DIR: &str = "/run/paddock/rw/upper";
/// The overlay's work directory (same filesystem as the upper layer).
pub const WORK_DIR: &str = "/run/paddock/rw/work";
/// The assembled root before it becomes `/`.
pub const NEW_ROOT: &str = "/run/paddock/root";

/// The early mounts carried into the new root: (where they are, where they go).
pub const CARRIED: [(&str, &str); 3] = [
    ("/proc", "/run/paddock/root/proc"),
    ("/sys", "/run/paddock/root/sys"),
    ("/dev", "/run/paddock/root/dev"),
];

/// Which guest this boot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Stay in the initramfs.
    Minimal,
    /// Switch to the root image mounted by `image`.
    Agent { image: MountSpec },
}

impl Profile {
    /// The agent profile with the erofs root image on `device`.
    pub fn agent(device: &str) -> Self {
        Self::Agent {
            image: root_image(device),
        }
    }
}

/// The read-only erofs root image on `device`, mounted at [`LOWER_DIR`].
pub fn root_image(device: &str) -> MountSpec {
    MountSpec {
        source: Cow::Owned(device.to_string()),
        ..MountSpec::fixed("", LOWER_DIR, "erofs", libc::MS_RDONLY, "")
    }
}

/// One step of the root switch; all of them succeed or the switch is undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchStep {
    /// Creates a directory (and its parents).
    MakeDir(&'static str),
    /// Creates the target directory, then mounts.
    Mount(MountSpec),
    /// Moves a mount (and what is mounted below it).
    Move {
        from: &'static str,
        to: &'static str,
    },
    /// Moves `new_root` onto `/` and makes it the root of PID 1: `chdir`, `MS_MOVE`,
    /// `chroot(".")`, `chdir("/")`.
    EnterRoot { new_root: &'static str },
}

/// The mounts of one boot after [`SYSTEM_EARLY`] (which every profile mounts first, at the
/// initramfs root, best effort), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// All or nothing; absent in the minimal profile.
    pub switch: Option<Vec<SwitchStep>>,
    /// Best effort, in the final root (the initramfs if the switch failed).
    pub late: Vec<MountSpec>,
}

/// The mounts of `profile`.
pub fn boot_plan(profile: &Profile) -> BootPlan {
    let mut late = SYSTEM_LATE.to_vec();
    let switch = match profile {
        Profile::Minimal => None,
        Profile::Agent { image } => {
            late.extend(ENGINE_DATA);
            Some(switch_steps(image))
        }
    };
    BootPlan { switch, late }
}

fn switch_steps(image: &MountSpec) -> Vec<SwitchStep> {
    let image = MountSpec {
        target: Cow::Borrowed(LOWER_DIR),
        ..image.clone()
    };
    let mut steps = vec![
        SwitchStep::Mount(image),
        SwitchStep::Mount(MountSpec::fixed("tmpfs", RW_DIR, "tmpfs", 0, "mode=0755")),
        SwitchStep::MakeDir(UPPER_DIR),
        SwitchStep::MakeDir(WORK_DIR),
        SwitchStep::Mount(MountSpec::fixed(
            "overlay",
            NEW_ROOT,
            "overlay",
            0,
            "lowerdir=/run/paddock/lower,upperdir=/run/paddock/rw/upper,workdir=/run/paddock/rw/work",
        )),
    ];
    for (from, to) in CARRIED {
        steps.push(SwitchStep::MakeDir(to));
        steps.push(SwitchStep::Move { from, to });
    }
    steps.push(SwitchStep::EnterRoot { new_root: NEW_ROOT });
    steps
}

#[cfg(test)]
mod tests;
