//! Raw mode for the host terminal, restored on every way out: the guard's drop (normal return,
//! error, unwinding) and a panic hook (a panic on another thread while the guard lives). Signal
//! paths end in the guard's drop: paddock handles SIGINT, SIGTERM and SIGHUP on a thread of its
//! own and returns normally.

use rustix::termios::{OptionalActions, Termios};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, Once};

/// Errors of [`RawMode::enable`].
#[derive(Debug, thiserror::Error)]
pub enum RawModeError {
    #[error("not a terminal")]
    NotATerminal,
    #[error("cannot read the terminal's settings: {0}")]
    Get(#[source] io::Error),
    #[error("cannot set the terminal to raw mode: {0}")]
    Set(#[source] io::Error),
}

/// The settings to put back, for the panic hook.
struct Saved {
    terminal: OwnedFd,
    original: Termios,
}

static SAVED: Mutex<Option<Saved>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// The terminal in raw mode while this lives: no line editing or echo, no signals from Ctrl-C,
/// Ctrl-Z or Ctrl-\ (they arrive as bytes), no output processing.
#[derive(Debug)]
pub struct RawMode {
    terminal: OwnedFd,
    original: Termios,
}

impl RawMode {
    /// Switches the terminal `fd` to raw mode until the guard is dropped.
    pub fn enable(fd: BorrowedFd<'_>) -> Result<Self, RawModeError> {
        if !rustix::termios::isatty(fd) {
            return Err(RawModeError::NotATerminal);
        }
        let original = rustix::termios::tcgetattr(fd).map_err(|e| RawModeError::Get(e.into()))?;
        let terminal = fd.try_clone_to_owned().map_err(RawModeError::Get)?;
        let for_hook = fd.try_clone_to_owned().map_err(RawModeError::Get)?;
        *saved() = Some(Saved {
            terminal: for_hook,
            original: original.clone(),
        });
        install_panic_hook();
        let mut raw = original.clone();
        raw.make_raw();
        if let Err(e) = rustix::termios::tcsetattr(fd, OptionalActions::Now, &raw) {
            saved().take();
            return Err(RawModeError::Set(e.into()));
        }
        Ok(Self { terminal, original })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        saved().take();
        let _ = rustix::termios::tcsetattr(&self.terminal, OptionalActions::Now, &self.original);
    }
}

fn saved() -> std::sync::MutexGuard<'static, Option<Saved>> {
    SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Puts the terminal back as it was before raw mode, if a [`RawMode`] is active. Safe to call
/// any number of times (the guard's drop restores again, harmlessly).
pub fn restore_terminal() {
    if let Some(saved) = saved().as_ref() {
        let _ = rustix::termios::tcsetattr(
            saved.terminal.as_fd(),
            OptionalActions::Now,
            &saved.original,
        );
    }
}

/// Restores the terminal before the default panic message, so it is readable.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests;
