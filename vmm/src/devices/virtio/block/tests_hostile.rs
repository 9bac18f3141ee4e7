//! Hostile and malformed requests: each is refused with the right status (or, without a usable
//! status byte, completed with length 0), touches neither the disk nor guest memory it should
//! not, and the device goes on serving the next request.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};

use super::test_harness::*;
use super::SECTOR_SIZE;
use crate::devices::virtio::test_driver::MEM_SIZE;

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;

/// A normal read still works after whatever came before.
fn assert_still_serving(h: &mut Harness) {
    let done = h.request(VIRTIO_BLK_T_IN, 2, &[Seg::In(1024)]);
    assert_eq!(done.status, OK);
    assert_eq!(done.data, pattern(1024, 1024));
}

/// Expects one completion with `status` and a used length of 1 (the status byte only).
fn assert_refused(h: &mut Harness, status: u8) {
    let done = h.kick_and_collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].status, status, "{done:?}");
    assert_eq!(done[0].used_len, 1, "{done:?}");
}

/// Expects one completion of length 0 whose status byte (at `status_addr`) was not written.
fn assert_skipped(h: &mut Harness, status_addr: u64) {
    let done = h.kick_and_collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].used_len, 0);
    assert_eq!(h.driver.read_mem(status_addr, 1)[0], NO_STATUS);
}

fn write_header(h: &Harness, index: u16, type_: u32, sector: u64) -> u64 {
    let addr = Harness::buf_addr(index);
    h.mem
        .write_slice(&header(type_, sector), GuestAddress(addr))
        .unwrap();
    addr
}

fn status_buf(h: &Harness, index: u16) -> u64 {
    let addr = Harness::buf_addr(index);
    h.mem.write_obj(NO_STATUS, GuestAddress(addr)).unwrap();
    addr
}

#[test]
fn requests_without_data_are_refused() {
    let mut h = Harness::new(false);
    for type_ in [VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_GET_ID] {
        h.post(type_, 0, &[]);
        assert_refused(&mut h, IOERR);
        h.post(type_, 0, &[Seg::In(0)]);
        assert_refused(&mut h, IOERR);
    }
    assert_eq!(
        h.file_contents()[..EXPOSED_LEN as usize],
        pattern(0, EXPOSED_LEN as usize)
    );
    assert_still_serving(&mut h);
}

#[test]
fn out_of_range_and_overflowing_sectors_are_refused() {
    let mut h = Harness::new(false);
    let sectors = EXPOSED_LEN / SECTOR_SIZE;
    let cases = [
        (sectors, 512),         // just past the end
        (sectors - 1, 1024),    // starts inside, ends past the end
        (u64::MAX, 512),        // sector * 512 overflows
        (u64::MAX / 512, 1024), // sector * 512 fits, + len overflows
    ];
    for (sector, len) in cases {
        h.post(VIRTIO_BLK_T_IN, sector, &[Seg::In(len)]);
        assert_refused(&mut h, IOERR);
        h.post(
            VIRTIO_BLK_T_OUT,
            sector,
            &[Seg::Out(vec![0xab; len as usize])],
        );
        assert_refused(&mut h, IOERR);
    }
    let mut expected = pattern(0, EXPOSED_LEN as usize);
    expected.extend_from_slice(TRAILER);
    assert_eq!(h.file_contents(), expected, "trailer and disk untouched");
    assert_still_serving(&mut h);
}

#[test]
fn partial_sectors_are_refused() {
    let mut h = Harness::new(false);
    h.post(VIRTIO_BLK_T_IN, 0, &[Seg::In(100)]);
    assert_refused(&mut h, IOERR);
    h.post(VIRTIO_BLK_T_OUT, 0, &[Seg::Out(vec![1; 700])]);
    assert_refused(&mut h, IOERR);
    assert_eq!(h.file_range(0, 1024), pattern(0, 1024));
    assert_still_serving(&mut h);
}

#[test]
fn writes_to_a_read_only_disk_fail_with_ioerr_and_change_nothing() {
    let mut h = Harness::new(true);
    let before = h.file_contents();
    h.post(VIRTIO_BLK_T_OUT, 0, &[Seg::Out(vec![0xcc; 4096])]);
    assert_refused(&mut h, IOERR);
    assert_eq!(h.file_contents(), before);
    assert_still_serving(&mut h);
}

