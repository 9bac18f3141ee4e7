//! Mapping guest memory into KVM's stage-2 page tables before the vCPUs run
//! (`KVM_PRE_FAULT_MEMORY`, Linux 6.10 and later, detected): a restored guest's first touch of a
//! page of its working set then takes no stage-2 fault and no exit to KVM.
//!
//! KVM maps each page as a guest read would (the host page is faulted in for reading and copy
//! on write is not broken), so a private mapping of the memory file stays shared with the page
//! cache until the guest writes. Written by hand: kvm-ioctls (0.25) has no wrapper for it.

use kvm_ioctls::{VcpuFd, VmFd};
use std::os::fd::AsRawFd;

/// `KVM_CAP_PRE_FAULT_MEMORY` (include/uapi/linux/kvm.h).
const KVM_CAP_PRE_FAULT_MEMORY: libc::c_ulong = 236;
/// `KVM_PRE_FAULT_MEMORY`: `_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)`, a vCPU ioctl.
pub const KVM_PRE_FAULT_MEMORY: libc::c_ulong = 0xc040_aed5;
/// How many calls in a row may return without progress (interrupted, or asked to retry) before
/// the range is given up.
const MAX_STALLS: u32 = 64;

/// `struct kvm_pre_fault_memory`: the kernel advances `gpa` and shrinks `size` as it goes.
#[repr(C)]
#[derive(Debug, Default)]
struct KvmPreFaultMemory {
    gpa: u64,
    size: u64,
    flags: u64,
    padding: [u64; 5],
}

/// Why a range could not be pre-faulted (the restore goes on: the guest faults it in itself).
#[derive(Debug, thiserror::Error)]
pub enum PreFaultError {
    /// The kernel refused the call.
    #[error("KVM_PRE_FAULT_MEMORY at guest address {gpa:#x}")]
    Ioctl {
        /// Where it stopped.
        gpa: u64,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The kernel kept returning without progress.
    #[error("KVM_PRE_FAULT_MEMORY made no progress at guest address {gpa:#x}")]
    Stalled {
        /// Where it stopped.
        gpa: u64,
    },
}

/// Whether this host's KVM can pre-fault memory for `vm`, and it is not turned off
/// (`PADDOCK_PRE_FAULT=off`, to measure without).
pub fn available(vm: &VmFd) -> bool {
    std::env::var_os("PADDOCK_PRE_FAULT").is_none_or(|v| v != "off")
        && vm.check_extension_raw(KVM_CAP_PRE_FAULT_MEMORY) > 0
}

/// Maps the guest-physical ranges `(address, bytes)` into the VM's stage-2 tables through
/// `vcpu` (whose state must be restored: KVM maps for its current mode). Returns the bytes
/// mapped.
pub fn pre_fault(
    vcpu: &VcpuFd,
    ranges: impl IntoIterator<Item = (u64, u64)>,
) -> Result<u64, PreFaultError> {
    let mut mapped = 0u64;
    for (gpa, size) in ranges {
        let mut arg = KvmPreFaultMemory {
            gpa,
            size,
            ..KvmPreFaultMemory::default()
        };
        let mut stalls = 0;
        while arg.size > 0 {
            let before = arg.size;
            // SAFETY: `arg` is a live, properly laid out `struct kvm_pre_fault_memory` that the
            // kernel reads and updates in place; the fd is a vCPU of this process's VM.
            let rc = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_PRE_FAULT_MEMORY as _, &mut arg) };
            if rc != 0 {
                let error = std::io::Error::last_os_error();
                if !matches!(error.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                    return Err(PreFaultError::Ioctl {
                        gpa: arg.gpa,
                        source: error,
                    });
                }
            }
            // Whatever the kernel answered, a call that moved nothing counts against the range:
            // a kernel that never advances cannot hold the restore in this loop.
            if arg.size < before {
                mapped += before - arg.size;
                stalls = 0;
            } else {
                stalls += 1;
                if stalls > MAX_STALLS {
                    return Err(PreFaultError::Stalled { gpa: arg.gpa });
                }
            }
        }
    }
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ioctl_number_encodes_a_64_byte_read_write_argument() {
        let size = std::mem::size_of::<super::KvmPreFaultMemory>() as libc::c_ulong;
        assert_eq!(size, 64);
        let iowr = (3 << 30) | (size << 16) | (0xae << 8) | 0xd5;
        assert_eq!(super::KVM_PRE_FAULT_MEMORY, iowr);
    }
}
