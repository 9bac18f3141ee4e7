//! Snapshot state of a vsock device. Host connections are not saved: their host streams cannot
//! outlive the process, so a restored (or reset) device starts with none and resets the guest's
//! transport once the vCPUs are back ([`Vsock::reset_guest_transport`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::device::VsockDevice;
use super::{Vsock, VsockError, NUM_QUEUES};
use crate::devices::bus::lock;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::persist::{MmioRestoreError, MmioState};
use crate::devices::virtio::{
    clone_events, new_queue_events, GuestMemory, Interrupt, VirtioDevice,
};
use crate::snapshot::persist::Persist;

/// Everything needed to rebuild a vsock device and its transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockState {
    pub guest_cid: u64,
    pub transport: MmioState,
}

/// What a restored vsock device is built around.
pub struct VsockConstructorArgs {
    /// Guest memory, already holding the snapshot's contents.
    pub mem: GuestMemory,
    /// The host Unix socket to listen on (it must not exist).
    pub uds_path: PathBuf,
}

impl std::fmt::Debug for VsockConstructorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsockConstructorArgs")
            .field("uds_path", &self.uds_path)
            .finish_non_exhaustive()
    }
}

/// Why a vsock device could not be restored or reset.
#[derive(Debug, thiserror::Error)]
pub enum VsockRestoreError {
    #[error(transparent)]
    Device(#[from] VsockError),
    #[error(transparent)]
    Transport(#[from] MmioRestoreError),
    /// A reset may not change the guest's CID: the guest kernel keeps the one it read.
    #[error("the state's guest CID {saved} differs from this device's {live}")]
    Cid { saved: u64, live: u64 },
}

impl Persist for Vsock {
    type State = VsockState;
    type ConstructorArgs = VsockConstructorArgs;
    type Error = VsockRestoreError;

    /// Captures the device and its transport.
    fn save(&self) -> VsockState {
        let transport = lock(&self.transport).save();
        VsockState {
            guest_cid: lock(&self.device).guest_cid(),
            transport,
        }
    }

    /// Rebuilds the device from `state`, listening on `args.uds_path`.
    fn restore(args: VsockConstructorArgs, state: &VsockState) -> Result<Vsock, VsockRestoreError> {
        let interrupt = Arc::new(Interrupt::new().map_err(VsockError::EventFd)?);
        let queue_evts = new_queue_events(NUM_QUEUES).map_err(VsockError::EventFd)?;
        let device_evts = clone_events(&queue_evts).map_err(VsockError::EventFd)?;
        let device = VsockDevice::new(
            args.mem.clone(),
            state.guest_cid,
            &args.uds_path,
            device_evts,
            interrupt.clone(),
        )?;
        let device = Arc::new(Mutex::new(device));
        let transport = MmioTransport::restore(
            args.mem,
            device.clone(),
            queue_evts,
            interrupt,
            &state.transport,
        )?;
        Ok(Vsock {
            transport: Arc::new(Mutex::new(transport)),
            device,
        })
    }

    /// Puts the device and its transport back to `state` in place: the host listener and the
    /// KVM-registered eventfds stay, every connection is dropped (by the device reset).
    fn reset_to(&mut self, state: &VsockState) -> Result<(), VsockRestoreError> {
        let live = lock(&self.device).guest_cid();
        if state.guest_cid != live {
            return Err(VsockRestoreError::Cid {
                saved: state.guest_cid,
                live,
            });
        }
        let mut transport = lock(&self.transport);
        let queue_evts = clone_events(transport.queue_events()).map_err(VsockError::EventFd)?;
        let interrupt = transport.interrupt().clone();
        let mem = transport.memory().clone();
        lock(&self.device).reset();
        let device: Arc<Mutex<dyn VirtioDevice>> = self.device.clone();
        *transport = MmioTransport::restore(mem, device, queue_evts, interrupt, &state.transport)?;
        Ok(())
    }
}

impl Vsock {
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
