//! Tests of the virtio-mmio transport's register interface, against a recording device.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET as NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_queue::{Queue, QueueState, QueueT};

use super::mmio::{MmioTransport, MMIO_MAGIC_VALUE};
use super::test_driver::{guest_memory, Driver};
use super::*;
use crate::devices::bus::{lock, BusDevice};

const DEVICE_ID: u32 = 42;
const EXTRA_FEATURE: u64 = 1 << 5;

/// A device that records what the transport does to it.
#[derive(Default)]
struct Recorder {
    activated: Option<(Vec<QueueState>, u64)>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

impl VirtioDevice for Recorder {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[128, 64]
    }
    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | EXTRA_FEATURE
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset.wrapping_add(i as u64) as u8;
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config_writes.push((offset, data.to_vec()));
    }
    fn activate(&mut self, queues: Vec<Queue>, acked_features: u64) -> Result<(), ActivateError> {
        self.activated = Some((queues.iter().map(Queue::state).collect(), acked_features));
        Ok(())
    }
    fn reset(&mut self) {
        self.activated = None;
        self.resets += 1;
    }
    fn queue_states(&self) -> Option<Vec<QueueState>> {
        self.activated.as_ref().map(|(q, _)| q.clone())
    }
}

struct Setup {
    recorder: Arc<Mutex<Recorder>>,
    driver: Driver,
}

fn setup() -> Setup {
    let mem = guest_memory();
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let interrupt = Arc::new(Interrupt::new().unwrap());
    let evts = new_queue_events(2).unwrap();
    let transport = MmioTransport::new(mem.clone(), recorder.clone(), evts, interrupt);
    let driver = Driver::new(mem, Arc::new(Mutex::new(transport)), 2);
    Setup { recorder, driver }
}

#[test]
fn identity_and_feature_registers() {
    let Setup { driver: d, .. } = setup();
    assert_eq!(d.read(reg::VIRTIO_MMIO_MAGIC_VALUE), MMIO_MAGIC_VALUE);
    assert_eq!(d.read(reg::VIRTIO_MMIO_VERSION), 2);
    assert_eq!(d.read(reg::VIRTIO_MMIO_DEVICE_ID), DEVICE_ID);
    assert_ne!(d.read(reg::VIRTIO_MMIO_VENDOR_ID), 0);
    d.write(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_DEVICE_FEATURES),
        EXTRA_FEATURE as u32
    );
    d.write(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_DEVICE_FEATURES),
        1,
        "VERSION_1 is bit 32"
    );
    d.write(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
    assert_eq!(d.read(reg::VIRTIO_MMIO_DEVICE_FEATURES), 0);
    for (q, max) in [(0, 128), (1, 64), (2, 0)] {
        d.write(reg::VIRTIO_MMIO_QUEUE_SEL, q);
        assert_eq!(d.read(reg::VIRTIO_MMIO_QUEUE_NUM_MAX), max);
    }
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_SHM_LEN_LOW),
        u32::MAX,
        "no shared memory regions"
    );
    assert_eq!(d.read(reg::VIRTIO_MMIO_CONFIG_GENERATION), 0);
}

#[test]
fn bring_up_activates_with_programmed_queues() {
    let Setup {
        recorder,
        driver: d,
    } = setup();
    assert_eq!(d.bring_up(), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    let rec = lock(&recorder);
    let (queues, features) = rec.activated.as_ref().expect("activated");
    assert_eq!(*features, VIRTIO_F_VERSION_1);
    assert_eq!(queues.len(), 2);
    assert!(queues
        .iter()
        .all(|q| q.ready && q.size == 64 && q.desc_table != 0));
    assert_ne!(queues[0].desc_table, queues[1].desc_table);
}

#[test]
fn features_must_include_version_1_and_nothing_unoffered() {
    let Setup { driver: d, .. } = setup();
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER);
    // Legacy-only driver: no VERSION_1.
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, EXTRA_FEATURE as u32);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER | FEATURES_OK);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_STATUS),
        ACK | DRIVER,
        "FEATURES_OK must not stick"
    );
    // VERSION_1 plus a feature never offered.
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, 1 << 6);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, 1);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER | FEATURES_OK);
    assert_eq!(d.read(reg::VIRTIO_MMIO_STATUS), ACK | DRIVER);
    // Fixed: accepted.
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, 0);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER | FEATURES_OK);
    assert_eq!(d.read(reg::VIRTIO_MMIO_STATUS), ACK | DRIVER | FEATURES_OK);
    // Features are frozen after FEATURES_OK.
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, EXTRA_FEATURE as u32);
    d.setup_queue(0);
    d.setup_queue(1);
    d.write(
        reg::VIRTIO_MMIO_STATUS,
        ACK | DRIVER | FEATURES_OK | DRIVER_OK,
    );
    assert_eq!(lock(&d.transport).save().acked_features, VIRTIO_F_VERSION_1);
}