#[test]
fn data_buffers_in_the_wrong_direction_are_refused() {
    let mut h = Harness::new(false);
    // A read into a device-readable buffer, a write from a device-writable one.
    h.post(VIRTIO_BLK_T_IN, 0, &[Seg::In(512), Seg::Out(vec![0; 512])]);
    assert_refused(&mut h, IOERR);
    h.post(VIRTIO_BLK_T_OUT, 0, &[Seg::Out(vec![9; 512]), Seg::In(512)]);
    assert_refused(&mut h, IOERR);
    h.post(VIRTIO_BLK_T_GET_ID, 0, &[Seg::Out(vec![0; 20])]);
    assert_refused(&mut h, IOERR);
    assert_eq!(h.file_range(0, 1024), pattern(0, 1024), "no partial write");
    assert_still_serving(&mut h);
}

#[test]
fn flush_with_data_is_refused() {
    let mut h = Harness::new(false);
    h.post(VIRTIO_BLK_T_FLUSH, 0, &[Seg::Out(vec![0; 512])]);
    assert_refused(&mut h, IOERR);
    assert_still_serving(&mut h);
}

#[test]
fn unknown_request_types_are_unsupported() {
    let mut h = Harness::new(false);
    for type_ in [VIRTIO_BLK_T_DISCARD, 99, u32::MAX] {
        h.post(type_, 0, &[Seg::Out(vec![0; 512])]);
        assert_refused(&mut h, UNSUPP);
    }
    assert_still_serving(&mut h);
}

#[test]
fn short_or_writable_headers_are_refused() {
    let mut h = Harness::new(false);
    // A 15-byte header (the type and sector would be read past it).
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_IN, 0);
    let data = Harness::buf_addr(1);
    let st = status_buf(&h, 2);
    h.post_raw(
        0,
        &[
            (0, Descriptor::new(hdr, 15, NEXT, 1)),
            (1, Descriptor::new(data, 512, NEXT | WRITE, 2)),
            (2, Descriptor::new(st, 1, WRITE, 0)),
        ],
    );
    assert_refused(&mut h, IOERR);
    // A header split over two descriptors of 8 bytes.
    let st = status_buf(&h, 6);
    h.post_raw(
        3,
        &[
            (3, Descriptor::new(hdr, 8, NEXT, 4)),
            (4, Descriptor::new(hdr + 8, 8, NEXT, 5)),
            (5, Descriptor::new(data, 512, NEXT | WRITE, 6)),
            (6, Descriptor::new(st, 1, WRITE, 0)),
        ],
    );
    assert_refused(&mut h, IOERR);
    // A device-writable header.
    let st = status_buf(&h, 9);
    h.post_raw(
        7,
        &[
            (7, Descriptor::new(hdr, 16, NEXT | WRITE, 8)),
            (8, Descriptor::new(data, 512, NEXT | WRITE, 9)),
            (9, Descriptor::new(st, 1, WRITE, 0)),
        ],
    );
    assert_refused(&mut h, IOERR);
    assert_still_serving(&mut h);
}

#[test]
fn unusable_status_descriptors_get_no_status_and_length_zero() {
    let mut h = Harness::new(false);
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_IN, 0);
    let data = Harness::buf_addr(1);
    // Device-readable status.
    let st = status_buf(&h, 2);
    h.post_raw(
        0,
        &[
            (0, Descriptor::new(hdr, 16, NEXT, 1)),
            (1, Descriptor::new(data, 512, NEXT | WRITE, 2)),
            (2, Descriptor::new(st, 1, 0, 0)),
        ],
    );
    assert_skipped(&mut h, st);
    // Zero-length status.
    let st = status_buf(&h, 5);
    h.post_raw(
        3,
        &[
            (3, Descriptor::new(hdr, 16, NEXT, 4)),
            (4, Descriptor::new(data, 512, NEXT | WRITE, 5)),
            (5, Descriptor::new(st, 0, WRITE, 0)),
        ],
    );
    assert_skipped(&mut h, st);
    // Status outside guest memory.
    h.post_raw(
        6,
        &[
            (6, Descriptor::new(hdr, 16, NEXT, 7)),
            (7, Descriptor::new(MEM_SIZE as u64, 1, WRITE, 0)),
        ],
    );
    let done = h.kick_and_collect();
    assert_eq!(done[0].used_len, 0);
    assert_still_serving(&mut h);
}

