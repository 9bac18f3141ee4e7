//! Snapshot state of a block device (Firecracker's Persist pattern: `save() -> State`, a
//! constructor from `State` that validates it, and an in-place reset to a `State`).
//!
//! Requests are served synchronously on the event loop, so none is in flight when the loop is
//! paused for a snapshot: the queue positions and the transport registers are the whole state.

use std::fs::File;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::identity::{DiskIdentity, DiskSerial};
use super::{Backing, Block, BlockError, DeviceParts};
use crate::devices::bus::lock;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::persist::{MmioRestoreError, MmioState};
use crate::devices::virtio::{clone_events, GuestMemory, VirtioDevice};

/// Everything needed to rebuild a block device and its transport around the same disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    /// Bytes of the backing file the guest sees.
    pub exposed_len: u64,
    pub read_only: bool,
    pub serial: DiskSerial,
    /// The image the device was serving; the restoring side checks it opens the same one.
    pub identity: DiskIdentity,
    /// Registers, negotiated features, and queue configuration and positions.
    pub transport: MmioState,
}

/// Why a block device could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum BlockRestoreError {
    #[error(transparent)]
    Device(#[from] BlockError),
    #[error(transparent)]
    Transport(#[from] MmioRestoreError),
}

/// What differs between a device and the state it was asked to reset to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiskMismatch {
    #[error("exposed length")]
    ExposedLength,
    #[error("read-only flag")]
    ReadOnly,
    #[error("serial")]
    Serial,
    #[error("image identity")]
    Identity,
}

/// Why a block device could not be reset in place.
#[derive(Debug, thiserror::Error)]
pub enum BlockResetError {
    /// A device is reset only to a state of the same disk; a different disk needs a new device.
    #[error("the state is for a different disk: {0} differs")]
    DifferentDisk(DiskMismatch),
    /// The backing file no longer holds the exposed length.
    #[error(transparent)]
    Backing(#[from] BlockError),
    /// Duplicating the transport's eventfds failed.
    #[error("cannot duplicate the queue eventfds: {0}")]
    EventFd(std::io::Error),
    #[error(transparent)]
    Transport(#[from] MmioRestoreError),
}

impl Block {
    /// Captures the device and its transport. Call with the vCPUs and the event loop paused.
    pub fn save(&self) -> BlockState {
        let transport = lock(&self.transport).save();
        let device = lock(&self.device);
        BlockState {
            exposed_len: device.exposed_len(),
            read_only: device.read_only(),
            serial: *device.serial(),
            identity: device.identity().clone(),
            transport,
        }
    }

    /// Rebuilds the device from `state` on restored guest memory, serving `file` (which the
    /// caller has checked is the image `state.identity` names). Re-activates the device if the
    /// driver had; requests left in the ring are served once the event loop runs.
    pub fn restore(
        mem: GuestMemory,
        file: File,
        state: &BlockState,
    ) -> Result<Block, BlockRestoreError> {
        let backing = Backing::new(file, state.exposed_len, state.read_only)?;
        let parts = DeviceParts::new(&mem, backing, state.serial, state.identity.clone())?;
        let device: Arc<Mutex<dyn VirtioDevice>> = parts.device.clone();
        let transport = MmioTransport::restore(
            mem,
            device,
            parts.queue_evts,
            parts.interrupt,
            &state.transport,
        )?;
        Ok(Block {
            transport: Arc::new(Mutex::new(transport)),
            device: parts.device,
        })
    }

    /// Puts the device and its transport back to `state` in place (the KVM ioeventfd and irqfd
    /// stay bound): the queues return to the saved positions. Call with the vCPUs and the event
    /// loop paused and guest memory already back at the state's contents. No request is in
    /// flight (they are served synchronously), so there is nothing to cancel.
    ///
    /// A refused state (different disk, truncated file) leaves the device untouched; a failure
    /// while rebuilding the transport leaves the device reset and the guest must not run on.
    pub fn reset_to(&self, mem: &GuestMemory, state: &BlockState) -> Result<(), BlockResetError> {
        let mut transport = lock(&self.transport);
        {
            let device = lock(&self.device);
            check_same_disk(&device, state).map_err(BlockResetError::DifferentDisk)?;
            device.backing().check_size()?;
        }
        let queue_evts =
            clone_events(transport.queue_events()).map_err(BlockResetError::EventFd)?;
        let interrupt = transport.interrupt().clone();
        lock(&self.device).reset();
        let device: Arc<Mutex<dyn VirtioDevice>> = self.device.clone();
        *transport =
            MmioTransport::restore(mem.clone(), device, queue_evts, interrupt, &state.transport)?;
        Ok(())
    }
}

fn check_same_disk(device: &super::BlockDevice, state: &BlockState) -> Result<(), DiskMismatch> {
    if device.exposed_len() != state.exposed_len {
        return Err(DiskMismatch::ExposedLength);
    }
    if device.read_only() != state.read_only {
        return Err(DiskMismatch::ReadOnly);
    }
    if *device.serial() != state.serial {
        return Err(DiskMismatch::Serial);
    }
    if !device.identity().same_disk(&state.identity) {
        return Err(DiskMismatch::Identity);
    }
    Ok(())
}
