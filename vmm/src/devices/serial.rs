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
        Self {
            serial: Serial::new(IrqTrigger(irq), sink),
        }
    }
}

/// The UART's registers, for snapshots (vm-superio's `SerialState` is not serde-serializable).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

impl SerialDevice {
    /// Saves the UART's registers.
    pub fn save(&self) -> SerialSnapshot {
        let s = self.serial.state();
        SerialSnapshot {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// A UART in the saved state, writing to `sink`, interrupting through `irq`.
    pub fn restore(irq: EventFd, sink: ConsoleSink, snap: &SerialSnapshot) -> Result<Self, String> {
        let state = vm_superio::serial::SerialState {
            baud_divisor_low: snap.baud_divisor_low,
            baud_divisor_high: snap.baud_divisor_high,
            interrupt_enable: snap.interrupt_enable,
            interrupt_identification: snap.interrupt_identification,
            line_control: snap.line_control,
            line_status: snap.line_status,
            modem_control: snap.modem_control,
            modem_status: snap.modem_status,
            scratch: snap.scratch,
            in_buffer: snap.in_buffer.clone(),
        };
        let serial =
            Serial::from_state(&state, IrqTrigger(irq), vm_superio::serial::NoEvents, sink)
                .map_err(|e| format!("invalid serial state: {e:?}"))?;
        Ok(Self { serial })
    }
}

impl SerialDevice {
    /// Puts the saved registers back, keeping this UART's interrupt line and console.
    pub fn restore_in_place(&mut self, snap: &SerialSnapshot) -> Result<(), String> {
        let placeholder = Serial::new(
            IrqTrigger(EventFd::new(0).map_err(|e| e.to_string())?),
            ConsoleSink::new(Default::default(), None),
        );
        let old = std::mem::replace(&mut self.serial, placeholder);
        let irq = IrqTrigger(
            old.interrupt_evt()
                .0
                .try_clone()
                .map_err(|e| e.to_string())?,
        );
        let sink = old.into_writer();
        let restored = Self::restore(irq.0, sink, snap)?;
        self.serial = restored.serial;
        Ok(())
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
        let mut dev = SerialDevice::new(
            EventFd::new(0).unwrap(),
            ConsoleSink::new(tail.clone(), None),
        );
        for b in b"hi\n" {
            dev.write(0, &[*b]);
        }
        // Wider accesses are ignored, not mis-decoded.
        dev.write(0, b"xy");
        assert_eq!(tail.text(), "hi\n");
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
    }

    #[test]
    fn state_round_trips() {
        let tail = ConsoleTail::default();
        let mut dev = SerialDevice::new(
            EventFd::new(0).unwrap(),
            ConsoleSink::new(tail.clone(), None),
        );
        dev.write(7, &[0x5a]); // scratch register
        dev.write(1, &[0x02]); // enable THR-empty interrupt
        let snap = dev.save();
        let mut back = SerialDevice::restore(
            EventFd::new(0).unwrap(),
            ConsoleSink::new(tail, None),
            &snap,
        )
        .unwrap();
        let mut scratch = [0u8];
        back.read(7, &mut scratch);
        assert_eq!(scratch, [0x5a]);
        assert_eq!(back.save(), snap);
    }
}
