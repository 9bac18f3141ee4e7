//! paddock's workspace server: the host process beside each sandbox that serves the guest's FUSE
//! mount of the project directory (docs/WORKSPACE.md). The guest relays its kernel's requests
//! over vsock (`paddock_protocol::workspace`); this process vets each one ([`guard`]) and
//! answers it with fuse-backend-rs's passthrough file system rooted at the directory
//! ([`session`]). It runs as the user who started the sandbox, confined by its caller to a view
//! of the directory alone.

pub mod guard;
pub mod listing;
pub mod owner;
pub mod session;

pub use owner::Owner;
pub use session::{SessionError, Sessions, StartError, WorkspaceServer};
