//! `cargo xtask rootfs`: resolves a profile's host inputs, then writes its newc image into the
//! content-hashed cache (`<cache>/rootfs/<hash>/rootfs-<profile>.cpio`); the default profile's image
//! is linked as `<cache>/default/rootfs.cpio`. The `agent` profile is a Debian root written as an
//! erofs disk image instead (see [`agent`]).

mod agent;
mod assemble;
mod checks;
mod chroot;
pub mod coding_agents;
mod debian_base;
mod erofs;
mod node;
mod progress;
mod scratch;

use crate::util;
use anyhow::{anyhow, bail, Context, Result};
use rootfs_builder::busybox::DEBIAN_BUSYBOX_STATIC;
use rootfs_builder::{ImageSpec, Input, Inputs, Profile, ProfileError};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Bumped when this recipe changes in a way the spec fingerprint does not see.
const RECIPE_VERSION: &str = "paddock-rootfs-recipe-1";

/// Builds (or finds in the cache) the image of `profile` and returns its path.
pub fn build(profile: &str) -> Result<PathBuf> {
    if profile == rootfs_builder::agent::PROFILE_NAME {
        return agent::build();
    }
    let profile: Profile = profile.parse().map_err(|e| match e {
        ProfileError::Unknown { name, known } => anyhow!(
            "unknown rootfs profile {name:?} (known: {known}, {})",
            rootfs_builder::agent::PROFILE_NAME
        ),
        other => other.into(),
    })?;
    let inputs = resolve_inputs(profile.inputs())?;
    let spec = profile.spec(&inputs)?;
    let hash = util::hash_parts([RECIPE_VERSION, profile.name(), &spec.fingerprint()?]);
    let image = util::cache_dir()
        .join("rootfs")
        .join(hash)
        .join(format!("rootfs-{profile}.cpio"));
    if image.exists() {
        eprintln!("xtask: rootfs {profile}: cache hit");
    } else {
        write_image(&spec, &image)?;
        eprintln!("xtask: rootfs {profile}: built");
    }
    if profile == Profile::DEFAULT {
        util::link_default("rootfs.cpio", &image)?;
    }
    Ok(image)
}

/// Produces the host paths of `needed`: builds binaries, installs Debian packages.
pub fn resolve_inputs(needed: &[Input]) -> Result<Inputs> {
    let mut inputs = Inputs::new();
    for &input in needed {
        let path = match input {
            Input::GuestInit => util::build_static_bin("guest-init", "guest-init")?,
            Input::Busybox => busybox_static()?,
        };
        inputs.set(input, path);
    }
    Ok(inputs)
}

/// Debian's statically linked busybox, installed when missing.
pub fn busybox_static() -> Result<PathBuf> {
    util::ensure_debian_packages(&["busybox-static"])?;
    let path = PathBuf::from(DEBIAN_BUSYBOX_STATIC);
    if !path.is_file() {
        bail!(
            "busybox-static is installed but {} is missing",
            path.display()
        );
    }
    Ok(path)
}

/// Writes `spec` as a newc archive at `path` atomically: a temporary file in the same directory,
/// renamed into place once complete, so a crash never leaves a truncated image in the cache.
pub fn write_image(spec: &ImageSpec, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .context("image path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path.file_name().context("image path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let file = spec
            .write_newc(BufWriter::new(file))?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
