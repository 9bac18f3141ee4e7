//! What the device manager needs of every virtio device it holds, whatever its kind.

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;

use super::persist::{DeviceKind, DeviceStateError, VirtioDeviceState};
use crate::devices::virtio::mmio::MmioTransport;

/// A virtio device (its transport and the device behind it) as one entry of the device list.
///
/// A device kind implements this once, next to its [`VirtioDeviceState`] variant (see
/// `device_manager/persist.rs`); the manager does the rest (slot, IRQ, KVM wiring, bus, kernel
/// command line, snapshot list).
pub trait ManagedVirtioDevice: Send {
    /// Which kind of device this is.
    fn kind(&self) -> DeviceKind;

    /// The transport to put on the MMIO bus; its queue eventfds and interrupt are what the
    /// manager registers with KVM.
    fn transport(&self) -> &Arc<Mutex<MmioTransport>>;

    /// The device's handler for the device event loop.
    fn subscriber(&self) -> Arc<Mutex<dyn MutEventSubscriber + Send>>;

    /// Captures the device and its transport (VM paused).
    fn save_state(&self) -> VirtioDeviceState;

    /// Puts the device back to `state` in place (VM paused, vCPUs already restored). Refuses a
    /// state of another kind. Must not interrupt the guest: [`Self::after_restore`] does that.
    fn reset_to_state(&mut self, state: &VirtioDeviceState) -> Result<(), DeviceStateError>;

    /// Called after a restore or a reset once every vCPU, with its LAPIC, is restored: the one
    /// place a device may interrupt the guest about the restore (an interrupt raised earlier
    /// would be lost to, or overwritten by, the restored interrupt controllers).
    fn after_restore(&self);

    /// The host end of a guest connection the device kept across the last restore or reset
    /// (vsock's link to guest-init), once. Devices without one have none.
    fn take_guest_link(&self) -> Option<UnixStream> {
        None
    }
}
