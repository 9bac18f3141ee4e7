//! The host side of vsock: maps guest connections to host Unix streams.
//!
//! Host-initiated: a process connects to the `<uds>` listener and writes `CONNECT <port>\n`; we
//! send the guest a REQUEST and, on its RESPONSE, write `OK <local_port>\n` back. Guest-initiated:
//! a REQUEST to host port P connects to `<uds>_P`. The muxer owns every host fd, keeps their epoll
//! registrations in step with what each connection can make progress on, and schedules which
//! connection fills the next guest rx buffer (round robin).

use crate::devices::repeats::Repeats;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events};
use virtio_vsock::packet::VsockPacket;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

use super::connection::{ConnKey, Connection, RxOutcome, Verdict};
use super::handshake::{HostHandshake, Step};
use super::packet::{Header, HEADER_SIZE_U32, HOST_CID, OP_REQUEST, OP_RST, TYPE_STREAM};
use super::saved_connections::ConnectionsState;
use super::uds;

/// Live connections (both directions together).
pub const MAX_CONNECTIONS: usize = 512;
/// Host connections still sending their `CONNECT` line.
pub const MAX_HANDSHAKES: usize = 64;
/// RSTs waiting for a guest rx buffer after their connection is gone.
pub const MAX_ORPHAN_REPLIES: usize = 1024;

/// How long the muxer waits for peers that stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VsockTimeouts {
    /// A host client must finish its `CONNECT` line within this time.
    pub handshake: Duration,
    /// The guest must answer a host-initiated REQUEST within this time.
    pub connect: Duration,
    /// After the guest closed, its remaining data must reach the host within this time.
    pub close_flush: Duration,
}

impl Default for VsockTimeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(10),
            close_flush: Duration::from_secs(10),
        }
    }
}
/// Host-side ports of host-initiated connections start here, far from well-known ports.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Connections accepted per listener wakeup, so one flood cannot starve the queues.
const ACCEPT_BATCH: usize = 16;
/// After accept fails for lack of resources (e.g. EMFILE), stop watching the listener this long:
/// the pending connection keeps it readable, and watching it would spin the event loop.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum FdOwner {
    Handshake,
    Conn(ConnKey),
}

/// The vsock backend: listener, handshakes and connections.
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    conns: HashMap<ConnKey, Connection>,
    handshakes: HashMap<RawFd, (HostHandshake, Instant)>,
    owners: HashMap<RawFd, FdOwner>,
    /// What each fd is registered for in epoll right now (absent = not registered).
    watched: HashMap<RawFd, EventSet>,
    /// Connections that may have something for the guest, in service order.
    backlog: VecDeque<ConnKey>,
    scheduled: HashSet<ConnKey>,
    orphan_replies: VecDeque<Header>,
    /// Connections dropped outside the event loop (device reset), awaiting epoll removal.
    graveyard: Vec<Connection>,
    /// Connections added outside the event loop (a resume), awaiting epoll registration.
    adopted: Vec<ConnKey>,
    /// The host port whose idle connection a snapshot keeps ([`ConnectionsState`]).
    kept_port: Option<u32>,
    next_local_port: u32,
    /// Set while the listener is unwatched after an accept failure.
    accept_paused_until: Option<Instant>,
    timeouts: VsockTimeouts,
    /// Guest connects refused at the connection limit (logged on each doubling).
    refused_connects: Repeats,
    /// Replies dropped because the guest does not drain its RX queue (likewise).
    dropped_replies: Repeats,
}

