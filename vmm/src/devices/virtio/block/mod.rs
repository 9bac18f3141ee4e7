//! virtio-blk (device ID 2) serving a disk image file, optionally read-only, of which the guest
//! sees the first `exposed_len` bytes (an image may carry a trailer after its filesystem).
//!
//! Wiring, done once by the VMM builder (the same shape as vsock):
//! ```text
//! let block = new_block(mem, file, BlockConfig { exposed_len, read_only, serial, identity })?;
//! let t = bus::lock(&block.transport);
//! vm_fd.register_ioevent(&t.queue_events()[REQUEST_QUEUE],
//!     &IoEventAddress::Mmio(base + MMIO_QUEUE_NOTIFY_OFFSET), REQUEST_QUEUE as u32)?;
//! vm_fd.register_irqfd(t.interrupt_event(), gsi)?;
//! mmio_bus.insert(base, MMIO_WINDOW_SIZE, block.transport.clone())?;
//! event_manager.add_subscriber(block.device.clone());
//! ```
//! and the kernel command line gets `virtio_mmio.device=4K@<base>:<gsi>`.

mod backing;
mod device;
mod event_handler;
mod identity;
mod persist;
mod request;
mod server;

#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_persist;

use std::fs::File;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

pub use device::BlockDevice;
pub use identity::{DiskIdentity, DiskSerial, SerialTooLong, SERIAL_LEN};
pub use persist::{BlockResetError, BlockRestoreError, BlockState, DiskMismatch};

use super::mmio::MmioTransport;
use super::{clone_events, new_queue_events, GuestMemory, Interrupt};
use backing::Backing;

/// virtio device ID of a block device.
pub const BLOCK_DEVICE_ID: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
/// The only queue: requests.
pub const REQUEST_QUEUE: usize = 0;
pub const NUM_QUEUES: usize = 1;
/// Size offered for the request queue.
pub const BLOCK_QUEUE_SIZE: u16 = 256;
/// Most data buffers in one request (config `seg_max`): the queue size less header and status.
pub const SEG_MAX: u32 = BLOCK_QUEUE_SIZE as u32 - 2;
/// virtio-blk sectors are always 512 bytes.
pub const SECTOR_SIZE: u64 = 512;

/// What the guest sees of a disk, and who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockConfig {
    /// Bytes of the file the guest sees, from offset 0: a non-zero multiple of 512, at most the
    /// file's length. The capacity is `exposed_len / 512` sectors.
    pub exposed_len: u64,
    /// Offer `VIRTIO_BLK_F_RO` and refuse writes. A writable disk needs a file opened
    /// read-write.
    pub read_only: bool,
    /// The ID the guest reads with `VIRTIO_BLK_T_GET_ID`.
    pub serial: DiskSerial,
    /// The image's content identity, carried into [`BlockState`].
    pub identity: DiskIdentity,
}

/// Why a block device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The guest can only see whole 512-byte sectors, and at least one.
    #[error("exposed length {0} is not a non-zero multiple of {SECTOR_SIZE} bytes")]
    ExposedLength(u64),
    /// Finding the backing file's size failed.
    #[error("cannot get the backing file's size: {0}")]
    BackingSize(std::io::Error),
    /// The file is shorter than what the guest is to see.
    #[error("backing file has {file_len} bytes, fewer than the {exposed_len} to expose")]
    BackingTooSmall { file_len: u64, exposed_len: u64 },
    /// Querying how the file was opened failed.
    #[error("cannot get the backing file's access mode: {0}")]
    AccessMode(std::io::Error),
    /// The file is not open for reading (or, for a writable disk, for reading and writing).
    #[error("backing file is not open for {}", if *.read_only { "reading" } else { "reading and writing" })]
    BackingAccess { read_only: bool },
    /// Creating an eventfd failed.
    #[error("cannot create event fd: {0}")]
    EventFd(std::io::Error),
}

/// A block device and its transport, ready to wire (see the module docs).
#[derive(Debug)]
pub struct Block {
    /// Put on the MMIO bus (it is a `BusDevice`); gives the ioeventfd and the irqfd.
    pub transport: Arc<Mutex<MmioTransport>>,
    /// Add to the event manager (`Arc<Mutex<_>>` is a `MutEventSubscriber`).
    pub device: Arc<Mutex<BlockDevice>>,
}

/// Creates a block device serving `file` as `config` describes.
pub fn new_block(mem: GuestMemory, file: File, config: BlockConfig) -> Result<Block, BlockError> {
    let backing = Backing::new(file, config.exposed_len, config.read_only)?;
    let parts = DeviceParts::new(&mem, backing, config.serial, config.identity)?;
    let transport =
        MmioTransport::new(mem, parts.device.clone(), parts.queue_evts, parts.interrupt);
    Ok(Block {
        transport: Arc::new(Mutex::new(transport)),
        device: parts.device,
    })
}

/// A device and what its transport shares with it.
struct DeviceParts {
    device: Arc<Mutex<BlockDevice>>,
    /// The transport's notification eventfds (the device holds a duplicate).
    queue_evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
}

impl DeviceParts {
    fn new(
        mem: &GuestMemory,
        backing: Backing,
        serial: DiskSerial,
        identity: DiskIdentity,
    ) -> Result<Self, BlockError> {
        let interrupt = Arc::new(Interrupt::new().map_err(BlockError::EventFd)?);
        let queue_evts = new_queue_events(NUM_QUEUES).map_err(BlockError::EventFd)?;
        let mut device_evts = clone_events(&queue_evts).map_err(BlockError::EventFd)?;
        let queue_evt = device_evts.swap_remove(REQUEST_QUEUE);
        let device = BlockDevice::new(
            mem.clone(),
            backing,
            serial,
            identity,
            queue_evt,
            interrupt.clone(),
        );
        Ok(Self {
            device: Arc::new(Mutex::new(device)),
            queue_evts,
            interrupt,
        })
    }
}