#[test]
fn driver_ok_with_unusable_queue_needs_reset() {
    let Setup {
        recorder,
        driver: d,
    } = setup();
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, 1);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER | FEATURES_OK);
    d.setup_queue(0);
    // Queue 1 is never made ready.
    d.write(
        reg::VIRTIO_MMIO_STATUS,
        ACK | DRIVER | FEATURES_OK | DRIVER_OK,
    );
    let status = d.read(reg::VIRTIO_MMIO_STATUS);
    assert_eq!(status & DRIVER_OK, 0);
    assert_ne!(status & NEEDS_RESET, 0);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_INTERRUPT_STATUS),
        INTERRUPT_CONFIG_CHANGE
    );
    assert!(lock(&recorder).activated.is_none());

    // A queue outside guest memory is not valid either.
    d.write(reg::VIRTIO_MMIO_STATUS, 0);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    d.write(reg::VIRTIO_MMIO_DRIVER_FEATURES, 1);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK | DRIVER | FEATURES_OK);
    d.setup_queue(0);
    d.setup_queue(1);
    d.write(reg::VIRTIO_MMIO_QUEUE_SEL, 1);
    d.write(reg::VIRTIO_MMIO_QUEUE_USED_HIGH, 0x10);
    d.write(
        reg::VIRTIO_MMIO_STATUS,
        ACK | DRIVER | FEATURES_OK | DRIVER_OK,
    );
    assert_ne!(d.read(reg::VIRTIO_MMIO_STATUS) & NEEDS_RESET, 0);
    assert!(lock(&recorder).activated.is_none());
}

#[test]
fn queue_registers_only_writable_between_features_ok_and_driver_ok() {
    let Setup { driver: d, .. } = setup();
    d.write(reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    d.write(reg::VIRTIO_MMIO_QUEUE_READY, 1);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_QUEUE_READY),
        0,
        "before FEATURES_OK"
    );
    d.bring_up();
    d.write(reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    d.write(reg::VIRTIO_MMIO_QUEUE_READY, 0);
    d.write(reg::VIRTIO_MMIO_QUEUE_DESC_LOW, 0x8000);
    assert_eq!(d.read(reg::VIRTIO_MMIO_QUEUE_READY), 1, "after DRIVER_OK");
    assert_eq!(lock(&d.transport).queues()[0].desc_table(), 0x1000);
}

