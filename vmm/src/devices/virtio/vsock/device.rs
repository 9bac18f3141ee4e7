//! The vsock device proper: config space, activation, and moving packets between the virtqueues
//! and the muxer.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueState, QueueT};
use virtio_vsock::packet::VsockPacket;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use super::muxer::{Muxer, VsockTimeouts};
use super::packet::{Header, MAX_PKT_DATA};
use super::saved_connections::ConnectionsState;
use super::{VsockError, NUM_QUEUES, RX_QUEUE, TX_QUEUE, VSOCK_DEVICE_ID};
use crate::devices::virtio::{
    ActivateError, GuestMemory, Interrupt, VirtioDevice, INTERRUPT_USED_BUFFER, VIRTIO_F_VERSION_1,
};

/// Size offered for each of the three queues.
pub const VSOCK_QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; NUM_QUEUES] = [VSOCK_QUEUE_SIZE; NUM_QUEUES];

/// The virtio-vsock device. Shared as `Arc<Mutex<VsockDevice>>` between the transport (vCPU
/// threads) and the event loop, where it is a `MutEventSubscriber`.
pub struct VsockDevice {
    pub(super) guest_cid: u64,
    pub(super) mem: GuestMemory,
    pub(super) interrupt: Arc<Interrupt>,
    pub(super) queue_evts: Vec<EventFd>,
    /// Wakes the event loop after activation or reset (they happen on a vCPU thread).
    pub(super) wake_evt: EventFd,
    pub(super) timer: TimerFd,
    /// The deadline the timer is armed for.
    pub(super) timer_deadline: Option<std::time::Instant>,
    /// The activated queues, indexed by `RX_QUEUE`/`TX_QUEUE`/`EVENT_QUEUE`.
    pub(super) queues: Option<Vec<Queue>>,
    pub(super) acked_features: u64,
    pub(super) muxer: Muxer,
    /// Connections to resume once the vCPUs are back after a restore or reset.
    pub(super) pending_resume: Option<ConnectionsState>,
    /// The host end of the connection resumed last, until its owner takes it.
    pub(super) resumed_link: Option<UnixStream>,
}

impl std::fmt::Debug for VsockDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsockDevice")
            .field("guest_cid", &self.guest_cid)
            .finish_non_exhaustive()
    }
}

impl VsockDevice {
    /// A device for `guest_cid` listening on `uds_path`. `queue_evts` are the device's copies of
    /// the transport's notification eventfds; `interrupt` is shared with the transport.
    pub(super) fn new(
        mem: GuestMemory,
        guest_cid: u64,
        uds_path: &Path,
        queue_evts: Vec<EventFd>,
        interrupt: Arc<Interrupt>,
    ) -> Result<Self, VsockError> {
        if !(3..u64::from(u32::MAX)).contains(&guest_cid) {
            return Err(VsockError::InvalidCid(guest_cid));
        }
        let muxer = Muxer::new(uds_path, guest_cid).map_err(|source| VsockError::Listen {
            path: uds_path.display().to_string(),
            source,
        })?;
        Ok(Self {
            guest_cid,
            mem,
            interrupt,
            queue_evts,
            wake_evt: EventFd::new(EFD_NONBLOCK).map_err(VsockError::EventFd)?,
            timer: nonblocking_timer().map_err(VsockError::EventFd)?,
            timer_deadline: None,
            queues: None,
            acked_features: 0,
            muxer,
            pending_resume: None,
            resumed_link: None,
        })
    }

    /// Changes how long the device waits for stalled peers (defaults: 10 s each).
    pub fn set_timeouts(&mut self, timeouts: VsockTimeouts) {
        self.muxer.set_timeouts(timeouts);
    }

    /// The guest's CID.
    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// Whether the driver activated the device.
    pub fn is_activated(&self) -> bool {
        self.queues.is_some()
    }

    /// Live connections to the host.
    pub fn connection_count(&self) -> usize {
        self.muxer.connection_count()
    }

    /// Host stream fds the device holds (connections, handshakes, not yet released).
    pub fn host_fd_count(&self) -> usize {
        self.muxer.host_fd_count()
    }

    /// Makes the idle connection to host port `port` survive snapshots, restores and resets
    /// (see [`ConnectionsState`]).
    pub fn set_kept_port(&mut self, port: Option<u32>) {
        self.muxer.set_kept_port(port);
    }

    pub fn kept_port(&self) -> Option<u32> {
        self.muxer.kept_port()
    }

    /// The connections for a snapshot.
    pub fn save_connections(&self) -> ConnectionsState {
        self.muxer.save_connections()
    }

    /// After a restore or reset, once the vCPUs are back: resets, one by one, the guest's
    /// connections whose host side is gone and resumes the kept one (see
    /// [`VsockDevice::take_resumed_link`]). No device-wide transport reset.
    pub fn resume_connections(&mut self) {
        let Some(saved) = self.pending_resume.take() else {
            return;
        };
        if self.is_activated() {
            self.resumed_link = self.muxer.resume_connections(&saved);
            self.wake();
        }
    }

