//! The host <-> guest-init wire protocol (shared by `vmm` and `guest-init`).
//!
//! Every message travels in a [frame](frame): a fixed header (magic, protocol version, payload
//! length bounded by [`MAX_FRAME_PAYLOAD`], CRC32 of the payload) followed by the bincode-encoded
//! message. The host sends [`Request`]s, guest-init answers with [`Response`]s. One vsock
//! connection carries either a sequence of simple requests (ping, resume, shutdown) or exactly
//! one exec session (with pipes, or on a [terminal](pty) that can be detached and attached).

mod bytes;
pub mod dns;
pub mod egress;
pub mod engine;
pub mod frame;
pub mod messages;
pub mod mountinfo;
pub mod pty;
pub mod workspace;

pub use egress::{EgressHello, EgressLineError, ResolveAnswer, EGRESS_PORT};
pub use engine::{EngineStage, EngineState, MAX_ENGINE_DETAIL, MAX_ENGINE_VERSION};
pub use frame::{
    encode_frame, read_frame, write_frame, FrameError, FRAME_HEADER_LEN, FRAME_MAGIC,
    MAX_FRAME_PAYLOAD, PROTOCOL_VERSION,
};
pub use messages::{
    BootInfo, ErrorKind, ExecRequest, ExitStatus, Request, Response, ShutdownAction, UnixTime,
    MAX_STREAM_CHUNK, RESUME_ENTROPY_MAX, RESUME_ENTROPY_MIN,
};
pub use pty::{PtyConfig, PtyConfigError, WindowSize, DETACHED_OUTPUT_BUFFER, MAX_TERM_LEN};
pub use workspace::{WorkspaceMode, WORKSPACE_PORT};

/// vsock context id of the host (fixed by the vsock specification).
pub const HOST_CID: u32 = 2;
/// vsock context id paddock gives every guest.
pub const GUEST_CID: u32 = 3;
/// Guest vsock port where guest-init's control service listens.
pub const CONTROL_PORT: u32 = 1024;
/// Host vsock port guest-init connects to when it is ready (boot-to-ready).
///
/// Who owns what on that link: guest-init opens it, once per boot, and serves requests on it;
/// the VMM itself is its host end (not a client) and saves it, with its vsock credit counters,
/// in every snapshot taken while it is idle. After a restore or reset the VMM sends `Resume` on
/// it as the vCPUs start; guest-init, blocked reading it when the snapshot was taken, answers
/// `Resumed`. Every other connection is the guest's or a client's: a restore resets each one
/// (a vsock RST), never the whole transport. If the link breaks (a snapshot taken while it was
/// busy, a host that closed it), guest-init connects and sends `Ready` again, and the host
/// sends `Resume` on the new link.
pub const READY_PORT: u32 = 1025;
