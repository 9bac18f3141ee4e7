//! `paddock-hostile`: a hostile guest for the lab's malicious-guest suite. Run as root inside
//! a paddock guest (the kernel gives root `/dev/mem` for device windows and `iopl`), it takes
//! the virtio devices from their drivers and attacks the VMM through every device interface:
//! legacy ports, virtio-mmio registers, virtqueues, and raw vsock. Every step is reported on
//! stdout (the test sends it to the console); the last line is `hostile: finished`.
//!
//! Usage: `paddock-hostile [--seed N] [--port P] [--connections C] [--per-connection K]`.
//! The guest loses its devices (its vsock link to the host included): the VMM must keep
//! serving, or end this one sandbox with a clear error.
//!
//! `paddock-hostile --seed N --fuse-rounds R` attacks only the sandbox's workspace server,
//! with hostile FUSE requests over the kernel's own vsock (`fuse.rs`), and leaves the devices
//! alone.

// Register values, sizes and counts are small by construction; the casts below narrow them.
#![allow(clippy::cast_possible_truncation)]

mod attacks;
mod devices;
mod dma;
mod fuse;
mod mmio;
mod ports;
mod queue;
mod rng;
mod vsock;

use std::io::Write;

const VSOCK_DEVICE_ID: u32 = 19;
const VIRTIO_MAGIC: u32 = 0x7472_6976;

#[derive(Debug)]
struct Options {
    seed: u64,
    port: u32,
    connections: u32,
    per_connection: u32,
    fuse_rounds: u32,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        seed: 1,
        port: 5000,
        connections: 600,
        per_connection: 8,
        fuse_rounds: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        let small = || u32::try_from(number).map_err(|_| format!("{flag}: too large"));
        match flag.as_str() {
            "--seed" => o.seed = number,
            "--port" => o.port = small()?,
            "--connections" => o.connections = small()?,
            "--per-connection" => o.per_connection = small()?,
            "--fuse-rounds" => o.fuse_rounds = small()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hostile: {line}");
    let _ = out.flush();
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("paddock-hostile: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        say(&format!("stopped: {e}"));
        std::process::exit(1);
    }
    say("finished");
}

fn run(o: &Options) -> std::io::Result<()> {
    let mut rng = rng::Rng::new(o.seed);
    say(&format!("seed {}", o.seed));
    if o.fuse_rounds > 0 {
        fuse::attack(&mut rng, o.fuse_rounds)?;
        return Ok(());
    }

    ports::gain_access()?;
    if let ports::PortPhase::Trapped = ports::hammer_in_child(&mut rng, 5_000)? {
        say("ports: skipped: port access traps although iopl(3) was granted (seen only under the lab's nested emulation)");
    }

    let windows = devices::windows()?;
    let unbound = devices::unbind_all()?;
    say(&format!(
        "devices: {} windows, unbound {unbound:?}",
        windows.len()
    ));

    let mut vsock_window = None;
    for w in &windows {
        let window = mmio::Window::map(w.base, w.size as usize)?;
        let magic = window.read32(mmio::reg::MAGIC);
        let id = window.read32(mmio::reg::DEVICE_ID);
        let version = window.read32(mmio::reg::VERSION);
        let queues = if id == VSOCK_DEVICE_ID { 3 } else { 1 };
        say(&format!(
            "device {:#x}: magic {magic:#x} version {version} id {id}",
            w.base
        ));
        if magic != VIRTIO_MAGIC {
            continue;
        }
        let sum = attacks::registers(&window, &mut rng, 5_000);
        say(&format!(
            "device {:#x}: 5000 register accesses (reads summed {sum})",
            w.base
        ));
        attacks::rings_outside_ram(&window, queues);
        say(&format!("device {:#x}: rings outside RAM", w.base));
        for q in 0..queues {
            for (case, used) in attacks::bad_chains(&window, q, &mut rng)? {
                say(&format!(
                    "device {:#x} queue {q}: {case}: used index {used}",
                    w.base
                ));
            }
        }
        if id == VSOCK_DEVICE_ID {
            vsock_window = Some(window);
        }
    }

    let window = vsock_window.ok_or_else(|| std::io::Error::other("no vsock device"))?;
    let mut raw = vsock::RawVsock::new(&window)?;
    let report = vsock::flood(&mut raw, o.port, o.connections, o.per_connection, &mut rng);
    for (step, taken) in &report.steps {
        say(&format!(
            "vsock: {step}: {}",
            if *taken {
                "host took every packet"
            } else {
                "host stopped taking packets"
            }
        ));
    }
    let replies: Vec<String> = raw
        .replies
        .iter()
        .map(|(op, n)| format!("{} {n}", vsock::op_name(*op)))
        .collect();
    say(&format!(
        "vsock: {} packets sent; replies: {}",
        raw.sent,
        replies.join(", ")
    ));
    Ok(())
}
