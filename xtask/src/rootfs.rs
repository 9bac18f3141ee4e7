//! `cargo xtask rootfs`: builds guest root filesystem images (in progress).
use anyhow::{bail, Result};
use std::path::PathBuf;
pub fn build(_profile: &str) -> Result<PathBuf> { bail!("rootfs build: in progress") }
