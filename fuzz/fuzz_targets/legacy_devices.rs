//! The port-I/O devices every VM has, as a hostile guest drives them: reads and writes of any
//! width at any port of the bus that holds COM1 and the i8042 (the one routing decision a
//! vCPU exit makes), then a save and restore of COM1's registers. Pass: no panic, the console
//! tail stays within its bound, and the restored COM1 saves the same state.
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use paddock_fuzz::Input;
use paddock_vmm::arch::x86_64::layout::{COM1_PORT, I8042_PORT};
use paddock_vmm::devices::bus::{lock, Bus};
use paddock_vmm::devices::console::{ConsoleSink, ConsoleTail, CONSOLE_TAIL_BYTES};
use paddock_vmm::devices::i8042::I8042;
use paddock_vmm::devices::serial::{SerialConstructorArgs, SerialDevice};
use paddock_vmm::snapshot::persist::Persist;
use paddock_vmm::vstate::vcpu::ExitSignal;
use vmm_sys_util::eventfd::EventFd;

fuzz_target!(|data: &[u8]| {
    let tail = ConsoleTail::default();
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
        ConsoleSink::new(tail.clone(), None),
    )));
    let exit = ExitSignal::new().expect("eventfd");
    let mut bus = Bus::new();
    bus.insert(u64::from(COM1_PORT), 8, serial.clone())
        .expect("COM1 fits");
    bus.insert(
        u64::from(I8042_PORT),
        5,
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
    )
    .expect("the i8042 fits");

    let mut input = Input::new(data);
    while !input.is_empty() {
        let op = input.u8();
        // Mostly the devices' own ports, sometimes anywhere in the 16-bit port space.
        let port = match op >> 6 {
            0 => u64::from(COM1_PORT) + u64::from(input.u8() % 10),
            1 => u64::from(I8042_PORT) + u64::from(input.u8() % 7),
            _ => u64::from(input.u16()),
        };
        let width = usize::from(input.u8() % 4) + 1;
        if op & 1 == 0 {
            let bytes = input.bytes(width).to_vec();
            bus.write(port, &bytes);
        } else {
            let mut bytes = vec![0u8; width];
            bus.read(port, &mut bytes);
        }
    }
    assert!(
        tail.text().len() <= CONSOLE_TAIL_BYTES * 4,
        "the console tail grew unbounded"
    );

    let saved = lock(&serial).save();
    let restored = SerialDevice::restore(
        SerialConstructorArgs {
            irq: EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
            sink: ConsoleSink::new(ConsoleTail::default(), None),
        },
        &saved,
    )
    .expect("a saved state restores");
    assert_eq!(restored.save(), saved);
});
