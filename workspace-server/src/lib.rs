//! paddock's workspace server: the host process beside each sandbox that serves the guest's FUSE
//! mount of the project directory (docs/WORKSPACE.md). The guest relays its kernel's requests
//! over vsock (`paddock_protocol::workspace`); this process vets each one ([`guard`]) and
//! answers it with fuse-backend-rs's passthrough file system rooted at the directory
//! ([`session`]), behind node ids and handles of its own ([`nodes`]) so a mount can be carried
//! across a snapshot: the host saves the mount's state ([`saved`]) over a control connection
//! ([`control`]) while the snapshot is taken, and loads it again before the restored guest
//! resumes ([`pending`]). A live share watches the host's directories and tells the guest of
//! their changes at once ([`watch`], [`notify`]). It runs as the user who started the sandbox, confined by its caller to
//! a view of the directory alone.

pub mod control;
pub mod guard;
pub mod listing;
pub mod nodes;
pub mod notify;
pub mod owner;
pub mod pending;
pub mod saved;
pub mod session;
pub mod watch;

pub use control::ControlError;
pub use owner::Owner;
pub use session::{
    HostChanges, LoadError, SessionError, Sessions, StartError, WorkspaceServer, RESUME_WAIT,
};
