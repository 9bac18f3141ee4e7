//! Test support: a block device over the MMIO transport with its rings in real guest memory,
//! driven by a real `EventManager`, serving a temp file. Requests are laid out by hand so tests
//! control every descriptor (index, address, length, flags).
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, SubscriberOps};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX};
use virtio_bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::{
    new_block, Block, BlockConfig, BlockDevice, DiskIdentity, DiskSerial, NUM_QUEUES, REQUEST_QUEUE,
};
use crate::devices::bus::lock;
use crate::devices::virtio::test_driver::{guest_memory, Driver, DRIVER_QUEUE_SIZE};
use crate::devices::virtio::{GuestMemory, VIRTIO_F_VERSION_1};

/// What the guest sees of the test disk.
pub const EXPOSED_LEN: u64 = 1 << 20;
/// Bytes after the exposed part that the guest must never see or change.
pub const TRAILER: &[u8] = b"paddock image trailer: not for the guest";
/// The serial the test disk reports.
pub const SERIAL: &[u8] = b"paddock-test-disk";
/// Event-loop iterations after which `pump` declares the device spinning.
const SPIN_LIMIT: usize = 1000;
/// Buffers of hand-made requests: descriptor index `i` owns `[BUF_BASE + i * BUF_STRIDE, +BUF_STRIDE)`
/// (above the test driver's own buffer slots).
const BUF_BASE: u64 = 16 << 20;
const BUF_STRIDE: u64 = 0x11000;
/// Status bytes are pre-filled with this, so a missing status write is visible.
pub const NO_STATUS: u8 = 0xee;

/// The features a Linux guest accepts from this device.
pub fn linux_features(read_only: bool) -> u64 {
    let ro = if read_only { 1 << VIRTIO_BLK_F_RO } else { 0 };
    VIRTIO_F_VERSION_1
        | 1 << VIRTIO_BLK_F_SEG_MAX
        | 1 << VIRTIO_BLK_F_FLUSH
        | 1 << VIRTIO_RING_F_EVENT_IDX
        | 1 << VIRTIO_RING_F_INDIRECT_DESC
        | ro
}

/// The disk's initial contents: every byte depends on its offset, sector by sector.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i % 251) as u8 ^ (i / 512) as u8)
        .collect()
}

/// One data buffer of a request.
pub enum Seg {
    /// Device-readable bytes.
    Out(Vec<u8>),
    /// A device-writable area of this many bytes.
    In(u32),
}

/// A completed request as the guest sees it.
#[derive(Debug)]
pub struct Completion {
    pub status: u8,
    pub used_len: u32,
    /// The contents of the device-writable data buffers, concatenated.
    pub data: Vec<u8>,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub block: Block,
    pub driver: Driver,
    pub mem: GuestMemory,
    em: EventManager<Arc<Mutex<BlockDevice>>>,
    next_desc: u16,
}

