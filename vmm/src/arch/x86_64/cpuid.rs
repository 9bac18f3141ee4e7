//! CPUID for the guest: KVM's supported set, normalized per vCPU (hypervisor bit, APIC IDs,
//! topology leaves) so the guest sees `vcpus` single-threaded cores in one package.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_EXT_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZE_IDS: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

const LEAF_KVM_FEATURES: u32 = 0x4000_0001;

/// KVM paravirt features a snapshotting VMM must not offer: asynchronous page faults (the
/// guest would be told about host page faults of a timeline a reset throws away) in all three
/// delivery forms.
const KVM_FEATURE_ASYNC_PF: u32 = 1 << 4;
const KVM_FEATURE_ASYNC_PF_VMEXIT: u32 = 1 << 10;
const KVM_FEATURE_ASYNC_PF_INT: u32 = 1 << 14;

const ECX_HYPERVISOR_BIT: u32 = 1 << 31;
const EDX_HTT_BIT: u32 = 1 << 28;

/// Topology level types for leaves 0xb/0x1f (ECX[15:8]).
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Number of bits needed to hold APIC IDs `0..count`.
fn id_bits(count: u32) -> u32 {
    if count <= 1 {
        0
    } else {
        32 - (count - 1).leading_zeros()
    }
}

/// Rewrites `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `index` of `count`.
pub fn normalize(cpuid: &mut CpuId, index: u8, count: u8) {
    let apic_id = u32::from(index);
    let count = u32::from(count.max(1));
    for entry in cpuid.as_mut_slice() {
        normalize_entry(entry, apic_id, count);
    }
}

fn normalize_entry(entry: &mut kvm_cpuid_entry2, apic_id: u32, count: u32) {
    match entry.function {
        LEAF_FEATURES => {
            // EBX: [31:24] initial APIC ID, [23:16] logical processors per package,
            // [15:8] CLFLUSH line size in 8-byte units.
            entry.ebx = (apic_id << 24) | (count << 16) | (8 << 8) | (entry.ebx & 0xff);
            entry.ecx |= ECX_HYPERVISOR_BIT;
            if count > 1 {
                entry.edx |= EDX_HTT_BIT;
            } else {
                entry.edx &= !EDX_HTT_BIT;
            }
        }
        LEAF_CACHE_PARAMS => {
            // EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing this cache - 1
            // (one thread per core, so each cache is private unless it is the shared L3).
            let cache_level = (entry.eax >> 5) & 0x7;
            let sharing = if cache_level >= 3 { count - 1 } else { 0 };
            entry.eax = (entry.eax & 0x3fff) | (sharing << 14) | ((count - 1) << 26);
        }
        LEAF_KVM_FEATURES => {
            entry.eax &=
                !(KVM_FEATURE_ASYNC_PF | KVM_FEATURE_ASYNC_PF_VMEXIT | KVM_FEATURE_ASYNC_PF_INT);
        }
        LEAF_PMU => {
            // No virtual PMU: perf counters are not part of the sandbox contract.
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = 0;
            entry.edx = 0;
        }
        LEAF_EXT_TOPOLOGY | LEAF_EXT_TOPOLOGY_V2 => {
            entry.edx = apic_id;
            match entry.index {
                0 => {
                    entry.eax = 0; // one thread per core: no SMT bits
                    entry.ebx = 1;
                    entry.ecx = (LEVEL_TYPE_SMT << 8) | entry.index;
                }
                1 => {
                    entry.eax = id_bits(count);
                    entry.ebx = count;
                    entry.ecx = (LEVEL_TYPE_CORE << 8) | entry.index;
                }
                _ => {
                    entry.eax = 0;
                    entry.ebx = 0;
                    entry.ecx = entry.index;
                }
            }
        }
        LEAF_AMD_SIZE_IDS => {
            // ECX[15:12]: APIC ID size; ECX[7:0]: number of cores - 1.
            entry.ecx = (id_bits(count) << 12) | (count - 1);
        }
        LEAF_AMD_EXT_APIC_ID => {
            // EAX: extended APIC ID; EBX[7:0] core ID, [15:8] threads per core - 1; ECX node 0.
            entry.eax = apic_id;
            entry.ebx = apic_id & 0xff;
            entry.ecx = 0;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0,
            edx: 0,
            ..Default::default()
        }
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let mut e = entry(LEAF_FEATURES, 0);
        normalize_entry(&mut e, 3, 4);
        assert_eq!(e.ebx >> 24, 3);
        assert_eq!((e.ebx >> 16) & 0xff, 4);
        assert_ne!(e.ecx & ECX_HYPERVISOR_BIT, 0);
        assert_ne!(e.edx & EDX_HTT_BIT, 0);
    }

    #[test]
    fn topology_leaf_describes_one_package_of_cores() {
        let mut smt = entry(LEAF_EXT_TOPOLOGY, 0);
        let mut core = entry(LEAF_EXT_TOPOLOGY, 1);
        let mut end = entry(LEAF_EXT_TOPOLOGY, 2);
        for e in [&mut smt, &mut core, &mut end] {
            normalize_entry(e, 1, 2);
        }
        assert_eq!((smt.ebx, smt.ecx >> 8, smt.edx), (1, LEVEL_TYPE_SMT, 1));
        assert_eq!((core.eax, core.ebx, core.ecx >> 8), (1, 2, LEVEL_TYPE_CORE));
        assert_eq!(end.ebx, 0, "terminating sub-leaf has no processors");
    }

    #[test]
    fn async_page_faults_are_not_offered() {
        let mut e = entry(LEAF_KVM_FEATURES, 0);
        normalize_entry(&mut e, 0, 1);
        assert_eq!(
            e.eax & (KVM_FEATURE_ASYNC_PF | KVM_FEATURE_ASYNC_PF_INT | KVM_FEATURE_ASYNC_PF_VMEXIT),
            0
        );
        assert_ne!(e.eax, 0, "other KVM features (kvmclock...) stay");
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!([1, 2, 3, 4, 5].map(id_bits), [0, 1, 2, 2, 3]);
    }
}