#[test]
fn an_oversized_status_descriptor_gets_ioerr_in_its_last_byte() {
    let mut h = Harness::new(false);
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_IN, 0);
    let data = Harness::buf_addr(1);
    let st = Harness::buf_addr(2);
    h.mem
        .write_slice(&[NO_STATUS; 4], GuestAddress(st))
        .unwrap();
    h.post_raw(
        0,
        &[
            (0, Descriptor::new(hdr, 16, NEXT, 1)),
            (1, Descriptor::new(data, 512, NEXT | WRITE, 2)),
            (2, Descriptor::new(st, 4, WRITE, 0)),
        ],
    );
    assert_refused(&mut h, IOERR);
    assert_eq!(
        h.driver.read_mem(st, 4),
        [NO_STATUS, NO_STATUS, NO_STATUS, IOERR]
    );
    assert_still_serving(&mut h);
}

#[test]
fn data_outside_guest_memory_is_refused_before_any_io() {
    let mut h = Harness::new(false);
    let mem_end = MEM_SIZE as u64;
    let bad = [
        (mem_end - 256, 512),  // straddles the end
        (mem_end, 512),        // just past it
        (u64::MAX - 100, 512), // wraps the address space
    ];
    for (addr, len) in bad {
        // A write whose first buffer is fine and second is not: nothing may reach the disk.
        let hdr = write_header(&h, 0, VIRTIO_BLK_T_OUT, 0);
        let good = Harness::buf_addr(1);
        h.mem.write_slice(&[0x77; 512], GuestAddress(good)).unwrap();
        let st = status_buf(&h, 3);
        h.post_raw(
            0,
            &[
                (0, Descriptor::new(hdr, 16, NEXT, 1)),
                (1, Descriptor::new(good, 512, NEXT, 2)),
                (2, Descriptor::new(addr, len, NEXT, 3)),
                (3, Descriptor::new(st, 1, WRITE, 0)),
            ],
        );
        assert_refused(&mut h, IOERR);
        // And a read into it.
        let hdr = write_header(&h, 4, VIRTIO_BLK_T_IN, 0);
        let st = status_buf(&h, 6);
        h.post_raw(
            4,
            &[
                (4, Descriptor::new(hdr, 16, NEXT, 5)),
                (5, Descriptor::new(addr, len, NEXT | WRITE, 6)),
                (6, Descriptor::new(st, 1, WRITE, 0)),
            ],
        );
        assert_refused(&mut h, IOERR);
    }
    assert_eq!(h.file_range(0, 1024), pattern(0, 1024));
    assert_still_serving(&mut h);
}

#[test]
fn looping_chains_complete_with_length_zero() {
    let mut h = Harness::new(false);
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_OUT, 0);
    let data = Harness::buf_addr(1);
    h.mem.write_slice(&[0x11; 512], GuestAddress(data)).unwrap();
    // header -> data -> header -> ... never ends.
    h.post_raw(
        0,
        &[
            (0, Descriptor::new(hdr, 16, NEXT, 1)),
            (1, Descriptor::new(data, 512, NEXT, 0)),
        ],
    );
    let done = h.kick_and_collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].used_len, 0);
    // A writable status that points back at itself.
    let st = status_buf(&h, 3);
    h.post_raw(
        2,
        &[
            (2, Descriptor::new(hdr, 16, NEXT, 3)),
            (3, Descriptor::new(st, 1, NEXT | WRITE, 3)),
        ],
    );
    assert_skipped(&mut h, st);
    assert_eq!(h.file_range(0, 512), pattern(0, 512), "no data written");
    assert_still_serving(&mut h);
}

#[test]
fn chains_pointing_past_the_table_complete_with_length_zero() {
    let mut h = Harness::new(false);
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_IN, 0);
    h.post_raw(0, &[(0, Descriptor::new(hdr, 16, NEXT, 1000))]);
    let done = h.kick_and_collect();
    assert_eq!(done[0].used_len, 0);
    assert_still_serving(&mut h);
}

