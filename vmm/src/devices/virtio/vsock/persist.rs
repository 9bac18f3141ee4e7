//! Snapshot state of a vsock device. Host streams cannot outlive the process: a restored (or
//! reset) device resumes the one kept connection on a new stream and resets the guest's others
//! one by one once the vCPUs are back ([`Vsock::resume_guest_connections`],
//! [`super::saved_connections`]).

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::device::VsockDevice;
use super::saved_connections::{ConnectionsState, ConnectionsStateError};
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
    /// The host port whose idle connection survives snapshots.
    pub kept_port: Option<u32>,
    pub connections: ConnectionsState,
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
    #[error(transparent)]
    Connections(#[from] ConnectionsStateError),
}

impl Persist for Vsock {
    type State = VsockState;
    type ConstructorArgs = VsockConstructorArgs;
    type Error = VsockRestoreError;

    /// Captures the device and its transport.
    fn save(&self) -> VsockState {
        let transport = lock(&self.transport).save();
        let device = lock(&self.device);
        VsockState {
            guest_cid: device.guest_cid(),
            kept_port: device.kept_port(),
            connections: device.save_connections(),
            transport,
        }
    }

    /// Rebuilds the device from `state`, listening on `args.uds_path`.
    fn restore(args: VsockConstructorArgs, state: &VsockState) -> Result<Vsock, VsockRestoreError> {
        state.connections.validate()?;
        let interrupt = Arc::new(Interrupt::new().map_err(VsockError::EventFd)?);
        let queue_evts = new_queue_events(NUM_QUEUES).map_err(VsockError::EventFd)?;
        let device_evts = clone_events(&queue_evts).map_err(VsockError::EventFd)?;
        let mut device = VsockDevice::new(
            args.mem.clone(),
            state.guest_cid,
            &args.uds_path,
            device_evts,
            interrupt.clone(),
        )?;
        device.set_kept_port(state.kept_port);
        let device = Arc::new(Mutex::new(device));
        let transport = MmioTransport::restore(
            args.mem,
            device.clone(),
            queue_evts,
            interrupt,
            &state.transport,
        )?;
        lock(&device).pending_resume = Some(state.connections.clone());
        Ok(Vsock {
            transport: Arc::new(Mutex::new(transport)),
            device,
        })
    }

    /// Puts the device and its transport back to `state` in place: the host listener and the
    /// KVM-registered eventfds stay, every connection is dropped (by the device reset) and the
    /// saved ones are resumed or reset by [`Vsock::resume_guest_connections`].
    fn reset_to(&mut self, state: &VsockState) -> Result<(), VsockRestoreError> {
        state.connections.validate()?;
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
        let mut device = lock(&self.device);
        device.set_kept_port(state.kept_port);
        device.pending_resume = Some(state.connections.clone());
        Ok(())
    }
}

impl Vsock {
    /// After a restore or reset: resets the guest's connections whose host side is gone, one by
    /// one, and resumes the kept one ([`Vsock::take_resumed_link`]). Call after restoring the
    /// vCPUs and the interrupt controllers: the interrupt raised here must not be overwritten by
    /// a restored LAPIC, nor sent before the vCPU exists.
    pub fn resume_guest_connections(&self) {
        lock(&self.device).resume_connections();
    }

    /// The host end of the connection the last restore or reset kept (guest-init's link), once.
    pub fn take_resumed_link(&self) -> Option<UnixStream> {
        lock(&self.device).take_resumed_link()
    }
}
