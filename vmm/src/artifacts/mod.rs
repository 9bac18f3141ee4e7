//! The host artifacts a sandbox is made of: guest profiles and their default files, and the
//! content identity of those files.

pub mod digest;
pub mod disk;
pub mod profile;

pub use digest::{ContentDigest, DigestCache, DigestError};
pub use profile::{Artifacts, Profile, ProfileError};
