//! A VM made ahead of time: KVM opened, the VM created with its irqchip and PIT, and its first
//! vCPUs created, all before anyone knows which snapshot it will run. A warm VMM of the pool
//! (`sandbox::pool`) holds one while it waits to be claimed; the restore then only adds memory
//! and state.

use crate::kvm::{open_kvm, KvmError};
use crate::vstate::vm::{create_vm_without_memory, VmError};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

/// Why a VM could not be made ahead of time.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// KVM is unusable on this host.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// Creating the VM, its irqchip or its PIT failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A vCPU could not be created.
    #[error("creating vCPU {index} ahead of time failed: {source}")]
    Vcpu {
        index: u8,
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// KVM, a VM with its irqchip and PIT, and vCPUs 0..n, with no memory and no state.
#[derive(Debug)]
pub struct PreparedVm {
    /// The opened `/dev/kvm`, checked.
    pub kvm: Kvm,
    /// The VM.
    pub vm: VmFd,
    /// vCPUs 0, 1, … in order.
    vcpus: Vec<VcpuFd>,
}

impl PreparedVm {
    /// Opens KVM and creates the VM with `vcpus` vCPUs.
    pub fn create(vcpus: u8) -> Result<Self, PrepareError> {
        let kvm = open_kvm()?;
        let vm = create_vm_without_memory(&kvm)?;
        let vcpus = (0..vcpus)
            .map(|index| {
                vm.create_vcpu(u64::from(index))
                    .map_err(|source| PrepareError::Vcpu { index, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { kvm, vm, vcpus })
    }

    /// How many vCPUs were made ahead.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// Splits it into KVM, the VM and its vCPUs made ahead (vCPU `i` at index `i`): a restore
    /// creates any further ones itself.
    pub fn into_parts(self) -> (Kvm, VmFd, Vec<VcpuFd>) {
        (self.kvm, self.vm, self.vcpus)
    }
}
