//! One vsock stream connection between a guest port and a host Unix stream.
//!
//! Flow control is virtio-vsock's credit scheme. Guest → host: we advertise `buf_alloc` =
//! [`CONN_TX_BUF_SIZE`] and `fwd_cnt` = guest bytes written to the host stream; bytes the host
//! stream cannot take yet wait in `tx_buf`, which the guest's credit bounds, so a slow host
//! reader stops the guest instead of growing memory. Host → guest: we read the host stream only
//! while the guest's advertised credit allows, straight into the guest's rx buffer.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use event_manager::EventSet;
use virtio_vsock::packet::VsockPacket;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile};

use super::packet::{
    Header, HEADER_SIZE_U32, HOST_CID, MAX_PKT_DATA, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE,
    OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::saved_connections::{unread_bytes, KeptConnection};

/// Guest → host bytes we buffer per connection (our advertised `buf_alloc`).
pub const CONN_TX_BUF_SIZE: u32 = 256 * 1024;
/// Tell the guest about forwarded bytes once this many went unannounced. At most
/// `CONN_TX_BUF_SIZE`, so a guest that ran out of credit always hears back once we drain.
pub const CREDIT_UPDATE_THRESHOLD: u32 = CONN_TX_BUF_SIZE / 2;

/// (host-side port, guest-side port).
pub type ConnKey = (u32, u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Host-initiated: REQUEST queued or sent, waiting for the guest's RESPONSE.
    LocalInit,
    /// Both sides may exchange data.
    Established,
}

/// Control packets owed to the guest.
#[derive(Debug, Default)]
struct Pending {
    request: bool,
    response: bool,
    credit_update: bool,
    /// The host stream hit EOF: tell the guest we will send no more.
    shutdown_send: bool,
}

impl Pending {
    fn any(&self) -> bool {
        self.request || self.response || self.credit_update || self.shutdown_send
    }
}

/// What the muxer must do with a connection after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Protocol violation, host I/O error or a completed close: RST the guest and drop.
    Reset,
    /// The guest reset the connection: drop it without answering.
    Drop,
}

/// What filling one rx buffer produced.
#[derive(Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// A packet of this many bytes (header included) is in the buffer.
    Packet(u32),
    /// Nothing to send right now; the buffer is untouched.
    Nothing,
    /// The host stream failed: RST the guest and drop.
    Reset,
}

/// A vsock stream connection and its host Unix stream.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    local_port: u32,
    peer_port: u32,
    state: State,
    pending: Pending,

    // Guest → host.
    tx_buf: VecDeque<u8>,
    /// Leading bytes of `tx_buf` that are our own `OK <port>\n`, not guest data.
    ok_prefix: usize,
    fwd_cnt: u32,
    last_fwd_cnt_sent: u32,
    peer_shut_send: bool,
    peer_shut_recv: bool,
    host_write_shut: bool,

    // Host → guest.
    rx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// epoll said readable and we have not yet read it dry.
    host_readable: bool,
    host_eof: bool,

    /// When set, the connection is dropped (with an RST) if still alive at this instant.
    deadline: Option<Instant>,
    /// How long a closed connection may take to flush to the host.
    close_flush_timeout: Duration,
}

impl Connection {
    /// A host-initiated connection to guest port `peer_port`; a REQUEST is owed to the guest.
    pub fn host_initiated(
        stream: UnixStream,
        local_port: u32,
        peer_port: u32,
        deadline: Instant,
        close_flush_timeout: Duration,
    ) -> Self {
        let mut conn = Self::new(
            stream,
            local_port,
            peer_port,
            State::LocalInit,
            close_flush_timeout,
        );
        conn.pending.request = true;
        conn.deadline = Some(deadline);
        conn
    }

    /// A guest-initiated connection accepted by the host; a RESPONSE is owed to the guest.
    pub fn guest_initiated(
        stream: UnixStream,
        request: &Header,
        close_flush_timeout: Duration,
    ) -> Self {
        let mut conn = Self::new(
            stream,
            request.dst_port,
            request.src_port,
            State::Established,
            close_flush_timeout,
        );
        conn.pending.response = true;
        conn.peer_buf_alloc = request.buf_alloc;
        conn.peer_fwd_cnt = request.fwd_cnt;
        conn
    }