#[test]
fn status_bits_cannot_be_cleared_except_by_reset() {
    let Setup {
        recorder,
        driver: d,
    } = setup();
    d.bring_up();
    let full = d.read(reg::VIRTIO_MMIO_STATUS);
    d.write(reg::VIRTIO_MMIO_STATUS, ACK);
    assert_eq!(d.read(reg::VIRTIO_MMIO_STATUS), full);
    lock(&d.transport)
        .interrupt()
        .trigger(INTERRUPT_USED_BUFFER);
    d.write(reg::VIRTIO_MMIO_STATUS, 0);
    assert_eq!(d.read(reg::VIRTIO_MMIO_STATUS), 0);
    assert_eq!(d.read(reg::VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    let rec = lock(&recorder);
    assert!(rec.activated.is_none());
    // bring_up itself starts with a reset.
    assert_eq!(rec.resets, 2);
    drop(rec);
    d.write(reg::VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_QUEUE_READY),
        0,
        "queues are reset too"
    );
    // And the device can be brought up again.
    assert_eq!(d.bring_up() & DRIVER_OK, DRIVER_OK);
}

#[test]
fn interrupt_status_and_ack() {
    let Setup { driver: d, .. } = setup();
    let t = lock(&d.transport);
    let interrupt = t.interrupt().clone();
    drop(t);
    interrupt.trigger(INTERRUPT_USED_BUFFER);
    interrupt.trigger(INTERRUPT_CONFIG_CHANGE);
    assert_eq!(lock(&d.transport).interrupt_event().read().unwrap(), 2);
    assert_eq!(d.read(reg::VIRTIO_MMIO_INTERRUPT_STATUS), 3);
    d.write(reg::VIRTIO_MMIO_INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
    assert_eq!(
        d.read(reg::VIRTIO_MMIO_INTERRUPT_STATUS),
        INTERRUPT_CONFIG_CHANGE
    );
}

#[test]
fn queue_notify_signals_the_queue_eventfd() {
    let Setup { driver: d, .. } = setup();
    d.write(reg::VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    d.write(reg::VIRTIO_MMIO_QUEUE_NOTIFY, 9);
    let t = lock(&d.transport);
    assert!(t.queue_events()[0].read().is_err(), "queue 0 not signalled");
    assert_eq!(t.queue_events()[1].read().unwrap(), 1);
}

#[test]
fn odd_accesses_are_ignored_and_config_is_forwarded() {
    let Setup {
        recorder,
        driver: d,
    } = setup();
    let mut t = lock(&d.transport);
    // Register reads of the wrong size or alignment read as zeros.
    let mut two = [0xffu8; 2];
    t.read(0, &mut two);
    assert_eq!(two, [0, 0]);
    let mut four = [0xffu8; 4];
    t.read(2, &mut four);
    assert_eq!(four, [0; 4]);
    let mut eight = [0xffu8; 8];
    t.read(0, &mut eight);
    assert_eq!(eight, [0; 8]);
    // Misaligned or short writes do nothing.
    t.write(u64::from(reg::VIRTIO_MMIO_STATUS) + 1, &[1, 0, 0, 0]);
    t.write(u64::from(reg::VIRTIO_MMIO_STATUS), &[1]);
    assert_eq!(t.status(), 0);
    // Config space at 0x100, any size, any offset.
    let mut cfg = [0u8; 3];
    t.read(0x105, &mut cfg);
    assert_eq!(cfg, [5, 6, 7]);
    t.read(u64::MAX - 1, &mut cfg);
    t.write(0x102, &[9, 9]);
    t.write(u64::MAX, &[1]);
    drop(t);
    let rec = lock(&recorder);
    assert_eq!(rec.config_writes[0], (2, vec![9, 9]));
    assert_eq!(rec.config_writes.len(), 2);
}

#[test]
fn save_and_restore_round_trip() {
    let Setup { driver: d, .. } = setup();
    d.bring_up();
    lock(&d.transport)
        .interrupt()
        .trigger(INTERRUPT_USED_BUFFER);
    let state = lock(&d.transport).save();
    assert_eq!(state.queues.len(), 2);

    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let restored = MmioTransport::restore(
        d.mem.clone(),
        recorder.clone(),
        new_queue_events(2).unwrap(),
        Arc::new(Interrupt::new().unwrap()),
        &state,
    )
    .unwrap();
    assert_eq!(restored.save(), state);
    assert_eq!(restored.status(), state.status);
    let rec = lock(&recorder);
    let (queues, features) = rec.activated.as_ref().expect("re-activated");
    assert_eq!(*features, VIRTIO_F_VERSION_1);
    assert_eq!(
        queues
            .iter()
            .map(|&q| persist::QueueSnapshot::from(q))
            .collect::<Vec<_>>(),
        state.queues
    );
    drop(rec);

    // Inconsistent states are refused.
    let restore = |s: &persist::MmioState| {
        MmioTransport::restore(
            d.mem.clone(),
            Arc::new(Mutex::new(Recorder::default())),
            new_queue_events(2).unwrap(),
            Arc::new(Interrupt::new().unwrap()),
            s,
        )
    };
    let mut bad = state.clone();
    bad.queues.pop();
    assert!(restore(&bad).is_err());
    let mut bad = state.clone();
    bad.queues[0].size = 3;
    assert!(restore(&bad).is_err());
    let mut bad = state.clone();
    bad.queues[1].used_ring = (super::test_driver::MEM_SIZE as u64) & !3;
    assert!(restore(&bad).is_err(), "ring outside guest memory");
    let mut bad = state.clone();
    bad.acked_features |= 1 << 40;
    assert!(restore(&bad).is_err());
}
