//! A split virtqueue this process lays out in pinned pages and hands to a device through its
//! registers, with nothing checked: descriptors say whatever the caller writes.

use crate::dma::{Pages, PAGE};
use crate::mmio::{reg, status, Window};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

/// The chain continues at `next`.
pub const F_NEXT: u16 = VRING_DESC_F_NEXT as u16;
/// The device writes this buffer.
pub const F_WRITE: u16 = VRING_DESC_F_WRITE as u16;
/// The buffer is a table of descriptors.
pub const F_INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
/// Largest queue this driver lays out (a descriptor table fills one page).
pub const MAX_SIZE: u16 = 256;
/// Ring pages at the front of a queue's pages: descriptors, avail, used.
pub const RING_PAGES: usize = 3;

/// Resets the device and negotiates VIRTIO_F_VERSION_1 only. Returns the status read back.
pub fn negotiate(window: &Window) -> u32 {
    window.write32(reg::STATUS, 0);
    window.write32(reg::STATUS, status::ACKNOWLEDGE);
    window.write32(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    window.write32(reg::DRIVER_FEATURES_SEL, 0);
    window.write32(reg::DRIVER_FEATURES, 0);
    window.write32(reg::DRIVER_FEATURES_SEL, 1);
    window.write32(reg::DRIVER_FEATURES, 1); // VIRTIO_F_VERSION_1 (bit 32)
    window.write32(
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
    window.read32(reg::STATUS)
}

/// Sets DRIVER_OK after the queues are ready.
pub fn driver_ok(window: &Window) {
    window.write32(
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
    );
}

/// Points queue `index` at arbitrary addresses and marks it ready.
pub fn program(window: &Window, index: u32, size: u32, desc: u64, avail: u64, used: u64) {
    window.write32(reg::QUEUE_SEL, index);
    window.write32(reg::QUEUE_NUM, size);
    for (low, value) in [
        (reg::QUEUE_DESC_LOW, desc),
        (reg::QUEUE_AVAIL_LOW, avail),
        (reg::QUEUE_USED_LOW, used),
    ] {
        window.write32(low, value as u32);
        window.write32(low + 4, (value >> 32) as u32);
    }
    window.write32(reg::QUEUE_READY, 1);
}

/// A queue whose rings live in `pages[0..3]`; later pages are the caller's buffers.
#[derive(Debug)]
pub struct Queue {
    /// Rings and buffers.
    pub pages: Pages,
    index: u32,
    size: u16,
    avail_idx: u16,
    seen_used: u16,
}

impl Queue {
    /// Lays out queue `index` of `size` entries with `buffer_pages` pages of buffers after the
    /// rings, and programs it into the device (not yet DRIVER_OK).
    pub fn new(
        window: &Window,
        index: u32,
        size: u16,
        buffer_pages: usize,
    ) -> std::io::Result<Self> {
        let pages = Pages::new(RING_PAGES + buffer_pages)?;
        for page in 0..RING_PAGES {
            pages.clear(page);
        }
        program(
            window,
            index,
            u32::from(size),
            pages.phys(0, 0),
            pages.phys(1, 0),
            pages.phys(2, 0),
        );
        Ok(Self {
            pages,
            index,
            size,
            avail_idx: 0,
            seen_used: 0,
        })
    }

    /// Writes descriptor `i` (any index: the table page holds MAX_SIZE of them).
    pub fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        self.pages.write(0, usize::from(i % MAX_SIZE) * 16, &raw);
    }

    /// Offers the chain starting at `head`.
    pub fn push(&mut self, head: u16) {
        let slot = usize::from(self.avail_idx % self.size);
        self.pages.write(1, 4 + slot * 2, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.pages.write(1, 2, &self.avail_idx.to_le_bytes());
    }

    /// Sets the avail index to anything (a lie about how many chains were offered).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.pages.write(1, 2, &idx.to_le_bytes());
    }

    /// Rings the doorbell.
    pub fn notify(&self, window: &Window) {
        window.write32(reg::QUEUE_NOTIFY, self.index);
    }

    /// The device's used index.
    pub fn used_idx(&self) -> u16 {
        self.pages.read16(2, 2)
    }

    /// Head index of used entry `n` (mod size).
    pub fn used_head(&self, n: u16) -> u16 {
        self.pages.read16(2, 4 + usize::from(n % self.size) * 8)
    }

    /// Waits up to `limit` for the device to use every chain offered; false if it did not.
    pub fn wait_all_used(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while self.used_idx() != self.avail_idx {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Used entries not yet taken by `take_used`, as head indices.
    pub fn take_used(&mut self) -> Vec<u16> {
        let now = self.used_idx();
        let mut heads = Vec::new();
        while self.seen_used != now {
            heads.push(self.used_head(self.seen_used));
            self.seen_used = self.seen_used.wrapping_add(1);
        }
        heads
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.size
    }
}

/// Bytes of one page.
pub const PAGE_U32: u32 = PAGE as u32;
