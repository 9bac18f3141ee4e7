//! Snapshot state of the block device: save and restore, restore refusals, and reset in place.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use std::fs::OpenOptions;

use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use vm_memory::{Bytes, GuestAddress};

use super::test_harness::*;
use super::*;
use crate::devices::bus::lock;
use crate::devices::virtio::persist::MmioRestoreError;
use crate::devices::virtio::test_driver::MEM_SIZE;
use crate::devices::virtio::VirtioDevice;

const OK: u8 = VIRTIO_BLK_S_OK as u8;

/// Restores `state` into a new device on the same guest memory and file, and points the
/// harness (driver and event loop) at it.
fn restore_into(h: Harness, state: &BlockState) -> Harness {
    let file = open_image(&h.path, state.read_only);
    let block = Block::restore(h.mem.clone(), file, state).unwrap();
    let mut driver = h.driver.clone();
    driver.transport = block.transport.clone();
    Harness::around(h.dir, h.path, block, driver, h.mem)
}

fn queue_positions(block: &Block) -> (u16, u16) {
    let states = lock(&block.device).queue_states().expect("device active");
    (states[0].next_avail, states[0].next_used)
}

#[test]
fn save_and_restore_keep_the_queue_going() {
    let mut h = Harness::new(false);
    for i in 0..3 {
        assert_eq!(h.request(VIRTIO_BLK_T_IN, i, &[Seg::In(512)]).status, OK);
    }
    let state = h.block.save();
    assert_eq!(state.exposed_len, EXPOSED_LEN);
    assert!(!state.read_only);
    assert_eq!(state.identity, identity(&h.path, false));
    assert_eq!(state.transport.queues[0].next_avail, 3);

    // Through the serialized form, as a snapshot would carry it.
    let json = serde_json::to_string(&state).unwrap();
    let state: BlockState = serde_json::from_str(&json).unwrap();
    let mut h = restore_into(h, &state);
    assert!(lock(&h.block.device).is_activated());
    assert_eq!(
        h.block.save(),
        state,
        "a restored device saves what it was restored from"
    );
    assert_eq!(queue_positions(&h.block), (3, 3));

    let data = vec![0x42; 1024];
    let done = h.request(VIRTIO_BLK_T_OUT, 20, &[Seg::Out(data.clone())]);
    assert_eq!(done.status, OK);
    let done = h.request(VIRTIO_BLK_T_IN, 20, &[Seg::In(1024)]);
    assert_eq!(done.data, data);
    assert_eq!(queue_positions(&h.block), (5, 5));
}

#[test]
fn a_request_pending_at_the_snapshot_is_served_after_restore() {
    let mut h = Harness::new(true);
    // Made available but never kicked (the kick would have been lost with the old eventfd).
    h.post(VIRTIO_BLK_T_IN, 9, &[Seg::In(512)]);
    let state = h.block.save();
    let mut h = restore_into(h, &state);
    h.pump();
    let done = h.driver.take_used(REQUEST_QUEUE);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].len, 513);
    assert_eq!(
        h.driver.read_written(&done[0])[..512],
        pattern(9 * 512, 512)
    );
}

#[test]
fn restore_refuses_inconsistent_states_and_short_files() {
    let h = Harness::new(true);
    let state = h.block.save();
    let restore =
        |state: &BlockState| Block::restore(h.mem.clone(), open_image(&h.path, true), state).err();

    let mut two_queues = state.clone();
    two_queues
        .transport
        .queues
        .push(two_queues.transport.queues[0]);
    assert!(matches!(
        restore(&two_queues),
        Some(BlockRestoreError::Transport(MmioRestoreError::QueueCount {
            expected: 1,
            got: 2
        }))
    ));

    let mut bigger = state.clone();
    bigger.transport.queues[0].max_size = 1024;
    assert!(matches!(
        restore(&bigger),
        Some(BlockRestoreError::Transport(
            MmioRestoreError::InvalidQueue { index: 0, .. }
        ))
    ));

    let mut odd_size = state.clone();
    odd_size.transport.queues[0].size = 48;
    assert!(matches!(
        restore(&odd_size),
        Some(BlockRestoreError::Transport(
            MmioRestoreError::InvalidQueue { index: 0, .. }
        ))
    ));

    let mut unaligned = state.clone();
    unaligned.exposed_len += 1;
    assert!(matches!(
        restore(&unaligned),
        Some(BlockRestoreError::Device(BlockError::ExposedLength(_)))
    ));

    // The backing file shrank below what the guest was shown.
    let file = OpenOptions::new().write(true).open(&h.path).unwrap();
    file.set_len(EXPOSED_LEN - 512).unwrap();
    assert!(matches!(
        restore(&state),
        Some(BlockRestoreError::Device(
            BlockError::BackingTooSmall { .. }
        ))
    ));
}

#[test]
fn reset_to_returns_to_the_saved_queue_positions() {
    let mut h = Harness::new(false);
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[Seg::In(512)]).status, OK);
    let state = h.block.save();
    let mut memory = vec![0u8; MEM_SIZE];
    h.mem.read_slice(&mut memory, GuestAddress(0)).unwrap();
    let driver = h.driver.clone();

    for i in 0..5 {
        assert_eq!(h.request(VIRTIO_BLK_T_IN, i, &[Seg::In(512)]).status, OK);
    }
    assert_eq!(queue_positions(&h.block), (6, 6));

    // The guest goes back to the snapshot: its memory, its driver's view, and the device.
    h.mem.write_slice(&memory, GuestAddress(0)).unwrap();
    h.driver = driver;
    h.block.reset_to(&h.mem, &state).unwrap();
    assert_eq!(h.block.save(), state);
    assert_eq!(queue_positions(&h.block), (1, 1));

    // The ring carries on from there (the driver checks every used head is one it posted).
    for i in 0..3 {
        let done = h.request(VIRTIO_BLK_T_IN, 40 + i, &[Seg::In(512)]);
        assert_eq!(done.status, OK);
        assert_eq!(done.data, pattern((40 + i) * 512, 512));
    }
    assert_eq!(queue_positions(&h.block), (4, 4));
}

#[test]
fn reset_to_refuses_a_different_disk_and_keeps_serving() {
    let mut h = Harness::new(true);
    let state = h.block.save();
    let mut other = state.clone();
    other.identity.digest = Some([8; 32]);
    assert!(matches!(
        h.block.reset_to(&h.mem, &other),
        Err(BlockResetError::DifferentDisk(DiskMismatch::Identity))
    ));
    let mut other = state.clone();
    other.exposed_len -= 512;
    assert!(matches!(
        h.block.reset_to(&h.mem, &other),
        Err(BlockResetError::DifferentDisk(DiskMismatch::ExposedLength))
    ));
    let mut other = state.clone();
    other.read_only = false;
    assert!(matches!(
        h.block.reset_to(&h.mem, &other),
        Err(BlockResetError::DifferentDisk(DiskMismatch::ReadOnly))
    ));
    assert!(lock(&h.block.device).is_activated());
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 1, &[Seg::In(512)]).status, OK);
}
