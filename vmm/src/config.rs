//! What a sandbox VM is made of: artifacts, sizes and where its console and vsock socket go.

use crate::arch::x86_64::mptable::MAX_VCPUS;
use crate::vstate::memory::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use std::path::{Path, PathBuf};

/// Default guest memory.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// The guest's vsock context ID.
pub const GUEST_CID: u64 = 3;
/// The vsock port guest-init serves its control protocol on.
pub const CONTROL_PORT: u32 = 1024;
/// The host vsock port guest-init reports readiness to.
pub const READY_PORT: u32 = 1025;

/// Kernel arguments every paddock guest gets. `quiet` matters: each console byte is a VM exit.
/// (No ACPI, PCI or i8042 driver in the guest kernel: `reboot=k` still resets through port 0x64.)
pub const BASE_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=-1 quiet 8250.nr_uarts=1 no_timer_check rdinit=/init";

/// One VM's configuration.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The uncompressed vmlinux ELF.
    pub kernel: PathBuf,
    /// The initramfs (newc cpio) holding guest-init at /init.
    pub initrd: PathBuf,
    /// The read-only root image (a paddock image) guest-init switches to, served as the first
    /// virtio-blk disk (`/dev/vda`); `None` for the minimal guest, which stays in its initramfs.
    pub image: Option<PathBuf>,
    /// A writable scratch disk (raw file), served after the root image.
    pub disk: Option<PathBuf>,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Extra kernel arguments appended to `BASE_CMDLINE`.
    pub extra_cmdline: Option<String>,
    /// Append the guest console to this file (it is always kept in memory for error reports).
    pub console_log: Option<PathBuf>,
    /// The Unix socket the vsock device serves (`<uds>` and `<uds>_<port>` convention).
    pub vsock_uds: PathBuf,
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// vCPU count out of range.
    #[error("--vcpus must be between 1 and {MAX_VCPUS}, not {0}")]
    Vcpus(u8),
    /// Memory size out of range.
    #[error("--memory must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB} MiB, not {0}")]
    Memory(u64),
    /// An artifact is missing or not a regular file.
    #[error("the {what} {path} does not exist or is not a file{hint}")]
    Artifact {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
}

const BUILD_HINT: &str = " (build the default artifacts with `cargo xtask build`)";

impl VmConfig {
    /// Checks everything that can be checked before touching KVM.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::Vcpus(self.vcpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(ConfigError::Memory(self.memory_mib));
        }
        check_file("kernel", &self.kernel)?;
        check_file("rootfs", &self.initrd)?;
        if let Some(image) = &self.image {
            check_file_with("root image", image, IMAGE_HINT)?;
        }
        if let Some(disk) = &self.disk {
            check_file_with("scratch disk", disk, "")?;
        }
        Ok(())
    }

    /// The full kernel command line: the base, `paddock.root=/dev/vda` when there is a root
    /// image (guest-init switches to it), then the extra arguments.
    pub fn cmdline(&self) -> String {
        let mut line = BASE_CMDLINE.to_string();
        if self.image.is_some() {
            line.push(' ');
            line.push_str(ROOT_IMAGE_ARG);
        }
        if let Some(extra) = &self.extra_cmdline {
            line.push(' ');
            line.push_str(extra);
        }
        line
    }
}

const IMAGE_HINT: &str = " (build it with `cargo xtask rootfs --profile agent`)";

/// Tells guest-init to switch to the root image on the first virtio-blk disk.
pub const ROOT_IMAGE_ARG: &str = "paddock.root=/dev/vda";

fn check_file(what: &'static str, path: &Path) -> Result<(), ConfigError> {
    check_file_with(what, path, BUILD_HINT)
}

fn check_file_with(what: &'static str, path: &Path, hint: &'static str) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::Artifact {
            what,
            path: path.to_path_buf(),
            hint,
        })
    }
}

/// The artifact cache: `$PADDOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/paddock`, else `~/.cache/paddock`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PADDOCK_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("paddock")
}

/// The kernel to use: `explicit`, else `$PADDOCK_KERNEL`, else the one `cargo xtask kernel` built.
pub fn default_kernel(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("PADDOCK_KERNEL").map(PathBuf::from))
        .unwrap_or_else(|| cache_dir().join("default/vmlinux"))
}

/// The rootfs to use: `explicit`, else `$PADDOCK_ROOTFS`, else the one `cargo xtask rootfs` built.
pub fn default_rootfs(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("PADDOCK_ROOTFS").map(PathBuf::from))
        .unwrap_or_else(|| cache_dir().join("default/rootfs.cpio"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> VmConfig {
        let kernel = dir.join("vmlinux");
        let initrd = dir.join("rootfs.cpio");
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initrd, b"i").unwrap();
        VmConfig {
            kernel,
            initrd,
            image: None,
            disk: None,
            vcpus: 1,
            memory_mib: DEFAULT_MEMORY_MIB,
            extra_cmdline: None,
            console_log: None,
            vsock_uds: dir.join("v.sock"),
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let good = config(dir.path());
        good.validate().unwrap();
        assert!(matches!(
            VmConfig {
                vcpus: 0,
                ..good.clone()
            }
            .validate(),
            Err(ConfigError::Vcpus(0))
        ));
        assert!(matches!(
            VmConfig {
                memory_mib: 4,
                ..good.clone()
            }
            .validate(),
            Err(ConfigError::Memory(4))
        ));
        let missing = VmConfig {
            kernel: dir.path().join("nope"),
            ..good.clone()
        }
        .validate()
        .unwrap_err();
        assert!(
            missing.to_string().contains("kernel") && missing.to_string().contains("nope"),
            "{missing}"
        );
        let as_dir = VmConfig {
            initrd: dir.path().to_path_buf(),
            ..good
        }
        .validate()
        .unwrap_err();
        assert!(as_dir.to_string().contains("rootfs"));
    }

    #[test]
    fn cmdline_appends_extras() {
        let dir = tempfile::tempdir().unwrap();
        let c = VmConfig {
            extra_cmdline: Some("foo=1".into()),
            ..config(dir.path())
        };
        assert!(c.cmdline().starts_with(BASE_CMDLINE) && c.cmdline().ends_with(" foo=1"));
        assert!(!c.cmdline().contains("paddock.root"));
        let image = dir.path().join("agent.img");
        std::fs::write(&image, b"img").unwrap();
        let with_image = VmConfig {
            image: Some(image),
            ..c
        };
        with_image.validate().unwrap();
        assert!(with_image
            .cmdline()
            .ends_with(&format!(" {ROOT_IMAGE_ARG} foo=1")));
        let missing = VmConfig {
            image: Some(dir.path().join("gone.img")),
            ..with_image
        }
        .validate()
        .unwrap_err();
        assert!(
            missing.to_string().contains("xtask rootfs --profile agent"),
            "{missing}"
        );
    }
}
