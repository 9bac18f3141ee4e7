//! The guest's virtio-mmio devices: where they are (the `virtio_mmio.device=SIZE@BASE:IRQ`
//! entries the VMM put on the kernel command line) and taking them from their drivers.

use std::io;

/// One virtio-mmio device window declared on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWindow {
    /// Guest-physical base address.
    pub base: u64,
    /// Window size in bytes.
    pub size: u64,
}

fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 10),
        b'M' | b'm' => (&text[..text.len() - 1], 20),
        _ => (text, 0),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse().ok()?
    };
    value.checked_shl(shift)
}

/// The device windows named in a kernel command line, in order.
pub fn parse_cmdline(cmdline: &str) -> Vec<DeviceWindow> {
    cmdline
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("virtio_mmio.device="))
        .filter_map(|spec| {
            let (size, rest) = spec.split_once('@')?;
            let base = rest.split(':').next()?;
            let base = u64::from_str_radix(base.strip_prefix("0x")?, 16).ok()?;
            Some(DeviceWindow {
                base,
                size: parse_size(size)?,
            })
        })
        .collect()
}

/// This guest's device windows.
pub fn windows() -> io::Result<Vec<DeviceWindow>> {
    Ok(parse_cmdline(&std::fs::read_to_string("/proc/cmdline")?))
}

const DRIVER_DIR: &str = "/sys/bus/platform/drivers/virtio-mmio";

/// Unbinds the virtio-mmio driver from every device it holds, so this process owns the
/// registers alone (the guest loses its devices: its vsock link to the host, its disks).
/// Returns the device names unbound.
pub fn unbind_all() -> io::Result<Vec<String>> {
    let mut unbound = Vec::new();
    for entry in std::fs::read_dir(DRIVER_DIR)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("virtio-mmio.") || name.starts_with("virtio_mmio.") {
            std::fs::write(format!("{DRIVER_DIR}/unbind"), &name)?;
            unbound.push(name);
        }
    }
    Ok(unbound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_vmm_command_line() {
        let line = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 \
                    virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=bad";
        assert_eq!(
            parse_cmdline(line),
            vec![
                DeviceWindow {
                    base: 0xd000_0000,
                    size: 4096
                },
                DeviceWindow {
                    base: 0xd000_1000,
                    size: 4096
                }
            ]
        );
    }
}
