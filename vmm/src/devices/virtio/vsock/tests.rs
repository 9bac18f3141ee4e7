//! End-to-end tests of the vsock device: a test guest driver on one side (virtqueues in real
//! guest memory, through the MMIO transport) and real Unix sockets on the host side, with the
//! device driven by a real `EventManager`.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, SubscriberOps};
use virtio_bindings::virtio_mmio as reg;
use virtio_queue::desc::split::Descriptor;

use super::packet::*;
use super::{
    new_vsock, Vsock, VsockDevice, VsockTimeouts, CONN_TX_BUF_SIZE, CREDIT_UPDATE_THRESHOLD,
    EVENT_QUEUE, MAX_HANDSHAKES, NUM_QUEUES, RX_QUEUE, TX_QUEUE,
};
use crate::devices::bus::lock;
use crate::devices::virtio::test_driver::{guest_memory, Buf, Driver};
use crate::snapshot::persist::Persist;

const GUEST_CID: u64 = 3;
const RX_BUFFERS: usize = 32;
const RX_BUF_DATA: u32 = 4096;
/// Event-loop iterations after which `pump` declares the device spinning.
const SPIN_LIMIT: usize = 2000;

type Manager = EventManager<Arc<Mutex<VsockDevice>>>;

/// A packet as the guest received it.
#[derive(Debug)]
struct Rx {
    hdr: Header,
    data: Vec<u8>,
}

struct Harness {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    vsock: Vsock,
    driver: Driver,
    em: Manager,
    /// Guest-side receive credit we advertise, and what our "application" consumed.
    guest_buf_alloc: u32,
    guest_fwd_cnt: u32,
}

impl Harness {
    fn new() -> Self {
        Self::with_rx_buffers(RX_BUFFERS)
    }

    fn with_rx_buffers(rx_buffers: usize) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("debug")
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let mem = guest_memory();
        let vsock = new_vsock(mem.clone(), GUEST_CID, &uds).unwrap();
        let driver = Driver::new(mem, vsock.transport.clone(), NUM_QUEUES);
        let mut em = Manager::new().unwrap();
        em.add_subscriber(vsock.device.clone());
        let mut h = Self {
            _dir: dir,
            uds,
            vsock,
            driver,
            em,
            guest_buf_alloc: 256 * 1024,
            guest_fwd_cnt: 0,
        };
        let status = h.driver.bring_up();
        assert_eq!(status & 0x4, 0x4, "DRIVER_OK did not stick: {status:#x}");
        assert!(lock(&h.vsock.device).is_activated());
        h.post_rx_buffers(rx_buffers);
        for _ in 0..4 {
            h.driver.add_chain(EVENT_QUEUE, &[Buf::In(4)]);
        }
        h.driver.kick(EVENT_QUEUE);
        h.pump();
        h
    }

    /// Posts rx buffers the two ways Linux does: one descriptor (≥ 6.2) or header + data.
    fn post_rx_buffers(&mut self, n: usize) {
        for i in 0..n {
            if i % 2 == 0 {
                self.driver
                    .add_chain(RX_QUEUE, &[Buf::In(HEADER_SIZE as u32 + RX_BUF_DATA)]);
            } else {
                self.driver.add_chain(
                    RX_QUEUE,
                    &[Buf::In(HEADER_SIZE as u32), Buf::In(RX_BUF_DATA)],
                );
            }
        }
        self.driver.kick(RX_QUEUE);
    }

    /// Runs the event loop until it has nothing left to do.
    fn pump(&mut self) {
        for _ in 0..SPIN_LIMIT {
            if self.em.run_with_timeout(2).unwrap() == 0 {
                return;
            }
        }
        panic!("event loop still busy after {SPIN_LIMIT} iterations: spinning");
    }

    fn hdr(&self, op: u16, src_port: u32, dst_port: u32) -> Header {
        Header {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: self.guest_buf_alloc,
            fwd_cnt: self.guest_fwd_cnt,
            ..Header::default()
        }
    }

    /// Queues a packet on the tx queue (header and payload in one descriptor) without kicking.
    fn queue_tx(&mut self, hdr: &Header, payload: &[u8]) {
        let mut bytes = hdr.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        self.driver.add_chain(TX_QUEUE, &[Buf::Out(&bytes)]);
    }

    fn send(&mut self, hdr: Header, payload: &[u8]) {
        let hdr = Header {
            len: payload.len() as u32,
            ..hdr
        };
        self.queue_tx(&hdr, payload);
        self.driver.kick(TX_QUEUE);
        self.pump();
        self.reclaim_tx();
    }

    fn reclaim_tx(&mut self) {
        for used in self.driver.take_used(TX_QUEUE) {
            assert_eq!(used.len, 0, "tx buffers are read-only for the device");
        }
    }

    /// Takes the packets the device delivered and gives the rx buffers back.
    fn recv(&mut self) -> Vec<Rx> {
        let used = self.driver.take_used(RX_QUEUE);
        let mut out = Vec::new();
        for u in &used {
            let bytes = self.driver.read_written(u);
            assert!(bytes.len() >= HEADER_SIZE, "short rx packet: {u:?}");
            let hdr = Header::from_bytes(&bytes).unwrap();
            assert_eq!(
                bytes.len(),
                HEADER_SIZE + hdr.len as usize,
                "used len != header + hdr.len"
            );
            assert_eq!(
                (hdr.src_cid, hdr.dst_cid, hdr.type_),
                (HOST_CID, GUEST_CID, TYPE_STREAM)
            );
            out.push(Rx {
                hdr,
                data: bytes[HEADER_SIZE..].to_vec(),
            });
        }
        if !used.is_empty() {
            self.post_rx_buffers(used.len());
            self.pump();
        }
        out
    }

    fn host_connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.uds).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Host-initiated connection to guest `port`, answered by the guest: (host stream, host-side
    /// port the device allocated).
    fn open_from_host(&mut self, port: u32) -> (UnixStream, u32) {
        let mut host = self.host_connect();
        host.write_all(format!("CONNECT {port}\n").as_bytes())
            .unwrap();
        self.pump();
        let rx = self.recv();
        assert_eq!(rx.len(), 1, "{rx:?}");
        let req = rx[0].hdr;
        assert_eq!(
            (req.op, req.dst_port, req.buf_alloc),
            (OP_REQUEST, port, CONN_TX_BUF_SIZE)
        );
        assert!(req.src_port >= 1 << 30);
        self.send(self.hdr(OP_RESPONSE, port, req.src_port), &[]);
        let expected = format!("OK {}\n", req.src_port);
        let mut line = vec![0u8; expected.len()];
        host.read_exact(&mut line).unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), expected);
        (host, req.src_port)
    }

    fn connections(&self) -> usize {
        lock(&self.vsock.device).connection_count()
    }

    fn host_fds(&self) -> usize {
        lock(&self.vsock.device).host_fd_count()
    }
}

