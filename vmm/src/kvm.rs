//! Host checks: is there a KVM this VMM can use, and if not, why not.

use kvm_ioctls::{Cap, Kvm};
use std::path::Path;

/// The KVM API version every modern kernel reports (stable since Linux 2.6.22).
const KVM_API_VERSION: i32 = 12;

/// Capabilities the VMM cannot run without.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// Why KVM cannot be used on this host.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// `/dev/kvm` does not exist.
    #[error(
        "/dev/kvm does not exist: this host has no KVM. Enable virtualization (VT-x/AMD-V) in the \
         firmware or nested virtualization on the cloud VM, and load kvm_intel or kvm_amd"
    )]
    NotFound,
    /// `/dev/kvm` exists but this user may not open it.
    #[error("permission denied opening /dev/kvm: add this user to the 'kvm' group or run as root")]
    PermissionDenied,
    /// Opening `/dev/kvm` failed for another reason.
    #[error("cannot open /dev/kvm: {0}")]
    Open(#[source] kvm_ioctls::Error),
    /// The host runs PVM (kernel-mode guest code is emulated): a Linux guest would not boot usefully.
    #[error(
        "this host's KVM is PVM (/sys/module/kvm_pvm exists): guest kernel code would be emulated \
         at a few MIPS and Linux cannot boot at any useful speed. paddock needs hardware KVM; on \
         this machine run paddock inside the lab instead: `cargo xtask lab -- paddock run -- CMD`"
    )]
    Pvm,
    /// The KVM API version is not the one this VMM speaks.
    #[error("unsupported KVM API version {0} (expected {KVM_API_VERSION})")]
    ApiVersion(i32),
    /// A capability the VMM needs is missing.
    #[error("KVM lacks a required capability: {0}")]
    MissingCapability(&'static str),
}

/// Marker module whose presence identifies a PVM host.
pub const PVM_MODULE_PATH: &str = "/sys/module/kvm_pvm";

/// `/dev/kvm` opened ahead of time by [`open_early`].
static OPENED_EARLY: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

fn open_error(e: kvm_ioctls::Error) -> KvmError {
    match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::NotFound,
        libc::EACCES | libc::EPERM => KvmError::PermissionDenied,
        _ => KvmError::Open(e),
    }
}

/// Opens `/dev/kvm` now, for a process about to lose the right to (a VMM that becomes a user
/// of its own, see `sandbox::vmm_user`): [`open_kvm`] then uses this descriptor. A failure is
/// left for `open_kvm` to report.
pub fn open_early() {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/kvm");
    if let Ok(file) = opened {
        let _ = OPENED_EARLY.set(file.into());
    }
}

/// Opens `/dev/kvm` (or takes the descriptor [`open_early`] kept) and checks that it is
/// hardware KVM with everything the VMM needs.
pub fn open_kvm() -> Result<Kvm, KvmError> {
    check_host_kind(Path::new(PVM_MODULE_PATH), Path::new("/dev/kvm"))?;
    let kvm = match OPENED_EARLY.get() {
        Some(fd) => {
            use std::os::fd::{FromRawFd, IntoRawFd};
            let fd = fd.try_clone().map_err(|e| {
                KvmError::Open(kvm_ioctls::Error::new(
                    e.raw_os_error().unwrap_or(libc::EBADF),
                ))
            })?;
            // SAFETY: `fd` is a descriptor of /dev/kvm this process owns; the Kvm takes it over.
            unsafe { Kvm::from_raw_fd(fd.into_raw_fd()) }
        }
        None => Kvm::new().map_err(open_error)?,
    };
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(KvmError::ApiVersion(version));
    }
    for &(cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(cap) {
            return Err(KvmError::MissingCapability(name));
        }
    }
    Ok(kvm)
}

/// The checks that need no ioctl: PVM marker first (it wins even when `/dev/kvm` exists).
fn check_host_kind(pvm_marker: &Path, dev_kvm: &Path) -> Result<(), KvmError> {
    if pvm_marker.exists() {
        return Err(KvmError::Pvm);
    }
    if !dev_kvm.exists() {
        return Err(KvmError::NotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_marker_is_refused_with_a_pointer_to_the_lab() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("kvm_pvm");
        let dev = dir.path().join("kvm");
        std::fs::create_dir(&marker).unwrap();
        std::fs::write(&dev, b"").unwrap();
        let err = check_host_kind(&marker, &dev).unwrap_err();
        assert!(matches!(err, KvmError::Pvm));
        assert!(err.to_string().contains("cargo xtask lab"));
    }

    #[test]
    fn missing_dev_kvm_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_host_kind(&dir.path().join("none"), &dir.path().join("kvm")).unwrap_err();
        assert!(matches!(err, KvmError::NotFound));
        assert!(err.to_string().contains("/dev/kvm does not exist"));
    }

    #[test]
    fn plain_host_passes_the_static_checks() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        std::fs::write(&dev, b"").unwrap();
        check_host_kind(&dir.path().join("none"), &dev).unwrap();
    }
}
