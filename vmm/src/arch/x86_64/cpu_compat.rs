//! Is a snapshot's CPU feature set available on this host? A guest restored onto a CPU lacking
//! a feature it already detected would crash on the first instruction that uses it.

use kvm_bindings::kvm_cpuid_entry2;

/// (leaf, sub-leaf, which registers carry feature bits: eax, ebx, ecx, edx).
const FEATURE_LEAVES: &[(u32, u32, [bool; 4])] = &[
    (0x1, 0, [false, false, true, true]),
    (0x7, 0, [false, true, true, true]),
    (0x7, 1, [true, false, false, false]),
    (0xd, 1, [true, false, false, false]),
    (0x8000_0001, 0, [false, false, true, true]),
];

/// Bits that say nothing about the host CPU: ones paddock sets itself (leaf 1 ECX hypervisor,
/// EDX HTT) and ones KVM derives from the guest's own control registers (leaf 1 ECX OSXSAVE
/// from CR4.OSXSAVE, EDX APIC from the APIC base MSR, leaf 7 ECX OSPKE from CR4.PKE).
fn vmm_owned_bits(leaf: u32, reg: usize) -> u32 {
    match (leaf, reg) {
        (0x1, 2) => (1 << 31) | (1 << 27),
        (0x1, 3) => (1 << 28) | (1 << 9),
        (0x7, 2) => 1 << 4,
        _ => 0,
    }
}

fn find(entries: &[kvm_cpuid_entry2], leaf: u32, sub: u32) -> Option<&kvm_cpuid_entry2> {
    entries
        .iter()
        .find(|e| e.function == leaf && (e.index == sub || (sub == 0 && e.index == 0)))
}

/// A feature the snapshot's guest uses that this host cannot give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFeature {
    /// CPUID leaf.
    pub leaf: u32,
    /// CPUID sub-leaf.
    pub subleaf: u32,
    /// Register name.
    pub register: &'static str,
    /// The missing bits.
    pub bits: u32,
}

impl std::fmt::Display for MissingFeature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPUID.{:#x}.{}:{} bits {:#010x}",
            self.leaf, self.subleaf, self.register, self.bits
        )
    }
}

/// The features in `guest` (a snapshot's vCPU CPUID) that `host` (KVM_GET_SUPPORTED_CPUID) lacks.
pub fn missing_features(
    guest: &[kvm_cpuid_entry2],
    host: &[kvm_cpuid_entry2],
) -> Vec<MissingFeature> {
    const NAMES: [&str; 4] = ["eax", "ebx", "ecx", "edx"];
    let mut missing = Vec::new();
    for &(leaf, sub, regs) in FEATURE_LEAVES {
        let Some(g) = find(guest, leaf, sub) else {
            continue;
        };
        let h = find(host, leaf, sub);
        let gv = [g.eax, g.ebx, g.ecx, g.edx];
        let hv = h.map(|h| [h.eax, h.ebx, h.ecx, h.edx]).unwrap_or([0; 4]);
        for reg in 0..4 {
            if !regs[reg] {
                continue;
            }
            let bits = gv[reg] & !hv[reg] & !vmm_owned_bits(leaf, reg);
            if bits != 0 {
                missing.push(MissingFeature {
                    leaf,
                    subleaf: sub,
                    register: NAMES[reg],
                    bits,
                });
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(function: u32, index: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn subset_passes_superset_fails() {
        let host = vec![e(1, 0, 0, 0b1011, 0xff), e(7, 0, 0b1, 0, 0)];
        let same = vec![
            e(1, 0, 0, 0b0011 | (1 << 31) | (1 << 27), 0x0f | (1 << 28)),
            e(7, 0, 0b1, 1 << 4, 0),
        ];
        assert!(
            missing_features(&same, &host).is_empty(),
            "hypervisor and HTT bits are ours"
        );
        let avx512_guest = vec![e(1, 0, 0, 0b0011, 0), e(7, 0, 0b1 | (1 << 16), 0, 0)];
        let missing = missing_features(&avx512_guest, &host);
        assert_eq!(
            missing,
            vec![MissingFeature {
                leaf: 7,
                subleaf: 0,
                register: "ebx",
                bits: 1 << 16
            }]
        );
        assert!(missing[0].to_string().contains("CPUID.0x7.0:ebx"));
    }
}
