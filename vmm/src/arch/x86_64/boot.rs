//! Loading the kernel, initramfs and command line, and describing memory to the guest (PVH
//! `hvm_start_info` or the Linux zero page, each with an e820 map).

use super::layout::{
    self, CMDLINE_START, EBDA_START, HIMEM_START, PVH_INFO_START, PVH_MEMMAP_START,
    PVH_MODLIST_START, ZERO_PAGE_START,
};
use super::regs::BootProtocol;
use crate::vstate::memory::GuestMemory;
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const PAGE_SIZE: u64 = 4096;

/// Why the kernel, initramfs or boot parameters could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel file is not a loadable vmlinux ELF.
    #[error("the kernel is not a loadable x86_64 vmlinux ELF (pass the uncompressed vmlinux, not a bzImage): {0}")]
    Kernel(#[source] linux_loader::loader::Error),
    /// Reading the initramfs failed.
    #[error("reading the initramfs failed: {0}")]
    InitrdRead(#[source] std::io::Error),
    /// The initramfs does not fit in guest memory above the kernel.
    #[error("the initramfs ({size} bytes) does not fit in guest memory above the kernel; give the guest more memory")]
    InitrdTooBig { size: u64 },
    /// The command line is invalid or too long.
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    /// Writing boot parameters failed.
    #[error("writing boot parameters failed: {0}")]
    BootParams(String),
    /// Guest memory could not be written.
    #[error("writing guest memory failed: {0}")]
    GuestMemory(#[source] vm_memory::GuestMemoryError),
}

/// Where the kernel went and how to enter it.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    /// Entry point (PVH entry or the 64-bit `startup_64`).
    pub entry: u64,
    /// The boot protocol to use.
    pub protocol: BootProtocol,
    /// First byte after the loaded kernel image.
    pub end: u64,
}

/// Where the initramfs was placed.
#[derive(Clone, Copy, Debug)]
pub struct LoadedInitrd {
    /// Guest-physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Loads a vmlinux ELF; prefers its PVH entry when the kernel carries the Xen ELF note.
pub fn load_kernel(mem: &GuestMemory, kernel: &mut File) -> Result<LoadedKernel, LoadError> {
    let result =
        Elf::load(mem, None, kernel, Some(GuestAddress(HIMEM_START))).map_err(LoadError::Kernel)?;
    let (entry, protocol) = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => (addr.0, BootProtocol::Pvh),
        _ => (result.kernel_load.0, BootProtocol::Linux64),
    };
    Ok(LoadedKernel {
        entry,
        protocol,
        end: result.kernel_end,
    })
}

/// Copies the initramfs to the highest page-aligned spot of low RAM, above the kernel.
pub fn load_initrd(
    mem: &GuestMemory,
    initrd: &mut File,
    kernel_end: u64,
) -> Result<LoadedInitrd, LoadError> {
    let size = initrd
        .seek(SeekFrom::End(0))
        .map_err(LoadError::InitrdRead)?;
    initrd.rewind().map_err(LoadError::InitrdRead)?;
    let low_ram_end = (mem.last_addr().0 + 1).min(layout::MMIO_GAP_START);
    let addr = low_ram_end
        .checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|&a| a >= kernel_end)
        .ok_or(LoadError::InitrdTooBig { size })?;
    let len = usize::try_from(size).map_err(|_| LoadError::InitrdTooBig { size })?;
    mem.read_exact_volatile_from(GuestAddress(addr), initrd, len)
        .map_err(LoadError::GuestMemory)?;
    Ok(LoadedInitrd { addr, size })
}

/// Writes the NUL-terminated command line at `CMDLINE_START`.
pub fn load_cmdline(mem: &GuestMemory, cmdline: &Cmdline) -> Result<(), LoadError> {
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline)
        .map_err(|e| LoadError::Cmdline(e.to_string()))
}

/// The guest's memory map: low RAM below the EBDA, the EBDA itself reserved (MP table), then
/// RAM from 1 MiB (skipping the MMIO gap).
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, 0xa0000 - EBDA_START, E820_RESERVED),
    ];
    for (base, len) in layout::ram_ranges(mem_size) {
        let start = base.max(HIMEM_START);
        if base + len > start {
            map.push((start, base + len - start, E820_RAM));
        }
    }
    map
}

