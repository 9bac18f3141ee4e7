//! Saving and restoring KVM state: everything a vCPU and the VM carry beyond guest memory.

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs,
    KVM_CLOCK_TSC_STABLE, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

/// Why KVM state could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A KVM get/set ioctl failed.
    #[error("{op} {what} failed: {source}")]
    Kvm {
        op: &'static str,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Only some MSRs could be read or written.
    #[error("{op} MSRs: KVM handled {done} of {total}")]
    PartialMsrs {
        op: &'static str,
        done: usize,
        total: usize,
    },
    /// Building a KVM list structure failed.
    #[error("building a KVM list failed: {0:?}")]
    Fam(vmm_sys_util::fam::Error),
}

fn kvm_err(op: &'static str, what: &'static str) -> impl Fn(kvm_ioctls::Error) -> PersistError {
    move |source| PersistError::Kvm { op, what, source }
}

/// One vCPU's architectural state.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// CPUID the vCPU was given.
    pub cpuid: Vec<kvm_bindings::kvm_cpuid_entry2>,
    /// Model-specific registers.
    pub msrs: Vec<kvm_msr_entry>,
    /// General-purpose registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// x87/SSE/AVX state (the 4 KiB legacy XSAVE area).
    pub xsave: kvm_xsave,
    /// Extended control registers.
    pub xcrs: kvm_xcrs,
    /// Debug registers.
    pub debug_regs: kvm_debugregs,
    /// Local APIC.
    pub lapic: kvm_lapic_state,
    /// Runnable, halted, waiting for SIPI...
    pub mp_state: kvm_mp_state,
    /// Pending exceptions, interrupts, NMIs.
    pub vcpu_events: kvm_vcpu_events,
    /// TSC frequency the guest calibrated against, kHz (0 if unknown).
    pub tsc_khz: u32,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState").finish_non_exhaustive()
    }
}

/// Saves `fd`'s state. The vCPU must be out of KVM_RUN (paused).
pub fn save_vcpu(fd: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, PersistError> {
    let cpuid = fd
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("get", "CPUID"))?;
    let msrs = read_msrs(fd, msr_indices)?;
    // Order matters on the way back (see restore_vcpu); on the way out, events last so that
    // anything pending is captured after the other reads.
    Ok(VcpuState {
        cpuid: cpuid.as_slice().to_vec(),
        msrs,
        regs: fd.get_regs().map_err(kvm_err("get", "registers"))?,
        sregs: fd
            .get_sregs()
            .map_err(kvm_err("get", "special registers"))?,
        xsave: fd.get_xsave().map_err(kvm_err("get", "XSAVE"))?,
        xcrs: fd.get_xcrs().map_err(kvm_err("get", "XCRs"))?,
        debug_regs: fd
            .get_debug_regs()
            .map_err(kvm_err("get", "debug registers"))?,
        lapic: fd.get_lapic().map_err(kvm_err("get", "LAPIC"))?,
        mp_state: fd.get_mp_state().map_err(kvm_err("get", "MP state"))?,
        tsc_khz: fd.get_tsc_khz().unwrap_or(0),
        vcpu_events: fd
            .get_vcpu_events()
            .map_err(kvm_err("get", "vCPU events"))?,
    })
}

/// Reads every MSR in `indices` that this vCPU can read. KVM_GET_MSRS stops at the first MSR it
/// cannot read: that one is dropped (KVM's index list includes MSRs only some CPUs implement) and
/// the rest read again.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, PersistError> {
    let mut wanted: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut got = Vec::with_capacity(wanted.len());
    while !wanted.is_empty() {
        let mut msrs = Msrs::from_entries(&wanted).map_err(PersistError::Fam)?;
        let read = fd.get_msrs(&mut msrs).map_err(kvm_err("get", "MSRs"))?;
        got.extend_from_slice(&msrs.as_slice()[..read]);
        let skip = (read + 1).min(wanted.len());
        if read < wanted.len() {
            tracing::debug!(msr = wanted[read].index, "MSR not readable; not saved");
        }
        wanted.drain(..skip);
    }
    Ok(got)
}

