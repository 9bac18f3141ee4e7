//! Attacks any virtio-mmio device takes: random register traffic, rings outside RAM, and
//! descriptor chains that point outside RAM, loop, overlap, nest indirect tables or lie about
//! lengths and indices.

use crate::dma::PAGE;
use crate::mmio::{reg, Window};
use crate::queue::{self, Queue, F_INDIRECT, F_NEXT, F_WRITE, PAGE_U32};
use crate::rng::Rng;
use std::time::Duration;

/// How long a device gets to act on a doorbell before the next case.
const SETTLE: Duration = Duration::from_millis(30);

/// `rounds` writes of nasty values at random offsets of the register window and config space
/// (a quarter of them one or two bytes wide, some 64-bit), reads mixed in.
pub fn registers(window: &Window, rng: &mut Rng, rounds: u32) -> u64 {
    let span = window.size().min(2 * reg::CONFIG) as u64;
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let offset = rng.below(span) as usize;
        match rng.below(8) {
            0 => window.write8(offset, rng.next_u32() as u8),
            1 => window.write16(offset, rng.next_u32() as u16),
            2 => window.write64(offset & !7, rng.next_u64()),
            3 => checksum = checksum.wrapping_add(u64::from(window.read32(offset))),
            _ => window.write32(offset & !3, rng.nasty_u32()),
        }
    }
    window.write32(reg::STATUS, 0);
    checksum
}

/// Every queue pointed at addresses outside guest RAM (or wrapping the address space), made
/// ready, the device started and every doorbell rung.
pub fn rings_outside_ram(window: &Window, queues: u32) {
    let wild = [
        (!0xfff_u64, u64::MAX - 1, u64::MAX - 7),
        (0xffff_0000_0000, 0xffff_0000_1000, 0xffff_0000_2000),
        (0x1_0000_0000_0000, 0, 0),
    ];
    for (desc, avail, used) in wild {
        queue::negotiate(window);
        for q in 0..queues {
            queue::program(window, q, 256, desc, avail, used);
        }
        queue::driver_ok(window);
        for q in 0..queues {
            window.write32(reg::QUEUE_NOTIFY, q);
        }
        std::thread::sleep(SETTLE);
    }
    // Queue sizes that are not powers of two, zero, and over the maximum.
    for size in [0u32, 3, 1 << 15, u32::MAX] {
        queue::negotiate(window);
        queue::program(window, 0, size, 0x1000, 0x2000, 0x3000);
        queue::driver_ok(window);
        window.write32(reg::QUEUE_NOTIFY, 0);
        std::thread::sleep(SETTLE);
    }
    window.write32(reg::STATUS, 0);
}

/// The chain cases offered on queue `q` of the device, one at a time, each on a freshly reset
/// device. Returns (case name, used index the device reached) per case.
pub fn bad_chains(
    window: &Window,
    q: u32,
    rng: &mut Rng,
) -> std::io::Result<Vec<(&'static str, u16)>> {
    let mut results = Vec::new();
    let cases: [&'static str; 10] = [
        "buffer outside RAM",
        "buffer wrapping the address space",
        "two-descriptor loop",
        "self loop",
        "next out of range",
        "indirect table containing itself",
        "indirect table outside RAM",
        "4 GiB length",
        "avail index 32768 ahead",
        "overlapping chains",
    ];
    for case in cases {
        queue::negotiate(window);
        let mut queue = Queue::new(window, q, queue::MAX_SIZE, 2)?;
        let data = queue.pages.phys(queue::RING_PAGES, 0);
        let table = queue.pages.phys(0, 0);
        let flags = if rng.below(2) == 0 { F_WRITE } else { 0 };
        match case {
            "buffer outside RAM" => queue.set_desc(0, 0xffff_0000_0000, PAGE_U32, flags, 0),
            "buffer wrapping the address space" => {
                queue.set_desc(0, u64::MAX - 16, PAGE_U32, flags, 0)
            }
            "two-descriptor loop" => {
                queue.set_desc(0, data, 64, F_NEXT | flags, 1);
                queue.set_desc(1, data, 64, F_NEXT | flags, 0);
            }
            "self loop" => queue.set_desc(0, data, 64, F_NEXT | flags, 0),
            "next out of range" => queue.set_desc(0, data, 64, F_NEXT | flags, 60_000),
            "indirect table containing itself" => {
                queue.set_desc(0, table, (PAGE / 16 * 16) as u32, F_INDIRECT, 0)
            }
            "indirect table outside RAM" => {
                queue.set_desc(0, 0xffff_0000_0000, 256 * 16, F_INDIRECT, 0)
            }
            "4 GiB length" => queue.set_desc(0, data, u32::MAX, flags, 0),
            "avail index 32768 ahead" => {
                queue.set_desc(0, data, 64, flags, 0);
            }
            _ => {
                // Two chains sharing descriptors: 0 -> 1 -> 2 and 1 -> 2.
                queue.set_desc(0, data, 64, F_NEXT, 1);
                queue.set_desc(1, data + 64, 64, F_NEXT | F_WRITE, 2);
                queue.set_desc(2, data + 128, 64, F_WRITE, 0);
            }
        }
        queue::driver_ok(window);
        match case {
            "avail index 32768 ahead" => queue.set_avail_idx(32_768),
            "overlapping chains" => {
                queue.push(0);
                queue.push(1);
            }
            _ => queue.push(0),
        }
        queue.notify(window);
        std::thread::sleep(SETTLE);
        queue.notify(window);
        std::thread::sleep(SETTLE);
        results.push((case, queue.used_idx()));
        window.write32(reg::STATUS, 0);
    }
    Ok(results)
}
