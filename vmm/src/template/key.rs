//! What a template is made of, and the content key that names it.

use crate::artifacts::disk::{image_identity, DiskError};
use crate::artifacts::{Artifacts, ContentDigest, DigestCache, DigestError, Profile};
use crate::snapshot::format::SNAPSHOT_VERSION;
use sha2::{Digest, Sha256};
use std::fmt;

/// Bumped when the way templates are made changes in a way the key's other parts do not see.
const RECIPE: &str = "paddock-template-1";

/// Everything a template is built from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateSpec {
    /// The guest profile.
    pub profile: Profile,
    /// Kernel, initramfs and root image.
    pub artifacts: Artifacts,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Extra kernel arguments.
    pub kernel_args: Option<String>,
}

/// A template's name: the SHA-256 of its recipe, in hex.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TemplateKey(String);

impl TemplateKey {
    /// The full key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as `template ls` shows them.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }

    /// Accepts a directory name as a key only when it is one (64 hex digits).
    pub fn from_dir_name(name: &str) -> Option<Self> {
        (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(name.to_ascii_lowercase()))
    }
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a template's key could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An artifact could not be read.
    #[error("the template's {what} cannot be identified: {source}")]
    Artifact {
        what: &'static str,
        source: DigestError,
    },
    /// The root image is missing or unusable.
    #[error(transparent)]
    Image(#[from] DiskError),
}

/// The content identities of a spec's files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactDigests {
    pub kernel: ContentDigest,
    pub initrd: ContentDigest,
    pub image: Option<ContentDigest>,
}

impl TemplateSpec {
    /// Identifies the spec's files by content (the root image by its verified identity).
    pub fn digests(&self, cache: &DigestCache) -> Result<ArtifactDigests, KeyError> {
        let digest = |what, path: &std::path::Path| {
            cache
                .digest(path)
                .map_err(|source| KeyError::Artifact { what, source })
        };
        Ok(ArtifactDigests {
            kernel: digest("kernel", &self.artifacts.kernel)?,
            initrd: digest("initramfs", &self.artifacts.initrd)?,
            image: match &self.artifacts.image {
                Some(path) => Some(image_identity(path, cache)?),
                None => None,
            },
        })
    }

    /// The key: the recipe version, the snapshot format, the profile, the files' content (not
    /// their paths: a moved identical kernel finds its template) and the machine shape.
    pub fn key(&self, digests: &ArtifactDigests) -> TemplateKey {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(RECIPE.as_bytes());
        part(&SNAPSHOT_VERSION.to_le_bytes());
        part(self.profile.name().as_bytes());
        part(&digests.kernel.0);
        part(&digests.initrd.0);
        part(digests.image.as_ref().map_or(&[][..], |d| &d.0[..]));
        part(&[self.vcpus]);
        part(&self.memory_mib.to_le_bytes());
        part(self.kernel_args.as_deref().unwrap_or("").as_bytes());
        TemplateKey(ContentDigest(hasher.finalize().into()).hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec() -> TemplateSpec {
        TemplateSpec {
            profile: Profile::Agent,
            artifacts: Artifacts {
                kernel: PathBuf::from("/k"),
                initrd: PathBuf::from("/i"),
                image: Some(PathBuf::from("/img")),
            },
            vcpus: 1,
            memory_mib: 2048,
            kernel_args: None,
        }
    }

    fn digests() -> ArtifactDigests {
        ArtifactDigests {
            kernel: ContentDigest([1; 32]),
            initrd: ContentDigest([2; 32]),
            image: Some(ContentDigest([3; 32])),
        }
    }

    #[test]
    fn every_ingredient_changes_the_key() {
        let base = spec().key(&digests());
        assert_eq!(base, spec().key(&digests()), "the key is deterministic");
        assert!(TemplateKey::from_dir_name(base.as_str()).is_some());
        let mut changed = Vec::new();
        let mut d = digests();
        d.kernel = ContentDigest([9; 32]);
        changed.push(spec().key(&d));
        let mut d = digests();
        d.initrd = ContentDigest([9; 32]);
        changed.push(spec().key(&d));
        let mut d = digests();
        d.image = Some(ContentDigest([9; 32]));
        changed.push(spec().key(&d));
        let mut d = digests();
        d.image = None;
        changed.push(spec().key(&d));
        changed.push(TemplateSpec { vcpus: 2, ..spec() }.key(&digests()));
        changed.push(
            TemplateSpec {
                memory_mib: 1024,
                ..spec()
            }
            .key(&digests()),
        );
        changed.push(
            TemplateSpec {
                profile: Profile::Minimal,
                ..spec()
            }
            .key(&digests()),
        );
        changed.push(
            TemplateSpec {
                kernel_args: Some("loglevel=7".into()),
                ..spec()
            }
            .key(&digests()),
        );
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(*k, base, "change {i} kept the key");
        }
    }

    #[test]
    fn paths_do_not_change_the_key() {
        let mut moved = spec();
        moved.artifacts.kernel = PathBuf::from("/elsewhere/vmlinux");
        assert_eq!(moved.key(&digests()), spec().key(&digests()));
    }

    #[test]
    fn only_hex_names_are_keys() {
        assert!(TemplateKey::from_dir_name(".build-x").is_none());
        assert!(TemplateKey::from_dir_name(&"g".repeat(64)).is_none());
    }
}
