//! Notifications from the host (messages with `unique` 0: an entry to expire, attributes to
//! drop) written to `/dev/fuse` by a thread of their own. The kernel handles a notification in
//! the write itself, and expiring an entry takes its directory's lock, which a request may hold
//! while it waits for its reply: written from the thread that writes replies, that reply would
//! never come. Queued, never waited for: when the queue is full a notification is dropped (the
//! guest then trusts what it cached until its timeout, as it would with no notifications).

use super::relay::{write_reply, RelayEnd};
use paddock_protocol::workspace::OUT_HEADER_LEN;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};

/// Notifications waiting at most; past them, new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// Whether `message` (a whole message from the host) is a notification.
pub(crate) fn is_notification(message: &[u8]) -> bool {
    message.len() >= OUT_HEADER_LEN && message[8..16] == [0; 8]
}

/// The queue to the notification thread.
#[derive(Debug)]
pub struct Notifier {
    queue: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
}

impl Notifier {
    /// Starts the thread writing notifications to `fuse` (its own handle on `/dev/fuse`). It
    /// ends when the notifier is dropped or the file system is unmounted.
    pub fn start(mut fuse: impl Write + Send + 'static) -> io::Result<Self> {
        let (queue, queued) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("workspace-notify".into())
            .spawn(move || {
                for message in queued {
                    // A notification of a node or name the kernel no longer has fails: nothing
                    // was cached to drop.
                    if let Err(RelayEnd::Unmounted) = write_reply(&mut fuse, &message) {
                        return;
                    }
                }
            })?;
        Ok(Self {
            queue,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues notification `message`.
    pub fn pass(&self, message: &[u8]) {
        match self.queue.try_send(message.to_vec()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
                if dropped.is_multiple_of(1024) {
                    crate::console_log!(
                        "workspace: {} notifications dropped (queue full)",
                        dropped + 1
                    );
                }
            }
        }
    }
}
