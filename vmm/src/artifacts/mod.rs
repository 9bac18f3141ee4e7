//! The host artifacts a sandbox is made of: guest profiles and their default files, the content
//! identity of those files, and the coding agents a root image holds.

pub mod agents;
pub mod digest;
pub mod disk;
pub mod profile;

pub use agents::{image_agents, AgentsError};
pub use digest::{ContentDigest, DigestCache, DigestError};
pub use profile::{Artifacts, Profile, ProfileError};
