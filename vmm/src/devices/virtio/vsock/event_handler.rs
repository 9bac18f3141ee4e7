//! The vsock device on the event loop: queue notifications, the host listener, host streams, the
//! wake-up eventfd and the timeout timer.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::VsockDevice;
use super::{EVENT_QUEUE, RX_QUEUE, TX_QUEUE};

/// Lower bound on a timer arming, so an already-passed deadline still fires.
const MIN_TIMER_DELAY: Duration = Duration::from_millis(1);

impl VsockDevice {
    /// Arms the timer for the earliest pending deadline (or disarms it).
    fn arm_timer(&mut self) {
        let next = self.muxer.next_deadline();
        if next == self.timer_deadline {
            return;
        }
        let result = match next {
            Some(at) => {
                let delay = at
                    .saturating_duration_since(Instant::now())
                    .max(MIN_TIMER_DELAY);
                self.timer.reset(delay, None)
            }
            None => self.timer.clear(),
        };
        match result {
            Ok(()) => self.timer_deadline = next,
            Err(e) => tracing::warn!("vsock: timer update failed: {e}"),
        }
    }

    fn drain_queue_event(&self, queue: usize) {
        // A nonblocking eventfd with nothing pending reports WouldBlock: nothing to do then.
        let _ = self.queue_evts[queue].read();
    }
}

impl MutEventSubscriber for VsockDevice {
    fn init(&mut self, ops: &mut EventOps) {
        let fds = self.queue_evts.iter().map(AsRawFd::as_raw_fd).chain([
            self.wake_evt.as_raw_fd(),
            self.timer.as_raw_fd(),
            self.muxer.listener().as_raw_fd(),
        ]);
        for fd in fds {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                tracing::error!("vsock: cannot register fd {fd}: {e:?}");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        self.muxer.bury(ops);
        let (fd, set) = (events.fd(), events.event_set());
        let queue = self.queue_evts.iter().position(|e| e.as_raw_fd() == fd);
        match queue {
            Some(TX_QUEUE) => {
                self.drain_queue_event(TX_QUEUE);
                self.process_tx(ops);
            }
            // New rx or event buffers: used below.
            Some(q @ (RX_QUEUE | EVENT_QUEUE)) => self.drain_queue_event(q),
            Some(_) => {}
            None if fd == self.wake_evt.as_raw_fd() => {
                let _ = self.wake_evt.read();
                // Kicks that raced with activation may have been consumed before it.
                self.process_tx(ops);
            }
            None if fd == self.timer.as_raw_fd() => {
                // The expiration count does not matter. The timerfd is nonblocking: it may have
                // been re-armed (which clears it) after epoll reported it.
                let _ = self.timer.wait();
                self.timer_deadline = None;
                self.muxer.expire(Instant::now(), ops);
            }
            None if fd == self.muxer.listener().as_raw_fd() => self.muxer.accept(ops),
            None => {
                if !self.muxer.handle_host_event(fd, set, ops) {
                    // Possible for an fd dropped by a device reset earlier in the same batch.
                    tracing::debug!("vsock: event on unknown fd {fd}, unregistering it");
                    let _ = ops.remove(Events::empty_raw(fd));
                }
            }
        }
        self.process_rx(ops);
        self.arm_timer();
    }
}
