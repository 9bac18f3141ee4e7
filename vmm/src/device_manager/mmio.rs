//! The virtio-mmio device list: each device's slot, its place on the MMIO bus, its wiring into
//! KVM (irqfd, queue-notify ioeventfds) and its kernel command line entry, in attach order.

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use linux_loader::cmdline::Cmdline;
use vm_memory::GuestAddress;

use super::persist::{
    check_device_list, check_same_layout, restore_device, DeviceKind, DeviceState,
    DeviceStateError, DevicesRestoreError, LayoutMismatch, RestoreResources,
};
use super::slots::{LayoutError, MmioSlot, SlotAllocator};
use super::virtio_device::ManagedVirtioDevice;
use crate::arch::x86_64::layout::VIRTIO_MMIO_SIZE;
use crate::devices::bus::{lock, Bus, BusError};
use crate::devices::virtio::mmio::{MmioTransport, MMIO_QUEUE_NOTIFY_OFFSET};
use crate::event_loop::Subscribers;
use crate::vstate::vm::{register_irqfd, register_mmio_ioevent, VmError};

/// Why a virtio device could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No slot, or not the slot asked for.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// KVM refused the irqfd or an ioeventfd.
    #[error("wiring the {kind} device at {slot} into KVM failed: {source}")]
    Kvm {
        kind: DeviceKind,
        slot: MmioSlot,
        #[source]
        source: VmError,
    },
    /// The register window overlaps another device's.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The kernel command line has no room for the device.
    #[error("adding the {kind} device at {slot} to the kernel command line failed: {source}")]
    Cmdline {
        kind: DeviceKind,
        slot: MmioSlot,
        #[source]
        source: linux_loader::cmdline::Error,
    },
}

/// Why the device list could not be reset to a saved one.
#[derive(Debug, thiserror::Error)]
pub enum VirtioResetError {
    /// The saved list has other devices or slots.
    #[error(transparent)]
    Layout(#[from] LayoutMismatch),
    /// A device refused its state.
    #[error("resetting virtio device {index} ({kind}) failed: {source}")]
    Device {
        index: usize,
        kind: DeviceKind,
        #[source]
        source: DeviceStateError,
    },
}

/// One attached device.
pub struct AttachedDevice {
    /// Its slot.
    pub slot: MmioSlot,
    /// The device and its transport.
    pub device: Box<dyn ManagedVirtioDevice>,
}

impl std::fmt::Debug for AttachedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedDevice")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// The virtio devices of a VM, in attach order (the guest probes them, and names its disks
/// vda, vdb, …, in that order), with the MMIO bus their transports sit on.
#[derive(Default)]
pub struct MmioDeviceManager {
    bus: Bus,
    slots: SlotAllocator,
    devices: Vec<AttachedDevice>,
}

impl std::fmt::Debug for MmioDeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioDeviceManager")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl MmioDeviceManager {
    /// No device attached.
    pub fn new() -> Self {
        Self::default()
    }

    /// The MMIO bus the vCPU threads dispatch to.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The attached devices, in attach order.
    pub fn devices(&self) -> &[AttachedDevice] {
        &self.devices
    }

    /// Boot: puts `device` in the next free slot, wires it into KVM and tells the guest kernel
    /// where it is (`virtio_mmio.device=4K@ADDR:IRQ`).
    pub fn attach_virtio(
        &mut self,
        vm: &VmFd,
        device: Box<dyn ManagedVirtioDevice>,
        cmdline: &mut Cmdline,
    ) -> Result<MmioSlot, AttachError> {
        self.attach_virtio_with(device, cmdline, |slot, device| {
            register_with_kvm(vm, slot, device)
        })
    }

    /// Restore: rebuilds every device of a saved list in its saved slot and wires it into KVM.
    /// The guest kernel already knows where they are. Nothing is interrupted: call
    /// [`MmioDeviceManager::after_restore`] once the vCPUs are restored.
    pub fn restore_devices(
        &mut self,
        vm: &VmFd,
        states: &[DeviceState],
        resources: RestoreResources,
    ) -> Result<(), DevicesRestoreError> {
        self.restore_devices_with(states, resources, |slot, device| {
            register_with_kvm(vm, slot, device)
        })
    }

    /// [`MmioDeviceManager::attach_virtio`], with `wire` connecting the device to the VM.
    pub(super) fn attach_virtio_with(
        &mut self,
        device: Box<dyn ManagedVirtioDevice>,
        cmdline: &mut Cmdline,
        wire: impl FnOnce(MmioSlot, &dyn ManagedVirtioDevice) -> Result<(), AttachError>,
    ) -> Result<MmioSlot, AttachError> {
        let slot = self.slots.allocate()?;
        add_cmdline_entry(cmdline, device.kind(), slot)?;
        wire(slot, device.as_ref())?;
        self.place(slot, device)?;
        Ok(slot)
    }

