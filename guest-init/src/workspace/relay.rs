//! Moving whole FUSE messages: one request read from `/dev/fuse`, one reply cut from the host's
//! stream and written back, and the plain relay loops built from them (no reconnection; the
//! mount's own relay, which carries on across a reset, is in `link`).

use super::notifier::{is_notification, Notifier};
use super::resume::ResumeError;
use paddock_protocol::workspace::{
    message_len, BadLength, IN_HEADER_LEN, MAX_MESSAGE, OUT_HEADER_LEN,
};
use std::io::{self, Read, Write};

/// Why a relay direction stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayEnd {
    /// The kernel unmounted the file system.
    #[error("unmounted")]
    Unmounted,
    /// The host closed the connection.
    #[error("the host closed the connection")]
    HostClosed,
    /// Reading from or writing to the host failed.
    #[error("the host connection failed: {0}")]
    Host(#[source] io::Error),
    /// The connection could not be carried on after it broke.
    #[error(transparent)]
    Lost(#[from] ResumeError),
    /// The other direction ended the relay.
    #[error("the relay ended")]
    Ended,
    /// A message with an impossible length.
    #[error(transparent)]
    BadLength(#[from] BadLength),
    /// Reading or writing `/dev/fuse` failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl RelayEnd {
    /// Whether the host connection broke (the relay may carry on over a new one).
    pub(crate) fn host_broke(&self) -> bool {
        matches!(self, Self::HostClosed | Self::Host(_))
    }
}

/// Reads the next whole request from `/dev/fuse` into `buf`; its length.
pub(crate) fn read_request(fuse: &mut impl Read, buf: &mut [u8]) -> Result<usize, RelayEnd> {
    loop {
        let n = match fuse.read(buf) {
            Ok(0) => return Err(RelayEnd::Unmounted),
            Ok(n) => n,
            // An interrupted request the kernel took back, or a signal: read the next.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINTR)) => {
                continue
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Err(RelayEnd::Unmounted),
            Err(e) => return Err(RelayEnd::Io(e)),
        };
        message_len(&buf[..n], IN_HEADER_LEN)?;
        return Ok(n);
    }
}

/// Reads the next whole reply from the host's stream into `buf` (of [`MAX_MESSAGE`] bytes),
/// cut at the length its header gives (bounded before the rest is read); its length.
pub(crate) fn read_reply(host: &mut impl Read, buf: &mut [u8]) -> Result<usize, RelayEnd> {
    match host.read_exact(&mut buf[..OUT_HEADER_LEN]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(RelayEnd::HostClosed),
        Err(e) => return Err(RelayEnd::Host(e)),
    }
    let len = message_len(&buf[..OUT_HEADER_LEN], OUT_HEADER_LEN)?;
    match host.read_exact(&mut buf[OUT_HEADER_LEN..len]) {
        Ok(()) => Ok(len),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(RelayEnd::HostClosed),
        Err(e) => Err(RelayEnd::Host(e)),
    }
}

/// Writes one reply to `/dev/fuse` in one write, as the kernel requires.
pub(crate) fn write_reply(fuse: &mut impl Write, reply: &[u8]) -> Result<(), RelayEnd> {
    match fuse.write(reply) {
        Ok(_) => Ok(()),
        // The request was interrupted and is gone: its reply has nowhere to go.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(RelayEnd::Unmounted),
        Err(e) => Err(RelayEnd::Io(e)),
    }
}

/// Kernel -> host: each read of `/dev/fuse` is one whole request; it goes to the host as is.
pub fn relay_requests(mut fuse: impl Read, mut host: impl Write) -> RelayEnd {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = match read_request(&mut fuse, &mut buf) {
            Ok(n) => n,
            Err(end) => return end,
        };
        if let Err(e) = host.write_all(&buf[..n]) {
            return RelayEnd::Host(e);
        }
    }
}

/// Host -> kernel: replies come as a stream; each is cut at the length its header gives and
/// written to `/dev/fuse` in one write; notifications among them go to `notifier`.
pub fn relay_replies(mut host: impl Read, mut fuse: impl Write, notifier: Notifier) -> RelayEnd {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let result = read_reply(&mut host, &mut buf).and_then(|n| {
            let message = &buf[..n];
            if is_notification(message) {
                notifier.pass(message);
                Ok(())
            } else {
                write_reply(&mut fuse, message)
            }
        });
        if let Err(end) = result {
            return end;
        }
    }
}