/// Writes the boot parameters for `protocol`.
pub fn write_boot_params(
    mem: &GuestMemory,
    protocol: BootProtocol,
    cmdline_len: usize,
    initrd: Option<LoadedInitrd>,
    mem_size: u64,
) -> Result<(), LoadError> {
    let e820 = e820_map(mem_size);
    let too_big = |what: &str| LoadError::BootParams(format!("{what} does not fit its field"));
    match protocol {
        BootProtocol::Pvh => {
            let memmap: Vec<hvm_memmap_table_entry> = e820
                .iter()
                .map(|&(addr, size, type_)| hvm_memmap_table_entry {
                    addr,
                    size,
                    type_,
                    reserved: 0,
                })
                .collect();
            let mut start_info = hvm_start_info {
                magic: XEN_HVM_START_MAGIC,
                version: 1,
                cmdline_paddr: CMDLINE_START,
                memmap_paddr: PVH_MEMMAP_START,
                memmap_entries: u32::try_from(memmap.len()).map_err(|_| too_big("memory map"))?,
                ..Default::default()
            };
            let mut params;
            if let Some(initrd) = initrd {
                start_info.nr_modules = 1;
                start_info.modlist_paddr = PVH_MODLIST_START;
                params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
                let module = hvm_modlist_entry {
                    paddr: initrd.addr,
                    size: initrd.size,
                    ..Default::default()
                };
                params.set_modules(&[module], GuestAddress(PVH_MODLIST_START));
            } else {
                params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
            }
            params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
            PvhBootConfigurator::write_bootparams(&params, mem)
                .map_err(|e| LoadError::BootParams(e.to_string()))
        }
        BootProtocol::Linux64 => {
            let mut zero_page = boot_params::default();
            zero_page.hdr.type_of_loader = 0xff;
            zero_page.hdr.boot_flag = 0xaa55;
            zero_page.hdr.header = 0x5372_6448; // "HdrS"
            zero_page.hdr.kernel_alignment = 0x0100_0000;
            zero_page.hdr.cmd_line_ptr =
                u32::try_from(CMDLINE_START).map_err(|_| too_big("command line address"))?;
            zero_page.hdr.cmdline_size =
                u32::try_from(cmdline_len).map_err(|_| too_big("command line length"))?;
            if let Some(initrd) = initrd {
                zero_page.hdr.ramdisk_image =
                    u32::try_from(initrd.addr).map_err(|_| too_big("initramfs address"))?;
                zero_page.hdr.ramdisk_size =
                    u32::try_from(initrd.size).map_err(|_| too_big("initramfs size"))?;
            }
            for (slot, &(addr, size, type_)) in zero_page.e820_table.iter_mut().zip(&e820) {
                *slot = boot_e820_entry {
                    addr,
                    size,
                    r#type: type_,
                };
            }
            zero_page.e820_entries = u8::try_from(e820.len()).map_err(|_| too_big("memory map"))?;
            let params = BootParams::new(&zero_page, GuestAddress(ZERO_PAGE_START));
            LinuxBootConfigurator::write_bootparams(&params, mem)
                .map_err(|e| LoadError::BootParams(e.to_string()))
        }
    }
}

/// Zeroes `len` bytes at `addr` (used to clear boot structure areas on reuse).
pub fn zero(mem: &GuestMemory, addr: u64, len: usize) -> Result<(), LoadError> {
    mem.write_slice(&vec![0u8; len], GuestAddress(addr))
        .map_err(LoadError::GuestMemory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_ram;
    use std::io::Write;

    #[test]
    fn e820_covers_ram_and_reserves_the_ebda() {
        let map = e820_map(256 << 20);
        assert_eq!(map[0], (0, EBDA_START, E820_RAM));
        assert_eq!(map[1].2, E820_RESERVED);
        assert_eq!(map[2], (HIMEM_START, (256 << 20) - HIMEM_START, E820_RAM));
    }

    #[test]
    fn garbage_kernel_is_rejected_clearly() {
        let ram = create_guest_ram(32).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"definitely not an ELF file").unwrap();
        let err = load_kernel(&ram.memory, &mut f).unwrap_err();
        assert!(
            err.to_string().contains("not a loadable x86_64 vmlinux"),
            "{err}"
        );
        let mut empty = tempfile::tempfile().unwrap();
        assert!(load_kernel(&ram.memory, &mut empty).is_err());
    }

    #[test]
    fn initrd_goes_to_the_top_of_low_ram_and_must_fit() {
        let ram = create_guest_ram(32).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0x5a; 10_000]).unwrap();
        let placed = load_initrd(&ram.memory, &mut f, 0x100_0000).unwrap();
        assert_eq!(placed.size, 10_000);
        assert_eq!(placed.addr % PAGE_SIZE, 0);
        assert!(placed.addr + placed.size <= 32 << 20);
        let b: u8 = ram
            .memory
            .read_obj(GuestAddress(placed.addr + 9_999))
            .unwrap();
        assert_eq!(b, 0x5a);
        let mut big = tempfile::tempfile().unwrap();
        big.set_len(31 << 20).unwrap();
        assert!(matches!(
            load_initrd(&ram.memory, &mut big, 0x200_0000),
            Err(LoadError::InitrdTooBig { .. })
        ));
    }

    #[test]
    fn pvh_start_info_is_written() {
        let ram = create_guest_ram(32).unwrap();
        let initrd = LoadedInitrd {
            addr: 0x100_0000,
            size: 123,
        };
        write_boot_params(&ram.memory, BootProtocol::Pvh, 10, Some(initrd), 32 << 20).unwrap();
        let magic: u32 = ram.memory.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(magic, XEN_HVM_START_MAGIC);
        let module: hvm_modlist_entry = ram
            .memory
            .read_obj(GuestAddress(PVH_MODLIST_START))
            .unwrap();
        assert_eq!((module.paddr, module.size), (0x100_0000, 123));
    }
}
