//! The snapshot's device list: one [`DeviceState`] per virtio device, in attach order, each
//! naming its kind, its state and the slot it sat in; and how a list is turned back into devices.
//!
//! Adding a device kind (as virtio-blk was), all in this file:
//! - a `DeviceKind` variant and a `VirtioDeviceState` variant holding the device's `Persist`
//!   state (the compiler then points at every `match` to extend; in the other kinds'
//!   `reset_to_state`, the new variant answers `DeviceStateError::KindMismatch`);
//! - a `DeviceStateError` variant wrapping the device's restore error;
//! - `impl ManagedVirtioDevice` for the device;
//! - an arm in [`restore_device`], taking what the device needs (e.g. its backing file) from
//!   [`RestoreResources`], which gains a field for it;
//! - and a bump of `SNAPSHOT_VERSION`.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use serde::{Deserialize, Serialize};

use super::slots::{check_slots, LayoutError, MmioSlot};
use super::virtio_device::ManagedVirtioDevice;
use crate::devices::virtio::block::{
    Block, BlockResetError, BlockRestoreError, BlockState, DiskIdentity,
};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::vsock::{Vsock, VsockConstructorArgs, VsockRestoreError, VsockState};
use crate::devices::virtio::GuestMemory;
use crate::snapshot::persist::Persist;

/// The kinds of virtio device a paddock VM can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// virtio-vsock, guest-init's link to the host.
    Vsock,
    /// virtio-blk: the root image or a scratch disk.
    Block,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Vsock => "vsock",
            DeviceKind::Block => "block",
        })
    }
}

/// Kinds every VM has: a snapshot without one cannot be a paddock sandbox.
pub const REQUIRED_KINDS: [DeviceKind; 1] = [DeviceKind::Vsock];

/// One device's own state (device and transport), by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VirtioDeviceState {
    /// virtio-vsock.
    Vsock(VsockState),
    /// virtio-blk.
    Block(BlockState),
}

impl VirtioDeviceState {
    /// The kind of device this state belongs to.
    pub fn kind(&self) -> DeviceKind {
        match self {
            VirtioDeviceState::Vsock(_) => DeviceKind::Vsock,
            VirtioDeviceState::Block(_) => DeviceKind::Block,
        }
    }
}

/// One entry of the snapshot's device list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Where the device sat: a restore puts it back exactly there.
    pub slot: MmioSlot,
    /// The device's own state.
    pub device: VirtioDeviceState,
}

