//! The KVM VM: memory slots, in-kernel irqchip (PIC + IOAPIC + LAPICs), PIT and interrupt wiring.

use crate::arch::x86_64::layout::KVM_TSS_ADDRESS;
use crate::vstate::memory::GuestMemory;
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Why the VM could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// KVM_CREATE_VM failed.
    #[error("creating the KVM VM failed: {0}")]
    Create(#[source] kvm_ioctls::Error),
    /// A memory slot could not be registered.
    #[error("registering guest memory with KVM failed: {0}")]
    MemorySlot(#[source] kvm_ioctls::Error),
    /// TSS, irqchip or PIT setup failed.
    #[error("setting up the {what} failed: {source}")]
    Setup {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Registering an irqfd or ioeventfd failed.
    #[error("registering an {what} failed: {source}")]
    Eventfd {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

/// Creates the VM with `mem` as its RAM, an in-kernel irqchip and PIT.
pub fn create_vm(kvm: &Kvm, mem: &GuestMemory) -> Result<VmFd, VmError> {
    let vm = create_vm_without_memory(kvm)?;
    register_memory(&vm, mem)?;
    Ok(vm)
}

/// Creates the VM with its in-kernel irqchip and PIT but no RAM yet: what a warm VMM does ahead
/// of knowing its guest (memory slots may be added at any time, before the vCPUs first run).
pub fn create_vm_without_memory(kvm: &Kvm) -> Result<VmFd, VmError> {
    let vm = kvm.create_vm().map_err(VmError::Create)?;
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(|source| VmError::Setup {
            what: "TSS",
            source,
        })?;
    vm.create_irq_chip().map_err(|source| VmError::Setup {
        what: "irqchip",
        source,
    })?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(|source| VmError::Setup {
        what: "PIT",
        source,
    })?;
    Ok(vm)
}

/// Registers (or re-registers, after a remap) each region of `mem` as a KVM memory slot.
pub fn register_memory(vm: &VmFd, mem: &GuestMemory) -> Result<(), VmError> {
    for (slot, region) in (0u32..).zip(mem.iter()) {
        let region_desc = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region's host mapping stays alive, at this address and size, for as long
        // as the VM uses it: the GuestMemory owning it outlives the VmFd in the Vmm.
        unsafe { vm.set_user_memory_region(region_desc) }.map_err(VmError::MemorySlot)?;
    }
    Ok(())
}

/// Routes `evt` to IOAPIC pin `gsi`.
pub fn register_irqfd(vm: &VmFd, evt: &EventFd, gsi: u32) -> Result<(), VmError> {
    vm.register_irqfd(evt, gsi)
        .map_err(|source| VmError::Eventfd {
            what: "irqfd",
            source,
        })
}

/// Makes guest writes of `datamatch` to MMIO address `addr` signal `evt` inside KVM.
pub fn register_mmio_ioevent(
    vm: &VmFd,
    evt: &EventFd,
    addr: u64,
    datamatch: u32,
) -> Result<(), VmError> {
    vm.register_ioevent(evt, &IoEventAddress::Mmio(addr), datamatch)
        .map_err(|source| VmError::Eventfd {
            what: "ioeventfd",
            source,
        })
}
