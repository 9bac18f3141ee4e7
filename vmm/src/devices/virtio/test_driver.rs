//! A virtio-mmio guest driver for tests: negotiates through the transport's registers, lays out
//! split virtqueues in guest memory, posts descriptor chains and collects used buffers.
//!
//! The rings are written by hand rather than with `virtio_queue::mock::MockSplitQueue`: its
//! layout places the used ring inside the available ring (it sizes the avail ring in elements
//! rather than bytes), and it zeroes the rings whenever a handle is created.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};

use super::mmio::MmioTransport;
use super::{GuestMemory, VIRTIO_F_VERSION_1};
use crate::devices::bus::{lock, BusDevice};

/// Guest memory size used by driver tests.
pub const MEM_SIZE: usize = 48 << 20;
/// Queue size the test driver programs.
pub const DRIVER_QUEUE_SIZE: u16 = 64;
/// Each descriptor index owns a buffer slot this large (a 64 KiB payload + header fit).
pub const SLOT_SIZE: u64 = 0x11000;
const RINGS_BASE: u64 = 0x1000;
const RING_STRIDE: u64 = 0x1000;
const AVAIL_OFFSET: u64 = 0x400;
const USED_OFFSET: u64 = 0x800;
const BUFFERS_BASE: u64 = 0x10_0000;
const BUFFERS_STRIDE: u64 = SLOT_SIZE * DRIVER_QUEUE_SIZE as u64;

/// A fresh, zeroed guest memory.
pub fn guest_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("test guest memory")
}

/// One buffer of a chain: device-readable bytes, or a device-writable area of some length.
#[derive(Debug)]
pub enum Buf<'a> {
    Out(&'a [u8]),
    In(u32),
}

/// A posted buffer: guest address, length, device-writable.
pub type BufDesc = (u64, u32, bool);

/// A used element returned by the device, with the chain's descriptors (addr, len, writable).
#[derive(Debug)]
pub struct Used {
    pub len: u32,
    pub descs: Vec<(u64, u32, bool)>,
}

#[derive(Debug, Clone)]
struct DriverQueue {
    free: Vec<u16>,
    /// Posted chains by head: descriptor indices, and (addr, len, writable) per descriptor.
    chains: std::collections::HashMap<u16, (Vec<u16>, Vec<BufDesc>)>,
    avail_idx: u16,
    used_seen: u16,
}

/// The guest side of one virtio-mmio device. A clone is the driver's state at that moment
/// (for tests that roll the guest back).
#[derive(Debug, Clone)]
pub struct Driver {
    pub mem: GuestMemory,
    pub transport: Arc<Mutex<MmioTransport>>,
    queues: Vec<DriverQueue>,
}

impl Driver {
    pub fn new(mem: GuestMemory, transport: Arc<Mutex<MmioTransport>>, num_queues: usize) -> Self {
        let queues = (0..num_queues)
            .map(|_| DriverQueue {
                free: (0..DRIVER_QUEUE_SIZE).rev().collect(),
                chains: Default::default(),
                avail_idx: 0,
                used_seen: 0,
            })
            .collect();
        Self {
            mem,
            transport,
            queues,
        }
    }

    pub fn read(&self, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        lock(&self.transport).read(offset.into(), &mut b);
        u32::from_le_bytes(b)
    }

    pub fn write(&self, offset: u32, value: u32) {
        lock(&self.transport).write(offset.into(), &value.to_le_bytes());
    }

    /// (descriptor table, available ring, used ring) of `queue`.
    fn ring_addrs(queue: usize) -> (u64, u64, u64) {
        let base = RINGS_BASE + queue as u64 * RING_STRIDE;
        (base, base + AVAIL_OFFSET, base + USED_OFFSET)
    }

    fn write_u16(&self, addr: u64, v: u16) {
        self.mem.write_obj(v.to_le(), GuestAddress(addr)).unwrap();
    }