/// Reads what is available on a host stream without blocking.
fn read_available(s: &mut UnixStream, limit: usize) -> Vec<u8> {
    s.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while out.len() < limit {
        let want = buf.len().min(limit - out.len());
        match s.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("host read: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    out
}

/// True if the peer has closed the stream, checked without waiting.
fn is_closed(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let closed = match { s }.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// True once the peer closed the stream: EOF, or ECONNRESET when it closed with our bytes unread.
fn sees_eof(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn host_initiated_connect_and_data_both_ways() {
    let mut h = Harness::new();
    let (mut host, local_port) = h.open_from_host(1024);
    assert_eq!(h.connections(), 1);

    h.send(h.hdr(OP_RW, 1024, local_port), b"hello from guest");
    let mut got = vec![0u8; 16];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello from guest");

    host.write_all(b"hello from host").unwrap();
    h.pump();
    let rx = h.recv();
    assert_eq!(rx.len(), 1);
    assert_eq!(
        (rx[0].hdr.op, rx[0].hdr.src_port, rx[0].hdr.dst_port),
        (OP_RW, local_port, 1024)
    );
    assert_eq!(rx[0].data, b"hello from host");
    // The device acknowledges the guest bytes it forwarded.
    assert_eq!(rx[0].hdr.fwd_cnt, 16);
}

#[test]
fn guest_refusal_closes_host_stream() {
    let mut h = Harness::new();
    let mut host = h.host_connect();
    host.write_all(b"CONNECT 7\n").unwrap();
    h.pump();
    let rx = h.recv();
    assert_eq!(rx[0].hdr.op, OP_REQUEST);
    // No listener on guest port 7: the guest kernel answers RST.
    h.send(h.hdr(OP_RST, 7, rx[0].hdr.src_port), &[]);
    assert!(sees_eof(&mut host));
    assert_eq!((h.connections(), h.host_fds()), (0, 0));
}

#[test]
fn malformed_connect_lines_are_closed_without_guest_traffic() {
    let mut h = Harness::new();
    let mut garbage = h.host_connect();
    garbage.write_all(b"HELLO 1024\n").unwrap();
    let mut overlong = h.host_connect();
    overlong.write_all(&[b'9'; 100]).unwrap();
    let mut early_eof = h.host_connect();
    early_eof.write_all(b"CONNECT 10").unwrap();
    early_eof.shutdown(std::net::Shutdown::Write).unwrap();
    h.pump();
    assert!(sees_eof(&mut garbage));
    assert!(sees_eof(&mut overlong));
    assert!(sees_eof(&mut early_eof));
    assert!(h.recv().is_empty());
    assert_eq!(h.host_fds(), 0);
}

#[test]
fn pending_handshakes_are_bounded() {
    let mut h = Harness::new();
    let streams: Vec<UnixStream> = (0..MAX_HANDSHAKES + 4).map(|_| h.host_connect()).collect();
    h.pump();
    assert_eq!(h.host_fds(), MAX_HANDSHAKES);
    let closed = streams.iter().filter(|s| is_closed(s)).count();
    assert_eq!(closed, 4);
}

#[test]
fn guest_initiated_connect_with_and_without_listener() {
    let mut h = Harness::new();
    let listener = UnixListener::bind(format!("{}_1025", h.uds.display())).unwrap();
    h.send(h.hdr(OP_REQUEST, 5000, 1025), &[]);
    let rx = h.recv();
    assert_eq!(rx.len(), 1);
    assert_eq!(
        (rx[0].hdr.op, rx[0].hdr.src_port, rx[0].hdr.dst_port),
        (OP_RESPONSE, 1025, 5000)
    );
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    h.send(h.hdr(OP_RW, 5000, 1025), b"ready");
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ready");
    peer.write_all(b"ack").unwrap();
    h.pump();
    let rx = h.recv();
    assert_eq!((rx[0].hdr.op, rx[0].data.as_slice()), (OP_RW, &b"ack"[..]));

    // Nobody listens on <uds>_1026.
    h.send(h.hdr(OP_REQUEST, 5001, 1026), &[]);
    let rx = h.recv();
    assert_eq!(rx.len(), 1);
    assert_eq!(
        (rx[0].hdr.op, rx[0].hdr.src_port, rx[0].hdr.dst_port),
        (OP_RST, 1026, 5001)
    );
    assert_eq!(h.connections(), 1);
}

#[test]
fn guest_close_flushes_then_resets_and_closes_host() {
    let mut h = Harness::new();
    let (mut host, port) = h.open_from_host(1024);
    h.send(h.hdr(OP_RW, 1024, port), b"last words");
    let mut shut = h.hdr(OP_SHUTDOWN, 1024, port);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    h.send(shut, &[]);
    let rx = h.recv();
    assert_eq!(rx.len(), 1);
    assert_eq!(
        rx[0].hdr.op, OP_RST,
        "a full shutdown is completed by the device's RST"
    );
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last words");
    assert_eq!((h.connections(), h.host_fds()), (0, 0));
    assert_eq!(lock(&h.vsock.device).muxer.watched_count(), 0);
}

#[test]
fn half_close_in_both_directions() {
    let mut h = Harness::new();
    let (mut host, port) = h.open_from_host(1024);
    // Guest shuts its sending side: the host reads EOF but can still answer.
    let mut shut = h.hdr(OP_SHUTDOWN, 1024, port);
    shut.flags = SHUTDOWN_SEND;
    h.send(shut, &[]);
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    host.write_all(b"answer").unwrap();
    host.shutdown(std::net::Shutdown::Write).unwrap();
    h.pump();
    let rx = h.recv();
    let ops: Vec<u16> = rx.iter().map(|p| p.hdr.op).collect();
    assert_eq!(ops, [OP_RW, OP_SHUTDOWN], "{rx:?}");
    assert_eq!(rx[0].data, b"answer");
    assert_eq!(rx[1].hdr.flags, SHUTDOWN_SEND);
    // The guest's close finishes the connection.
    h.send(h.hdr(OP_RST, 1024, port), &[]);
    assert_eq!((h.connections(), h.host_fds()), (0, 0));
}

#[test]
fn host_close_is_reported_and_guest_writes_after_it_reset() {
    let mut h = Harness::new();
    let (host, port) = h.open_from_host(1024);
    drop(host);
    h.pump();
    let rx = h.recv();
    assert_eq!(
        rx.iter()
            .map(|p| (p.hdr.op, p.hdr.flags))
            .collect::<Vec<_>>(),
        [(OP_SHUTDOWN, SHUTDOWN_SEND)]
    );
    h.send(h.hdr(OP_RW, 1024, port), b"anyone?");
    let rx = h.recv();
    assert_eq!(rx.iter().map(|p| p.hdr.op).collect::<Vec<_>>(), [OP_RST]);
    assert_eq!((h.connections(), h.host_fds()), (0, 0));
}

#[test]
fn guest_to_host_bulk_with_backpressure() {
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 60 * 1024;
    let mut h = Harness::new();
    let (mut host, port) = h.open_from_host(1024);
    let (mut sent, mut received) = (0usize, Vec::with_capacity(TOTAL));
    // The guest's view of our credit.
    let (mut peer_buf_alloc, mut peer_fwd_cnt) = (CONN_TX_BUF_SIZE, 0u32);
    let mut stalls = 0;
    for _ in 0..100_000 {
        if received.len() == TOTAL {
            break;
        }
        // The guest sends as much as its credit allows.
        let mut queued = 0;
        while sent < TOTAL && h.driver.free_descriptors(TX_QUEUE) > 0 {
            let credit = peer_buf_alloc - (sent as u32).wrapping_sub(peer_fwd_cnt);
            let n = CHUNK.min(TOTAL - sent).min(credit as usize);
            if n == 0 {
                break;
            }
            let hdr = Header {
                len: n as u32,
                ..h.hdr(OP_RW, 1024, port)
            };
            h.queue_tx(&hdr, &pattern(sent, n));
            sent += n;
            queued += 1;
        }
        if queued > 0 {
            h.driver.kick(TX_QUEUE);
        }
        h.pump();
        h.reclaim_tx();
        if queued == 0 {
            stalls += 1;
        }
        // A slow host reader: only part of what is available.
        received.extend(read_available(&mut host, 200 * 1024));
        h.pump();
        for p in h.recv() {
            assert!(matches!(p.hdr.op, OP_CREDIT_UPDATE | OP_RW), "{:?}", p.hdr);
            peer_buf_alloc = p.hdr.buf_alloc;
            peer_fwd_cnt = p.hdr.fwd_cnt;
        }
    }
    assert_eq!(received.len(), TOTAL);
    assert!(received == pattern(0, TOTAL), "stream corrupted");
    assert!(stalls > 0, "the slow reader never made the guest wait");
    // Credit is announced in steps: the guest heard about all but the last step.
    assert!(peer_fwd_cnt as usize > TOTAL - CREDIT_UPDATE_THRESHOLD as usize);
}

#[test]
fn host_to_guest_bulk_respects_guest_credit() {
    const TOTAL: usize = 1 << 20;
    let mut h = Harness::new();
    h.guest_buf_alloc = 64 * 1024;
    let (host, port) = h.open_from_host(1024);
    let writer = std::thread::spawn(move || {
        let mut host = host;
        host.write_all(&pattern(0, TOTAL)).unwrap();
        host.shutdown(std::net::Shutdown::Write).unwrap();
        host
    });
    let mut got = Vec::with_capacity(TOTAL);
    let mut announced_fwd = 0u32;
    let mut eof = false;
    for _ in 0..100_000 {
        h.pump();
        for p in h.recv() {
            match p.hdr.op {
                OP_RW => {
                    got.extend_from_slice(&p.data);
                    // Unconsumed bytes never exceed what the guest advertised.
                    let in_flight = got.len() as u32 - announced_fwd;
                    assert!(
                        in_flight <= h.guest_buf_alloc,
                        "device overran guest credit: {in_flight}"
                    );
                }
                OP_SHUTDOWN => eof = true,
                op => panic!("unexpected op {op}"),
            }
        }
        if eof {
            break;
        }
        // The guest application consumes everything; like Linux, announce when it matters.
        h.guest_fwd_cnt = got.len() as u32;
        if h.guest_fwd_cnt - announced_fwd >= 32 * 1024 {
            announced_fwd = h.guest_fwd_cnt;
            h.send(h.hdr(OP_CREDIT_UPDATE, 1024, port), &[]);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(eof, "no SHUTDOWN after {} bytes", got.len());
    assert_eq!(got.len(), TOTAL);
    assert!(got == pattern(0, TOTAL), "stream corrupted");
    drop(writer.join().unwrap());
}

#[test]
fn guest_overrunning_credit_is_reset() {
    let mut h = Harness::new();
    let (mut host, port) = h.open_from_host(1024);
    // Never read on the host: the device must buffer at most CONN_TX_BUF_SIZE.
    let chunk = vec![7u8; 64 * 1024];
    let mut reset = false;
    for _ in 0..((CONN_TX_BUF_SIZE as usize * 4) / chunk.len()) {
        h.send(h.hdr(OP_RW, 1024, port), &chunk);
        if h.recv().iter().any(|p| p.hdr.op == OP_RST) {
            reset = true;
            break;
        }
    }
    assert!(reset, "credit overrun not detected");
    assert_eq!((h.connections(), h.host_fds()), (0, 0));
    // The host got a prefix of the data, then EOF.
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    assert!(!all.is_empty() && all.iter().all(|&b| b == 7));
}

#[test]
fn credit_request_is_answered() {
    let mut h = Harness::new();
    let (_host, port) = h.open_from_host(1024);
    h.send(h.hdr(OP_RW, 1024, port), b"abc");
    h.send(h.hdr(OP_CREDIT_REQUEST, 1024, port), &[]);
    let rx = h.recv();
    assert_eq!(rx.len(), 1);
    assert_eq!(
        (rx[0].hdr.op, rx[0].hdr.fwd_cnt, rx[0].hdr.buf_alloc),
        (OP_CREDIT_UPDATE, 3, CONN_TX_BUF_SIZE)
    );
}

#[test]
fn malformed_and_foreign_packets_are_dropped_or_reset() {
    let mut h = Harness::new();
    let (mut host, port) = h.open_from_host(1024);

    // A header descriptor shorter than a header.
    h.driver.add_chain(TX_QUEUE, &[Buf::Out(&[0u8; 20])]);
    // A header announcing more payload than the chain carries.
    let lying = Header {
        len: 1000,
        ..h.hdr(OP_RW, 1024, port)
    };
    h.driver.add_chain(TX_QUEUE, &[Buf::Out(&lying.to_bytes())]);
    // A payload larger than any packet may be.
    let huge = Header {
        len: MAX_PKT_DATA + 1,
        ..h.hdr(OP_RW, 1024, port)
    };
    h.driver.add_chain(
        TX_QUEUE,
        &[Buf::Out(&huge.to_bytes()), Buf::Out(&[0u8; 16])],
    );
    // A device-writable tx descriptor.
    h.driver.add_chain(TX_QUEUE, &[Buf::In(HEADER_SIZE as u32)]);
    // A descriptor pointing outside guest memory.
    h.driver.add_raw(
        TX_QUEUE,
        60,
        Descriptor::new(u64::MAX - 8, HEADER_SIZE as u32, 0, 0),
    );
    // Foreign CIDs: dropped silently.
    let spoofed = Header {
        src_cid: 99,
        ..h.hdr(OP_REQUEST, 1, 1025)
    };
    h.queue_tx(&spoofed, &[]);
    let elsewhere = Header {
        dst_cid: 7,
        ..h.hdr(OP_REQUEST, 1, 1025)
    };
    h.queue_tx(&elsewhere, &[]);
    h.driver.kick(TX_QUEUE);
    h.pump();
    assert_eq!(
        h.driver.take_used(TX_QUEUE).len(),
        7,
        "every chain is returned"
    );
    assert!(h.recv().is_empty(), "nothing answered");

    // Wrong type, and data for a connection that does not exist: RST.
    let seqpacket = Header {
        type_: 2,
        ..h.hdr(OP_REQUEST, 2, 1025)
    };
    h.send(seqpacket, &[]);
    h.send(h.hdr(OP_RW, 4, 4242), b"x");
    // An RST for an unknown connection is not answered.
    h.send(h.hdr(OP_RST, 4, 4243), &[]);
    let rx = h.recv();
    assert_eq!(
        rx.iter()
            .map(|p| (p.hdr.op, p.hdr.dst_port))
            .collect::<Vec<_>>(),
        [(OP_RST, 2), (OP_RST, 4)]
    );

    // An unknown op on a live connection resets it and closes the host side.
    h.send(h.hdr(99, 1024, port), &[]);
    assert_eq!(
        h.recv().iter().map(|p| p.hdr.op).collect::<Vec<_>>(),
        [OP_RST]
    );
    assert!(sees_eof(&mut host));
    assert_eq!(h.connections(), 0);

    // The device still works.
    let (_host, _) = h.open_from_host(1024);
}

#[test]
fn malformed_rx_buffers_are_returned_empty() {
    let mut h = Harness::with_rx_buffers(0);
    // Read-only, shorter than a header, header-only without a data descriptor: all unusable.
    h.driver.add_chain(RX_QUEUE, &[Buf::Out(&[0u8; 64])]);
    h.driver
        .add_chain(RX_QUEUE, &[Buf::In(HEADER_SIZE as u32 - 1)]);
    h.driver.add_chain(RX_QUEUE, &[Buf::In(HEADER_SIZE as u32)]);
    // A header plus an empty data buffer: fine for control packets, useless for data.
    h.driver
        .add_chain(RX_QUEUE, &[Buf::In(HEADER_SIZE as u32), Buf::In(0)]);
    h.driver.kick(RX_QUEUE);
    let mut host = h.host_connect();
    host.write_all(b"CONNECT 1024\n").unwrap();
    h.pump();
    let used = h.driver.take_used(RX_QUEUE);
    assert_eq!(
        used.iter().map(|u| u.len).collect::<Vec<_>>(),
        [0, 0, 0, HEADER_SIZE as u32]
    );
    let req = Header::from_bytes(&h.driver.read_written(&used[3])).unwrap();
    assert_eq!(req.op, OP_REQUEST);

    h.send(h.hdr(OP_RESPONSE, 1024, req.src_port), &[]);
    let mut ok = vec![0u8; format!("OK {}\n", req.src_port).len()];
    host.read_exact(&mut ok).unwrap();
    host.write_all(b"data").unwrap();
    h.driver
        .add_chain(RX_QUEUE, &[Buf::In(HEADER_SIZE as u32), Buf::In(0)]);
    h.driver.kick(RX_QUEUE);
    h.pump();
    // A buffer without room for data cannot hold the data: it is returned empty.
    assert_eq!(
        h.driver
            .take_used(RX_QUEUE)
            .iter()
            .map(|u| u.len)
            .collect::<Vec<_>>(),
        [0]
    );
    // The data waits for a buffer that can hold it.
    h.post_rx_buffers(1);
    h.pump();
    let used = h.driver.take_used(RX_QUEUE);
    assert_eq!(used.len(), 1);
    assert_eq!(&h.driver.read_written(&used[0])[HEADER_SIZE..], b"data");
}

#[test]
fn driver_reset_drops_connections() {
    let mut h = Harness::new();
    let (mut host, _) = h.open_from_host(1024);
    h.driver.write(reg::VIRTIO_MMIO_STATUS, 0);
    assert!(!lock(&h.vsock.device).is_activated());
    h.pump();
    assert!(sees_eof(&mut host));
    assert_eq!(h.host_fds(), 0);
}

/// The guest's link to the host's kept port (as guest-init's to the ready port): guest port
/// `LINK_GUEST_PORT` to host port `LINK_PORT`, with bytes exchanged both ways so the credit
/// counters are not zero. Returns the host's end.
const LINK_PORT: u32 = 1025;
const LINK_GUEST_PORT: u32 = 5000;

fn open_link(h: &mut Harness) -> UnixStream {
    lock(&h.vsock.device).set_kept_port(Some(LINK_PORT));
    let listener = UnixListener::bind(format!("{}_{LINK_PORT}", h.uds.display())).unwrap();
    h.send(h.hdr(OP_REQUEST, LINK_GUEST_PORT, LINK_PORT), &[]);
    assert_eq!(h.recv()[0].hdr.op, OP_RESPONSE);
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    h.send(h.hdr(OP_RW, LINK_GUEST_PORT, LINK_PORT), b"ready");
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    peer.write_all(b"resume").unwrap();
    h.pump();
    let rx = h.recv();
    assert_eq!(
        (rx[0].hdr.op, rx[0].data.as_slice()),
        (OP_RW, &b"resume"[..])
    );
    h.guest_fwd_cnt += 6;
    peer
}

/// A snapshot's state as a file holds it: encoded and decoded.
fn through_a_file(state: &super::VsockState) -> super::VsockState {
    let bytes = bincode::serde::encode_to_vec(state, bincode::config::standard()).unwrap();
    let (decoded, _): (super::VsockState, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    decoded
}

/// Checks that the guest's link works on `host` after a restore or reset: bytes both ways,
/// with credit counters continuing from before.
fn link_carries_bytes_both_ways(h: &mut Harness, host: &mut UnixStream) {
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"clock").unwrap();
    h.pump();
    let rx = h.recv();
    assert_eq!(rx.len(), 1, "{rx:?}");
    assert_eq!(
        (rx[0].hdr.op, rx[0].hdr.src_port, rx[0].hdr.dst_port),
        (OP_RW, LINK_PORT, LINK_GUEST_PORT)
    );
    assert_eq!(rx[0].data, b"clock");
    assert_eq!(
        rx[0].hdr.fwd_cnt, 5,
        "the guest's 5 bytes from before the snapshot count"
    );
    h.send(h.hdr(OP_RW, LINK_GUEST_PORT, LINK_PORT), b"resumed");
    let mut got = [0u8; 7];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"resumed");
}

/// The guest's next packets are exactly one RST, for connection (`host_port`, `guest_port`).
fn expect_only_a_reset_of(h: &mut Harness, host_port: u32, guest_port: u32) {
    let rx = h.recv();
    assert_eq!(rx.len(), 1, "{rx:?}");
    assert_eq!(
        (rx[0].hdr.op, rx[0].hdr.src_port, rx[0].hdr.dst_port),
        (OP_RST, host_port, guest_port)
    );
}

#[test]
fn snapshot_restore_keeps_the_idle_link_and_resets_each_other_connection() {
    let mut h = Harness::new();
    let mut old_link = open_link(&mut h);
    let (mut other, other_port) = h.open_from_host(1024);
    let state = through_a_file(&h.vsock.save());
    assert_eq!(state.guest_cid, GUEST_CID);
    assert_eq!(state.kept_port, Some(LINK_PORT));
    let kept = state.connections.kept.expect("the idle link is kept");
    assert_eq!(
        (kept.host_port, kept.guest_port),
        (LINK_PORT, LINK_GUEST_PORT)
    );
    assert_eq!((kept.fwd_cnt, kept.rx_cnt), (5, 6));
    assert_eq!(state.connections.reset, [(other_port, 1024)]);
    assert!(state.transport.queues[RX_QUEUE].next_avail > 0);

    // "Restore" on the same guest memory, as a new process would on the snapshot's memory.
    let uds2 = h._dir.path().join("restored.sock");
    let args = super::VsockConstructorArgs {
        mem: h.driver.mem.clone(),
        uds_path: uds2.clone(),
    };
    let restored = Vsock::restore(args, &state).unwrap();
    assert!(lock(&restored.device).is_activated());
    assert!(
        restored.take_resumed_link().is_none(),
        "not before the vCPUs run"
    );
    restored.resume_guest_connections();
    let mut link = restored.take_resumed_link().expect("the link resumed");
    assert!(restored.take_resumed_link().is_none(), "handed out once");
    let queues = lock(&restored.transport).save().queues;
    assert_eq!(queues, state.transport.queues, "no event buffer used");
    drop(std::mem::replace(&mut h.vsock, restored));
    h.driver.transport = h.vsock.transport.clone();
    h.uds = uds2;
    let mut em = Manager::new().unwrap();
    em.add_subscriber(h.vsock.device.clone());
    h.em = em;
    h.pump();
    assert!(
        sees_eof(&mut old_link),
        "the old device's host streams are closed"
    );
    assert!(sees_eof(&mut other));
    // The other connection is reset on its own; the link is not.
    expect_only_a_reset_of(&mut h, other_port, 1024);
    assert!(
        h.driver.take_used(EVENT_QUEUE).is_empty(),
        "no transport reset"
    );
    link_carries_bytes_both_ways(&mut h, &mut link);
    // The restored device serves new connections on its own socket, not reusing the reset
    // one's port, and keeps the link again.
    let (_, new_port) = h.open_from_host(1024);
    assert!(new_port > other_port);
    assert!(h.vsock.save().connections.kept.is_some());
}

#[test]
fn a_busy_link_is_reset_rather_than_kept() {
    let mut h = Harness::new();
    let mut host = open_link(&mut h);
    // Host bytes the device has not read yet would be lost with the old stream.
    host.write_all(b"unsent").unwrap();
    let state = h.vsock.save();
    assert_eq!(state.connections.kept, None);
    assert_eq!(state.connections.reset, [(LINK_PORT, LINK_GUEST_PORT)]);
    // So is a link the guest half closed.
    let mut h = Harness::new();
    let _host = open_link(&mut h);
    let mut shut = h.hdr(OP_SHUTDOWN, LINK_GUEST_PORT, LINK_PORT);
    shut.flags = SHUTDOWN_SEND;
    h.send(shut, &[]);
    assert_eq!(h.vsock.save().connections.kept, None);
}

#[test]
fn owed_resets_survive_a_snapshot() {
    // No rx buffer: the RST owed for a packet to an unknown connection cannot go out yet.
    let mut h = Harness::with_rx_buffers(0);
    h.send(h.hdr(OP_RW, 7000, 4242), b"stray");
    assert_eq!(h.vsock.save().connections.reset, [(4242, 7000)]);
}

#[test]
fn a_state_naming_impossible_connections_is_refused() {
    let h = Harness::new();
    let mut state = h.vsock.save();
    state.connections.reset = vec![(1, 2); super::saved_connections::MAX_SAVED_RESETS + 1];
    let args = super::VsockConstructorArgs {
        mem: h.driver.mem.clone(),
        uds_path: h._dir.path().join("refused.sock"),
    };
    assert!(matches!(
        Vsock::restore(args, &state),
        Err(super::VsockRestoreError::Connections(_))
    ));
}

#[test]
fn reset_in_place_resumes_the_link_on_a_new_stream() {
    let mut h = Harness::new();
    let mut old_link = open_link(&mut h);
    let (mut other, other_port) = h.open_from_host(1024);
    // Reset to the moment just taken (the test driver's rings cannot go back in time).
    let state = h.vsock.save();
    h.vsock.reset_to(&state).unwrap();
    h.vsock.resume_guest_connections();
    let mut link = h.vsock.take_resumed_link().expect("the link resumed");
    h.pump();
    assert!(sees_eof(&mut old_link));
    assert!(sees_eof(&mut other));
    expect_only_a_reset_of(&mut h, other_port, 1024);
    link_carries_bytes_both_ways(&mut h, &mut link);
}

#[test]
fn reset_to_puts_queues_back_and_drops_connections_and_keeps_the_cid() {
    let mut h = Harness::new();
    let state = h.vsock.save();
    let (mut host, _) = h.open_from_host(1024);
    assert_ne!(h.vsock.save(), state, "the connection moved the queues");

    h.vsock.reset_to(&state).unwrap();
    assert_eq!(h.vsock.save(), state, "queues and registers as saved");
    assert!(lock(&h.vsock.device).is_activated());
    h.vsock.resume_guest_connections();
    h.pump();
    assert!(
        sees_eof(&mut host),
        "host connections do not survive a reset"
    );
    assert_eq!(h.connections(), 0);

    let mut other = state.clone();
    other.guest_cid += 1;
    assert!(matches!(
        h.vsock.reset_to(&other),
        Err(super::VsockRestoreError::Cid { .. })
    ));
}

#[test]
fn stalled_peers_time_out() {
    let mut h = Harness::new();
    let short = Duration::from_millis(50);
    lock(&h.vsock.device).set_timeouts(VsockTimeouts {
        handshake: short,
        connect: short,
        close_flush: short,
    });
    // A guest that closes while the host does not read: its data cannot be flushed.
    let (mut stuck, stuck_port) = h.open_from_host(1025);
    let chunk = vec![1u8; 60 * 1024];
    for _ in 0..4 {
        h.send(h.hdr(OP_RW, 1025, stuck_port), &chunk);
    }
    let mut shut = h.hdr(OP_SHUTDOWN, 1025, stuck_port);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    h.send(shut, &[]);
    assert!(
        h.recv().iter().all(|p| p.hdr.op != OP_RST),
        "flush still pending"
    );
    // A host client that never finishes its CONNECT line.
    let mut silent = h.host_connect();
    silent.write_all(b"CONN").unwrap();
    // A host-initiated connection the guest never answers.
    let mut unanswered = h.host_connect();
    unanswered.write_all(b"CONNECT 1024\n").unwrap();
    h.pump();
    let rx = h.recv();
    assert_eq!(rx.len(), 1);
    let unanswered_port = rx[0].hdr.src_port;
    assert_eq!((h.connections(), h.host_fds()), (2, 3));

    std::thread::sleep(short * 3);
    h.pump();
    let mut resets: Vec<u32> = h
        .recv()
        .iter()
        .filter(|p| p.hdr.op == OP_RST)
        .map(|p| p.hdr.src_port)
        .collect();
    resets.sort_unstable();
    assert_eq!(resets, [stuck_port, unanswered_port]);
    assert!(sees_eof(&mut silent));
    assert!(sees_eof(&mut unanswered));
    // The stuck host gets what reached its socket, then EOF.
    let mut got = Vec::new();
    let _ = stuck.read_to_end(&mut got);
    assert!(!got.is_empty() && got.len() < 4 * chunk.len() && got.iter().all(|&b| b == 1));
    assert_eq!((h.connections(), h.host_fds()), (0, 0));
}

#[test]
fn device_can_live_on_the_event_loop_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<VsockDevice>();
    assert_send::<crate::devices::virtio::mmio::MmioTransport>();
    // The shape the VMM's event manager stores.
    let h = Harness::new();
    let _: Arc<Mutex<dyn event_manager::MutEventSubscriber + Send>> = h.vsock.device.clone();
    let _: crate::devices::bus::SharedBusDevice = h.vsock.transport.clone();
}