impl Muxer {
    /// Listens on `uds_path` (which must not exist yet).
    pub fn new(uds_path: &Path, guest_cid: u64) -> io::Result<Self> {
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            conns: HashMap::new(),
            handshakes: HashMap::new(),
            owners: HashMap::new(),
            watched: HashMap::new(),
            backlog: VecDeque::new(),
            scheduled: HashSet::new(),
            orphan_replies: VecDeque::new(),
            graveyard: Vec::new(),
            adopted: Vec::new(),
            kept_port: None,
            next_local_port: FIRST_LOCAL_PORT,
            accept_paused_until: None,
            timeouts: VsockTimeouts::default(),
            refused_connects: Repeats::default(),
            dropped_replies: Repeats::default(),
        })
    }

    pub fn set_timeouts(&mut self, timeouts: VsockTimeouts) {
        self.timeouts = timeouts;
    }

    /// Makes the idle connection to host port `port` survive snapshots (see
    /// [`ConnectionsState`]).
    pub fn set_kept_port(&mut self, port: Option<u32>) {
        self.kept_port = port;
    }

    pub fn kept_port(&self) -> Option<u32> {
        self.kept_port
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Starts watching the listener (from the subscriber's `init`).
    pub fn watch_listener(&mut self, ops: &mut EventOps) {
        self.watch(self.listener.as_raw_fd(), EventSet::IN, ops);
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of host fds (connections + handshakes + not yet released) the muxer holds.
    pub fn host_fd_count(&self) -> usize {
        self.conns.len() + self.handshakes.len() + self.graveyard.len()
    }

    /// Number of fds registered in epoll, the listener excluded.
    #[cfg(test)]
    pub fn watched_count(&self) -> usize {
        self.watched.len()
    }

    /// Whether the guest should get another rx buffer filled.
    pub fn has_rx_work(&self) -> bool {
        !self.orphan_replies.is_empty() || !self.backlog.is_empty()
    }

    /// Drops every connection (a device reset, or a reset to a snapshot). Callable without an
    /// `EventOps`: the fds stay open in the graveyard until [`Muxer::bury`] unregisters them.
    pub fn drop_all_connections(&mut self) {
        self.graveyard.extend(self.conns.drain().map(|(_, c)| c));
        self.backlog.clear();
        self.scheduled.clear();
        self.orphan_replies.clear();
        self.adopted.clear();
    }

    /// Unregisters and closes connections dropped outside the event loop, and registers those
    /// added outside it.
    pub fn bury(&mut self, ops: &mut EventOps) {
        for conn in std::mem::take(&mut self.graveyard) {
            let fd = conn.stream().as_raw_fd();
            self.watch(fd, EventSet::empty(), ops);
            self.owners.remove(&fd);
        }
        for key in std::mem::take(&mut self.adopted) {
            self.refresh(key, ops);
        }
    }

    /// What a snapshot keeps of the connections: the idle one on the kept port, and the ports of
    /// all others and of the RSTs still owed, to reset after a restore.
    pub fn save_connections(&self) -> ConnectionsState {
        let kept = self.kept_port.and_then(|port| {
            let mut candidates = self.conns.values().filter(|c| c.key().0 == port);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => only.kept_state(),
                // None, or several (a guest that connected twice): keep none.
                _ => None,
            }
        });
        let kept_key = kept.map(|k| (k.host_port, k.guest_port));
        let mut reset: Vec<(u32, u32)> = self
            .conns
            .keys()
            .copied()
            .filter(|key| Some(*key) != kept_key)
            .chain(self.orphan_replies.iter().map(|h| (h.src_port, h.dst_port)))
            .collect();
        reset.sort_unstable();
        reset.dedup();
        ConnectionsState { kept, reset }
    }

    /// After a restore or reset (which left no connection): queues an RST for every connection
    /// the guest may believe open, and resumes the kept one on a new stream pair, returning the
    /// host end. Its registration with epoll happens on the next event ([`Muxer::bury`]).
    pub fn resume_connections(&mut self, saved: &ConnectionsState) -> Option<UnixStream> {
        // New host-initiated connections take ports after the saved ones, so none shares a
        // port pair with a connection whose RST is still on its way.
        let highest = saved
            .reset
            .iter()
            .map(|&(host_port, _)| host_port)
            .filter(|&port| port >= FIRST_LOCAL_PORT)
            .max();
        if let Some(next) = highest.and_then(|port| port.checked_add(1)) {
            self.next_local_port = next;
        }
        for &(host_port, guest_port) in &saved.reset {
            self.owe_reset(host_port, guest_port);
        }
        let kept = saved.kept.as_ref()?;
        let pair = UnixStream::pair().and_then(|(ours, theirs)| {
            ours.set_nonblocking(true)?;
            Ok((ours, theirs))
        });
        let (ours, theirs) = match pair {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("vsock: cannot resume the kept connection, resetting it: {e}");
                self.owe_reset(kept.host_port, kept.guest_port);
                return None;
            }
        };
        let conn = Connection::resumed(ours, kept, self.timeouts.close_flush);
        let key = conn.key();
        self.owners
            .insert(conn.stream().as_raw_fd(), FdOwner::Conn(key));
        self.conns.insert(key, conn);
        self.adopted.push(key);
        Some(theirs)
    }

    /// Accepts pending host connections.
    pub fn accept(&mut self, ops: &mut EventOps) {
        for _ in 0..ACCEPT_BATCH {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("vsock: accept on {} failed: {e}", self.uds_path.display());
                    self.watch(self.listener.as_raw_fd(), EventSet::empty(), ops);
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            };
            if self.handshakes.len() >= MAX_HANDSHAKES || self.conns.len() >= MAX_CONNECTIONS {
                tracing::warn!("vsock: too many host connections, refusing one");
                continue;
            }
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::warn!("vsock: cannot make host stream nonblocking: {e}");
                continue;
            }
            let fd = stream.as_raw_fd();
            self.handshakes.insert(
                fd,
                (
                    HostHandshake::new(stream),
                    Instant::now() + self.timeouts.handshake,
                ),
            );
            self.owners.insert(fd, FdOwner::Handshake);
            self.watch(fd, EventSet::IN, ops);
        }
    }

    /// Handles epoll `events` on a host fd; `false` if the fd is not ours.
    pub fn handle_host_event(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps) -> bool {
        match self.owners.get(&fd).copied() {
            Some(FdOwner::Handshake) => self.advance_handshake(fd, ops),
            Some(FdOwner::Conn(key)) => {
                if let Some(conn) = self.conns.get_mut(&key) {
                    let verdict = conn.handle_host_event(events);
                    self.apply(key, verdict, ops);
                }
            }
            None => return false,
        }
        true
    }

    fn advance_handshake(&mut self, fd: RawFd, ops: &mut EventOps) {
        let Some((hs, _)) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let step = hs.advance();
        if step == Step::Pending {
            return;
        }
        self.watch(fd, EventSet::empty(), ops);
        self.owners.remove(&fd);
        let Some((hs, _)) = self.handshakes.remove(&fd) else {
            return;
        };
        let Step::Connect(peer_port) = step else {
            tracing::debug!("vsock: malformed CONNECT line, closing host stream");
            return;
        };
        let Some(local_port) = self.allocate_local_port(peer_port) else {
            tracing::warn!("vsock: no connection slot for host connect to port {peer_port}");
            return;
        };
        let conn = Connection::host_initiated(
            hs.into_stream(),
            local_port,
            peer_port,
            Instant::now() + self.timeouts.connect,
            self.timeouts.close_flush,
        );
        self.insert(conn, ops);
    }

    fn allocate_local_port(&mut self, peer_port: u32) -> Option<u32> {
        if self.conns.len() >= MAX_CONNECTIONS {
            return None;
        }
        loop {
            let port = self.next_local_port;
            self.next_local_port = port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            // Fewer than MAX_CONNECTIONS ports are taken, so this ends quickly.
            if !self.conns.contains_key(&(port, peer_port)) {
                return Some(port);
            }
        }
    }

    fn insert(&mut self, conn: Connection, ops: &mut EventOps) {
        let key = conn.key();
        self.owners
            .insert(conn.stream().as_raw_fd(), FdOwner::Conn(key));
        self.conns.insert(key, conn);
        self.refresh(key, ops);
    }

    /// A packet from the guest's tx queue. `data` is the RW payload (`hdr.len` bytes).
    pub fn handle_guest_packet<B: BitmapSlice>(
        &mut self,
        hdr: &Header,
        data: Option<&VolatileSlice<'_, B>>,
        ops: &mut EventOps,
    ) {
        if hdr.src_cid != self.guest_cid || hdr.dst_cid != HOST_CID {
            tracing::debug!(
                "vsock: dropping packet {} -> {} with foreign CIDs",
                hdr.src_cid,
                hdr.dst_cid
            );
            return;
        }
        if hdr.type_ != TYPE_STREAM {
            self.reply_reset(hdr);
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if let Some(conn) = self.conns.get_mut(&key) {
            let verdict = conn.handle_guest_packet(hdr, data);
            self.apply(key, verdict, ops);
        } else if hdr.op == OP_REQUEST {
            self.connect_to_host(hdr, ops);
        } else {
            self.reply_reset(hdr);
        }
    }

    fn connect_to_host(&mut self, hdr: &Header, ops: &mut EventOps) {
        if self.conns.len() >= MAX_CONNECTIONS {
            if let Some(times) = self.refused_connects.occurred() {
                tracing::warn!(
                    "vsock: connection limit reached, refusing guest port {} ({times} refused so far)",
                    hdr.src_port
                );
            }
            self.reply_reset(hdr);
            return;
        }
        let path = uds::port_path(&self.uds_path, hdr.dst_port);
        match uds::connect_nonblocking(&path) {
            Ok(stream) => {
                let conn = Connection::guest_initiated(stream, hdr, self.timeouts.close_flush);
                self.insert(conn, ops);
            }
            Err(e) => {
                tracing::debug!("vsock: guest connect to {} failed: {e}", path.display());
                self.reply_reset(hdr);
            }
        }
    }

    /// Queues an RST telling the guest that connection (`host_port`, `guest_port`) is gone.
    fn owe_reset(&mut self, host_port: u32, guest_port: u32) {
        self.push_orphan_reply(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: host_port,
            dst_port: guest_port,
            type_: TYPE_STREAM,
            op: OP_RST,
            ..Header::default()
        });
    }

    /// Answers a guest packet with an RST, never an RST with an RST.
    fn reply_reset(&mut self, hdr: &Header) {
        if hdr.op != OP_RST {
            self.push_orphan_reply(hdr.reset_reply());
        }
    }

    fn push_orphan_reply(&mut self, hdr: Header) {
        if self.orphan_replies.len() < MAX_ORPHAN_REPLIES {
            self.orphan_replies.push_back(hdr);
        } else {
            if let Some(times) = self.dropped_replies.occurred() {
                tracing::warn!(
                    "vsock: guest is not draining its rx queue, dropping an RST ({times} so far)"
                );
            }
        }
    }

    fn apply(&mut self, key: ConnKey, verdict: Verdict, ops: &mut EventOps) {
        match verdict {
            Verdict::Keep => self.refresh(key, ops),
            Verdict::Reset => self.kill(key, ops),
            Verdict::Drop => {
                self.remove(key, ops);
            }
        }
    }

    /// Drops a connection and tells the guest.
    fn kill(&mut self, key: ConnKey, ops: &mut EventOps) {
        if let Some(conn) = self.remove(key, ops) {
            self.push_orphan_reply(conn.reset_header(self.guest_cid));
        }
    }

    fn remove(&mut self, key: ConnKey, ops: &mut EventOps) -> Option<Connection> {
        let conn = self.conns.remove(&key)?;
        let fd = conn.stream().as_raw_fd();
        // Unregister before the fd closes (when `conn` drops), so the number can be reused.
        self.watch(fd, EventSet::empty(), ops);
        self.owners.remove(&fd);
        Some(conn)
    }

    /// Re-evaluates a connection after anything happened to it: schedule it for the guest's rx
    /// queue if it has something to say, and watch exactly the host events it can act on.
    fn refresh(&mut self, key: ConnKey, ops: &mut EventOps) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let (fd, interest) = (conn.stream().as_raw_fd(), conn.interest());
        if conn.has_rx_work() && self.scheduled.insert(key) {
            self.backlog.push_back(key);
        }
        self.watch(fd, interest, ops);
    }

    fn watch(&mut self, fd: RawFd, set: EventSet, ops: &mut EventOps) {
        let current = self.watched.get(&fd).copied();
        let result = match current {
            None if set.is_empty() => return,
            None => ops.add(Events::new_raw(fd, set)),
            Some(_) if set.is_empty() => ops.remove(Events::empty_raw(fd)),
            Some(cur) if cur == set => return,
            Some(_) => ops.modify(Events::new_raw(fd, set)),
        };
        if set.is_empty() {
            self.watched.remove(&fd);
        } else {
            self.watched.insert(fd, set);
        }
        if let Err(e) = result {
            tracing::error!("vsock: epoll update for fd {fd} failed: {e:?}");
        }
    }

    /// Fills one guest rx buffer; `None` when nothing can be sent right now.
    pub fn fill_rx<B: BitmapSlice>(
        &mut self,
        pkt: &mut VsockPacket<'_, B>,
        ops: &mut EventOps,
    ) -> Option<u32> {
        let mut deferred = Vec::new();
        let filled = loop {
            if let Some(reply) = self.orphan_replies.pop_front() {
                break pkt
                    .set_header_from_raw(&reply.to_bytes())
                    .ok()
                    .map(|()| HEADER_SIZE_U32);
            }
            let Some(key) = self.backlog.pop_front() else {
                break None;
            };
            self.scheduled.remove(&key);
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            match conn.fill_rx(pkt, self.guest_cid) {
                RxOutcome::Packet(len) => {
                    self.refresh(key, ops);
                    break Some(len);
                }
                // Nothing fits this buffer (e.g. it has no data area): retry on a later one.
                RxOutcome::Nothing => deferred.push(key),
                // The RST lands in `orphan_replies` and goes out in this very buffer.
                RxOutcome::Reset => self.kill(key, ops),
            }
        };
        for key in deferred {
            self.refresh(key, ops);
        }
        filled
    }

    /// The earliest instant some connection or handshake times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(Connection::deadline);
        let handshakes = self.handshakes.values().map(|(_, deadline)| *deadline);
        conns
            .chain(handshakes)
            .chain(self.accept_paused_until)
            .min()
    }

    /// Drops what timed out (handshakes silently, connections with an RST to the guest) and
    /// resumes accepting after a backoff.
    pub fn expire(&mut self, now: Instant, ops: &mut EventOps) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.watch_listener(ops);
        }
        let late: Vec<RawFd> = self
            .handshakes
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in late {
            self.watch(fd, EventSet::empty(), ops);
            self.owners.remove(&fd);
            self.handshakes.remove(&fd);
        }
        let late: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            tracing::warn!("vsock: connection {key:?} timed out");
            self.kill(key, ops);
        }
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        // The listener's socket file would otherwise block the next bind on this path.
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
