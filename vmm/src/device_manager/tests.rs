//! Tests of the device manager: slot and IRQ allocation, kernel command line entries, the
//! snapshot's device list (round trip, refusals) and reset in place, with real vsock devices
//! driven through their MMIO registers by the test guest driver. Only the KVM ioctls are left
//! out (this host's KVM cannot run them in unit tests); `Wiring` records what they would get.

use std::path::PathBuf;

use linux_loader::cmdline::Cmdline;
use virtio_bindings::virtio_mmio as reg;

use super::mmio::{queue_notify_address, AttachError, MmioDeviceManager, VirtioResetError};
use super::persist::{
    DeviceKind, DeviceState, DevicesRestoreError, LayoutMismatch, RestoreResources,
    VirtioDeviceState,
};
use super::slots::{check_slots, LayoutError, MmioSlot, SlotAllocator, MMIO_SLOT_COUNT};
use super::virtio_device::ManagedVirtioDevice;
use crate::arch::x86_64::layout::{
    CMDLINE_MAX_SIZE, IRQ_MAX, KVM_TSS_ADDRESS, MMIO_GAP_END, MMIO_GAP_START, VIRTIO_IRQ_BASE,
    VIRTIO_MMIO_SIZE,
};
use crate::devices::bus::lock;
use crate::devices::virtio::mmio::{MMIO_MAGIC_VALUE, MMIO_QUEUE_NOTIFY_OFFSET};
use crate::devices::virtio::test_driver::{guest_memory, Buf, Driver};
use crate::devices::virtio::vsock::{
    new_vsock, KeptConnection, Vsock, EVENT_QUEUE, NUM_QUEUES, VSOCK_DEVICE_ID,
};
use crate::devices::virtio::GuestMemory;
use crate::snapshot::format;

const GUEST_CID: u64 = 3;
/// The IOAPIC's register window: no virtio slot may reach it.
const IOAPIC_START: u64 = 0xfec0_0000;

/// What the KVM step would have been given for one device.
#[derive(Debug, PartialEq, Eq)]
struct Wired {
    slot: MmioSlot,
    queue_events: usize,
}

#[derive(Default)]
struct Wiring(Vec<Wired>);

impl Wiring {
    fn record(
        &mut self,
    ) -> impl FnMut(MmioSlot, &dyn ManagedVirtioDevice) -> Result<(), AttachError> + '_ {
        |slot, device| {
            let queue_events = lock(device.transport()).queue_events().len();
            self.0.push(Wired { slot, queue_events });
            Ok(())
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    mem: GuestMemory,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            mem: guest_memory(),
        }
    }

    fn uds(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn vsock(&self, name: &str) -> Box<Vsock> {
        Box::new(new_vsock(self.mem.clone(), GUEST_CID, &self.uds(name)).unwrap())
    }

    fn resources(&self, name: &str) -> RestoreResources {
        RestoreResources {
            mem: self.mem.clone(),
            vsock_uds: Some(self.uds(name)),
            disks: Default::default(),
        }
    }

    /// A manager with one vsock device attached for boot, its driver up with event buffers.
    fn booted(&self) -> (MmioDeviceManager, Driver) {
        let mut manager = MmioDeviceManager::new();
        let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).unwrap();
        let mut wiring = Wiring::default();
        manager
            .attach_virtio_with(self.vsock("boot.sock"), &mut cmdline, wiring.record())
            .unwrap();
        let mut driver = Driver::new(
            self.mem.clone(),
            manager.devices()[0].device.transport().clone(),
            NUM_QUEUES,
        );
        assert_ne!(driver.bring_up() & 0x4, 0, "DRIVER_OK stuck");
        for _ in 0..2 {
            driver.add_chain(EVENT_QUEUE, &[Buf::In(4)]);
        }
        (manager, driver)
    }
}

fn vsock_entry(states: &[DeviceState]) -> VirtioDeviceState {
    states[0].device.clone()
}

#[test]
fn slots_are_consecutive_from_the_gap_start_and_run_out_with_the_ioapic_pins() {
    let mut slots = SlotAllocator::new();
    let first = slots.allocate().unwrap();
    // Where vsock has always been: snapshots and guests see the same address and IRQ.
    assert_eq!(
        first,
        MmioSlot {
            addr: MMIO_GAP_START,
            irq: VIRTIO_IRQ_BASE
        }
    );
    let mut last = first;
    for n in 1..MMIO_SLOT_COUNT {
        let slot = slots.allocate().unwrap();
        assert_eq!(slot.addr, last.addr + VIRTIO_MMIO_SIZE);
        assert_eq!(slot.irq, last.irq + 1);
        assert_eq!(slot.index(), Ok(n));
        last = slot;
    }
    assert_eq!(last.irq, IRQ_MAX);
    let end = last.addr + VIRTIO_MMIO_SIZE;
    // Inside the gap, below the IOAPIC (and so below the LAPIC and KVM's TSS pages).
    assert!(end <= IOAPIC_START);
    assert!(IOAPIC_START < KVM_TSS_ADDRESS as u64 && IOAPIC_START < MMIO_GAP_END);
    assert_eq!(slots.allocate(), Err(LayoutError::Exhausted));
}