/// Why one device's state was refused (on restore or reset).
#[derive(Debug, thiserror::Error)]
pub enum DeviceStateError {
    /// A reset handed a device the state of another kind.
    #[error("a {live} device cannot take {saved} state")]
    KindMismatch { live: DeviceKind, saved: DeviceKind },
    /// The vsock device refused its state.
    #[error(transparent)]
    Vsock(#[from] VsockRestoreError),
    /// A block device could not be rebuilt from its state.
    #[error(transparent)]
    BlockRestore(#[from] BlockRestoreError),
    /// A block device refused to reset to its state.
    #[error(transparent)]
    BlockReset(#[from] BlockResetError),
}

/// Why a saved device list does not match the live one (reset in place keeps the devices).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutMismatch {
    /// Another number of devices.
    #[error("the snapshot has {saved} virtio devices, this sandbox {live}")]
    Count { live: usize, saved: usize },
    /// Another device, or the same one elsewhere.
    #[error("virtio device {index} is a {saved_kind} at {saved_slot} in the snapshot, a {live_kind} at {live_slot} in this sandbox")]
    Entry {
        index: usize,
        live_kind: DeviceKind,
        live_slot: MmioSlot,
        saved_kind: DeviceKind,
        saved_slot: MmioSlot,
    },
}

/// Why a device list could not be turned back into devices.
#[derive(Debug, thiserror::Error)]
pub enum DevicesRestoreError {
    /// A slot is not one of the layout's, or is claimed twice.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The list names a device this VMM has nothing to build from (e.g. a second vsock device:
    /// there is one vsock socket).
    #[error("virtio device {index} is a {kind} device this VMM cannot build")]
    CannotBuild { index: usize, kind: DeviceKind },
    /// A device every sandbox has is not in the list.
    #[error("the snapshot has no {0} device")]
    Missing(DeviceKind),
    /// A device refused its state.
    #[error("restoring virtio device {index} ({kind}) failed: {source}")]
    Device {
        index: usize,
        kind: DeviceKind,
        #[source]
        source: DeviceStateError,
    },
    /// Placing a device or wiring it into KVM failed.
    #[error(transparent)]
    Attach(#[from] super::mmio::AttachError),
}

/// Host resources restored devices are built around, each handed to the one device that uses it.
pub struct RestoreResources {
    /// Guest memory, already holding the snapshot's contents.
    pub mem: GuestMemory,
    /// The vsock device's host socket.
    pub vsock_uds: Option<PathBuf>,
    /// The block devices' backing files, in list order, each with the identity it was found by
    /// (opened and checked against the saved identity by the caller).
    pub disks: VecDeque<(File, DiskIdentity)>,
}

impl std::fmt::Debug for RestoreResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreResources")
            .field("vsock_uds", &self.vsock_uds)
            .finish_non_exhaustive()
    }
}

/// Checks a saved list before anything is built: every slot is the layout's and unique, and
/// every required kind is present.
pub fn check_device_list(states: &[DeviceState]) -> Result<(), DevicesRestoreError> {
    check_slots(states.iter().map(|s| s.slot))?;
    for kind in REQUIRED_KINDS {
        if !states.iter().any(|s| s.device.kind() == kind) {
            return Err(DevicesRestoreError::Missing(kind));
        }
    }
    Ok(())
}

/// Checks that `saved` holds the same devices, in the same order and slots, as `live`.
pub fn check_same_layout(
    live: impl ExactSizeIterator<Item = (DeviceKind, MmioSlot)>,
    saved: &[DeviceState],
) -> Result<(), LayoutMismatch> {
    if live.len() != saved.len() {
        return Err(LayoutMismatch::Count {
            live: live.len(),
            saved: saved.len(),
        });
    }
    for (index, ((live_kind, live_slot), entry)) in live.zip(saved).enumerate() {
        let saved_kind = entry.device.kind();
        if (live_kind, live_slot) != (saved_kind, entry.slot) {
            return Err(LayoutMismatch::Entry {
                index,
                live_kind,
                live_slot,
                saved_kind,
                saved_slot: entry.slot,
            });
        }
    }
    Ok(())
}

/// Builds device `index` of a saved list from its state. Does not interrupt the guest.
pub fn restore_device(
    index: usize,
    state: &VirtioDeviceState,
    resources: &mut RestoreResources,
) -> Result<Box<dyn ManagedVirtioDevice>, DevicesRestoreError> {
    let kind = state.kind();
    let refused = |source: DeviceStateError| DevicesRestoreError::Device {
        index,
        kind,
        source,
    };
    match state {
        VirtioDeviceState::Vsock(state) => {
            let uds_path = resources
                .vsock_uds
                .take()
                .ok_or(DevicesRestoreError::CannotBuild { index, kind })?;
            let args = VsockConstructorArgs {
                mem: resources.mem.clone(),
                uds_path,
            };
            let vsock = Vsock::restore(args, state).map_err(|e| refused(e.into()))?;
            Ok(Box::new(vsock))
        }
        VirtioDeviceState::Block(state) => {
            let (file, identity) = resources
                .disks
                .pop_front()
                .ok_or(DevicesRestoreError::CannotBuild { index, kind })?;
            // The device carries the identity it was found by (a moved image's new path).
            let state = BlockState {
                identity,
                ..state.clone()
            };
            let block = Block::restore(resources.mem.clone(), file, &state)
                .map_err(|e| refused(e.into()))?;
            Ok(Box::new(ManagedBlock {
                block,
                mem: resources.mem.clone(),
            }))
        }
    }
}

/// A block device in the device list (it resets on the guest memory it was built on).
pub struct ManagedBlock {
    /// The device and its transport.
    pub block: Block,
    /// Guest memory, for resets in place.
    pub mem: GuestMemory,
}

impl std::fmt::Debug for ManagedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedBlock")
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl ManagedVirtioDevice for ManagedBlock {
    fn kind(&self) -> DeviceKind {
        DeviceKind::Block
    }

    fn transport(&self) -> &Arc<Mutex<MmioTransport>> {
        &self.block.transport
    }

    fn subscriber(&self) -> Arc<Mutex<dyn MutEventSubscriber + Send>> {
        self.block.device.clone()
    }

    fn save_state(&self) -> VirtioDeviceState {
        VirtioDeviceState::Block(self.block.save())
    }

    fn reset_to_state(&mut self, state: &VirtioDeviceState) -> Result<(), DeviceStateError> {
        match state {
            VirtioDeviceState::Block(state) => Ok(self.block.reset_to(&self.mem, state)?),
            other => Err(DeviceStateError::KindMismatch {
                live: DeviceKind::Block,
                saved: other.kind(),
            }),
        }
    }

    /// Nothing to tell the guest: the device re-reads its ring when activated.
    fn after_restore(&self) {}
}

impl ManagedVirtioDevice for Vsock {
    fn kind(&self) -> DeviceKind {
        DeviceKind::Vsock
    }

    fn transport(&self) -> &Arc<Mutex<MmioTransport>> {
        &self.transport
    }

    fn subscriber(&self) -> Arc<Mutex<dyn MutEventSubscriber + Send>> {
        self.device.clone()
    }

    fn save_state(&self) -> VirtioDeviceState {
        VirtioDeviceState::Vsock(self.save())
    }

    fn reset_to_state(&mut self, state: &VirtioDeviceState) -> Result<(), DeviceStateError> {
        match state {
            VirtioDeviceState::Vsock(state) => Ok(self.reset_to(state)?),
            other => Err(DeviceStateError::KindMismatch {
                live: DeviceKind::Vsock,
                saved: other.kind(),
            }),
        }
    }

    /// Host streams did not survive: resume the kept connection, reset the others.
    fn after_restore(&self) {
        self.resume_guest_connections();
    }

    fn take_guest_link(&self) -> Option<UnixStream> {
        self.take_resumed_link()
    }
}
