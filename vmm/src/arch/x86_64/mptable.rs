//! The Intel MultiProcessor table: how a guest without ACPI learns its CPUs, IOAPIC and IRQ
//! routing. Written at the start of the EBDA, byte by byte (no unsafe struct casts).

use super::layout::{EBDA_START, IRQ_MAX};
use crate::vstate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

/// Most vCPUs the table (and the guest's 1 KiB EBDA window) can describe.
pub const MAX_VCPUS: u8 = 32;

const APIC_DEFAULT_BASE: u32 = 0xfee0_0000;
const IOAPIC_DEFAULT_BASE: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const MP_SPEC_REVISION: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;
const ENTRY_CPU: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

/// Why the MP table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// Zero vCPUs, or more than the table can hold.
    #[error("the MP table supports 1..={MAX_VCPUS} vCPUs, not {0}")]
    VcpuCount(u8),
    /// Writing to guest memory failed.
    #[error("writing the MP table to guest memory failed: {0}")]
    GuestMemory(#[source] vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_sub(*b))
}

/// Builds the floating pointer structure plus configuration table for `vcpus` CPUs, as placed at
/// `base`.
pub fn build(vcpus: u8, base: u64) -> Result<Vec<u8>, MptableError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(MptableError::VcpuCount(vcpus));
    }
    let ioapic_id = vcpus + 1;
    let table_addr = base + 16;

    let mut entries = Vec::new();
    let mut count = 0u16;
    for cpu in 0..vcpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        entries.extend_from_slice(&[ENTRY_CPU, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_STEPPING.to_le_bytes());
        entries.extend_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        entries.extend_from_slice(&[0u8; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_DEFAULT_BASE.to_le_bytes());
    count += 1;
    // Bounded: IRQ_MAX is 23.
    #[allow(clippy::cast_possible_truncation)]
    const IRQ_MAX_U8: u8 = IRQ_MAX as u8;
    for irq in 0..=IRQ_MAX_U8 {
        // ISA IRQ n -> IOAPIC pin n, conforming polarity and trigger.
        entries.extend_from_slice(&[ENTRY_INTSRC, INT_TYPE_INT, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 = ExtINT (the PIC), LINT1 = NMI, on every local APIC.
    entries.extend_from_slice(&[ENTRY_LINTSRC, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[ENTRY_LINTSRC, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_len = 44 + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(b"PCMP");
    // Bounded: at most MAX_VCPUS CPU entries (checked above) plus a fixed set, well under 64 KiB.
    #[allow(clippy::cast_possible_truncation)]
    let table_len_u16 = table_len as u16;
    table.extend_from_slice(&table_len_u16.to_le_bytes());
    table.push(MP_SPEC_REVISION);
    table.push(0); // checksum, patched below
    table.extend_from_slice(b"PADDOCK ");
    table.extend_from_slice(b"microVM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT_BASE.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended table length + checksum + reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(16 + table.len());
    mpf.extend_from_slice(b"_MP_");
    // Bounded: the table sits right after the floating pointer in the EBDA (the only `base`
    // given), below 1 MiB.
    #[allow(clippy::cast_possible_truncation)]
    let table_addr_u32 = table_addr as u32;
    mpf.extend_from_slice(&table_addr_u32.to_le_bytes());
    mpf.extend_from_slice(&[1, MP_SPEC_REVISION, 0, 0, 0, 0, 0, 0]);
    mpf[10] = checksum(&mpf[..16]);
    mpf.extend_from_slice(&table);
    Ok(mpf)
}

/// Writes the MP table for `vcpus` CPUs at the EBDA.
pub fn setup_mptable(mem: &GuestMemory, vcpus: u8) -> Result<(), MptableError> {
    let bytes = build(vcpus, EBDA_START)?;
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(MptableError::GuestMemory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_counts_hold() {
        for vcpus in [1u8, 2, MAX_VCPUS] {
            let bytes = build(vcpus, EBDA_START).unwrap();
            assert_eq!(&bytes[..4], b"_MP_");
            assert_eq!(sum(&bytes[..16]), 0, "floating pointer checksum");
            let table = &bytes[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0, "table checksum");
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count as usize, vcpus as usize + 2 + 24 + 2);
            assert!(bytes.len() <= 0x400, "fits in the EBDA window");
            assert_eq!(
                u64::from(u32::from_le_bytes(bytes[4..8].try_into().unwrap())),
                EBDA_START + 16
            );
        }
    }

    #[test]
    fn vcpu_count_is_bounded() {
        assert!(build(0, EBDA_START).is_err());
        assert!(build(MAX_VCPUS + 1, EBDA_START).is_err());
    }
}
