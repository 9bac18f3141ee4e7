//! The coding agents a root image holds, read from the agent manifest in its trailer: what
//! `paddock agents` lists, without booting a VM (the trailer is one block at the end of the
//! file; the filesystem is not read).

use rootfs_builder::disk_image::{self, AgentManifest, ImageError};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why an image's agents could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// No file there.
    #[error(
        "no agent image at {path}: build it with `cargo xtask rootfs --profile agent` (or pass \
         --image PATH / set $PADDOCK_IMAGE)"
    )]
    Missing { path: PathBuf },
    /// It could not be opened or read.
    #[error("cannot read the agent image {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a paddock image, an older format, or a damaged trailer.
    #[error("{path} is not a usable paddock root image")]
    BadImage { path: PathBuf, source: ImageError },
    /// A valid image whose manifest lists no agent.
    #[error(
        "{path} records no coding agents (a {profile:?} image): rebuild it with \
         `cargo xtask rootfs --profile agent`"
    )]
    NoAgents { path: PathBuf, profile: String },
}

/// The agents recorded in the image at `path`, in the order the image lists them.
pub fn image_agents(path: &Path) -> Result<AgentManifest, AgentsError> {
    let mut file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AgentsError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            AgentsError::Open {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let trailer = disk_image::read_trailer(&mut file).map_err(|source| match source {
        ImageError::Io(source) => AgentsError::Open {
            path: path.to_path_buf(),
            source,
        },
        source => AgentsError::BadImage {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if trailer.agents().is_empty() {
        return Err(AgentsError::NoAgents {
            path: path.to_path_buf(),
            profile: trailer.profile().to_owned(),
        });
    }
    Ok(trailer.agents().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_image(path: &Path, agents: &AgentManifest) {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        file.write_all(&[0x5a; 6000]).unwrap();
        disk_image::write_trailer_with_agents(&mut file, 6000, "agent", agents).unwrap();
    }

    #[test]
    fn lists_the_agents_of_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut agents = AgentManifest::new();
        agents.push("claude", "claude", "2.1.332").unwrap();
        agents.push("shell", "bash", "5.2.15(1)-release").unwrap();
        let path = dir.path().join("rootfs-agent.img");
        write_image(&path, &agents);
        assert_eq!(image_agents(&path).unwrap(), agents);
    }

    #[test]
    fn a_missing_image_names_the_command_that_builds_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = image_agents(&dir.path().join("nope.img")).unwrap_err();
        assert!(matches!(err, AgentsError::Missing { .. }));
        let line = err.to_string();
        assert!(
            line.contains("cargo xtask rootfs --profile agent"),
            "{line}"
        );
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn foreign_old_and_agentless_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("foreign.img");
        std::fs::write(&foreign, vec![0u8; 8192]).unwrap();
        assert!(matches!(
            image_agents(&foreign).unwrap_err(),
            AgentsError::BadImage {
                source: ImageError::NotPaddockImage,
                ..
            }
        ));

        let old = dir.path().join("old.img");
        write_image(&old, &AgentManifest::new());
        let mut bytes = std::fs::read(&old).unwrap();
        let at = bytes.len() - 4096 + 8;
        bytes[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&old, bytes).unwrap();
        let err = image_agents(&old).unwrap_err();
        assert!(
            matches!(
                err,
                AgentsError::BadImage {
                    source: ImageError::UnsupportedVersion { found: 1, .. },
                    ..
                }
            ),
            "{err}"
        );
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("format version 1"), "{chain}");
        assert!(chain.contains("rootfs --profile agent"), "{chain}");

        let empty = dir.path().join("empty.img");
        write_image(&empty, &AgentManifest::new());
        let err = image_agents(&empty).unwrap_err();
        assert!(matches!(err, AgentsError::NoAgents { .. }), "{err}");
    }
}
