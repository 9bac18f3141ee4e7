//! A mount's relay that outlives its host connection. Requests that await replies are kept
//! until their replies come; when the connection breaks (a restore, reset or fork resets it),
//! the reply direction reconnects, and once the server carries the session on, the new
//! connection replaces the old one and the kept requests are sent again before any new one.
//! If it cannot carry on, the relay dies: every kept request is answered with `ENOTCONN`, so no
//! guest process waits for ever, and nothing more is forwarded.

use super::kept::{error_reply, Kept};
use super::notifier::{is_notification, Notifier};
use super::relay::{read_reply, read_request, write_reply, RelayEnd};
use super::resume::{reconnect, Retry};
use super::status::{Phase, Status};
use crate::service::Transport;
use paddock_protocol::workspace::MAX_MESSAGE;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// What the two directions of one mount's relay share.
#[derive(Debug)]
pub(crate) struct Link<S> {
    /// The current host connection's writing half. Held while a request is recorded and
    /// written, and while a new connection replaces the old and the kept requests are sent
    /// again: no request is both sent again and sent anew, and none goes after death.
    writer: Mutex<S>,
    /// Locked on its own (never while waiting on the host), so replies are matched while a
    /// request is being written.
    kept: Mutex<Kept>,
    pub(crate) status: Arc<Status>,
    /// The mount's session with the server (its answer to the hello).
    session: u64,
    /// The mount's path, for the console.
    label: String,
}

