//! virtio devices over the virtio-mmio transport.
//!
//! The transport ([`mmio::MmioTransport`]) owns the guest-visible registers and is driven by the
//! vCPU threads; a device ([`VirtioDevice`]) owns its activated queues and is driven by the event
//! loop. The two share an [`Interrupt`] (status bits + irqfd) and the queue notification eventfds.

pub mod block;
pub mod mmio;
pub mod persist;
pub mod vsock;

#[cfg(test)]
mod mmio_tests;
/// The guest side of a virtio-mmio device, for the unit tests and the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
pub mod test_driver;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::{Queue, QueueState};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest memory as every virtio device sees it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// `VIRTIO_F_VERSION_1`: the device is a modern (virtio 1.x) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// InterruptStatus bit: the device used a buffer in some queue.
pub const INTERRUPT_USED_BUFFER: u32 = virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_VRING;
/// InterruptStatus bit: the device configuration changed.
pub const INTERRUPT_CONFIG_CHANGE: u32 = virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_CONFIG;

/// Why a device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a different number of queues than the device has.
    #[error("expected {expected} queues, got {got}")]
    QueueCount { expected: usize, got: usize },
    /// DRIVER_OK without a successful feature negotiation.
    #[error("driver set DRIVER_OK without FEATURES_OK")]
    FeaturesNotAccepted,
    /// The device cannot run without this queue but the driver left it unusable.
    #[error("queue {0} is not ready or not valid")]
    QueueNotReady(usize),
}

/// A virtio device as the transport sees it.
///
/// Queue positions live in the device once it is active: [`VirtioDevice::queue_states`] reports
/// them so the transport can save them.
pub trait VirtioDevice: Send {
    /// The virtio device ID (e.g. 19 for vsock).
    fn device_type(&self) -> u32;
    /// The maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers.
    fn avail_features(&self) -> u64;
    /// Reads `data.len()` bytes of device config space at `offset`. Out-of-range bytes read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Guest write to config space at `offset`; devices without writable config ignore it.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with validated queues and the features the driver accepted.
    fn activate(&mut self, queues: Vec<Queue>, acked_features: u64) -> Result<(), ActivateError>;
    /// Returns the device to its pre-activation state (driver wrote 0 to Status).
    fn reset(&mut self);
    /// Live queue states while active, `None` before activation.
    fn queue_states(&self) -> Option<Vec<QueueState>>;
}

/// The device's interrupt line: InterruptStatus bits plus the eventfd the VMM binds as an irqfd.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    evt: EventFd,
}

impl Interrupt {
    /// A new interrupt with no cause pending.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            status: AtomicU32::new(0),
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Records `cause` (an `INTERRUPT_*` bit) in InterruptStatus and signals the guest.
    pub fn trigger(&self, cause: u32) {
        self.status.fetch_or(cause, Ordering::SeqCst);
        if let Err(e) = self.evt.write(1) {
            // Only fails when the counter would overflow, which means the interrupt is pending.
            tracing::warn!("virtio interrupt eventfd write failed: {e}");
        }
    }

    /// The current InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: the driver handled the `acked` causes.
    pub fn ack(&self, acked: u32) {
        self.status.fetch_and(!acked, Ordering::SeqCst);
    }

    /// Overwrites InterruptStatus (device reset, snapshot restore).
    pub fn set_status(&self, status: u32) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The eventfd to register as the device's irqfd.
    pub fn event(&self) -> &EventFd {
        &self.evt
    }
}

/// Creates `count` queue-notification eventfds (nonblocking).
pub fn new_queue_events(count: usize) -> io::Result<Vec<EventFd>> {
    (0..count).map(|_| EventFd::new(EFD_NONBLOCK)).collect()
}

/// Duplicates eventfds: both copies signal the same kernel object.
pub fn clone_events(events: &[EventFd]) -> io::Result<Vec<EventFd>> {
    events.iter().map(EventFd::try_clone).collect()
}
