//! A command on a terminal in the guest, driven from the host's terminal: raw mode (restored
//! on every way out), typed input with the detach keys, window size changes, output, status.

use super::signals::{host_window_size, SignalRouter, SignalTarget};
use anyhow::Context;
use paddock_protocol::{ExitStatus, PtyConfig, WindowSize};
use paddock_vmm::client::{PtyControl, PtyEnd, PtyError, PtySession};
use paddock_vmm::terminal::{term_name, DetachKeys, RawMode};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;

/// How the command's terminal is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tty {
    /// No terminal: pipes, stdin forwarded, stdout and stderr apart.
    No,
    /// A terminal in the guest and the host's in raw mode, typed input forwarded; with
    /// `detach`, Ctrl-P Ctrl-Q leaves the session running.
    Interactive { detach: bool },
    /// A terminal in the guest for the output only (`-t` without `-i`): input is not
    /// forwarded, Ctrl-C signals the command.
    OutputOnly,
}

impl Tty {
    /// Docker's `-t`/`-i`: a terminal only when asked for and stdin is one.
    pub(super) fn choose(tty: bool, interactive: bool, detach: bool) -> Self {
        use std::io::IsTerminal;
        if !tty || !std::io::stdin().is_terminal() {
            Tty::No
        } else if interactive {
            Tty::Interactive { detach }
        } else {
            Tty::OutputOnly
        }
    }
}

/// How a terminal session ended for this host.
pub(super) enum TerminalEnd {
    Exited(ExitStatus),
    /// Left running in the guest (the detach keys).
    Detached {
        pid: u32,
    },
    /// SIGINT, SIGTERM or SIGHUP reached paddock: the session was hung up.
    HungUp(i32),
    Failed(PtyError),
}

/// The guest terminal's size and `TERM`, from the host's.
pub(super) fn pty_config() -> PtyConfig {
    let size = host_window_size().unwrap_or(WindowSize::FALLBACK);
    PtyConfig::new(size, &term_name()).unwrap_or_else(|_| PtyConfig {
        size,
        term: paddock_vmm::terminal::FALLBACK_TERM.to_string(),
    })
}

/// Drives `session` until its command exits, it is detached or paddock gets a signal.
pub(super) fn drive(
    session: PtySession,
    tty: Tty,
    signals: &SignalRouter,
) -> anyhow::Result<TerminalEnd> {
    let control = session.control();
    let pid = session.pid();
    let forward = (tty == Tty::OutputOnly).then(|| session.signaller());
    let raw = match tty {
        Tty::Interactive { .. } => {
            Some(RawMode::enable(std::io::stdin().as_fd()).context("setting up the terminal")?)
        }
        _ => None,
    };
    signals.set(SignalTarget::Terminal {
        control: control.clone(),
        forward: forward.clone(),
    });
    if let Some(sig) = signals.received() {
        // It arrived while the session was starting.
        match &forward {
            Some(signaller) => {
                let _ = signaller.signal(sig);
            }
            None => control.hang_up(),
        }
    }
    // The window may have changed since the request was built.
    if let Some(size) = host_window_size() {
        let _ = control.resize(size);
    }
    if let Tty::Interactive { detach } = tty {
        start_input(control.clone(), detach)?;
    }
    let end = session.wait(&mut std::io::stdout().lock());
    signals.set(SignalTarget::Nobody);
    drop(raw);
    Ok(match end {
        Ok(PtyEnd::Exited(status)) => TerminalEnd::Exited(status),
        Ok(PtyEnd::Detached) => TerminalEnd::Detached { pid },
        Err(e) => match signals.received().filter(|_| forward.is_none()) {
            Some(sig) => TerminalEnd::HungUp(sig),
            None => TerminalEnd::Failed(e),
        },
    })
}

/// Forwards typed input from a thread of its own (it may stay blocked reading until paddock
/// exits); with `detach`, the detach keys detach instead of being typed.
fn start_input(control: PtyControl, detach: bool) -> anyhow::Result<()> {
    // Our own handle: std's stdin is buffered and locked.
    let mut input = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    std::thread::Builder::new()
        .name("terminal-input".into())
        .spawn(move || {
            let mut keys = detach.then(DetachKeys::default);
            let mut buf = [0u8; 4096];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let mut typed = Vec::with_capacity(n);
                let detached = match &mut keys {
                    Some(keys) => keys.feed(&buf[..n], &mut typed),
                    None => {
                        typed.extend_from_slice(&buf[..n]);
                        false
                    }
                };
                if !typed.is_empty() && control.input(&typed).is_err() {
                    return;
                }
                if detached {
                    let _ = control.detach();
                    return;
                }
            }
        })?;
    Ok(())
}