/// Loads `state` into `fd`. A fresh vCPU also gets the saved CPUID (`fresh`); a vCPU that has
/// run keeps its own, since KVM refuses to change CPUID after the first KVM_RUN (the caller
/// checks the two are compatible).
pub fn restore_vcpu(fd: &VcpuFd, state: &VcpuState, fresh: bool) -> Result<(), PersistError> {
    if fresh {
        let cpuid = CpuId::from_entries(&state.cpuid).map_err(PersistError::Fam)?;
        fd.set_cpuid2(&cpuid).map_err(kvm_err("set", "CPUID"))?;
    }
    if state.tsc_khz != 0 && fd.get_tsc_khz().is_ok_and(|khz| khz != state.tsc_khz) {
        // Keep the guest's TSC rate; if the host cannot scale, the guest just sees a drift.
        if let Err(e) = fd.set_tsc_khz(state.tsc_khz) {
            tracing::warn!("cannot set the guest TSC to {} kHz: {e}", state.tsc_khz);
        }
    }
    // The TSC deadline goes in after the LAPIC: KVM ignores it unless the LAPIC timer is
    // already in TSC-deadline mode, which a fresh vCPU's is not (QEMU orders it the same way).
    let (deadline, others): (Vec<kvm_msr_entry>, Vec<kvm_msr_entry>) = state
        .msrs
        .iter()
        .partition(|msr| msr.index == MSR_IA32_TSC_DEADLINE);
    let msrs = Msrs::from_entries(&others).map_err(PersistError::Fam)?;
    if !fresh {
        // A vCPU that ran on may hold TLB entries of the timeline being thrown away. KVM
        // reloads the MMU, flushing the guest's TLB, only when CR3/CR0/CR4/EFER change: make
        // sure CR3 does, however equal the saved value is to the current one.
        let mut detour = state.sregs;
        detour.cr3 ^= 1 << 12;
        fd.set_sregs(&detour)
            .map_err(kvm_err("set", "special registers"))?;
    }
    // Special registers before MSRs (EFER), MSRs before the LAPIC (APIC base), events last.
    fd.set_sregs(&state.sregs)
        .map_err(kvm_err("set", "special registers"))?;
    fd.set_regs(&state.regs)
        .map_err(kvm_err("set", "registers"))?;
    // SAFETY: `state.xsave` is a complete kvm_xsave read by KVM_GET_XSAVE; KVM reads exactly
    // size_of::<kvm_xsave>() bytes from it.
    unsafe { fd.set_xsave(&state.xsave) }.map_err(kvm_err("set", "XSAVE"))?;
    fd.set_xcrs(&state.xcrs).map_err(kvm_err("set", "XCRs"))?;
    fd.set_debug_regs(&state.debug_regs)
        .map_err(kvm_err("set", "debug registers"))?;
    write_msrs(fd, &msrs, others.len())?;
    fd.set_lapic(&state.lapic)
        .map_err(kvm_err("set", "LAPIC"))?;
    if !deadline.is_empty() {
        let deadline = Msrs::from_entries(&deadline).map_err(PersistError::Fam)?;
        write_msrs(fd, &deadline, 1)?;
    }
    fd.set_mp_state(state.mp_state)
        .map_err(kvm_err("set", "MP state"))?;
    fd.set_vcpu_events(&state.vcpu_events)
        .map_err(kvm_err("set", "vCPU events"))?;
    Ok(())
}

/// IA32_TSC_DEADLINE.
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;

fn write_msrs(fd: &VcpuFd, msrs: &Msrs, total: usize) -> Result<(), PersistError> {
    let written = fd.set_msrs(msrs).map_err(kvm_err("set", "MSRs"))?;
    if written != total {
        return Err(PersistError::PartialMsrs {
            op: "writing",
            done: written,
            total,
        });
    }
    Ok(())
}

/// The VM-wide state: interrupt controllers, PIT and kvmclock.
#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    /// PIC master, PIC slave, IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
    /// The i8254 PIT.
    pub pit: kvm_pit_state2,
    /// kvmclock.
    pub clock: kvm_clock_data,
}

impl std::fmt::Debug for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmState").finish_non_exhaustive()
    }
}

/// Saves the VM-wide state (vCPUs paused).
pub fn save_vm(vm: &VmFd) -> Result<VmState, PersistError> {
    let mut irqchips = Vec::with_capacity(3);
    for chip_id in [
        KVM_IRQCHIP_PIC_MASTER,
        KVM_IRQCHIP_PIC_SLAVE,
        KVM_IRQCHIP_IOAPIC,
    ] {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip)
            .map_err(kvm_err("get", "irqchip"))?;
        irqchips.push(chip);
    }
    let mut clock = vm.get_clock().map_err(kvm_err("get", "kvmclock"))?;
    // KVM_SET_CLOCK rejects flags it does not accept as input.
    clock.flags &= !KVM_CLOCK_TSC_STABLE;
    Ok(VmState {
        irqchips,
        pit: vm.get_pit2().map_err(kvm_err("get", "PIT"))?,
        clock,
    })
}

/// Restores the VM-wide state.
pub fn restore_vm(vm: &VmFd, state: &VmState) -> Result<(), PersistError> {
    vm.set_pit2(&state.pit).map_err(kvm_err("set", "PIT"))?;
    let mut clock = state.clock;
    clock.flags = 0;
    vm.set_clock(&clock).map_err(kvm_err("set", "kvmclock"))?;
    for chip in &state.irqchips {
        vm.set_irqchip(chip).map_err(kvm_err("set", "irqchip"))?;
    }
    Ok(())
}

/// The MSRs worth saving: KVM's index list (what it can save and restore for this host).
pub fn saveable_msrs(kvm: &kvm_ioctls::Kvm) -> Result<Vec<u32>, PersistError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(kvm_err("get", "MSR index list"))?;
    Ok(list.as_slice().to_vec())
}