/// Writes an indirect table of `entries` at descriptor index `at`'s buffer; returns its address.
fn write_table(h: &Harness, at: u16, entries: &[Descriptor]) -> u64 {
    let table = Harness::buf_addr(at);
    for (i, d) in entries.iter().enumerate() {
        h.mem
            .write_obj(RawDescriptor::from(*d), GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    table
}

#[test]
fn chains_longer_than_seg_max_are_refused() {
    let mut h = Harness::new(false);
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_IN, 0);
    let st = status_buf(&h, 1);
    // Header, 300 one-sector buffers (more than SEG_MAX), status: all in one indirect table.
    let data_base = Harness::buf_addr(2);
    let n = 300u16;
    let mut entries = vec![Descriptor::new(hdr, 16, NEXT, 1)];
    for i in 0..n {
        let addr = data_base + 512 * u64::from(i);
        entries.push(Descriptor::new(addr, 512, NEXT | WRITE, i + 2));
    }
    entries.push(Descriptor::new(st, 1, WRITE, 0));
    let table = write_table(&h, 50, &entries);
    let len = 16 * entries.len() as u32;
    h.post_raw(
        0,
        &[(
            0,
            Descriptor::new(table, len, VRING_DESC_F_INDIRECT as u16, 0),
        )],
    );
    let done = h.kick_and_collect();
    assert_eq!(done[0].used_len, 1);
    assert_eq!(h.driver.read_mem(st, 1)[0], IOERR);
    assert_still_serving(&mut h);
}

#[test]
fn malformed_indirect_tables_complete_with_length_zero() {
    let mut h = Harness::new(false);
    let hdr = write_header(&h, 0, VIRTIO_BLK_T_IN, 0);
    let st = status_buf(&h, 1);
    let entries = [
        Descriptor::new(hdr, 16, NEXT, 1),
        Descriptor::new(st, 1, WRITE, 0),
    ];
    let table = write_table(&h, 50, &entries);
    // A table length that is not a whole number of descriptors.
    h.post_raw(
        0,
        &[(
            0,
            Descriptor::new(table, 20, VRING_DESC_F_INDIRECT as u16, 0),
        )],
    );
    assert_skipped(&mut h, st);
    // A table that loops within itself.
    let looping = [
        Descriptor::new(hdr, 16, NEXT, 1),
        Descriptor::new(st, 1, NEXT | WRITE, 0),
    ];
    let table = write_table(&h, 51, &looping);
    h.post_raw(
        2,
        &[(
            2,
            Descriptor::new(table, 32, VRING_DESC_F_INDIRECT as u16, 0),
        )],
    );
    assert_skipped(&mut h, st);
    assert_still_serving(&mut h);
}

#[test]
fn an_available_index_far_ahead_of_the_device_does_not_spin_it() {
    let mut h = Harness::new(false);
    let avail_ring = {
        let device = crate::devices::bus::lock(&h.block.device);
        let states = crate::devices::virtio::VirtioDevice::queue_states(&*device).unwrap();
        states[0].avail_ring
    };
    let idx_addr = GuestAddress(avail_ring + 2);
    let idx: u16 = h.mem.read_obj(idx_addr).unwrap();
    // More entries than the queue holds: the device must refuse the ring, not loop on it.
    h.mem.write_obj(idx.wrapping_add(1000), idx_addr).unwrap();
    let done = h.kick_and_collect_raw();
    assert_eq!(done, 0, "nothing may be used from an inconsistent ring");
    h.mem.write_obj(idx, idx_addr).unwrap();
    assert_still_serving(&mut h);
}

#[test]
fn failed_disk_io_completes_with_ioerr() {
    let mut h = Harness::new(false);
    // The image shrinks under the device: reads past the new end come up short.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&h.path)
        .unwrap();
    file.set_len(EXPOSED_LEN / 2).unwrap();
    h.post(
        VIRTIO_BLK_T_IN,
        EXPOSED_LEN / SECTOR_SIZE - 8,
        &[Seg::In(4096)],
    );
    assert_refused(&mut h, IOERR);
    assert_still_serving(&mut h);
}
