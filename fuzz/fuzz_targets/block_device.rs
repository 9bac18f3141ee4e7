//! The virtio-blk device as a hostile guest drives it: random MMIO register writes, request
//! chains with any header (type, sector), any data segments (outside RAM, looping, overlapping,
//! oversized, indirect) and kicks, through the real MMIO transport and event loop, on a
//! read-only or writable disk. Pass: no panic, no sanitizer report, no hang, and the bytes of
//! the file past what the guest may see (and, read-only, all of it) are unchanged.
#![no_main]

use std::fs::OpenOptions;
use std::io::{Read, Seek};
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, SubscriberOps};
use libfuzzer_sys::fuzz_target;
use paddock_fuzz::{raw_descriptors, run_event_loop, Input};
use paddock_vmm::devices::virtio::block::{
    new_block, BlockConfig, BlockDevice, DiskIdentity, DiskSerial, NUM_QUEUES, REQUEST_QUEUE,
};
use paddock_vmm::devices::virtio::test_driver::{guest_memory, Driver};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

/// What the guest sees of the disk.
const EXPOSED_LEN: u64 = 64 << 10;
/// Bytes after the exposed part, which the guest must never change.
const TRAILER: &[u8] = b"paddock fuzz trailer: not for the guest";
/// Where the target writes request headers and data (above the test driver's rings).
const SCRATCH: u64 = 0x200_0000;
/// Event-loop iterations per `run` operation, and at the end.
const RUN_ITERATIONS: usize = 8;
const FINAL_ITERATIONS: usize = 64;
/// `VIRTIO_F_VERSION_1`.
const VERSION_1: u64 = 1 << 32;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let read_only = input.u8() & 1 == 1;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("disk.img");
    let mut image: Vec<u8> = (0..EXPOSED_LEN).map(|i| (i % 251) as u8).collect();
    image.extend_from_slice(TRAILER);
    std::fs::write(&path, &image).expect("disk image");
    // Opened read-write even for a read-only disk: the device itself must refuse writes.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("disk image");
    let config = BlockConfig {
        exposed_len: EXPOSED_LEN,
        read_only,
        serial: DiskSerial::new(b"fuzz").expect("a short serial"),
        identity: DiskIdentity {
            path: path.clone(),
            digest: None,
            len: image.len() as u64,
            read_only,
        },
    };
    let mem = guest_memory();
    let block = new_block(mem.clone(), file, config).expect("block device");
    let mut driver = Driver::new(mem.clone(), block.transport.clone(), NUM_QUEUES);
    let mut manager: EventManager<Arc<Mutex<BlockDevice>>> =
        EventManager::new().expect("event manager");
    manager.add_subscriber(block.device.clone());
    let ro = if read_only { 1 << VIRTIO_BLK_F_RO } else { 0 };
    driver.bring_up_with(
        VERSION_1
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | ro,
    );

    while !input.is_empty() {
        match input.u8() % 5 {
            0 => driver.write(u32::from(input.u16() & 0x1ff), input.u32()),
            1 => {
                // Any descriptors, as raw as they come.
                let descs = raw_descriptors(&mut input, 6);
                driver.add_raw_chain(REQUEST_QUEUE, descs[0].0, &descs);
                driver.kick(REQUEST_QUEUE);
            }
            2 => {
                // A request shaped as Linux sends it: header, data segments, status byte; any
                // type and sector, any segment lengths.
                let first = u16::from(input.u8() % 56);
                let area = SCRATCH + u64::from(first) * 0x2_0000;
                let mut header = [0u8; 16];
                header[..4].copy_from_slice(&u32::from(input.u8() % 12).to_le_bytes());
                header[8..].copy_from_slice(&(input.u64() % (EXPOSED_LEN / 256)).to_le_bytes());
                let _ = mem.write_slice(&header, GuestAddress(area));
                let segments = usize::from(input.u8() % 4);
                let mut descs = vec![(first, Descriptor::new(area, 16, 1, first + 1))];
                for s in 0..segments {
                    let index = first + 1 + s as u16;
                    let len = input.u32() % 0x1_0000;
                    let flags = 1 | if input.u8() & 1 == 1 { 2 } else { 0 };
                    let addr = area + 0x100 + s as u64 * 0x1_0000;
                    let payload_len = usize::from(input.u8());
                    let payload = input.bytes(payload_len).to_vec();
                    let _ = mem.write_slice(&payload, GuestAddress(addr));
                    descs.push((index, Descriptor::new(addr, len, flags, index + 1)));
                }
                let status = first + 1 + segments as u16;
                descs.push((status, Descriptor::new(area + 0x1_ff00, 1, 2, 0)));
                driver.add_raw_chain(REQUEST_QUEUE, first, &descs);
                driver.kick(REQUEST_QUEUE);
            }
            3 => driver.kick(usize::from(input.u8() % 2)),
            _ => run_event_loop(&mut manager, RUN_ITERATIONS),
        }
    }
    run_event_loop(&mut manager, FINAL_ITERATIONS);

    let mut after = Vec::new();
    let mut file = std::fs::File::open(&path).expect("disk image");
    file.rewind().expect("seek");
    file.read_to_end(&mut after).expect("disk image");
    assert_eq!(after.len(), image.len(), "the disk file changed size");
    assert_eq!(
        &after[EXPOSED_LEN as usize..],
        TRAILER,
        "the trailer changed"
    );
    if read_only {
        assert!(after == image, "a read-only disk was written");
    }
});
