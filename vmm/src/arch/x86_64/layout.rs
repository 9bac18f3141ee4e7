//! The guest-physical memory map: where boot structures, RAM and the MMIO gap live.

/// Global descriptor table for the 64-bit boot protocol.
pub const BOOT_GDT_START: u64 = 0x500;
/// Interrupt descriptor table (empty) for the 64-bit boot protocol.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initramfs).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map.
pub const PVH_MEMMAP_START: u64 = 0x6100;
/// Linux zero page (`boot_params`) for the 64-bit boot protocol.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity page tables for the 64-bit boot protocol: PML4, PDPT, PD.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory (2 MiB pages covering the first GiB).
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line we pass (the kernel's x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area, where the MP table goes; RAM below it is usable.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory: the kernel is loaded at or above it.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap (devices live here); RAM skips over it.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Size of each virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First GSI handed to virtio-mmio devices (0-4 are legacy: PIT, keyboard, cascade, COM2, COM1).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Last GSI usable on the in-kernel IOAPIC.
pub const IRQ_MAX: u32 = 23;
/// The TSS the in-kernel VMX/SVM code needs (three pages just below the IOAPIC/LAPIC area).
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// COM1 I/O port base and its IRQ.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's IRQ line.
pub const COM1_IRQ: u32 = 4;
/// i8042 ports (data 0x60, command/status 0x64): we decode 0x60..=0x64.
pub const I8042_PORT: u16 = 0x60;

/// The guest RAM ranges for `mem_size` bytes: below the MMIO gap, and the rest above 4 GiB.
pub fn ram_ranges(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= MMIO_GAP_START {
        vec![(0, mem_size)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_size - MMIO_GAP_START),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_mmio_gap() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(MMIO_GAP_START), vec![(0, MMIO_GAP_START)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![
                (0, MMIO_GAP_START),
                (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START)
            ]
        );
    }
}