#[test]
fn claimed_slots_are_skipped_and_cannot_be_claimed_twice() {
    let mut slots = SlotAllocator::new();
    let [s0, s1, s2, s3] = [0, 1, 2, 3].map(|n| MmioSlot::nth(n).unwrap());
    slots.claim(s0).unwrap();
    slots.claim(s2).unwrap();
    assert_eq!(slots.allocate(), Ok(s1));
    assert_eq!(slots.allocate(), Ok(s3));
    assert_eq!(slots.claim(s2), Err(LayoutError::Duplicate(s2)));
    assert_eq!(check_slots([s0, s1, s0]), Err(LayoutError::Duplicate(s0)));
    assert_eq!(check_slots([s3, s0]), Ok(()));
}

#[test]
fn slots_outside_the_layout_are_refused() {
    let good = MmioSlot::nth(1).unwrap();
    let bad = [
        MmioSlot {
            addr: MMIO_GAP_START - VIRTIO_MMIO_SIZE,
            irq: VIRTIO_IRQ_BASE,
        },
        MmioSlot {
            addr: good.addr + 8,
            irq: good.irq,
        },
        MmioSlot {
            addr: good.addr,
            irq: good.irq + 1,
        },
        MmioSlot {
            addr: MMIO_GAP_START + u64::from(MMIO_SLOT_COUNT) * VIRTIO_MMIO_SIZE,
            irq: IRQ_MAX + 1,
        },
        MmioSlot {
            addr: u64::MAX,
            irq: VIRTIO_IRQ_BASE,
        },
    ];
    for slot in bad {
        assert_eq!(slot.index(), Err(LayoutError::NotASlot(slot)), "{slot}");
        assert_eq!(
            SlotAllocator::new().claim(slot),
            Err(LayoutError::NotASlot(slot))
        );
    }
    assert_eq!(MmioSlot::nth(MMIO_SLOT_COUNT), None);
}

#[test]
fn attaching_gives_each_device_a_slot_a_bus_window_and_a_cmdline_entry() {
    let setup = Setup::new();
    let mut manager = MmioDeviceManager::new();
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).unwrap();
    cmdline.insert_str("console=ttyS0").unwrap();
    let mut wiring = Wiring::default();
    let a = manager
        .attach_virtio_with(setup.vsock("a.sock"), &mut cmdline, wiring.record())
        .unwrap();
    let b = manager
        .attach_virtio_with(setup.vsock("b.sock"), &mut cmdline, wiring.record())
        .unwrap();
    assert_eq!(
        (a, b),
        (MmioSlot::nth(0).unwrap(), MmioSlot::nth(1).unwrap())
    );
    assert_eq!(
        cmdline.as_cstring().unwrap().to_str().unwrap(),
        "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
    );
    assert_eq!(
        wiring.0,
        vec![
            Wired {
                slot: a,
                queue_events: NUM_QUEUES
            },
            Wired {
                slot: b,
                queue_events: NUM_QUEUES
            }
        ]
    );
    assert_eq!(
        queue_notify_address(b),
        0xd000_1000 + MMIO_QUEUE_NOTIFY_OFFSET
    );
    // In attach order, each transport answering at its own window.
    let slots: Vec<_> = manager.devices().iter().map(|d| d.slot).collect();
    assert_eq!(slots, vec![a, b]);
    for (slot, attached) in [a, b].iter().zip(manager.devices()) {
        let mut word = [0u8; 4];
        assert!(manager.bus().read(slot.addr, &mut word));
        assert_eq!(u32::from_le_bytes(word), MMIO_MAGIC_VALUE);
        assert!(manager
            .bus()
            .read(slot.addr + u64::from(reg::VIRTIO_MMIO_DEVICE_ID), &mut word));
        assert_eq!(u32::from_le_bytes(word), VSOCK_DEVICE_ID);
        assert_eq!(attached.device.kind(), DeviceKind::Vsock);
    }
    assert!(!manager.bus().read(b.addr + VIRTIO_MMIO_SIZE, &mut [0u8; 4]));
}

#[test]
fn a_full_cmdline_refuses_the_device_and_attaches_nothing() {
    let setup = Setup::new();
    let mut manager = MmioDeviceManager::new();
    let mut cmdline = Cmdline::new(16).unwrap();
    let result = manager.attach_virtio_with(
        setup.vsock("a.sock"),
        &mut cmdline,
        Wiring::default().record(),
    );
    assert!(matches!(result, Err(AttachError::Cmdline { .. })));
    assert!(manager.devices().is_empty());
}

