//! The vsock device as a hostile guest drives it: random MMIO register writes and reads,
//! descriptor chains pointing anywhere (outside RAM, looping, overlapping, oversized), vsock
//! packets with any header, kicks on any queue, and host peers connecting with any `CONNECT`
//! line, all through the real MMIO transport and a real event loop. Pass: no panic, no
//! sanitizer report, no hang.
#![no_main]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, SubscriberOps};
use libfuzzer_sys::fuzz_target;
use paddock_fuzz::{raw_descriptors, run_event_loop, Input};
use paddock_vmm::devices::virtio::test_driver::{guest_memory, Driver};
use paddock_vmm::devices::virtio::vsock::{new_vsock, VsockDevice, NUM_QUEUES, TX_QUEUE};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

/// The guest CID the device is created with.
const GUEST_CID: u64 = 3;
/// Where the target writes packet bytes (above the test driver's rings and buffers).
const SCRATCH: u64 = 0x200_0000;
/// Host peers kept open at once.
const MAX_PEERS: usize = 8;
/// Event-loop iterations per `run` operation, and at the end.
const RUN_ITERATIONS: usize = 8;
const FINAL_ITERATIONS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let uds = dir.path().join("v.sock");
    let mem = guest_memory();
    let vsock = new_vsock(mem.clone(), GUEST_CID, &uds).expect("vsock device");
    let mut driver = Driver::new(mem.clone(), vsock.transport.clone(), NUM_QUEUES);
    let mut manager: EventManager<Arc<Mutex<VsockDevice>>> =
        EventManager::new().expect("event manager");
    manager.add_subscriber(vsock.device.clone());
    driver.bring_up();

    let mut peers: Vec<UnixStream> = Vec::new();
    let mut input = Input::new(data);
    while !input.is_empty() {
        match input.u8() % 8 {
            0 => driver.write(u32::from(input.u16() & 0x1ff), input.u32()),
            1 => {
                driver.read(u32::from(input.u16() & 0x1ff));
            }
            2 => {
                let queue = usize::from(input.u8()) % NUM_QUEUES;
                let descs = raw_descriptors(&mut input, 4);
                driver.add_raw_chain(queue, descs[0].0, &descs);
            }
            3 => {
                // A packet on the tx queue: any header, a payload of up to 255 bytes, in one
                // descriptor or header and payload apart.
                let slot = u64::from(input.u8()) * 0x200;
                let header = input.bytes(44).to_vec();
                let payload_len = usize::from(input.u8());
                let payload = input.bytes(payload_len).to_vec();
                let split = input.u8() & 1 == 1;
                let index = u16::from(input.u8() % 62);
                let addr = SCRATCH + slot;
                let _ = mem.write_slice(&header, GuestAddress(addr));
                let _ = mem.write_slice(&payload, GuestAddress(addr + 44));
                let descs = if split {
                    vec![
                        (index, Descriptor::new(addr, 44, 1, index + 1)),
                        (
                            index + 1,
                            Descriptor::new(addr + 44, payload.len() as u32, 0, 0),
                        ),
                    ]
                } else {
                    vec![(
                        index,
                        Descriptor::new(addr, (44 + payload.len()) as u32, 0, 0),
                    )]
                };
                driver.add_raw_chain(TX_QUEUE, index, &descs);
                driver.kick(TX_QUEUE);
            }
            4 => driver.kick(usize::from(input.u8()) % (NUM_QUEUES + 1)),
            5 => run_event_loop(&mut manager, RUN_ITERATIONS),
            6 => {
                // Receive buffers the guest posts (write-only), of any length.
                let queue = usize::from(input.u8() % 2) * 2;
                let index = u16::from(input.u8() % 64);
                let desc = Descriptor::new(
                    SCRATCH + 0x4_0000 + u64::from(index) * 0x1_1000,
                    input.u32() % 0x1_1000,
                    2,
                    0,
                );
                driver.add_raw_chain(queue, index, &[(index, desc)]);
                driver.kick(queue);
            }
            _ => {
                // A host peer: a CONNECT line (well-formed or not) and some data.
                let line_len = usize::from(input.u8() % 32);
                let line = input.bytes(line_len).to_vec();
                if peers.len() < MAX_PEERS {
                    if let Ok(mut peer) = UnixStream::connect(&uds) {
                        let _ = peer.set_nonblocking(true);
                        let _ = peer.write_all(&line);
                        peers.push(peer);
                    }
                } else if let Some(peer) = peers.first_mut() {
                    let _ = peer.write_all(&line);
                }
            }
        }
    }
    run_event_loop(&mut manager, FINAL_ITERATIONS);
});