impl<S: Transport + AsFd> Link<S> {
    /// A connected relay writing to `writer`.
    pub(crate) fn new(writer: S, session: u64, label: &str) -> Self {
        let probe = writer.as_fd().try_clone_to_owned().ok();
        Self {
            writer: Mutex::new(writer),
            kept: Mutex::new(Kept::default()),
            status: Arc::new(Status::new(probe)),
            session,
            label: label.to_string(),
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, S> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_kept(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the relay: nothing is forwarded after this, and the host connection is shut down
    /// so the reply direction wakes (and answers the kept requests). True for the call that
    /// ended it.
    pub(crate) fn die(&self) -> bool {
        let writer = self.lock_writer();
        let first = self.status.die();
        let _ = writer.shutdown();
        first
    }

    /// Sends `request` over the current connection once there is one; false when the relay is
    /// dead. A failed write shuts the connection down: the reply direction then reconnects,
    /// and the request, kept, is sent again (one that is not kept is lost with the connection).
    fn forward(&self, request: &[u8]) -> bool {
        loop {
            if !self.status.wait_connected() {
                return false;
            }
            let mut writer = self.lock_writer();
            match self.status.now().0 {
                Phase::Dead => return false,
                // Broke between the wait and the lock: wait again.
                Phase::Resuming => continue,
                Phase::Connected => {}
            }
            self.lock_kept().record(request);
            if writer.write_all(request).is_err() {
                let _ = writer.shutdown();
                self.status.resuming();
            }
            return true;
        }
    }
}

/// Kernel -> host: each read of `/dev/fuse` is one whole request; it goes to the host as is,
/// over whichever connection is current. A kernel that unmounted (or sent a bad length) ends
/// the relay.
pub(crate) fn forward_requests<S: Transport + AsFd>(
    link: &Link<S>,
    mut fuse: impl Read,
) -> RelayEnd {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = match read_request(&mut fuse, &mut buf) {
            Ok(n) => n,
            Err(end) => {
                link.die();
                return end;
            }
        };
        if !link.forward(&buf[..n]) {
            return RelayEnd::Ended;
        }
    }
}

/// Host -> kernel over `host`, then over each connection that replaces it (notifications to
/// `notifier`); `connect` makes a new connection when one breaks, tried as `retry` says. Ends
/// when the relay dies (this direction answers what is kept, then).
pub(crate) fn serve_replies<S, C>(
    link: Arc<Link<S>>,
    mut host: S,
    (mut fuse, notifier): (impl Write, Notifier),
    connect: C,
    retry: Retry,
) -> RelayEnd
where
    S: Transport + AsFd,
    C: Fn() -> io::Result<S>,
{
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut resend: Option<JoinHandle<()>> = None;
    let why = loop {
        let why = pass_replies(&link, &mut host, (&mut fuse, &notifier), &mut buf);
        // Wakes a request (or a resend) blocked writing to this connection.
        let _ = host.shutdown();
        if link.status.is_dead() {
            break RelayEnd::Ended;
        }
        if !why.host_broke() {
            break why;
        }
        link.status.resuming();
        // The last resend is over (its connection is shut down) before another starts.
        if let Some(previous) = resend.take() {
            let _ = previous.join();
        }
        crate::console_log!("workspace {}: {why}; reconnecting", link.label);
        match carry_on(&link, &connect, retry, &mut fuse) {
            Ok((stream, started)) => {
                host = stream;
                resend = Some(started);
            }
            Err(end) => break end,
        }
    };
    link.die();
    let _ = host.shutdown();
    if let Some(previous) = resend.take() {
        let _ = previous.join();
    }
    let waiting = link.lock_kept().take_all();
    for unique in waiting {
        let _ = write_reply(&mut fuse, &error_reply(unique, libc::ENOTCONN));
    }
    why
}

/// Replies from `host` to the kernel, each matched to its kept request, until either fails.
fn pass_replies<S: Transport + AsFd>(
    link: &Link<S>,
    host: &mut S,
    (fuse, notifier): (&mut impl Write, &Notifier),
    buf: &mut [u8],
) -> RelayEnd {
    loop {
        let n = match read_reply(host, buf) {
            Ok(n) => n,
            Err(end) => return end,
        };
        let message = &buf[..n];
        if is_notification(message) {
            notifier.pass(message);
            continue;
        }
        link.lock_kept().answered(message);
        if let Err(end) = write_reply(fuse, message) {
            return end;
        }
    }
}

/// Reconnects and, once the server carries the session on, starts sending the kept requests
/// again on the new connection (on a thread of its own: this one must read the replies
/// meanwhile, or a long resend and the server's replies could block each other). The
/// connection to read replies from, and the resending thread.
fn carry_on<S, C>(
    link: &Arc<Link<S>>,
    connect: &C,
    retry: Retry,
    fuse: &mut impl Write,
) -> Result<(S, JoinHandle<()>), RelayEnd>
where
    S: Transport + AsFd,
    C: Fn() -> io::Result<S>,
{
    let stream = reconnect(connect, link.session, retry, || link.status.is_dead())?;
    // Requests past the bounds were not kept and cannot be sent again: answered as if the
    // mount had gone.
    let unkept = link.lock_kept().take_unkept();
    for unique in unkept {
        write_reply(fuse, &error_reply(unique, libc::ENOTCONN))?;
    }
    let writer = stream.try_clone().map_err(RelayEnd::Host)?;
    let resending = Arc::clone(link);
    let started = std::thread::Builder::new()
        .name("workspace-resend".into())
        .spawn(move || resend(&resending, writer))
        .map_err(RelayEnd::Io)?;
    Ok((stream, started))
}

/// Under the writer lock: `stream` replaces the broken connection, every kept request goes
/// again in the order it first went, and then the relay is connected (new requests follow).
fn resend<S: Transport + AsFd>(link: &Link<S>, stream: S) {
    let mut writer = link.lock_writer();
    if link.status.is_dead() {
        let _ = stream.shutdown();
        return;
    }
    let probe = stream.as_fd().try_clone_to_owned().ok();
    *writer = stream;
    let uniques = link.lock_kept().uniques();
    let mut sent = 0usize;
    for unique in uniques {
        let request = link.lock_kept().get(unique);
        let Some(request) = request else { continue };
        if writer.write_all(&request).is_err() {
            // The reply direction reads the end too and reconnects again.
            let _ = writer.shutdown();
            return;
        }
        sent += 1;
    }
    if link.status.carried_on(probe) {
        let generation = link.status.now().1;
        crate::console_log!(
            "workspace {}: carried on (connection {generation}, {sent} requests sent again)",
            link.label
        );
    } else {
        let _ = writer.shutdown();
    }
}
