//! The 16550 UART on COM1 (vm-superio), raising its IRQ through an irqfd.

use super::bus::BusDevice;
use super::console::ConsoleSink;
use crate::snapshot::persist::Persist;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the serial IRQ by writing the irqfd KVM routes to the IOAPIC pin.
#[derive(Debug)]
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

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
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
pub struct SerialState {
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

/// What a restored UART is built around.
#[derive(Debug)]
pub struct SerialConstructorArgs {
    /// The irqfd KVM routes to COM1's IOAPIC pin.
    pub irq: EventFd,
    /// Where the guest's output goes.
    pub sink: ConsoleSink,
}

/// Why saved UART state was refused.
#[derive(Debug, thiserror::Error)]
pub enum SerialStateError {
    /// The registers do not describe a UART vm-superio can build (e.g. an over-full FIFO).
    #[error("invalid serial state: {0}")]
    Invalid(#[source] vm_superio::serial::Error<std::io::Error>),
    /// Duplicating the interrupt eventfd, or creating a placeholder one, failed.
    #[error("serial interrupt eventfd: {0}")]
    EventFd(#[source] std::io::Error),
}

impl Persist for SerialDevice {
    type State = SerialState;
    type ConstructorArgs = SerialConstructorArgs;
    type Error = SerialStateError;

    fn save(&self) -> SerialState {
        let s = self.serial.state();
        SerialState {
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

    fn restore(args: SerialConstructorArgs, state: &SerialState) -> Result<Self, SerialStateError> {
        let registers = vm_superio::serial::SerialState {
            baud_divisor_low: state.baud_divisor_low,
            baud_divisor_high: state.baud_divisor_high,
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.in_buffer.clone(),
        };
        let serial = Serial::from_state(
            &registers,
            IrqTrigger(args.irq),
            vm_superio::serial::NoEvents,
            args.sink,
        )
        .map_err(SerialStateError::Invalid)?;
        Ok(Self { serial })
    }

    /// Keeps this UART's interrupt line and console; only the registers change.
    fn reset_to(&mut self, state: &SerialState) -> Result<(), SerialStateError> {
        let irq = self
            .serial
            .interrupt_evt()
            .0
            .try_clone()
            .map_err(SerialStateError::EventFd)?;
        let placeholder = Serial::new(
            IrqTrigger(EventFd::new(0).map_err(SerialStateError::EventFd)?),
            ConsoleSink::new(Default::default(), None),
        );
        let old = std::mem::replace(&mut self.serial, placeholder);
        let sink = old.into_writer();
        let restored = Self::restore(SerialConstructorArgs { irq, sink }, state)?;
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
        let args = SerialConstructorArgs {
            irq: EventFd::new(0).unwrap(),
            sink: ConsoleSink::new(tail.clone(), None),
        };
        let mut back = SerialDevice::restore(args, &snap).unwrap();
        let mut scratch = [0u8];
        back.read(7, &mut scratch);
        assert_eq!(scratch, [0x5a]);
        assert_eq!(back.save(), snap);
    }

    #[test]
    fn reset_to_puts_registers_back_and_keeps_the_console() {
        let tail = ConsoleTail::default();
        let mut dev = SerialDevice::new(
            EventFd::new(0).unwrap(),
            ConsoleSink::new(tail.clone(), None),
        );
        dev.write(7, &[0x11]);
        let snap = dev.save();
        dev.write(7, &[0x22]);
        dev.reset_to(&snap).unwrap();
        let mut scratch = [0u8];
        dev.read(7, &mut scratch);
        assert_eq!(scratch, [0x11]);
        dev.write(0, b"k");
        assert_eq!(
            tail.text(),
            "k",
            "output still reaches the original console"
        );
    }

    #[test]
    fn an_overfull_fifo_is_refused() {
        let dev = SerialDevice::new(
            EventFd::new(0).unwrap(),
            ConsoleSink::new(ConsoleTail::default(), None),
        );
        let mut snap = dev.save();
        snap.in_buffer = vec![0; 65];
        let args = SerialConstructorArgs {
            irq: EventFd::new(0).unwrap(),
            sink: ConsoleSink::new(ConsoleTail::default(), None),
        };
        assert!(matches!(
            SerialDevice::restore(args, &snap),
            Err(SerialStateError::Invalid(_))
        ));
    }
}
