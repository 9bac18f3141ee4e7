//! Host-side client of guest-init: connects over the vsock Unix socket and runs commands.
//!
//! The VMM exposes the guest's vsock as a Unix socket (Firecracker's convention): a host
//! process connects to `<uds>`, writes `CONNECT <port>\n` and gets `OK <host_port>\n`, then the
//! stream is a connection to the guest port. [`connect`] does that handshake and returns a
//! [`Connection`] for ping, resume, shutdown, one exec (with pipes, or on a terminal:
//! [`PtySession`]) or an attach to a detached terminal session. Guest-initiated connections to host
//! port P arrive on `<uds>_P`; [`ReadyListener`] waits there for guest-init's `Ready`.

mod connect;
mod connection;
mod exec;
mod pty;
mod ready;

pub use connect::{connect, connect_with, ConnectError, ConnectOptions};
pub use connection::{
    Closer, Connection, MountWorkspaceError, PingError, ResumeError, ShutdownError,
};
pub use exec::{
    ExecError, ExecOutput, RunningExec, SignalError, Signaller, StreamedExec, KEPT_STDERR,
};
pub use pty::{PtyControl, PtyEnd, PtyError, PtySession};
pub use ready::{Ready, ReadyError, ReadyListener};

/// A short name for a response, for errors: never echo a whole (guest-controlled) payload.
fn response_kind(response: &paddock_protocol::Response) -> &'static str {
    use paddock_protocol::Response;
    match response {
        Response::Pong { .. } => "Pong",
        Response::Ready(_) => "Ready",
        Response::Started { .. } => "Started",
        Response::Stdout { .. } => "Stdout",
        Response::Stderr { .. } => "Stderr",
        Response::Exited { .. } => "Exited",
        Response::Error { .. } => "Error",
        Response::Resumed(_) => "Resumed",
        Response::ShuttingDown => "ShuttingDown",
        Response::Detached { .. } => "Detached",
        Response::Attached { .. } => "Attached",
        Response::WorkspaceMounted { .. } => "WorkspaceMounted",
        Response::WorkspaceChanges { .. } => "WorkspaceChanges",
    }
}

/// Bounds a guest-supplied error message before it is shown or logged.
fn bounded_message(message: String) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message;
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
pub(crate) mod fake_guest;
#[cfg(test)]
mod tests;
