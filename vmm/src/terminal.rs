//! The host's terminal during an interactive session: raw mode (always restored), the window
//! size, `TERM`, and the detach key sequence.

mod detach;
mod raw_mode;

pub use detach::{DetachKeys, DETACH_KEYS_HELP};
pub use raw_mode::{restore_terminal, RawMode, RawModeError};

use paddock_protocol::WindowSize;
use std::os::fd::AsFd;

/// `TERM` for the guest when this host's own is missing or not acceptable.
pub const FALLBACK_TERM: &str = "xterm";

/// The window size of the terminal `fd`, if it is one and knows its size.
pub fn window_size(fd: impl AsFd) -> Option<WindowSize> {
    let size = rustix::termios::tcgetwinsize(fd).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some(WindowSize {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

/// This host's `TERM` if the protocol accepts it, else [`FALLBACK_TERM`].
pub fn term_name() -> String {
    std::env::var("TERM")
        .ok()
        .filter(|term| paddock_protocol::pty::check_term(term).is_ok())
        .unwrap_or_else(|| FALLBACK_TERM.to_string())
}