    /// The host end of the connection [`VsockDevice::resume_connections`] kept, once.
    pub fn take_resumed_link(&mut self) -> Option<UnixStream> {
        self.resumed_link.take()
    }

    pub(super) fn wake(&self) {
        if let Err(e) = self.wake_evt.write(1) {
            tracing::warn!("vsock: wake eventfd write failed: {e}");
        }
    }

    /// Signals the guest if it wants to hear about used buffers on `queue`.
    fn notify_used(&mut self, queue: usize) {
        let Some(q) = self.queues.as_mut().and_then(|qs| qs.get_mut(queue)) else {
            return;
        };
        // On a malformed ring, err on the side of interrupting.
        if q.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.trigger(INTERRUPT_USED_BUFFER);
        }
    }

    /// Moves every packet the guest queued for transmission to the muxer.
    pub(super) fn process_tx(&mut self, ops: &mut event_manager::EventOps) {
        let mem = &self.mem;
        let Some(q) = self.queues.as_mut().and_then(|qs| qs.get_mut(TX_QUEUE)) else {
            return;
        };
        let mut used = false;
        while let Some(mut chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match VsockPacket::from_tx_virtq_chain(mem, &mut chain, MAX_PKT_DATA) {
                Ok(pkt) => {
                    self.muxer
                        .handle_guest_packet(&Header::of_packet(&pkt), pkt.data_slice(), ops)
                }
                Err(e) => tracing::debug!("vsock: dropping malformed tx packet: {e}"),
            }
            if let Err(e) = q.add_used(mem, head, 0) {
                tracing::warn!("vsock: tx add_used failed: {e}");
            }
            used = true;
        }
        if used {
            self.notify_used(TX_QUEUE);
        }
    }

    /// Fills guest rx buffers while the muxer has packets for the guest.
    pub(super) fn process_rx(&mut self, ops: &mut event_manager::EventOps) {
        let mem = &self.mem;
        let Some(q) = self.queues.as_mut().and_then(|qs| qs.get_mut(RX_QUEUE)) else {
            return;
        };
        let mut used = false;
        while self.muxer.has_rx_work() {
            let Some(mut chain) = q.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let len = match VsockPacket::from_rx_virtq_chain(mem, &mut chain, MAX_PKT_DATA) {
                Ok(mut pkt) => match self.muxer.fill_rx(&mut pkt, ops) {
                    Some(len) => len,
                    // No room for data, and only data is pending: a conforming driver never
                    // posts such a buffer; give it back rather than let it block the ring.
                    None if pkt.data_slice().is_none() => 0,
                    None => {
                        // Nothing to put in it after all: leave the buffer to the guest's ring.
                        q.go_to_previous_position();
                        break;
                    }
                },
                Err(e) => {
                    tracing::debug!("vsock: returning malformed rx buffer: {e}");
                    0
                }
            };
            if let Err(e) = q.add_used(mem, head, len) {
                tracing::warn!("vsock: rx add_used failed: {e}");
            }
            used = true;
        }
        if used {
            self.notify_used(RX_QUEUE);
        }
    }
}

/// A timerfd whose reads never block: `TimerFd` creates blocking ones, and re-arming a timer
/// clears an expiration epoll may already have reported, so a blocking read could hang the loop.
fn nonblocking_timer() -> std::io::Result<TimerFd> {
    let timer = TimerFd::new().map_err(std::io::Error::from)?;
    let fd = timer.as_raw_fd();
    // SAFETY: F_GETFL on an fd we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: F_SETFL on an fd we own with an integer argument; no memory is passed.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(timer)
}

impl VirtioDevice for VsockDevice {
    fn device_type(&self) -> u32 {
        VSOCK_DEVICE_ID
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_vsock_config { le64 guest_cid; }
        let config = self.guest_cid.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok());
            *byte = at.and_then(|o| config.get(o)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(
            "vsock: ignored {}-byte config write at {offset:#x}",
            data.len()
        );
    }

    fn activate(&mut self, queues: Vec<Queue>, acked_features: u64) -> Result<(), ActivateError> {
        if queues.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                expected: NUM_QUEUES,
                got: queues.len(),
            });
        }
        if let Some(index) = queues.iter().position(|q| !q.ready()) {
            return Err(ActivateError::QueueNotReady(index));
        }
        self.queues = Some(queues);
        self.acked_features = acked_features;
        // Host connections may have queued up before the driver was ready.
        self.wake();
        Ok(())
    }

    fn reset(&mut self) {
        self.queues = None;
        self.acked_features = 0;
        self.pending_resume = None;
        self.resumed_link = None;
        self.muxer.drop_all_connections();
        self.wake();
    }

    fn queue_states(&self) -> Option<Vec<QueueState>> {
        self.queues
            .as_ref()
            .map(|qs| qs.iter().map(Queue::state).collect())
    }
}
