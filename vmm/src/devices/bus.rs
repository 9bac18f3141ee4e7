//! Port-I/O and MMIO buses: route a vCPU's I/O exits to the device that owns the address.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through port I/O or MMIO. `offset` is relative to the device's base.
///
/// Implementations see guest-chosen offsets and access sizes: they must treat both as hostile
/// (ignore unknown offsets, never panic).
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus (vCPU threads) and its event handler.
pub type SharedBusDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors from placing a device on a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange { base: u64, len: u64 },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
}

#[derive(Clone)]
struct Slot {
    len: u64,
    device: SharedBusDevice,
}

/// An address space of non-overlapping device ranges.
#[derive(Clone, Default)]
pub struct Bus {
    slots: BTreeMap<u64, Slot>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedBusDevice) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let overlaps_prev = self
            .slots
            .range(..end)
            .next_back()
            .is_some_and(|(&b, s)| b + s.len > base);
        if overlaps_prev {
            return Err(BusError::Overlap { base, len });
        }
        self.slots.insert(base, Slot { len, device });
        Ok(())
    }

    fn resolve(&self, addr: u64, size: usize) -> Option<(u64, &Slot)> {
        let (&base, slot) = self.slots.range(..=addr).next_back()?;
        let offset = addr - base;
        let end = offset.checked_add(size as u64)?;
        (end <= slot.len).then_some((offset, slot))
    }

    /// Dispatches a guest read; returns false (data left untouched) when no device owns `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, slot)) => {
                lock(&slot.device).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a guest write; returns false when no device owns `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, slot)) => {
                lock(&slot.device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock (a panicked holder must not wedge the vCPUs).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(Vec<u8>);
    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0[usize::try_from(offset).unwrap()]);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0[usize::try_from(offset).unwrap()] = data[0];
        }
    }

    #[test]
    fn routes_by_range_and_rejects_overlap() {
        let mut bus = Bus::new();
        bus.insert(0x10, 4, Arc::new(Mutex::new(Reg(vec![0; 4]))))
            .unwrap();
        assert!(bus
            .insert(0x12, 4, Arc::new(Mutex::new(Reg(vec![0; 4]))))
            .is_err());
        assert!(bus
            .insert(0x0e, 4, Arc::new(Mutex::new(Reg(vec![0; 4]))))
            .is_err());
        bus.insert(0x14, 4, Arc::new(Mutex::new(Reg(vec![0; 4]))))
            .unwrap();
        assert!(bus.write(0x11, &[7]));
        let mut b = [0u8; 1];
        assert!(bus.read(0x11, &mut b));
        assert_eq!(b, [7]);
        // Straddling the end of a device or hitting a hole is not dispatched.
        assert!(!bus.read(0x13, &mut [0u8; 2]));
        assert!(!bus.read(0x40, &mut b));
        assert!(bus
            .insert(u64::MAX, 2, Arc::new(Mutex::new(Reg(vec![0; 4]))))
            .is_err());
    }
}
