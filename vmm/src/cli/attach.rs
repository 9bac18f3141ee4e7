//! `paddock attach`: back to a terminal session left with the detach keys.

use super::interactive::{self, Tty};
use super::outcome::{shared_code, terminal_outcome};
use super::signals::{block_handled_signals, host_window_size, SignalRouter};
use super::AttachArgs;
use anyhow::Context;
use paddock_protocol::WindowSize;
use paddock_vmm::client::{self, PtyError};
use paddock_vmm::config::CONTROL_PORT;
use paddock_vmm::exit_codes;
use paddock_vmm::sandbox::Sandboxes;
use std::io::IsTerminal;

pub fn attach(args: AttachArgs) -> anyhow::Result<i32> {
    block_handled_signals();
    let signals = SignalRouter::spawn()?;
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("`paddock attach` needs a terminal on stdin");
    }
    let uds = Sandboxes::new(args.state.state_dir.as_deref()).vsock_path(&args.name)?;
    let conn = client::connect(&uds, CONTROL_PORT).context("connecting to guest-init")?;
    let size = host_window_size().unwrap_or(WindowSize::FALLBACK);
    let session = match conn.attach(args.pid, size) {
        Ok(session) => session,
        Err(PtyError::Guest { message, .. }) => {
            eprintln!("paddock: {}: {message}", args.name);
            return Ok(exit_codes::PADDOCK_ERROR);
        }
        Err(e) => return Err(e).context("attaching"),
    };
    let end = interactive::drive(session, Tty::Interactive { detach: true }, &signals)?;
    Ok(
        shared_code(&terminal_outcome(end), Some(&args.name)).unwrap_or_else(|| {
            eprintln!(
                "paddock: the sandbox's guest rebooted, stopped or was reset during the session"
            );
            exit_codes::GUEST_ENDED
        }),
    )
}