    fn new(
        stream: UnixStream,
        local_port: u32,
        peer_port: u32,
        state: State,
        close_flush_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            local_port,
            peer_port,
            state,
            pending: Pending::default(),
            tx_buf: VecDeque::new(),
            ok_prefix: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            peer_shut_send: false,
            peer_shut_recv: false,
            host_write_shut: false,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            host_readable: false,
            host_eof: false,
            deadline: None,
            close_flush_timeout,
        }
    }

    /// A connection resumed from a snapshot ([`KeptConnection`]) on a new host stream: established,
    /// with the credit counters the guest's restored memory remembers.
    pub fn resumed(
        stream: UnixStream,
        kept: &KeptConnection,
        close_flush_timeout: Duration,
    ) -> Self {
        let mut conn = Self::new(
            stream,
            kept.host_port,
            kept.guest_port,
            State::Established,
            close_flush_timeout,
        );
        conn.fwd_cnt = kept.fwd_cnt;
        conn.last_fwd_cnt_sent = kept.last_fwd_cnt_sent;
        conn.rx_cnt = kept.rx_cnt;
        conn.peer_buf_alloc = kept.peer_buf_alloc;
        conn.peer_fwd_cnt = kept.peer_fwd_cnt;
        conn.pending.credit_update = kept.credit_update_owed;
        conn
    }

    /// This connection's state for a snapshot, when it is idle: established, open both ways,
    /// nothing buffered in either direction and no packet owed but a credit update. A busy
    /// connection cannot be kept: its bytes in flight would be lost.
    pub fn kept_state(&self) -> Option<KeptConnection> {
        let open = self.state == State::Established
            && !self.peer_shut_send
            && !self.peer_shut_recv
            && !self.host_write_shut
            && !self.host_eof
            && self.deadline.is_none();
        let nothing_owed = !self.pending.request
            && !self.pending.response
            && !self.pending.shutdown_send
            && self.tx_buf.is_empty();
        let host_quiet = || matches!(unread_bytes(&self.stream), Ok(0));
        (open && nothing_owed && host_quiet()).then_some(KeptConnection {
            host_port: self.local_port,
            guest_port: self.peer_port,
            fwd_cnt: self.fwd_cnt,
            last_fwd_cnt_sent: self.last_fwd_cnt_sent,
            rx_cnt: self.rx_cnt,
            peer_buf_alloc: self.peer_buf_alloc,
            peer_fwd_cnt: self.peer_fwd_cnt,
            credit_update_owed: self.pending.credit_update,
        })
    }

    pub fn key(&self) -> ConnKey {
        (self.local_port, self.peer_port)
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The RST that tells the guest this connection is gone.
    pub fn reset_header(&self, guest_cid: u64) -> Header {
        Header {
            op: OP_RST,
            ..self.header(guest_cid)
        }
    }

    fn header(&self, guest_cid: u64) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            type_: TYPE_STREAM,
            buf_alloc: CONN_TX_BUF_SIZE,
            fwd_cnt: self.fwd_cnt,
            ..Header::default()
        }
    }

    /// How many more bytes the guest is ready to receive.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn wants_host_data(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && !self.peer_shut_recv
            && self.peer_credit() > 0
    }

    fn can_send_data(&self) -> bool {
        self.host_readable && self.wants_host_data()
    }

    /// Whether filling an rx buffer would produce a packet (or find out there is none).
    pub fn has_rx_work(&self) -> bool {
        self.pending.any() || self.can_send_data()
    }

    /// The epoll events this connection needs; empty means "do not watch the stream".
    pub fn interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if !self.host_readable && self.wants_host_data() {
            set |= EventSet::IN;
        }
        if !self.tx_buf.is_empty() {
            set |= EventSet::OUT;
        }
        set
    }

    /// A packet the guest sent on this connection (CIDs, type and ports already checked).
    /// `data` is the payload of an RW packet, exactly `hdr.len` bytes.
    pub fn handle_guest_packet<B: BitmapSlice>(
        &mut self,
        hdr: &Header,
        data: Option<&VolatileSlice<'_, B>>,
    ) -> Verdict {
        // Every packet carries the guest's current receive credit.
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
        let ok = match (hdr.op, self.state) {
            (OP_RST, _) => return Verdict::Drop,
            (OP_RESPONSE, State::LocalInit) => self.on_response(),
            (OP_RW, State::Established) if !self.peer_shut_send => self.on_data(hdr.len, data),
            (OP_SHUTDOWN, State::Established) => {
                self.peer_shut_recv |= hdr.flags & SHUTDOWN_RCV != 0;
                self.peer_shut_send |= hdr.flags & SHUTDOWN_SEND != 0;
                true
            }
            (OP_CREDIT_UPDATE, State::Established) => true,
            (OP_CREDIT_REQUEST, State::Established) => {
                self.pending.credit_update = true;
                true
            }
            // Duplicate REQUEST, RESPONSE out of turn, data after SHUTDOWN, unknown op.
            _ => false,
        };
        if ok {
            self.settle()
        } else {
            Verdict::Reset
        }
    }

    fn on_response(&mut self) -> bool {
        self.state = State::Established;
        self.deadline = None;
        let line = format!("OK {}\n", self.local_port);
        self.ok_prefix = line.len();
        self.tx_buf.extend(line.as_bytes());
        self.flush_tx().is_ok()
    }

    fn on_data<B: BitmapSlice>(&mut self, len: u32, data: Option<&VolatileSlice<'_, B>>) -> bool {
        let Some(data) = data else { return len == 0 };
        if data.len() != len as usize {
            return false;
        }
        let buffered = (self.tx_buf.len() - self.ok_prefix) as u64;
        if buffered + u64::from(len) > u64::from(CONN_TX_BUF_SIZE) {
            tracing::warn!("vsock: guest port {} overran its credit", self.peer_port);
            return false;
        }
        let mut written = 0;
        if self.tx_buf.is_empty() {
            match (&self.stream).write_volatile(data) {
                Ok(n) => written = n,
                Err(VolatileMemoryError::IOError(e)) if is_retry(&e) => {}
                Err(_) => return false,
            }
            // Bounded: at most `len`, a u32 (the slice's length was checked against it).
            #[allow(clippy::cast_possible_truncation)]
            let written_u32 = written as u32;
            self.fwd_cnt = self.fwd_cnt.wrapping_add(written_u32);
        }
        if written < data.len() {
            let mut rest = vec![0u8; data.len() - written];
            match data.offset(written) {
                Ok(tail) => tail.copy_to(&mut rest[..]),
                Err(_) => return false,
            };
            self.tx_buf.extend(rest);
        }
        true
    }

    /// Writes buffered guest data to the host stream until it would block.
    fn flush_tx(&mut self) -> io::Result<()> {
        while !self.tx_buf.is_empty() {
            let (front, _) = self.tx_buf.as_slices();
            match (&self.stream).write(front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    let ours = n.min(self.ok_prefix);
                    self.ok_prefix -= ours;
                    // Bounded: at most the buffered guest bytes, which the credit check keeps
                    // within CONN_TX_BUF_SIZE (a u32) plus the short OK line.
                    #[allow(clippy::cast_possible_truncation)]
                    let forwarded = (n - ours) as u32;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(forwarded);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.tx_buf.is_empty() && self.tx_buf.capacity() > MAX_PKT_DATA as usize {
            // An idle connection should not pin a large buffer.
            self.tx_buf = VecDeque::new();
        }
        Ok(())
    }

    /// Applies consequences of the current state: half-close the host stream once the guest's
    /// data is flushed, finish a full close, announce credit.
    fn settle(&mut self) -> Verdict {
        if self.tx_buf.is_empty() {
            if self.peer_shut_send && !self.host_write_shut {
                // Errors only mean the host already went away; reads/writes will report it.
                let _ = self.stream.shutdown(Shutdown::Write);
                self.host_write_shut = true;
            }
            if self.peer_shut_send && self.peer_shut_recv {
                // The guest closed and everything it sent reached the host: its close completes
                // when it receives our RST.
                return Verdict::Reset;
            }
        } else if self.peer_shut_send && self.peer_shut_recv && self.deadline.is_none() {
            // Bound how long a host that stopped reading can hold a closed connection.
            self.deadline = Some(Instant::now() + self.close_flush_timeout);
        }
        if self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= CREDIT_UPDATE_THRESHOLD {
            self.pending.credit_update = true;
        }
        Verdict::Keep
    }

    /// epoll reported `events` on the host stream.
    pub fn handle_host_event(&mut self, events: EventSet) -> Verdict {
        if events
            .intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP)
        {
            self.host_readable = true;
        }
        if events.intersects(EventSet::OUT | EventSet::HANG_UP | EventSet::ERROR)
            && self.flush_tx().is_err()
        {
            return Verdict::Reset;
        }
        self.settle()
    }

    /// Fills one guest rx buffer with the next packet this connection owes the guest.
    pub fn fill_rx<B: BitmapSlice>(
        &mut self,
        pkt: &mut VsockPacket<'_, B>,
        guest_cid: u64,
    ) -> RxOutcome {
        let mut hdr = self.header(guest_cid);
        if self.pending.request {
            self.pending.request = false;
            hdr.op = OP_REQUEST;
        } else if self.pending.response {
            self.pending.response = false;
            hdr.op = OP_RESPONSE;
        } else if let Some(outcome) = self.read_host_data(pkt, &mut hdr) {
            if outcome != RxOutcome::Nothing {
                return outcome;
            }
            return self.fill_rx(pkt, guest_cid);
        } else if self.pending.credit_update {
            hdr.op = OP_CREDIT_UPDATE;
        } else if self.pending.shutdown_send {
            self.pending.shutdown_send = false;
            hdr.op = OP_SHUTDOWN;
            hdr.flags = SHUTDOWN_SEND;
        } else {
            return RxOutcome::Nothing;
        }
        self.emit(pkt, &hdr)
    }

    /// Reads host data into the packet's data buffer. `None` when data cannot be sent now;
    /// `Some(Nothing)` when the read changed state (EOF, would block) and the caller should
    /// look again for something else to send.
    fn read_host_data<B: BitmapSlice>(
        &mut self,
        pkt: &mut VsockPacket<'_, B>,
        hdr: &mut Header,
    ) -> Option<RxOutcome> {
        if !self.can_send_data() {
            return None;
        }
        let data = pkt.data_slice()?;
        let max = data
            .len()
            .min(self.peer_credit() as usize)
            .min(MAX_PKT_DATA as usize);
        let mut dst = data.subslice(0, max).ok()?;
        match (&self.stream).read_volatile(&mut dst) {
            Ok(0) => {
                self.host_eof = true;
                self.pending.shutdown_send = true;
                Some(RxOutcome::Nothing)
            }
            Ok(n) => {
                // Bounded: at most `max`, which is at most MAX_PKT_DATA (64 KiB).
                #[allow(clippy::cast_possible_truncation)]
                let n = n as u32;
                hdr.op = OP_RW;
                hdr.len = n;
                self.rx_cnt = self.rx_cnt.wrapping_add(n);
                Some(self.emit(pkt, hdr))
            }
            Err(VolatileMemoryError::IOError(e)) if is_retry(&e) => {
                self.host_readable = false;
                Some(RxOutcome::Nothing)
            }
            Err(_) => Some(RxOutcome::Reset),
        }
    }

    fn emit<B: BitmapSlice>(&mut self, pkt: &mut VsockPacket<'_, B>, hdr: &Header) -> RxOutcome {
        self.pending.credit_update = false;
        self.last_fwd_cnt_sent = hdr.fwd_cnt;
        match pkt.set_header_from_raw(&hdr.to_bytes()) {
            Ok(()) => RxOutcome::Packet(HEADER_SIZE_U32 + hdr.len),
            Err(_) => RxOutcome::Reset,
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