pub fn header(type_: u32, sector: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&type_.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

/// A temp disk image holding `pattern` over the exposed part and then [`TRAILER`].
pub fn make_image(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("disk.img");
    let mut f = File::create(&path).unwrap();
    f.write_all(&pattern(0, EXPOSED_LEN as usize)).unwrap();
    f.write_all(TRAILER).unwrap();
    path
}

pub fn open_image(path: &Path, read_only: bool) -> File {
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .unwrap()
}

pub fn identity(path: &Path, read_only: bool) -> DiskIdentity {
    DiskIdentity {
        path: path.to_path_buf(),
        digest: Some([7; 32]),
        len: EXPOSED_LEN + TRAILER.len() as u64,
        read_only,
    }
}

impl Harness {
    /// A driven disk that negotiated what Linux negotiates.
    pub fn new(read_only: bool) -> Self {
        Self::with_features(read_only, linux_features(read_only))
    }

    pub fn with_features(read_only: bool, features: u64) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("debug")
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let path = make_image(&dir);
        let mem = guest_memory();
        let config = BlockConfig {
            exposed_len: EXPOSED_LEN,
            read_only,
            serial: DiskSerial::new(SERIAL).unwrap(),
            identity: identity(&path, read_only),
        };
        // Opened read-write even for a read-only disk: the device itself must refuse writes.
        let block = new_block(mem.clone(), open_image(&path, false), config).unwrap();
        let driver = Driver::new(mem.clone(), block.transport.clone(), NUM_QUEUES);
        let mut h = Self::around(dir, path, block, driver, mem);
        let status = h.driver.bring_up_with(features);
        assert_eq!(status & 0x4, 0x4, "DRIVER_OK did not stick: {status:#x}");
        assert!(lock(&h.block.device).is_activated());
        h.pump();
        h
    }

    /// A harness around an existing device (e.g. a restored one) and driver.
    pub fn around(
        dir: tempfile::TempDir,
        path: PathBuf,
        block: Block,
        driver: Driver,
        mem: GuestMemory,
    ) -> Self {
        let mut em = EventManager::<Arc<Mutex<BlockDevice>>>::new().unwrap();
        em.add_subscriber(block.device.clone());
        Self {
            dir,
            path,
            block,
            driver,
            mem,
            em,
            next_desc: 0,
        }
    }

    /// Runs the event loop until it has nothing left to do.
    pub fn pump(&mut self) {
        for _ in 0..SPIN_LIMIT {
            if self.em.run_with_timeout(2).unwrap() == 0 {
                return;
            }
        }
        panic!("event loop still busy after {SPIN_LIMIT} iterations: spinning");
    }

    /// The guest address of descriptor index `index`'s buffer.
    pub fn buf_addr(index: u16) -> u64 {
        BUF_BASE + u64::from(index) * BUF_STRIDE
    }

    /// Takes `n` consecutive descriptor indices (the queue is reused round-robin).
    fn take_indices(&mut self, n: u16) -> Vec<u16> {
        assert!(n <= DRIVER_QUEUE_SIZE);
        if self.next_desc + n > DRIVER_QUEUE_SIZE {
            self.next_desc = 0;
        }
        let first = self.next_desc;
        self.next_desc += n;
        (first..first + n).collect()
    }

    /// Posts a Linux-style request (header, one descriptor per data buffer, 1-byte status)
    /// without kicking. Returns the head index.
    pub fn post(&mut self, type_: u32, sector: u64, data: &[Seg]) -> u16 {
        let mut bufs = vec![Seg::Out(header(type_, sector))];
        bufs.extend(data.iter().map(|s| match s {
            Seg::Out(b) => Seg::Out(b.clone()),
            Seg::In(n) => Seg::In(*n),
        }));
        bufs.push(Seg::In(1));
        let idx = self.take_indices(bufs.len() as u16);
        let mut descs = Vec::new();
        for (i, seg) in bufs.iter().enumerate() {
            let addr = Self::buf_addr(idx[i]);
            let (len, mut flags) = match seg {
                Seg::Out(b) => {
                    self.mem.write_slice(b, GuestAddress(addr)).unwrap();
                    (b.len() as u32, 0)
                }
                Seg::In(n) => {
                    // Pre-fill writable areas so unwritten bytes and statuses stand out.
                    let fill = vec![NO_STATUS; *n as usize];
                    self.mem.write_slice(&fill, GuestAddress(addr)).unwrap();
                    (*n, VRING_DESC_F_WRITE as u16)
                }
            };
            let next = idx.get(i + 1).copied().unwrap_or(0);
            if i + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            descs.push((idx[i], Descriptor::new(addr, len, flags, next)));
        }
        self.driver.add_raw_chain(REQUEST_QUEUE, idx[0], &descs);
        idx[0]
    }

    /// Posts hand-made descriptors and makes `head` available (no kick).
    pub fn post_raw(&mut self, head: u16, descs: &[(u16, Descriptor)]) {
        self.driver.add_raw_chain(REQUEST_QUEUE, head, descs);
    }

    /// Kicks the queue and runs the loop; returns what the device completed, in order.
    pub fn kick_and_collect(&mut self) -> Vec<Completion> {
        self.driver.kick(REQUEST_QUEUE);
        self.pump();
        self.driver
            .take_used(REQUEST_QUEUE)
            .into_iter()
            .map(|used| {
                // Buffers outside guest memory (hostile tests) read as nothing.
                let read = |addr: u64, len: usize| {
                    let mut b = vec![0u8; len];
                    self.mem
                        .read_slice(&mut b, GuestAddress(addr))
                        .map(|()| b)
                        .ok()
                };
                let status = used
                    .descs
                    .last()
                    .filter(|d| d.2 && d.1 > 0)
                    .and_then(|&(addr, len, _)| read(addr + u64::from(len) - 1, 1))
                    .map_or(NO_STATUS, |b| b[0]);
                let last = used.descs.len().saturating_sub(1);
                let data = used.descs[..last]
                    .iter()
                    .skip(1)
                    .filter(|d| d.2)
                    .filter_map(|&(addr, len, _)| read(addr, len as usize))
                    .flatten()
                    .collect();
                Completion {
                    status,
                    used_len: used.len,
                    data,
                }
            })
            .collect()
    }

    /// Kicks the queue and runs the loop; returns how far the used index moved (without
    /// interpreting the used ring).
    pub fn kick_and_collect_raw(&mut self) -> u16 {
        let used_ring = {
            let device = lock(&self.block.device);
            crate::devices::virtio::VirtioDevice::queue_states(&*device).unwrap()[0].used_ring
        };
        let read_idx =
            |mem: &GuestMemory| -> u16 { mem.read_obj(GuestAddress(used_ring + 2)).unwrap() };
        let before = read_idx(&self.mem);
        self.driver.kick(REQUEST_QUEUE);
        self.pump();
        read_idx(&self.mem).wrapping_sub(before)
    }

    /// Posts one Linux-style request, kicks, and returns its completion.
    pub fn request(&mut self, type_: u32, sector: u64, data: &[Seg]) -> Completion {
        self.post(type_, sector, data);
        let mut done = self.kick_and_collect();
        assert_eq!(done.len(), 1, "expected one completion: {done:?}");
        done.remove(0)
    }

    /// The image file's current contents.
    pub fn file_contents(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    /// Reads `len` bytes of the image at `offset`.
    pub fn file_range(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        File::open(&self.path)
            .unwrap()
            .read_exact_at(&mut buf, offset)
            .unwrap();
        buf
    }
}