#[test]
fn the_device_list_round_trips_through_a_state_file_into_the_same_layout() {
    let setup = Setup::new();
    let (manager, _driver) = setup.booted();
    let saved = manager.save();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].slot, MmioSlot::nth(0).unwrap());
    let VirtioDeviceState::Vsock(vsock) = &saved[0].device else {
        panic!("the first device is vsock");
    };
    assert_eq!(vsock.guest_cid, GUEST_CID);
    assert_ne!(vsock.transport.status & 0x4, 0, "saved while active");

    let decoded: Vec<DeviceState> = format::decode(&format::encode(&saved).unwrap()).unwrap();
    assert_eq!(decoded, saved);

    let mut restored = MmioDeviceManager::new();
    let mut wiring = Wiring::default();
    restored
        .restore_devices_with(&decoded, setup.resources("restored.sock"), wiring.record())
        .unwrap();
    assert_eq!(
        wiring.0,
        vec![Wired {
            slot: saved[0].slot,
            queue_events: NUM_QUEUES
        }]
    );
    // Before `after_restore` nothing has moved: the restored list saves exactly as saved.
    assert_eq!(restored.save(), saved);
    assert!(restored.check_same_layout(&saved).is_ok());
    let mut word = [0u8; 4];
    assert!(restored.bus().read(saved[0].slot.addr, &mut word));
    assert_eq!(u32::from_le_bytes(word), MMIO_MAGIC_VALUE);
}

#[test]
fn restore_refuses_lists_it_cannot_rebuild_as_saved() {
    let setup = Setup::new();
    let (manager, _driver) = setup.booted();
    let vsock = vsock_entry(&manager.save());
    let at = |n: u32| DeviceState {
        slot: MmioSlot::nth(n).unwrap(),
        device: vsock.clone(),
    };
    let restore = |states: &[DeviceState]| {
        MmioDeviceManager::new().restore_devices_with(
            states,
            setup.resources("r.sock"),
            Wiring::default().record(),
        )
    };
    let s0 = MmioSlot::nth(0).unwrap();
    assert!(matches!(
        restore(&[at(0), at(0)]),
        Err(DevicesRestoreError::Layout(LayoutError::Duplicate(s))) if s == s0
    ));
    let stray = MmioSlot {
        addr: s0.addr,
        irq: s0.irq + 3,
    };
    assert!(matches!(
        restore(&[DeviceState { slot: stray, device: vsock.clone() }]),
        Err(DevicesRestoreError::Layout(LayoutError::NotASlot(s))) if s == stray
    ));
    assert!(matches!(
        restore(&[]),
        Err(DevicesRestoreError::Missing(DeviceKind::Vsock))
    ));
    // One vsock socket: a second vsock device has nothing to be built from.
    assert!(matches!(
        restore(&[at(0), at(1)]),
        Err(DevicesRestoreError::CannotBuild {
            index: 1,
            kind: DeviceKind::Vsock
        })
    ));
    let mut broken = at(0);
    let VirtioDeviceState::Vsock(state) = &mut broken.device else {
        panic!("the first device is vsock");
    };
    state.transport.queues.pop();
    assert!(matches!(
        restore(&[broken]),
        Err(DevicesRestoreError::Device {
            index: 0,
            kind: DeviceKind::Vsock,
            ..
        })
    ));
}

#[test]
fn reset_refuses_a_list_of_another_layout_and_changes_nothing() {
    let setup = Setup::new();
    let (mut manager, _driver) = setup.booted();
    let saved = manager.save();
    let moved = vec![DeviceState {
        slot: MmioSlot::nth(1).unwrap(),
        device: saved[0].device.clone(),
    }];
    assert!(matches!(
        manager.reset_to(&moved),
        Err(VirtioResetError::Layout(LayoutMismatch::Entry {
            index: 0,
            ..
        }))
    ));
    assert_eq!(
        manager.check_same_layout(&[]),
        Err(LayoutMismatch::Count { live: 1, saved: 0 })
    );
    let doubled = [saved.clone(), moved].concat();
    assert_eq!(
        manager.check_same_layout(&doubled),
        Err(LayoutMismatch::Count { live: 1, saved: 2 })
    );
    assert_eq!(manager.save(), saved, "a refused reset touches no device");
}

#[test]
fn reset_puts_the_devices_back_and_after_restore_resumes_the_kept_link() {
    let setup = Setup::new();
    let (mut manager, mut driver) = setup.booted();
    let mut saved = manager.save();
    // As if guest-init's link had been idle when the state was taken.
    let VirtioDeviceState::Vsock(vsock) = &mut saved[0].device else {
        panic!("the first device is vsock");
    };
    vsock.connections.kept = Some(KeptConnection {
        host_port: 1025,
        guest_port: 50_000,
        fwd_cnt: 0,
        last_fwd_cnt_sent: 0,
        rx_cnt: 0,
        peer_buf_alloc: 4096,
        peer_fwd_cnt: 0,
        credit_update_owed: false,
    });
    // The driver resets the device: it is no longer active.
    driver.write(reg::VIRTIO_MMIO_STATUS, 0);
    assert_ne!(manager.save(), saved);

    manager.reset_to(&saved).unwrap();
    assert!(
        manager.take_guest_link().is_none(),
        "the reset itself resumes nothing: the vCPUs are not back yet"
    );
    manager.after_restore();
    assert!(manager.take_guest_link().is_some(), "the kept link, once");
    assert!(manager.take_guest_link().is_none());
    assert!(
        driver.take_used(EVENT_QUEUE).is_empty(),
        "no device-wide transport reset"
    );
}
