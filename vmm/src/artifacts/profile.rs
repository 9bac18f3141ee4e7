//! Guest profiles: which kernel, initramfs and root image a sandbox is built from by default,
//! and how much memory it gets.
//!
//! - `agent` (the default): the initramfs's guest-init mounts a Debian root image (read-only,
//!   on virtio-blk) under a writable layer in guest memory, then starts the Docker engine.
//! - `minimal`: guest-init and busybox in an initramfs, nothing else; the fast path for tests and
//!   for users who only run commands.

use crate::config::cache_dir;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A named guest recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// guest-init + busybox in an initramfs.
    Minimal,
    /// A Debian root image with its own Docker engine and the coding agents (`paddock agents`).
    Agent,
}

/// An unknown profile name.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile {0:?} (known: agent, minimal)")]
    Unknown(String),
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 2] = [Profile::Agent, Profile::Minimal];

    /// `$PADDOCK_PROFILE` when set, else `agent`.
    pub fn from_env_or_default() -> Result<Self, ProfileError> {
        match std::env::var("PADDOCK_PROFILE") {
            Ok(name) if !name.is_empty() => name.parse(),
            _ => Ok(Profile::Agent),
        }
    }

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
            Profile::Agent => "agent",
        }
    }

    /// Guest memory when none is asked for.
    ///
    /// `agent`: 2 GiB holds dockerd and containerd (~100 MiB), a coding agent's Node.js process
    /// (300–600 MiB), the writable root layer and `/var/lib/docker` (both in guest memory, so
    /// images built inside count here) and a few containers. Guest RAM is allocated lazily and
    /// the template's memory file is sparse, so memory the guest never touches costs nothing.
    pub fn default_memory_mib(self) -> u64 {
        match self {
            Profile::Minimal => crate::config::DEFAULT_MEMORY_MIB,
            Profile::Agent => 2048,
        }
    }

    /// The smallest memory the profile boots in; less is refused before booting.
    pub fn min_memory_mib(self) -> u64 {
        match self {
            Profile::Minimal => crate::vstate::memory::MIN_MEMORY_MIB,
            Profile::Agent => 512,
        }
    }

    /// Whether the profile boots from a root image.
    pub fn uses_image(self) -> bool {
        matches!(self, Profile::Agent)
    }

    /// The files the profile is made of: explicit choices first, then `$PADDOCK_KERNEL`,
    /// `$PADDOCK_ROOTFS`, `$PADDOCK_IMAGE`, then what `cargo xtask build` installed.
    pub fn artifacts(
        self,
        kernel: Option<PathBuf>,
        rootfs: Option<PathBuf>,
        image: Option<PathBuf>,
    ) -> Artifacts {
        let image = self.uses_image().then(|| {
            image
                .or_else(|| std::env::var_os("PADDOCK_IMAGE").map(PathBuf::from))
                .unwrap_or_else(|| cache_dir().join("default/rootfs-agent.img"))
        });
        Artifacts {
            kernel: crate::config::default_kernel(kernel),
            initrd: crate::config::default_rootfs(rootfs),
            image,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = ProfileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ProfileError::Unknown(s.to_string()))
    }
}

/// The host files one sandbox is built from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifacts {
    /// The uncompressed vmlinux.
    pub kernel: PathBuf,
    /// The initramfs holding guest-init.
    pub initrd: PathBuf,
    /// The read-only root image, for profiles that boot from one.
    pub image: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>().unwrap(), p);
        }
        let err = "docker".parse::<Profile>().unwrap_err();
        assert!(err.to_string().contains("agent, minimal"), "{err}");
    }

    #[test]
    fn only_the_agent_profile_has_an_image() {
        let explicit = PathBuf::from("/x/agent.img");
        let agent = Profile::Agent.artifacts(None, None, Some(explicit.clone()));
        assert_eq!(agent.image, Some(explicit.clone()));
        let minimal = Profile::Minimal.artifacts(None, None, Some(explicit));
        assert_eq!(minimal.image, None);
        assert!(Profile::Agent.default_memory_mib() >= Profile::Agent.min_memory_mib());
    }
}
