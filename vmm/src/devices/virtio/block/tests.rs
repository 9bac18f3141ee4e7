//! Tests of the block device through its transport, with rings in real guest memory and a temp
//! file as the disk: reads, writes, flush, GET_ID, config space, construction checks,
//! indirect chains and notification.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::fs::OpenOptions;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};

use super::test_harness::*;
use super::*;
use crate::devices::bus::{lock, BusDevice};
use crate::devices::virtio::test_driver::guest_memory;
use crate::devices::virtio::{VirtioDevice, INTERRUPT_USED_BUFFER, VIRTIO_F_VERSION_1};

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

#[test]
fn reads_return_the_disk_contents() {
    let mut h = Harness::new(true);
    let done = h.request(VIRTIO_BLK_T_IN, 0, &[Seg::In(4096)]);
    assert_eq!(done.status, OK);
    assert_eq!(done.used_len, 4096 + 1);
    assert_eq!(done.data, pattern(0, 4096));

    // One request, three buffers of different sizes: one pread each, contiguous on disk.
    let done = h.request(
        VIRTIO_BLK_T_IN,
        100,
        &[Seg::In(512), Seg::In(1024), Seg::In(2048)],
    );
    assert_eq!(done.status, OK);
    assert_eq!(done.used_len, 3584 + 1);
    assert_eq!(done.data, pattern(100 * 512, 3584));
}

#[test]
fn the_last_sector_is_readable_and_the_trailer_is_not() {
    let mut h = Harness::new(true);
    let last = EXPOSED_LEN / SECTOR_SIZE - 1;
    let done = h.request(VIRTIO_BLK_T_IN, last, &[Seg::In(512)]);
    assert_eq!(done.status, OK);
    assert_eq!(done.data, pattern(last * 512, 512));
    // The trailer starts right after: a read there is refused and returns nothing of it.
    let done = h.request(VIRTIO_BLK_T_IN, last + 1, &[Seg::In(512)]);
    assert_eq!(done.status, IOERR);
    assert_eq!(done.used_len, 1);
    assert!(done.data.iter().all(|&b| b == NO_STATUS));
}

#[test]
fn writes_reach_the_file_and_read_back() {
    let mut h = Harness::new(false);
    let a: Vec<u8> = (0..1024).map(|i| (i * 3) as u8).collect();
    let b: Vec<u8> = (0..512).map(|i| (255 - i % 256) as u8).collect();
    let done = h.request(
        VIRTIO_BLK_T_OUT,
        10,
        &[Seg::Out(a.clone()), Seg::Out(b.clone())],
    );
    assert_eq!(done.status, OK);
    assert_eq!(
        done.used_len, 1,
        "a write puts only the status in guest buffers"
    );

    let mut expected = pattern(0, EXPOSED_LEN as usize);
    expected[10 * 512..10 * 512 + 1024].copy_from_slice(&a);
    expected[11 * 512 + 512..11 * 512 + 1024].copy_from_slice(&b);
    expected.extend_from_slice(TRAILER);
    assert_eq!(h.file_contents(), expected);

    let done = h.request(VIRTIO_BLK_T_IN, 10, &[Seg::In(1536)]);
    assert_eq!(done.status, OK);
    assert_eq!(done.data, [a, b].concat());
}

#[test]
fn writes_without_negotiated_flush_are_served_write_through() {
    let mut h = Harness::with_features(false, VIRTIO_F_VERSION_1);
    let data = vec![0x5a; 512];
    let done = h.request(VIRTIO_BLK_T_OUT, 3, &[Seg::Out(data.clone())]);
    assert_eq!(done.status, OK);
    assert_eq!(h.file_range(3 * 512, 512), data);
}

#[test]
fn flush_succeeds_on_writable_and_read_only_disks() {
    for read_only in [false, true] {
        let mut h = Harness::new(read_only);
        let done = h.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
        assert_eq!(done.status, OK, "read_only={read_only}");
        assert_eq!(done.used_len, 1);
    }
}

#[test]
fn get_id_returns_the_serial() {
    let mut h = Harness::new(true);
    let done = h.request(VIRTIO_BLK_T_GET_ID, 0, &[Seg::In(SERIAL_LEN as u32)]);
    assert_eq!(done.status, OK);
    assert_eq!(done.used_len, SERIAL_LEN as u32 + 1);
    let mut expected = SERIAL.to_vec();
    expected.resize(SERIAL_LEN, 0);
    assert_eq!(done.data, expected);

    // A smaller buffer gets the ID's first bytes and nothing beyond.
    let done = h.request(VIRTIO_BLK_T_GET_ID, 0, &[Seg::In(8)]);
    assert_eq!(done.status, OK);
    assert_eq!(done.used_len, 9);
    assert_eq!(done.data, SERIAL[..8]);
}

#[test]
fn config_space_reports_capacity_and_seg_max() {
    let h = Harness::new(true);
    let mut t = lock(&h.block.transport);
    let mut read = |offset: u64, len: usize| {
        let mut b = vec![0xffu8; len];
        t.read(u64::from(reg::VIRTIO_MMIO_CONFIG) + offset, &mut b);
        b
    };
    assert_eq!(read(0, 8), (EXPOSED_LEN / 512).to_le_bytes());
    assert_eq!(read(12, 4), SEG_MAX.to_le_bytes());
    // Unoffered fields and anything past the config read 0, including a read across the end.
    assert_eq!(read(8, 4), [0; 4]);
    assert_eq!(read(20, 8), [0; 8]);
    assert_eq!(read(0xf00, 4), [0; 4]);
}

