//! Node.js and npm from the npm registry: fetched with the host's `npm pack` (which checks the
//! tarball against the registry's integrity), checked again here against the SRI string pinned
//! in the recipe, cached under `<cache>/rootfs-npm/`, and installed into a root tree as
//! `/usr/local/bin/node` and `/usr/local/lib/node_modules/npm` (+ `npm`, `npx` links).

use crate::util;
use anyhow::{bail, Context, Result};
use base64::Engine;
use rootfs_builder::agent::NpmPin;
use sha2::{Digest, Sha512};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The verified registry tarballs of Node.js and npm.
pub struct NodeTarballs {
    pub node: PathBuf,
    pub npm: PathBuf,
}

/// Fetches (or finds in the cache) both tarballs and verifies them against their pins.
pub fn fetch(node: &NpmPin, npm: &NpmPin) -> Result<NodeTarballs> {
    let dir = util::cache_dir().join("rootfs-npm");
    fs::create_dir_all(&dir)?;
    Ok(NodeTarballs {
        node: fetch_one(node, &dir)?,
        npm: fetch_one(npm, &dir)?,
    })
}

fn fetch_one(pin: &NpmPin, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("{}-{}.tgz", pin.package, pin.version));
    if path.is_file() {
        verify(pin, &path)?;
        return Ok(path);
    }
    let scratch = dir.join(format!(".{}-{}.partial", pin.package, pin.version));
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    fs::create_dir_all(&scratch)?;
    let report = util::output(
        Command::new("npm")
            .args(["pack", "--json", "--silent", "--pack-destination"])
            .arg(&scratch)
            .arg(pin.spec())
            .current_dir(&scratch),
    )?;
    let packed: serde_json::Value = serde_json::from_str(&report)
        .with_context(|| format!("parsing `npm pack` output: {report}"))?;
    let entry = packed.get(0).context("`npm pack` reported no tarball")?;
    let reported = entry["integrity"].as_str().unwrap_or_default();
    if reported != pin.integrity {
        bail!(
            "{}: the registry's integrity {reported} differs from the pinned {}",
            pin.spec(),
            pin.integrity
        );
    }
    let filename = entry["filename"]
        .as_str()
        .context("`npm pack` reported no file name")?;
    let packed_path = scratch.join(filename);
    verify(pin, &packed_path)?;
    fs::rename(&packed_path, &path)?;
    fs::remove_dir_all(&scratch)?;
    Ok(path)
}

/// Checks the SHA-512 of `path` against the pin's `sha512-<base64>` integrity string.
fn verify(pin: &NpmPin, path: &Path) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    if actual != pin.integrity {
        bail!(
            "{} is corrupt: {actual}, the pin says {}",
            path.display(),
            pin.integrity
        );
    }
    Ok(())
}

/// Installs Node.js and npm into `tree` (as root: the files are owned by root).
pub fn install(tarballs: &NodeTarballs, tree: &Path, scratch: &Path) -> Result<()> {
    let node_dir = scratch.join("node");
    extract(&tarballs.node, &node_dir)?;
    let bin = tree.join("usr/local/bin");
    fs::create_dir_all(&bin)?;
    let node = bin.join("node");
    fs::copy(node_dir.join("package/bin/node"), &node).context("installing bin/node")?;
    fs::set_permissions(&node, fs::Permissions::from_mode(0o755))?;
    let doc = tree.join("usr/local/share/doc/node");
    fs::create_dir_all(&doc)?;
    fs::copy(node_dir.join("package/LICENSE"), doc.join("LICENSE"))?;

    let npm_dir = scratch.join("npm");
    extract(&tarballs.npm, &npm_dir)?;
    let modules = tree.join("usr/local/lib/node_modules");
    fs::create_dir_all(&modules)?;
    let npm_root = modules.join("npm");
    // Same filesystem (the scratch directory lies beside the tree): a rename, not a copy.
    fs::rename(npm_dir.join("package"), &npm_root).context("installing npm")?;
    for (link, script) in [("npm", "npm-cli.js"), ("npx", "npx-cli.js")] {
        let target = format!("../lib/node_modules/npm/bin/{script}");
        let script_path = npm_root.join("bin").join(script);
        if !script_path.is_file() {
            bail!("the npm package has no bin/{script}");
        }
        // npm sets the executable bit at install time; the registry tarball may lack it.
        fs::set_permissions(&script_path, fs::Permissions::from_mode(0o755))?;
        symlink(&target, bin.join(link)).with_context(|| format!("linking {link}"))?;
    }
    fs::remove_dir_all(&node_dir)?;
    fs::remove_dir_all(&npm_dir)?;
    Ok(())
}

/// Unpacks a registry tarball (`package/...`) into `dir`, files owned by the caller (root).
fn extract(tarball: &Path, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    util::run(
        Command::new("tar")
            .args(["--extract", "--gzip", "--no-same-owner", "--file"])
            .arg(tarball)
            .arg("--directory")
            .arg(dir),
    )
}
