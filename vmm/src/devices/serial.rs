//! The 16550 UART on COM1 (vm-superio), raising its IRQ through an irqfd.

use super::bus::BusDevice;
use super::console::ConsoleSink;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the serial IRQ by writing the irqfd KVM routes to the IOAPIC pin.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// COM1 as a bus device.
pub struct SerialDevice {
    /// The emulated UART.
    pub serial: Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>,
}

impl SerialDevice {
    /// A UART writing to `sink`, interrupting through `irq`.
    pub fn new(irq: EventFd, sink: ConsoleSink) -> Self {
        Self { serial: Serial::new(IrqTrigger(irq), sink) }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            *byte = self.serial.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            if let Err(e) = self.serial.write(offset, *byte) {
                tracing::debug!("serial write failed: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::console::ConsoleTail;

    #[test]
    fn bytes_written_to_thr_reach_the_console() {
        let tail = ConsoleTail::default();
        let mut dev = SerialDevice::new(EventFd::new(0).unwrap(), ConsoleSink::new(tail.clone(), None));
        for b in b"hi\n" {
            dev.write(0, &[*b]);
        }
        // Wider accesses are ignored, not mis-decoded.
        dev.write(0, &[b'x', b'y']);
        assert_eq!(tail.text(), "hi\n");
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
    }
}
