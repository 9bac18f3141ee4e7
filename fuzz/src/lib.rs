//! Shared parts of paddock's fuzz targets: reading input as operations, byte splitting, and the seed corpora built with the
//! project's own encoders (`fuzz-seeds`).

pub mod seeds;

use event_manager::{EventManager, MutEventSubscriber};
use virtio_queue::desc::split::Descriptor;

/// Reads fuzz input as a stream of small integers; zero once it is used up.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }
    pub fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// A guest address: inside the test guest's RAM most of the time, anywhere otherwise.
    pub fn addr(&mut self) -> u64 {
        let raw = self.u64();
        if self.u8() & 3 == 0 {
            raw
        } else {
            raw % paddock_vmm::devices::virtio::test_driver::MEM_SIZE as u64
        }
    }
}

/// One to `max` raw descriptors, as hostile as they come (any address, length, flags and next
/// index), each with a descriptor index below 64; post them with `Driver::add_raw_chain`.
pub fn raw_descriptors(input: &mut Input<'_>, max: u8) -> Vec<(u16, Descriptor)> {
    let count = usize::from(input.u8() % max.max(1)) + 1;
    (0..count)
        .map(|_| {
            let index = u16::from(input.u8() % 64);
            let desc = Descriptor::new(input.addr(), input.u32(), input.u16(), input.u16());
            (index, desc)
        })
        .collect()
}

/// Runs the event loop for at most `iterations` rounds, stopping when it is idle.
pub fn run_event_loop<S: MutEventSubscriber>(manager: &mut EventManager<S>, iterations: usize) {
    for _ in 0..iterations {
        match manager.run_with_timeout(0) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Cuts `data` into pieces whose sizes come from `sizes` (each 1..=256, cycling), the way a
/// stream may deliver it; the whole of `data` is covered.
pub fn pieces<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut index = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(index % sizes.len().max(1))
            .map_or(rest.len(), |&s| usize::from(s) + 1)
            .min(rest.len());
        let (piece, tail) = rest.split_at(size);
        out.push(piece);
        rest = tail;
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for sizes in [&[][..], &[0][..], &[3, 0, 200][..]] {
            let joined: Vec<u8> = pieces(&data, sizes).concat();
            assert_eq!(joined, data);
        }
        assert_eq!(pieces(&data, &[0]).len(), 256);
    }
}
