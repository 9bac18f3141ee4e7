//! Raw vsock traffic on a device this process drives itself: connection floods past the
//! host's limits, data that ignores the host's credit, credit and reset storms, headers that
//! lie, and replies the guest never collects.

use crate::dma::PAGE;
use crate::mmio::Window;
use crate::queue::{self, Queue, F_NEXT, F_WRITE, PAGE_U32};
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

const GUEST_CID: u64 = 3;
const HOST_CID: u64 = 2;
const HEADER: usize = 44;
const TYPE_STREAM: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;
const RX_BUFFERS: u16 = 128;
/// Pages of payload every RW packet points at (64 KiB: the most one packet may carry).
const DATA_PAGES: usize = 16;
/// Header slots per header page.
const SLOTS_PER_PAGE: usize = PAGE / 64;
/// First guest port the flood uses.
const FIRST_PORT: u32 = 40_000;
/// How long the host gets to take a batch of packets.
const BATCH_LIMIT: Duration = Duration::from_secs(5);

/// A vsock packet header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub kind: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    fn to_host(src_port: u32, dst_port: u32, op: u16) -> Self {
        Self {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len: 0,
            kind: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 256 * 1024,
            fwd_cnt: 0,
        }
    }

    fn encode(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.kind.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// One packet to send: its header and how many bytes of the shared payload pages follow it
/// (`data` need not match `header.len`: a lie is a case).
#[derive(Debug, Clone, Copy)]
struct Packet {
    header: Header,
    data: usize,
}

/// The raw driver: RX, TX and event queues on the vsock device.
#[derive(Debug)]
pub struct RawVsock<'w> {
    window: &'w Window,
    rx: Queue,
    tx: Queue,
    _event: Queue,
    /// Replies the host put on RX, by op.
    pub replies: BTreeMap<u16, u64>,
    /// Packets the host took from TX.
    pub sent: u64,
    feed_rx: bool,
}

impl<'w> RawVsock<'w> {
    /// Resets the device and sets up its three queues with RX buffers offered.
    pub fn new(window: &'w Window) -> std::io::Result<Self> {
        queue::negotiate(window);
        let mut rx = Queue::new(window, 0, RX_BUFFERS, usize::from(RX_BUFFERS))?;
        let tx_buffer_pages = DATA_PAGES + usize::from(queue::MAX_SIZE) / SLOTS_PER_PAGE + 1;
        let tx = Queue::new(window, 1, queue::MAX_SIZE, tx_buffer_pages)?;
        let mut event = Queue::new(window, 2, 8, 1)?;
        for i in 0..RX_BUFFERS {
            rx.set_desc(
                i,
                rx.pages.phys(queue::RING_PAGES + usize::from(i), 0),
                PAGE_U32,
                F_WRITE,
                0,
            );
            rx.push(i);
        }
        for i in 0..8u16 {
            event.set_desc(
                i,
                event.pages.phys(queue::RING_PAGES, usize::from(i) * 8),
                8,
                F_WRITE,
                0,
            );
            event.push(i);
        }
        queue::driver_ok(window);
        rx.notify(window);
        event.notify(window);
        Ok(Self {
            window,
            rx,
            tx,
            _event: event,
            replies: BTreeMap::new(),
            sent: 0,
            feed_rx: true,
        })
    }

    /// Stops (or resumes) giving the host RX buffers: replies pile up on the host side.
    pub fn feed_rx(&mut self, feed: bool) {
        self.feed_rx = feed;
    }

    /// Counts the replies the host wrote and offers their buffers again (when feeding).
    pub fn drain_rx(&mut self) {
        for head in self.rx.take_used() {
            let page = queue::RING_PAGES + usize::from(head % RX_BUFFERS);
            let op = self.rx.pages.read16(page, 30);
            *self.replies.entry(op).or_default() += 1;
            if self.feed_rx {
                self.rx.push(head % RX_BUFFERS);
            }
        }
        if self.feed_rx {
            self.rx.notify(self.window);
        }
    }

    /// Sends `packets` in batches that fit the TX ring; false if the host stopped taking them.
    fn send(&mut self, packets: &[Packet]) -> bool {
        let data_first = queue::RING_PAGES;
        let header_first = queue::RING_PAGES + DATA_PAGES;
        let mut desc = 0u16;
        let mut slot = 0usize;
        let mut pending = 0u64;
        for packet in packets {
            let pages = packet.data.div_ceil(PAGE).min(DATA_PAGES);
            if usize::from(desc) + 1 + pages > usize::from(self.tx.size()) {
                if !self.flush(pending) {
                    return false;
                }
                desc = 0;
                slot = 0;
                pending = 0;
            }
            let (page, offset) = (
                header_first + slot / SLOTS_PER_PAGE,
                (slot % SLOTS_PER_PAGE) * 64,
            );
            self.tx.pages.write(page, offset, &packet.header.encode());
            let head = desc;
            let more = if pages > 0 { F_NEXT } else { 0 };
            self.tx.set_desc(
                desc,
                self.tx.pages.phys(page, offset),
                HEADER as u32,
                more,
                desc + 1,
            );
            desc += 1;
            let mut left = packet.data;
            for p in 0..pages {
                let len = left.min(PAGE);
                left -= len;
                let more = if p + 1 < pages { F_NEXT } else { 0 };
                self.tx.set_desc(
                    desc,
                    self.tx.pages.phys(data_first + p, 0),
                    len as u32,
                    more,
                    desc + 1,
                );
                desc += 1;
            }
            self.tx.push(head);
            slot += 1;
            pending += 1;
        }
        self.flush(pending)
    }

