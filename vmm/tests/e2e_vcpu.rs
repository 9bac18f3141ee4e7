//! End-to-end tests of the vCPU thread on real KVM, with a few bytes of hand-written real-mode
//! guest code instead of a kernel: they pin down exactly when an instruction is complete.
//!
//! Like the other end-to-end tests they need hardware KVM (natively, or in the lab via
//! `cargo xtask ci`).
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::e2e_available;
use kvm_bindings::kvm_regs;
use paddock_vmm::devices::bus::{Bus, BusDevice};
use paddock_vmm::vstate::memory::GuestMemory;
use paddock_vmm::vstate::vcpu::{spawn_vcpu, ExitSignal, VcpuCommand};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};

/// Where the MMIO device sits: outside the 64 KiB of guest RAM, so reads exit to the VMM.
const MMIO_SEGMENT: u16 = 0xd000;
const MMIO_BASE: u64 = (MMIO_SEGMENT as u64) << 4;
/// What the MMIO device returns.
const MMIO_VALUE: u8 = 0x5a;
/// Ports the guest code reports on: which code path ran, and with what in AL.
const PORT_FIRST_PATH: u16 = 0x81;
const PORT_SECOND_PATH: u16 = 0x80;

/// First path (at 0x1000): read the MMIO device into EAX, report AL on port 0x81, spin.
const FIRST_PATH: (u64, &[u8]) = (
    0x1000,
    &[
        0x66, 0xa1, 0x00, 0x00, // mov eax, [ds:0]   (ds = the MMIO segment)
        0xe6, 0x81, //             out 0x81, al
        0xeb, 0xfe, //             jmp $
    ],
);
/// Second path (at 0x1010): report 0x42 on port 0x80, spin.
const SECOND_PATH: (u64, &[u8]) = (
    0x1010,
    &[
        0xb0, 0x42, // mov al, 0x42
        0xe6, 0x80, // out 0x80, al
        0xeb, 0xfe, // jmp $
    ],
);

/// An MMIO device whose reads stop the vCPU thread in the middle of the exit until released.
struct GatedMmio {
    entered: Sender<()>,
    release: Receiver<()>,
}

impl BusDevice for GatedMmio {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        let _ = self.entered.send(());
        let _ = self.release.recv_timeout(Duration::from_secs(30));
        data.fill(MMIO_VALUE);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// A port device that reports every byte written as (port, value).
struct Reporter {
    base: u16,
    seen: Sender<(u16, u8)>,
}

impl BusDevice for Reporter {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let _ = self.seen.send((
            self.base + offset as u16,
            data.first().copied().unwrap_or(0),
        ));
    }
}

/// A vCPU paused right after an MMIO read exit has completed that read (so a snapshot saves a
/// consistent state), and when given other registers (as a reset does) runs from those. KVM stores the value read and advances RIP only when
/// `KVM_RUN` is entered again: unless the pause completes the read first, that completion
/// lands on the new registers and the vCPU resumes in the old code path.
#[test]
fn a_vcpu_paused_in_an_mmio_read_runs_the_registers_it_is_given() {
    if !e2e_available() {
        return;
    }
    let kvm = paddock_vmm::kvm::open_kvm().expect("KVM");
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10000)]).expect("guest RAM");
    for (at, code) in [FIRST_PATH, SECOND_PATH] {
        mem.write_slice(code, GuestAddress(at)).expect("guest code");
    }
    let vm = paddock_vmm::vstate::vm::create_vm(&kvm, &mem).expect("VM");
    let fd = vm.create_vcpu(0).expect("vCPU");
    let mut sregs = fd.get_sregs().expect("sregs");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    sregs.ds.base = MMIO_BASE;
    sregs.ds.selector = MMIO_SEGMENT;
    fd.set_sregs(&sregs).expect("sregs");
    let at = |rip| kvm_regs {
        rip,
        rflags: 0x2,
        ..Default::default()
    };
    fd.set_regs(&at(FIRST_PATH.0)).expect("regs");

    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let (seen_tx, seen) = channel();
    let mut mmio = Bus::new();
    let gated = GatedMmio {
        entered: entered_tx,
        release: release_rx,
    };
    mmio.insert(MMIO_BASE, 0x1000, Arc::new(Mutex::new(gated)))
        .expect("MMIO device");
    let mut pio = Bus::new();
    let reporter = Reporter {
        base: PORT_SECOND_PATH,
        seen: seen_tx,
    };
    pio.insert(
        u64::from(PORT_SECOND_PATH),
        2,
        Arc::new(Mutex::new(reporter)),
    )
    .expect("port device");
    let exit = ExitSignal::new().expect("exit signal");
    let vcpu = spawn_vcpu(fd, 0, pio, mmio, exit, None).expect("vCPU thread");
    vcpu.send(VcpuCommand::Resume);

    // Pause the vCPU while its thread is inside the MMIO read exit.
    entered
        .recv_timeout(Duration::from_secs(30))
        .expect("the guest reached its MMIO read");
    vcpu.send(VcpuCommand::Pause);
    release.send(()).expect("release the MMIO read");
    vcpu.paused
        .recv_timeout(Duration::from_secs(30))
        .expect("the vCPU paused");

    // Paused, its state is already complete, as a snapshot must save it: the value is in
    // EAX and RIP is past the read.
    let (done, saved) = channel();
    vcpu.send(VcpuCommand::With(Box::new(move |fd| {
        let _ = done.send(fd.get_regs());
    })));
    let regs = saved
        .recv_timeout(Duration::from_secs(30))
        .expect("the vCPU thread answered")
        .expect("get the registers");
    assert_eq!(
        (regs.rip, regs.rax & 0xff),
        (FIRST_PATH.0 + 4, u64::from(MMIO_VALUE)),
        "a paused vCPU's MMIO read is complete (RIP past it, the value in EAX)"
    );

    // Give it the second path's registers, as a reset loads a snapshot's, and let it run.
    let (done, replaced) = channel();
    vcpu.send(VcpuCommand::With(Box::new(move |fd| {
        let _ = done.send(fd.set_regs(&at(SECOND_PATH.0)));
    })));
    replaced
        .recv_timeout(Duration::from_secs(30))
        .expect("the vCPU thread answered")
        .expect("set the new registers");
    vcpu.send(VcpuCommand::Resume);

    let report = seen
        .recv_timeout(Duration::from_secs(30))
        .expect("the guest reported on a port");
    assert_eq!(
        report,
        (PORT_SECOND_PATH, 0x42),
        "the vCPU must run the registers it was given; a report on port {PORT_FIRST_PATH:#x} \
         means the old MMIO read was completed onto them (RIP advanced past it)"
    );
    drop(vcpu);
}
