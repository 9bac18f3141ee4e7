//! Snapshot state of a vsock device. Host connections are not saved: their host streams cannot
//! outlive the process, so a restored device starts with none and resets the guest's transport.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::device::VsockDevice;
use super::{Vsock, VsockError, NUM_QUEUES};
use crate::devices::bus::lock;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::persist::{MmioRestoreError, MmioState};
use crate::devices::virtio::{clone_events, new_queue_events, GuestMemory, Interrupt};

/// Everything needed to rebuild a vsock device and its transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockState {
    pub guest_cid: u64,
    pub transport: MmioState,
}

/// Why a vsock device could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum VsockRestoreError {
    #[error(transparent)]
    Device(#[from] VsockError),
    #[error(transparent)]
    Transport(#[from] MmioRestoreError),
}

impl Vsock {
    /// Captures the device and its transport. Call with the vCPUs and the event loop paused.
    pub fn save(&self) -> VsockState {
        let transport = lock(&self.transport).save();
        VsockState {
            guest_cid: lock(&self.device).guest_cid(),
            transport,
        }
    }

    /// Rebuilds the device from `state` on restored guest memory, listening on `uds_path`.
    /// Once the vCPUs are restored, [`Vsock::reset_guest_transport`] tells the guest its
    /// connections are gone.
    pub fn restore(
        mem: GuestMemory,
        state: &VsockState,
        uds_path: &Path,
    ) -> Result<Vsock, VsockRestoreError> {
        let interrupt = Arc::new(Interrupt::new().map_err(VsockError::EventFd)?);
        let queue_evts = new_queue_events(NUM_QUEUES).map_err(VsockError::EventFd)?;
        let device_evts = clone_events(&queue_evts).map_err(VsockError::EventFd)?;
        let device = VsockDevice::new(
            mem.clone(),
            state.guest_cid,
            uds_path,
            device_evts,
            interrupt.clone(),
        )?;
        let device = Arc::new(Mutex::new(device));
        let transport =
            MmioTransport::restore(mem, device.clone(), queue_evts, interrupt, &state.transport)?;
        Ok(Vsock {
            transport: Arc::new(Mutex::new(transport)),
            device,
        })
    }

    /// Tells an active guest driver that all its connections are gone
    /// (`VIRTIO_VSOCK_EVENT_TRANSPORT_RESET`, posted as soon as it has an event buffer).
    /// Call after restoring the vCPUs and the interrupt controllers: the interrupt raised here
    /// must not be overwritten by a restored LAPIC, nor sent before the vCPU exists.
    pub fn reset_guest_transport(&self) {
        let mut device = lock(&self.device);
        if device.is_activated() {
            device.transport_reset();
        }
    }
}