    fn flush(&mut self, pending: u64) -> bool {
        self.tx.notify(self.window);
        let taken = self.tx.wait_all_used(BATCH_LIMIT);
        self.drain_rx();
        if taken {
            self.sent += pending;
        }
        taken
    }

    /// Gives the host time to answer, collecting what it writes.
    pub fn settle(&mut self, time: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < time {
            self.drain_rx();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What the flood did, for the report.
#[derive(Debug, Default)]
pub struct FloodReport {
    /// (step, whether the host kept taking packets).
    pub steps: Vec<(&'static str, bool)>,
}

/// The whole flood against host port `port` (a listener the test holds without reading):
/// `connections` connects, then `per_connection` 64 KiB packets on each that ignore credit,
/// then credit/reset storms, lying headers, and a reply storm with RX starved.
pub fn flood(
    raw: &mut RawVsock,
    port: u32,
    connections: u32,
    per_connection: u32,
    rng: &mut Rng,
) -> FloodReport {
    let mut report = FloodReport::default();
    let ports = FIRST_PORT..FIRST_PORT + connections;
    let to_host = |src: u32, op: u16| Header::to_host(src, port, op);

    let connects: Vec<Packet> = ports
        .clone()
        .map(|p| Packet {
            header: to_host(p, OP_REQUEST),
            data: 0,
        })
        .collect();
    report.steps.push(("connects", raw.send(&connects)));
    raw.settle(Duration::from_millis(500));

    let mut data = Vec::new();
    for _ in 0..per_connection {
        for p in ports.clone() {
            let mut header = to_host(p, OP_RW);
            header.len = 64 * 1024;
            data.push(Packet {
                header,
                data: 64 * 1024,
            });
        }
    }
    let taken = data.chunks(256).all(|chunk| raw.send(chunk));
    report.steps.push(("data past credit", taken));

    let mut storm = Vec::new();
    for p in ports.clone() {
        storm.push(Packet {
            header: to_host(p, OP_CREDIT_REQUEST),
            data: 0,
        });
        let mut update = to_host(p, OP_CREDIT_UPDATE);
        update.buf_alloc = u32::MAX;
        update.fwd_cnt = rng.next_u32();
        storm.push(Packet {
            header: update,
            data: 0,
        });
    }
    report.steps.push(("credit storm", raw.send(&storm)));

    let mut lies = Vec::new();
    for i in 0..512u32 {
        let mut header = to_host(FIRST_PORT + i % connections.max(1), OP_RW);
        match i % 8 {
            0 => header.len = u32::MAX,
            1 => header.len = 64 * 1024 + 1,
            2 => header.kind = 2,
            3 => header.op = 99,
            4 => header.src_cid = HOST_CID,
            5 => header.dst_cid = 7,
            6 => header.src_cid = u64::MAX,
            _ => header.len = rng.nasty_u32(),
        }
        let data = if i % 2 == 0 { 0 } else { PAGE };
        lies.push(Packet { header, data });
    }
    report.steps.push(("lying headers", raw.send(&lies)));

    // Replies the guest never collects: connects to a port nobody listens on, RX starved.
    raw.feed_rx(false);
    let unanswered: Vec<Packet> = (0..4096u32)
        .map(|i| Packet {
            header: Header::to_host(20_000 + i, port + 1, OP_REQUEST),
            data: 0,
        })
        .collect();
    report
        .steps
        .push(("replies never collected", raw.send(&unanswered)));
    raw.feed_rx(true);
    raw.settle(Duration::from_millis(500));

    let closes: Vec<Packet> = ports
        .flat_map(|p| {
            [
                Packet {
                    header: to_host(p, OP_SHUTDOWN),
                    data: 0,
                },
                Packet {
                    header: to_host(p, OP_RST),
                    data: 0,
                },
            ]
        })
        .collect();
    report.steps.push(("shutdown and reset", raw.send(&closes)));
    raw.settle(Duration::from_millis(200));
    report
}

/// Name of a reply op, for the report.
pub fn op_name(op: u16) -> &'static str {
    match op {
        OP_REQUEST => "request",
        OP_RESPONSE => "response",
        OP_RST => "rst",
        OP_SHUTDOWN => "shutdown",
        OP_RW => "rw",
        OP_CREDIT_UPDATE => "credit_update",
        OP_CREDIT_REQUEST => "credit_request",
        _ => "other",
    }
}
