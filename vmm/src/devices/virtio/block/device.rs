//! The virtio-blk device proper: features, config space, activation, and draining the request
//! queue. Requests are served synchronously on the event loop, so none is ever in flight
//! between two events (nothing to save beyond the queue positions).

use std::sync::Arc;

use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueState, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::backing::Backing;
use super::identity::{DiskIdentity, DiskSerial};
use super::server::RequestServer;
use super::{BLOCK_DEVICE_ID, BLOCK_QUEUE_SIZE, NUM_QUEUES, REQUEST_QUEUE, SECTOR_SIZE, SEG_MAX};
use crate::devices::virtio::{
    ActivateError, GuestMemory, Interrupt, VirtioDevice, INTERRUPT_USED_BUFFER, VIRTIO_F_VERSION_1,
};

const QUEUE_SIZES: [u16; NUM_QUEUES] = [BLOCK_QUEUE_SIZE];
/// A request is a header, at most `SEG_MAX` data buffers, and a status.
const MAX_DESCRIPTORS: usize = SEG_MAX as usize + 2;

/// `VIRTIO_BLK_F_*` and ring feature bits as masks.
const F_SEG_MAX: u64 = 1 << VIRTIO_BLK_F_SEG_MAX;
const F_RO: u64 = 1 << VIRTIO_BLK_F_RO;
const F_FLUSH: u64 = 1 << VIRTIO_BLK_F_FLUSH;
const F_EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;
const F_INDIRECT_DESC: u64 = 1 << VIRTIO_RING_F_INDIRECT_DESC;

/// Config space offsets (`struct virtio_blk_config`): le64 capacity, le32 size_max,
/// le32 seg_max, geometry, le32 blk_size. Fields past seg_max are not offered and read 0.
const CONFIG_CAPACITY: usize = 0;
const CONFIG_SEG_MAX: usize = 12;
const CONFIG_SIZE: usize = 24;

/// The virtio-blk device. Shared as `Arc<Mutex<BlockDevice>>` between the transport (vCPU
/// threads) and the event loop, where it is a `MutEventSubscriber`.
pub struct BlockDevice {
    mem: GuestMemory,
    interrupt: Arc<Interrupt>,
    /// The device's copy of the request queue's notification eventfd.
    pub(super) queue_evt: EventFd,
    queue: Option<Queue>,
    identity: DiskIdentity,
    server: RequestServer,
}

impl std::fmt::Debug for BlockDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDevice")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl BlockDevice {
    /// A device serving `backing`. `queue_evt` is the device's copy of the transport's
    /// notification eventfd; `interrupt` is shared with the transport.
    pub(super) fn new(
        mem: GuestMemory,
        backing: Backing,
        serial: DiskSerial,
        identity: DiskIdentity,
        queue_evt: EventFd,
        interrupt: Arc<Interrupt>,
    ) -> Self {
        Self {
            mem,
            interrupt,
            queue_evt,
            queue: None,
            identity,
            server: RequestServer::new(backing, serial, MAX_DESCRIPTORS),
        }
    }

    /// Whether the driver activated the device.
    pub fn is_activated(&self) -> bool {
        self.queue.is_some()
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.server.backing().read_only()
    }

    /// The disk's size in bytes as the guest sees it.
    pub fn exposed_len(&self) -> u64 {
        self.server.backing().exposed_len()
    }

    /// The ID the guest reads with `VIRTIO_BLK_T_GET_ID`.
    pub fn serial(&self) -> &DiskSerial {
        self.server.serial()
    }

    /// The backing image's identity, as the caller gave it.
    pub fn identity(&self) -> &DiskIdentity {
        &self.identity
    }

    pub(super) fn backing(&self) -> &Backing {
        self.server.backing()
    }

    /// Makes the event loop look at the queue: requests may have been made available while
    /// no kick could reach us (before activation, or in a snapshot's ring).
    fn wake(&self) {
        if let Err(e) = self.queue_evt.write(1) {
            tracing::warn!("virtio-blk: queue eventfd write failed: {e}");
        }
    }

    /// Serves every available request, then interrupts the guest if it asked to be.
    pub(super) fn process_queue(&mut self) {
        let mem = &self.mem;
        let Some(queue) = self.queue.as_mut() else {
            return;
        };
        let mut used_any = false;
        loop {
            if let Err(e) = queue.disable_notification(mem) {
                tracing::warn!("virtio-blk: cannot disable notifications: {e}");
                break;
            }
            let mut served = 0usize;
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let len = self.server.serve(mem, chain);
                if let Err(e) = queue.add_used(mem, head, len) {
                    tracing::warn!("virtio-blk: add_used failed: {e}");
                }
                served += 1;
            }
            used_any |= served > 0;
            match queue.enable_notification(mem) {
                // More arrived while notifications were off.
                Ok(true) if served > 0 => continue,
                // The available index is inconsistent: nothing could be popped.
                Ok(true) => {
                    tracing::debug!("virtio-blk: available ring index out of range");
                    break;
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("virtio-blk: cannot enable notifications: {e}");
                    break;
                }
            }
        }
        // On a malformed ring, err on the side of interrupting.
        if used_any && queue.needs_notification(mem).unwrap_or(true) {
            self.interrupt.trigger(INTERRUPT_USED_BUFFER);
        }
    }
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u32 {
        BLOCK_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        let ro = if self.read_only() { F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | F_SEG_MAX | F_FLUSH | F_EVENT_IDX | F_INDIRECT_DESC | ro
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_SIZE];
        let capacity = self.exposed_len() / SECTOR_SIZE;
        config[CONFIG_CAPACITY..CONFIG_CAPACITY + 8].copy_from_slice(&capacity.to_le_bytes());
        config[CONFIG_SEG_MAX..CONFIG_SEG_MAX + 4].copy_from_slice(&SEG_MAX.to_le_bytes());
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok());
            *byte = at.and_then(|o| config.get(o)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(
            "virtio-blk: ignored {}-byte config write at {offset:#x}",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mut queues: Vec<Queue>,
        acked_features: u64,
    ) -> Result<(), ActivateError> {
        if queues.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                expected: NUM_QUEUES,
                got: queues.len(),
            });
        }
        let mut queue = queues.swap_remove(REQUEST_QUEUE);
        if !queue.ready() {
            return Err(ActivateError::QueueNotReady(REQUEST_QUEUE));
        }
        queue.set_event_idx(acked_features & F_EVENT_IDX != 0);
        self.server.set_write_through(acked_features & F_FLUSH == 0);
        self.queue = Some(queue);
        self.wake();
        Ok(())
    }

    fn reset(&mut self) {
        self.queue = None;
        self.server.set_write_through(true);
    }

    fn queue_states(&self) -> Option<Vec<QueueState>> {
        self.queue.as_ref().map(|q| vec![q.state()])
    }
}
