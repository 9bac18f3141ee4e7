//! virtio-mmio slots: where in the MMIO gap each device's register window lives and which GSI it
//! interrupts on. Slot `n` is the window at `MMIO_GAP_START + n * VIRTIO_MMIO_SIZE` with GSI
//! `VIRTIO_IRQ_BASE + n`; the IOAPIC's pins bound how many there are.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::arch::x86_64::layout::{IRQ_MAX, MMIO_GAP_START, VIRTIO_IRQ_BASE, VIRTIO_MMIO_SIZE};

/// How many virtio-mmio slots there are: one per IOAPIC pin from `VIRTIO_IRQ_BASE` on.
pub const MMIO_SLOT_COUNT: u32 = IRQ_MAX - VIRTIO_IRQ_BASE + 1;

/// One device's place: its register window and its interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MmioSlot {
    /// Guest-physical base of the register window (`VIRTIO_MMIO_SIZE` bytes).
    pub addr: u64,
    /// The GSI (IOAPIC pin) the device's irqfd is routed to.
    pub irq: u32,
}

impl std::fmt::Display for MmioSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x} (IRQ {})", self.addr, self.irq)
    }
}

/// Why a slot (or a list of them) does not fit the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Every slot is taken.
    #[error("all {MMIO_SLOT_COUNT} virtio-mmio slots are taken")]
    Exhausted,
    /// The address and IRQ are not one of the layout's slots (or not the same slot's pair).
    #[error("{0} is not a virtio-mmio slot of this VMM's layout")]
    NotASlot(MmioSlot),
    /// Two devices claim the same slot.
    #[error("virtio-mmio slot {0} is claimed twice")]
    Duplicate(MmioSlot),
}

impl MmioSlot {
    /// Slot `index` of the layout, if there is one.
    pub fn nth(index: u32) -> Option<Self> {
        if index >= MMIO_SLOT_COUNT {
            return None;
        }
        Some(Self {
            addr: MMIO_GAP_START + u64::from(index) * VIRTIO_MMIO_SIZE,
            irq: VIRTIO_IRQ_BASE + index,
        })
    }

    /// This slot's index in the layout; refuses an address or IRQ the layout never hands out,
    /// and an address and IRQ belonging to different slots.
    pub fn index(&self) -> Result<u32, LayoutError> {
        let not_a_slot = LayoutError::NotASlot(*self);
        let offset = self.addr.checked_sub(MMIO_GAP_START).ok_or(not_a_slot)?;
        if offset % VIRTIO_MMIO_SIZE != 0 {
            return Err(not_a_slot);
        }
        let index = u32::try_from(offset / VIRTIO_MMIO_SIZE).map_err(|_| not_a_slot)?;
        match Self::nth(index) {
            Some(slot) if slot == *self => Ok(index),
            _ => Err(not_a_slot),
        }
    }
}

/// Hands out slots: the lowest free one on boot, exactly the saved one on restore.
#[derive(Debug, Default)]
pub struct SlotAllocator {
    taken: BTreeSet<u32>,
}

impl SlotAllocator {
    /// No slot taken.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the lowest free slot: devices attached in order get consecutive slots.
    pub fn allocate(&mut self) -> Result<MmioSlot, LayoutError> {
        let index = (0..MMIO_SLOT_COUNT)
            .find(|i| !self.taken.contains(i))
            .ok_or(LayoutError::Exhausted)?;
        self.taken.insert(index);
        MmioSlot::nth(index).ok_or(LayoutError::Exhausted)
    }

    /// Takes `slot` exactly (a restore re-creates the saved layout).
    pub fn claim(&mut self, slot: MmioSlot) -> Result<(), LayoutError> {
        let index = slot.index()?;
        if !self.taken.insert(index) {
            return Err(LayoutError::Duplicate(slot));
        }
        Ok(())
    }
}

/// Checks that `slots` could all be claimed together: each is a slot of the layout, none twice.
pub fn check_slots(slots: impl IntoIterator<Item = MmioSlot>) -> Result<(), LayoutError> {
    let mut allocator = SlotAllocator::new();
    slots.into_iter().try_for_each(|slot| allocator.claim(slot))
}
