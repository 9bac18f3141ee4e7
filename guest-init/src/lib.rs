//! paddock guest-init as a library: the vsock control service, exec sessions (with pipes, or on
//! a terminal that can be detached and attached), child reaping, the guest side of egress (HTTP
//! proxy forwarder, transparent capture, DNS stub), the relay of the workspace mount and the PID-1 system setup used by the
//! `guest-init` binary.
//!
//! Everything that does not need to be PID 1 (the service, exec, the reaper in per-child mode)
//! runs and is tested on an ordinary host process over Unix sockets.

/// Writes one line to the console (guest-init's stderr is `/dev/console`).
#[macro_export]
macro_rules! console_log {
    ($($arg:tt)*) => {
        eprintln!("guest-init: {}", format_args!($($arg)*))
    };
}

pub mod boot_params;
pub mod egress;
pub mod engine;
mod exec;
pub mod pid1;
mod pty;
pub mod reaper;
pub mod resume;
pub mod service;
mod sys;
pub mod sysinfo;
pub mod vsock;
pub mod workspace;

pub use reaper::{ChildExit, ReapMode, Reaper};
pub use service::{ControlService, Platform, ServiceError, Transport};
