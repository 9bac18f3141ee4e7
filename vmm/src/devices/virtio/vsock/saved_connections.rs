//! What a snapshot keeps of the vsock connections, so that a restore or reset needs no
//! device-wide transport reset.
//!
//! One connection may be kept: the idle one on the device's kept port (guest-init's link to the
//! VMM itself). It resumes with its credit counters exactly as the guest's restored memory
//! remembers them, and a new host stream; the guest never notices the snapshot. Every other
//! connection the guest may believe open had a host stream that did not survive: the guest gets
//! one RST for each, as for any connection the host closed.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use super::muxer::{MAX_CONNECTIONS, MAX_ORPHAN_REPLIES};

/// The connections of a saved vsock device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsState {
    /// The connection that survives (guest-init's link), when it was idle.
    pub kept: Option<KeptConnection>,
    /// (host port, guest port) of every other connection, and of every RST still owed to the
    /// guest, sorted: the guest is told each is gone.
    pub reset: Vec<(u32, u32)>,
}

/// An idle established connection's state: its ports and the virtio-vsock credit counters of
/// both directions (what the guest's kernel remembers about it, mirrored on the host side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptConnection {
    pub host_port: u32,
    pub guest_port: u32,
    /// Guest bytes forwarded to the host stream.
    pub fwd_cnt: u32,
    /// The `fwd_cnt` last announced to the guest.
    pub last_fwd_cnt_sent: u32,
    /// Host bytes sent to the guest.
    pub rx_cnt: u32,
    /// The guest's receive buffer and consumed count, as it last announced them.
    pub peer_buf_alloc: u32,
    pub peer_fwd_cnt: u32,
    /// A credit update was owed to the guest.
    pub credit_update_owed: bool,
}

/// The most connections a saved device can name: all it may hold plus all RSTs it may owe.
pub const MAX_SAVED_RESETS: usize = MAX_CONNECTIONS + MAX_ORPHAN_REPLIES;

/// Why saved connections cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionsStateError {
    /// More than a device can hold: the state is not one a device wrote.
    #[error("the snapshot names {count} vsock connections, more than the {MAX_SAVED_RESETS} a device can have")]
    TooMany { count: usize },
    /// The kept connection is also listed for a reset.
    #[error("the snapshot's kept vsock connection is also listed as reset")]
    KeptAndReset,
}

impl ConnectionsState {
    /// Checks what a snapshot file says before anything acts on it.
    pub fn validate(&self) -> Result<(), ConnectionsStateError> {
        if self.reset.len() > MAX_SAVED_RESETS {
            return Err(ConnectionsStateError::TooMany {
                count: self.reset.len(),
            });
        }
        if let Some(kept) = &self.kept {
            if self.reset.contains(&(kept.host_port, kept.guest_port)) {
                return Err(ConnectionsStateError::KeptAndReset);
            }
        }
        Ok(())
    }
}

/// Bytes written to `stream` by its peer and not read yet (`FIONREAD`).
pub fn unread_bytes(stream: &UnixStream) -> io::Result<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid for the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut unread) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(unread).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn kept() -> KeptConnection {
        KeptConnection {
            host_port: 1025,
            guest_port: 50_000,
            fwd_cnt: 10,
            last_fwd_cnt_sent: 10,
            rx_cnt: 20,
            peer_buf_alloc: 4096,
            peer_fwd_cnt: 20,
            credit_update_owed: false,
        }
    }

    #[test]
    fn a_state_naming_more_connections_than_a_device_holds_is_refused() {
        let state = ConnectionsState {
            kept: None,
            reset: vec![(1, 2); MAX_SAVED_RESETS + 1],
        };
        assert!(matches!(
            state.validate(),
            Err(ConnectionsStateError::TooMany { .. })
        ));
    }

    #[test]
    fn a_kept_connection_cannot_also_be_reset() {
        let state = ConnectionsState {
            kept: Some(kept()),
            reset: vec![(1025, 50_000)],
        };
        assert!(matches!(
            state.validate(),
            Err(ConnectionsStateError::KeptAndReset)
        ));
        let fine = ConnectionsState {
            kept: Some(kept()),
            reset: vec![(1025, 50_001)],
        };
        fine.validate().unwrap();
    }

    #[test]
    fn unread_bytes_counts_what_the_peer_wrote() {
        let (a, mut b) = UnixStream::pair().unwrap();
        assert_eq!(unread_bytes(&a).unwrap(), 0);
        b.write_all(b"hello").unwrap();
        assert_eq!(unread_bytes(&a).unwrap(), 5);
    }
}