    /// [`MmioDeviceManager::restore_devices`], with `wire` connecting each device to the VM.
    pub(super) fn restore_devices_with(
        &mut self,
        states: &[DeviceState],
        mut resources: RestoreResources,
        mut wire: impl FnMut(MmioSlot, &dyn ManagedVirtioDevice) -> Result<(), AttachError>,
    ) -> Result<(), DevicesRestoreError> {
        check_device_list(states)?;
        for (index, state) in states.iter().enumerate() {
            let device = restore_device(index, &state.device, &mut resources)?;
            self.slots.claim(state.slot).map_err(AttachError::from)?;
            wire(state.slot, device.as_ref())?;
            self.place(state.slot, device)?;
        }
        Ok(())
    }

    /// Puts `device` (in an already taken `slot`) on the bus and at the end of the list.
    fn place(
        &mut self,
        slot: MmioSlot,
        device: Box<dyn ManagedVirtioDevice>,
    ) -> Result<(), AttachError> {
        let transport: Arc<Mutex<MmioTransport>> = device.transport().clone();
        self.bus.insert(slot.addr, VIRTIO_MMIO_SIZE, transport)?;
        self.devices.push(AttachedDevice { slot, device });
        Ok(())
    }

    /// Registers every device's event handler with the event loop.
    pub fn subscribe_all(&self, subscribers: &mut Subscribers) {
        use event_manager::SubscriberOps;
        for attached in &self.devices {
            subscribers.add_subscriber(attached.device.subscriber());
        }
    }

    /// The device list as a snapshot holds it (VM paused).
    pub fn save(&self) -> Vec<DeviceState> {
        self.devices
            .iter()
            .map(|a| DeviceState {
                slot: a.slot,
                device: a.device.save_state(),
            })
            .collect()
    }

    /// Checks that `saved` has exactly this VM's devices, kinds and slots, in order.
    pub fn check_same_layout(&self, saved: &[DeviceState]) -> Result<(), LayoutMismatch> {
        check_same_layout(
            self.devices.iter().map(|a| (a.device.kind(), a.slot)),
            saved,
        )
    }

    /// Puts every device back to its saved state in place (VM paused, vCPUs restored). Nothing
    /// is interrupted: call [`MmioDeviceManager::after_restore`] afterwards.
    pub fn reset_to(&mut self, saved: &[DeviceState]) -> Result<(), VirtioResetError> {
        self.check_same_layout(saved)?;
        for (index, (attached, state)) in self.devices.iter_mut().zip(saved).enumerate() {
            attached
                .device
                .reset_to_state(&state.device)
                .map_err(|source| VirtioResetError::Device {
                    index,
                    kind: attached.device.kind(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Lets every device tell the guest about the restore or reset, in attach order. Call only
    /// once every vCPU and its LAPIC is restored.
    pub fn after_restore(&self) {
        for attached in &self.devices {
            attached.device.after_restore();
        }
    }

    /// The host end of the guest connection a device kept across the last restore or reset
    /// (see [`ManagedVirtioDevice::take_guest_link`]), once.
    pub fn take_guest_link(&self) -> Option<UnixStream> {
        self.devices
            .iter()
            .find_map(|attached| attached.device.take_guest_link())
    }
}

/// Adds `virtio_mmio.device=<size>@<addr>:<irq>` for `slot`.
pub fn add_cmdline_entry(
    cmdline: &mut Cmdline,
    kind: DeviceKind,
    slot: MmioSlot,
) -> Result<(), AttachError> {
    cmdline
        .add_virtio_mmio_device(VIRTIO_MMIO_SIZE, GuestAddress(slot.addr), slot.irq, None)
        .map_err(|source| AttachError::Cmdline { kind, slot, source })
}

/// The guest-physical address whose writes notify the device in `slot` (KVM matches the queue
/// index written).
pub fn queue_notify_address(slot: MmioSlot) -> u64 {
    slot.addr + MMIO_QUEUE_NOTIFY_OFFSET
}

/// Routes the device's interrupt eventfd to its GSI and each queue's notification eventfd to
/// a QueueNotify write of that queue's index.
fn register_with_kvm(
    vm: &VmFd,
    slot: MmioSlot,
    device: &dyn ManagedVirtioDevice,
) -> Result<(), AttachError> {
    let kvm_err = |source| AttachError::Kvm {
        kind: device.kind(),
        slot,
        source,
    };
    let transport = lock(device.transport());
    for (index, evt) in (0u32..).zip(transport.queue_events()) {
        register_mmio_ioevent(vm, evt, queue_notify_address(slot), index).map_err(kvm_err)?;
    }
    register_irqfd(vm, transport.interrupt_event(), slot.irq).map_err(kvm_err)
}
