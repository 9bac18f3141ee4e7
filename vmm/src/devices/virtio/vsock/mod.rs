//! virtio-vsock (device ID 19) with a host Unix-socket backend.
//!
//! The VMM attaches it through the device manager, which picks its MMIO slot and IRQ, registers
//! its queue-notify ioeventfds and irqfd with KVM, puts the transport on the MMIO bus and adds
//! the kernel command line entry:
//! ```text
//! let vsock = new_vsock(mem, 3, uds_path)?;
//! device_manager.virtio.attach_virtio(&vm_fd, Box::new(vsock), &mut cmdline)?;
//! ```
//! Snapshots go through [`crate::snapshot::persist::Persist`] (`persist.rs`).

mod connection;
mod device;
mod event_handler;
mod handshake;
mod muxer;
pub mod packet;
mod persist;
mod saved_connections;
mod uds;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};

pub use connection::{CONN_TX_BUF_SIZE, CREDIT_UPDATE_THRESHOLD};
pub use device::{VsockDevice, VSOCK_QUEUE_SIZE};
pub use handshake::parse_connect;
pub use muxer::{VsockTimeouts, MAX_CONNECTIONS, MAX_HANDSHAKES};
pub use persist::{VsockConstructorArgs, VsockRestoreError, VsockState};
pub use saved_connections::{ConnectionsState, ConnectionsStateError, KeptConnection};

use super::mmio::MmioTransport;
use super::{clone_events, new_queue_events, GuestMemory, Interrupt};

/// virtio device ID of vsock.
pub const VSOCK_DEVICE_ID: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
/// Queue indices.
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
pub const NUM_QUEUES: usize = 3;

/// Why a vsock device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// CIDs 0-2 are reserved and the guest kernel takes a 32-bit CID (0xffffffff = any).
    #[error("invalid guest CID {0}")]
    InvalidCid(u64),
    /// Binding the host Unix listener failed (the path must not exist).
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: String,
        source: std::io::Error,
    },
    /// Creating an eventfd or timerfd failed.
    #[error("cannot create event fd: {0}")]
    EventFd(std::io::Error),
}

/// A vsock device and its transport, ready to wire (see the module docs).
#[derive(Debug)]
pub struct Vsock {
    /// Put on the MMIO bus (it is a `BusDevice`); gives the ioeventfds and the irqfd.
    pub transport: Arc<Mutex<MmioTransport>>,
    /// Add to the event manager (`Arc<Mutex<_>>` is a `MutEventSubscriber`).
    pub device: Arc<Mutex<VsockDevice>>,
}

/// Creates a vsock device for a guest with CID `guest_cid`, serving host connections on the
/// Unix socket `uds_path` and forwarding guest connections to `<uds_path>_<port>`.
pub fn new_vsock(mem: GuestMemory, guest_cid: u64, uds_path: &Path) -> Result<Vsock, VsockError> {
    let interrupt = Arc::new(Interrupt::new().map_err(VsockError::EventFd)?);
    let queue_evts = new_queue_events(NUM_QUEUES).map_err(VsockError::EventFd)?;
    let device_evts = clone_events(&queue_evts).map_err(VsockError::EventFd)?;
    let device = VsockDevice::new(
        mem.clone(),
        guest_cid,
        uds_path,
        device_evts,
        interrupt.clone(),
    )?;
    let device = Arc::new(Mutex::new(device));
    let transport = MmioTransport::new(mem, device.clone(), queue_evts, interrupt);
    Ok(Vsock {
        transport: Arc::new(Mutex::new(transport)),
        device,
    })
}