    fn read_u16(&self, addr: u64) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(addr)).unwrap())
    }

    fn read_u32(&self, addr: u64) -> u32 {
        u32::from_le(self.mem.read_obj(GuestAddress(addr)).unwrap())
    }

    fn slot_addr(queue: usize, desc: u16) -> u64 {
        BUFFERS_BASE + queue as u64 * BUFFERS_STRIDE + u64::from(desc) * SLOT_SIZE
    }

    /// Points queue `queue`'s registers at its rings, as Linux's virtio_mmio does.
    pub fn setup_queue(&self, queue: usize) {
        let (desc, avail, used) = Self::ring_addrs(queue);
        self.write(reg::VIRTIO_MMIO_QUEUE_SEL, queue as u32);
        assert!(self.read(reg::VIRTIO_MMIO_QUEUE_NUM_MAX) >= u32::from(DRIVER_QUEUE_SIZE));
        self.write(reg::VIRTIO_MMIO_QUEUE_NUM, DRIVER_QUEUE_SIZE.into());
        for (low, addr) in [
            (reg::VIRTIO_MMIO_QUEUE_DESC_LOW, desc),
            (reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail),
            (reg::VIRTIO_MMIO_QUEUE_USED_LOW, used),
        ] {
            self.write(low, addr as u32);
            self.write(low + 4, (addr >> 32) as u32);
        }
        self.write(reg::VIRTIO_MMIO_QUEUE_READY, 1);
    }

    /// The full Linux-style bring-up; returns the final Status.
    pub fn bring_up(&self) -> u32 {
        self.bring_up_with(VIRTIO_F_VERSION_1)
    }

    /// The bring-up accepting `features` (which must include `VIRTIO_F_VERSION_1`).
    pub fn bring_up_with(&self, features: u64) -> u32 {
        self.write(reg::VIRTIO_MMIO_STATUS, 0);
        self.write(reg::VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        self.write(
            reg::VIRTIO_MMIO_STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
        );
        self.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
        self.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
        self.write(reg::VIRTIO_MMIO_STATUS, s);
        assert_eq!(self.read(reg::VIRTIO_MMIO_STATUS), s, "FEATURES_OK refused");
        for q in 0..self.queues.len() {
            self.setup_queue(q);
        }
        self.write(reg::VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
        self.read(reg::VIRTIO_MMIO_STATUS)
    }

    /// Free descriptors left in `queue`.
    pub fn free_descriptors(&self, queue: usize) -> usize {
        self.queues[queue].free.len()
    }

    /// Posts a chain; each buffer gets its descriptor's slot. Returns the head index.
    pub fn add_chain(&mut self, queue: usize, bufs: &[Buf]) -> u16 {
        assert!(
            !bufs.is_empty() && self.queues[queue].free.len() >= bufs.len(),
            "queue {queue} full"
        );
        let idx: Vec<u16> = (0..bufs.len())
            .map(|_| self.queues[queue].free.pop().unwrap())
            .collect();
        let mut descs = Vec::new();
        for (i, buf) in bufs.iter().enumerate() {
            let addr = Self::slot_addr(queue, idx[i]);
            let (len, writable) = match buf {
                Buf::Out(bytes) => {
                    assert!(bytes.len() as u64 <= SLOT_SIZE);
                    self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
                    (bytes.len() as u32, false)
                }
                Buf::In(len) => {
                    assert!(u64::from(*len) <= SLOT_SIZE);
                    (*len, true)
                }
            };
            let mut flags = if writable {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            let next = idx.get(i + 1).copied().unwrap_or(0);
            if i + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            self.store_desc(queue, idx[i], Descriptor::new(addr, len, flags, next));
            descs.push((addr, len, writable));
        }
        let head = idx[0];
        self.publish(queue, head, idx, descs);
        head
    }

    /// Posts a raw descriptor (for malformed-chain tests) and makes `head` available.
    pub fn add_raw(&mut self, queue: usize, head: u16, desc: Descriptor) {
        self.queues[queue].free.retain(|&i| i != head);
        self.store_desc(queue, head, desc);
        self.publish(
            queue,
            head,
            vec![head],
            vec![(desc.addr().0, desc.len(), desc.is_write_only())],
        );
    }

    /// Posts hand-made descriptors (for malformed-chain tests): each `(index, descriptor)` is
    /// stored as is, and `head` is made available. The buffers are the caller's.
    pub fn add_raw_chain(&mut self, queue: usize, head: u16, descs: &[(u16, Descriptor)]) {
        let indices: Vec<u16> = descs.iter().map(|&(i, _)| i).collect();
        self.queues[queue].free.retain(|i| !indices.contains(i));
        for &(index, desc) in descs {
            self.store_desc(queue, index, desc);
        }
        let bufs = descs
            .iter()
            .map(|(_, d)| (d.addr().0, d.len(), d.is_write_only()))
            .collect();
        self.publish(queue, head, indices, bufs);
    }

    fn store_desc(&self, queue: usize, index: u16, desc: Descriptor) {
        let addr = Self::ring_addrs(queue).0 + u64::from(index) * 16;
        self.mem
            .write_obj(RawDescriptor::from(desc), GuestAddress(addr))
            .unwrap();
    }

    fn publish(
        &mut self,
        queue: usize,
        head: u16,
        indices: Vec<u16>,
        descs: Vec<(u64, u32, bool)>,
    ) {
        let q = &mut self.queues[queue];
        q.chains.insert(head, (indices, descs));
        let slot = q.avail_idx % DRIVER_QUEUE_SIZE;
        q.avail_idx = q.avail_idx.wrapping_add(1);
        let avail_idx = q.avail_idx;
        let avail = Self::ring_addrs(queue).1;
        self.write_u16(avail + 4 + 2 * u64::from(slot), head);
        self.write_u16(avail + 2, avail_idx);
    }

    /// Kicks `queue` through a trapped QueueNotify write.
    pub fn kick(&self, queue: usize) {
        self.write(reg::VIRTIO_MMIO_QUEUE_NOTIFY, queue as u32);
    }

    /// Collects the buffers the device used since the last call, freeing their descriptors.
    pub fn take_used(&mut self, queue: usize) -> Vec<Used> {
        let used = Self::ring_addrs(queue).2;
        let used_idx = self.read_u16(used + 2);
        let mut out = Vec::new();
        while self.queues[queue].used_seen != used_idx {
            let seen = self.queues[queue].used_seen;
            let elem = used + 4 + 8 * u64::from(seen % DRIVER_QUEUE_SIZE);
            let (id, len) = (self.read_u32(elem), self.read_u32(elem + 4));
            let q = &mut self.queues[queue];
            q.used_seen = seen.wrapping_add(1);
            let head = u16::try_from(id).expect("used id out of range");
            let (indices, descs) = q
                .chains
                .remove(&head)
                .expect("device used a chain we did not post");
            q.free.extend(indices);
            out.push(Used { len, descs });
        }
        out
    }

    /// Reads `len` bytes of guest memory.
    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Reads a device-written chain as one byte stream of `len` bytes (writable buffers only).
    pub fn read_written(&self, used: &Used) -> Vec<u8> {
        let mut out = Vec::new();
        let mut left = used.len as usize;
        for &(addr, len, writable) in &used.descs {
            if !writable || left == 0 {
                continue;
            }
            let n = left.min(len as usize);
            out.extend(self.read_mem(addr, n));
            left -= n;
        }
        out
    }
}
