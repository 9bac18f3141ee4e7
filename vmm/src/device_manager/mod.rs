//! Every device of a VM in one place (Firecracker's `device_manager` is the model): the legacy
//! port-I/O devices at their fixed ports, and the virtio-mmio devices as a list in attach order,
//! each in a slot of the MMIO gap with its own IRQ.
//!
//! Boot attaches devices one by one ([`mmio::MmioDeviceManager::attach_virtio`]: slot, IRQ, KVM
//! irqfd and ioeventfds, MMIO bus, kernel command line entry). A snapshot saves the list as
//! [`persist::DeviceState`]s; a restore rebuilds it from them in the same slots
//! ([`mmio::MmioDeviceManager::restore_devices`]); a reset puts each device back to its state in
//! place ([`DeviceManager::reset_to`]). Devices follow [`crate::snapshot::persist::Persist`].

pub mod legacy;
pub mod mmio;
pub mod persist;
pub mod slots;
pub mod virtio_device;

#[cfg(test)]
mod tests;

use crate::devices::bus::Bus;
use crate::devices::serial::{SerialState, SerialStateError};
use crate::event_loop::Subscribers;
use legacy::LegacyDevices;
use mmio::{MmioDeviceManager, VirtioResetError};
use persist::DeviceState;

/// Why the devices could not be reset to a snapshot's state.
#[derive(Debug, thiserror::Error)]
pub enum DevicesResetError {
    /// COM1 refused its registers.
    #[error("resetting the serial device failed: {0}")]
    Serial(#[from] SerialStateError),
    /// The virtio device list refused its states.
    #[error(transparent)]
    Virtio(#[from] VirtioResetError),
}

/// A VM's devices.
#[derive(Debug)]
pub struct DeviceManager {
    /// COM1 and the i8042.
    pub legacy: LegacyDevices,
    /// The virtio devices.
    pub virtio: MmioDeviceManager,
}

impl DeviceManager {
    /// The legacy devices and no virtio device yet.
    pub fn new(legacy: LegacyDevices) -> Self {
        Self {
            legacy,
            virtio: MmioDeviceManager::new(),
        }
    }

    /// The port-I/O bus.
    pub fn pio_bus(&self) -> &Bus {
        self.legacy.bus()
    }

    /// The MMIO bus.
    pub fn mmio_bus(&self) -> &Bus {
        self.virtio.bus()
    }

    /// Registers every device's event handler with the event loop.
    pub fn subscribe_all(&self, subscribers: &mut Subscribers) {
        self.virtio.subscribe_all(subscribers);
    }

    /// Puts every device back to a snapshot's state in place, then lets the virtio devices tell
    /// the guest (e.g. vsock's per-connection resets). Call with the VM paused and only after the
    /// vCPUs (and their LAPICs) are restored: the interrupts raised at the end must land on the
    /// restored interrupt controllers, not be overwritten by them.
    pub fn reset_to(
        &mut self,
        serial: &SerialState,
        devices: &[DeviceState],
    ) -> Result<(), DevicesResetError> {
        self.legacy.reset_to(serial)?;
        self.virtio.reset_to(devices)?;
        self.virtio.after_restore();
        Ok(())
    }
}
