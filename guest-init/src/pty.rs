//! Terminal (PTY) exec sessions that can be detached and attached again.
//!
//! An exec whose request carries a `tty` runs its command on a pseudo-terminal: the command is
//! a session leader with the terminal's slave as its controlling terminal and stdin, stdout and
//! stderr; guest-init holds the master. A session outlives the connection that started it when
//! the host detaches: its output is then still read (so the command never blocks writing) and
//! the most recent [`DETACHED_OUTPUT_BUFFER`](paddock_protocol::DETACHED_OUTPUT_BUFFER) bytes
//! are kept, oldest dropped, and replayed to the next attach. A session ends when its command
//! exits; a connection that goes away without detaching hangs the session up (SIGHUP), like a
//! closed terminal. At most [`MAX_PTY_SESSIONS`] sessions exist at once.

mod connection;
mod pump;
mod ring;
mod session;
mod table;
mod terminal;

pub(crate) use connection::{attach_session, run_session};
pub(crate) use table::PtySessions;

/// Most terminal sessions (attached or detached) that may exist at once.
pub const MAX_PTY_SESSIONS: usize = 32;

#[cfg(test)]
mod tests;
