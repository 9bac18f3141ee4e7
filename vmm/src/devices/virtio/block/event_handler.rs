//! The block device on the event loop: a kick on the request queue's eventfd serves the queue.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::BlockDevice;

impl MutEventSubscriber for BlockDevice {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.queue_evt, EventSet::IN)) {
            tracing::error!("virtio-blk: cannot register the queue eventfd: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // A nonblocking eventfd with nothing pending reports WouldBlock: serve the queue anyway.
        let _ = self.queue_evt.read();
        self.process_queue();
    }
}
