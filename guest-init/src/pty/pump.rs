//! The output pump of a session: reads the terminal's master for the session's whole life,
//! sends or keeps the output, and ends the session when the command has exited.

use super::session::PtySession;
use super::table::PtySessions;
use crate::exec::EXIT_GRACE;
use crate::reaper::ChildExit;
use paddock_protocol::{Response, MAX_STREAM_CHUNK};
use rustix::event::{PollFd, PollFlags, Timespec};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::time::Instant;

/// Pumps `master` until the command exited and its terminal drained (EOF or EIO once every
/// slave is closed), or [`EXIT_GRACE`] after the exit while a descendant keeps the terminal
/// open; then reports the exit and removes the session.
pub(super) fn pump(
    mut master: File,
    exit: ChildExit,
    session: Arc<PtySession>,
    sessions: Arc<PtySessions>,
) {
    let mut buf = vec![0u8; MAX_STREAM_CHUNK];
    let mut exit_deadline: Option<Instant> = None;
    loop {
        let timeout = match exit_deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                Some(Timespec {
                    tv_sec: 0,
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
        };
        let mut fds = vec![PollFd::new(&master, PollFlags::IN)];
        if exit_deadline.is_none() {
            fds.push(PollFd::from_borrowed_fd(exit.pidfd(), PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let master_ready = !fds[0].revents().is_empty();
        let exited = fds.get(1).is_some_and(|fd| !fd.revents().is_empty());
        drop(fds);
        if exited {
            exit_deadline = Some(Instant::now() + EXIT_GRACE);
        }
        if master_ready {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => session.output(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {}
                // EIO: every slave is closed; the terminal is drained.
                Err(_) => break,
            }
        }
    }
    drop(master);
    let last = match exit.wait() {
        Some(status) => Response::Exited { status },
        None => Response::error("the exit status of the command was lost"),
    };
    sessions.remove(&session);
    session.end(last);
}