#[test]
fn read_only_is_offered_only_for_read_only_disks() {
    let ro = Harness::new(true);
    let rw = Harness::new(false);
    let f_ro = 1u64 << VIRTIO_BLK_F_RO;
    assert_ne!(lock(&ro.block.device).avail_features() & f_ro, 0);
    assert_eq!(lock(&rw.block.device).avail_features() & f_ro, 0);
    let device_id = ro.driver.read(reg::VIRTIO_MMIO_DEVICE_ID);
    assert_eq!(device_id, BLOCK_DEVICE_ID);
}

fn config_for(path: &std::path::Path, exposed_len: u64, read_only: bool) -> BlockConfig {
    BlockConfig {
        exposed_len,
        read_only,
        serial: DiskSerial::new(SERIAL).unwrap(),
        identity: identity(path, read_only),
    }
}

#[test]
fn construction_refuses_bad_lengths_and_access_modes() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_image(&dir);
    let file_len = EXPOSED_LEN + TRAILER.len() as u64;
    let new = |exposed_len: u64, read_only: bool, writable_file: bool| {
        let file = OpenOptions::new()
            .read(true)
            .write(writable_file)
            .open(&path)
            .unwrap();
        new_block(
            guest_memory(),
            file,
            config_for(&path, exposed_len, read_only),
        )
    };
    assert!(matches!(
        new(1000, true, false),
        Err(BlockError::ExposedLength(1000))
    ));
    assert!(matches!(
        new(0, true, false),
        Err(BlockError::ExposedLength(0))
    ));
    let too_long = (file_len / 512 + 1) * 512;
    assert!(matches!(
        new(too_long, true, false),
        Err(BlockError::BackingTooSmall { file_len: f, exposed_len: e }) if f == file_len && e == too_long
    ));
    assert!(matches!(
        new(EXPOSED_LEN, false, false),
        Err(BlockError::BackingAccess { read_only: false })
    ));
    // The whole file, trailer included, may be exposed if it is whole sectors; here it is not.
    assert!(new(EXPOSED_LEN, true, false).is_ok());
    assert!(new(EXPOSED_LEN, false, true).is_ok());
    let write_only = OpenOptions::new().write(true).open(&path).unwrap();
    assert!(matches!(
        new_block(
            guest_memory(),
            write_only,
            config_for(&path, EXPOSED_LEN, true)
        ),
        Err(BlockError::BackingAccess { read_only: true })
    ));
}

#[test]
fn a_batch_of_requests_is_served_in_one_kick_with_one_interrupt() {
    let mut h = Harness::with_features(true, VIRTIO_F_VERSION_1);
    let irq = lock(&h.block.transport).interrupt().clone();
    irq.ack(u32::MAX);
    let _ = irq.event().read();
    for i in 0..16u64 {
        h.post(VIRTIO_BLK_T_IN, i * 8, &[Seg::In(4096)]);
    }
    let done = h.kick_and_collect();
    assert_eq!(done.len(), 16);
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.status, OK);
        assert_eq!(c.data, pattern(i as u64 * 4096, 4096));
    }
    assert_eq!(irq.status() & INTERRUPT_USED_BUFFER, INTERRUPT_USED_BUFFER);
    assert_eq!(
        irq.event().read().unwrap(),
        1,
        "one interrupt for the batch"
    );
}

#[test]
fn event_idx_suppresses_interrupts_the_driver_did_not_ask_for() {
    // used_event stays 0 in the test ring: the driver asked to hear about the first buffer only.
    let mut h = Harness::new(true);
    let irq = lock(&h.block.transport).interrupt().clone();
    let _ = irq.event().read();
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[Seg::In(512)]).status, OK);
    assert_eq!(irq.event().read().unwrap(), 1);
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 1, &[Seg::In(512)]).status, OK);
    assert!(irq.event().read().is_err(), "no interrupt past used_event");
}

#[test]
fn indirect_descriptor_tables_are_followed() {
    let mut h = Harness::new(true);
    // Table at a free buffer: header, two data buffers, status.
    let table = Harness::buf_addr(40);
    let hdr = Harness::buf_addr(41);
    let d1 = Harness::buf_addr(42);
    let d2 = Harness::buf_addr(43);
    let st = Harness::buf_addr(44);
    h.mem
        .write_slice(&header(VIRTIO_BLK_T_IN, 7), GuestAddress(hdr))
        .unwrap();
    h.mem.write_obj(NO_STATUS, GuestAddress(st)).unwrap();
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let entries = [
        Descriptor::new(hdr, 16, next, 1),
        Descriptor::new(d1, 512, next | write, 2),
        Descriptor::new(d2, 1024, next | write, 3),
        Descriptor::new(st, 1, write, 0),
    ];
    for (i, d) in entries.iter().enumerate() {
        h.mem
            .write_obj(RawDescriptor::from(*d), GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    let head = Descriptor::new(table, 64, VRING_DESC_F_INDIRECT as u16, 0);
    h.post_raw(5, &[(5, head)]);
    let done = h.kick_and_collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].used_len, 1536 + 1);
    assert_eq!(h.driver.read_mem(st, 1)[0], OK);
    let mut data = h.driver.read_mem(d1, 512);
    data.extend(h.driver.read_mem(d2, 1024));
    assert_eq!(data, pattern(7 * 512, 1536));
}
