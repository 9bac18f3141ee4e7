//! `cargo xtask lab`: the lab machine (in progress).
use anyhow::{bail, Result};
pub fn run(_command: &[String]) -> Result<i32> { bail!("lab: in progress") }
