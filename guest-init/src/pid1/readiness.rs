//! Announces readiness and keeps the announcement open as the host's link to guest-init.
//!
//! guest-init connects to the host's ready port and sends one `Ready` frame (the moment the host
//! accepts is boot-to-ready), then serves control requests on that connection. The VMM keeps
//! the link in its snapshots: after a restore or an in-place reset it sends `Resume` (wall
//! clock, entropy) on it, and this thread, blocked reading it when the snapshot was taken,
//! answers. Only if the link breaks (a snapshot taken while it was busy, a host that closed it)
//! does guest-init announce itself again at once; the host then sends `Resume` over the new
//! link, so it never polls the guest.

use crate::service::{ControlService, Transport};
use crate::vsock::VsockStream;
use paddock_protocol::{write_frame, Response, HOST_CID, READY_PORT};
use std::io;
use std::time::{Duration, Instant};

/// First wait before announcing again after the host refused or closed the link.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest wait between announcements while nobody listens.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A link that broke sooner than this after being made counts as a failed attempt: it keeps a
/// misbehaving host from making guest-init spin.
const SHORT_LINK: Duration = Duration::from_millis(10);
/// Short-lived broken links tolerated in a row before backing off.
const SHORT_LINKS_TOLERATED: u32 = 3;

/// How one announcement ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// Nobody accepted the connection (or the `Ready` frame could not be sent).
    NotConnected,
    /// The host closed the link cleanly: it does not want it now.
    ClosedByHost,
    /// The link broke (reset after a restore or reset in place that could not keep it).
    Broken,
}

/// Connects with `connect`, announces readiness and serves the link until it ends.
pub fn announce_once<T: Transport>(
    connect: impl FnOnce() -> io::Result<T>,
    service: &ControlService,
) -> LinkEnd {
    let Ok(mut stream) = connect() else {
        return LinkEnd::NotConnected;
    };
    let ready = Response::Ready(service.boot_info());
    if write_frame(&mut stream, &ready).is_err() {
        return LinkEnd::NotConnected;
    }
    match service.serve(stream) {
        Ok(()) => LinkEnd::ClosedByHost,
        Err(_) => LinkEnd::Broken,
    }
}

/// Announces over vsock forever (guest-init's `ready` thread).
pub fn announce_forever(service: &ControlService) -> ! {
    keep_announcing(|| VsockStream::connect(HOST_CID, READY_PORT), service)
}

/// Announces with `connect` forever: again at once when a link breaks, with backoff while the
/// host does not accept or keeps closing the link.
pub fn keep_announcing<T: Transport>(
    mut connect: impl FnMut() -> io::Result<T>,
    service: &ControlService,
) -> ! {
    let mut backoff = FIRST_BACKOFF;
    let mut short_links = 0u32;
    let mut complained = false;
    loop {
        let started = Instant::now();
        let end = announce_once(&mut connect, service);
        let wait = match end {
            LinkEnd::Broken if started.elapsed() >= SHORT_LINK => {
                short_links = 0;
                backoff = FIRST_BACKOFF;
                None
            }
            LinkEnd::Broken if short_links < SHORT_LINKS_TOLERATED => {
                short_links += 1;
                None
            }
            LinkEnd::NotConnected if !complained => {
                complained = true;
                crate::console_log!("the host is not listening for readiness yet; retrying");
                Some(backoff)
            }
            _ => Some(backoff),
        };
        if let Some(wait) = wait {
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            complained = false;
        }
    }
}
