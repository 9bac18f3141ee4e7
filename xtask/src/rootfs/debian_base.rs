//! The Debian base of a [`DebianRecipe`]: mmdebstrap's result, packed as a tarball and cached
//! under `<cache>/rootfs-base/<base key>/` with the time it was built, so a change that touches
//! only the assembly of the image does not download and install the packages again.

use super::progress::{SizeWatch, Steps};
use crate::util;
use anyhow::{bail, Context, Result};
use rootfs_builder::agent::DebianRecipe;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// A cached base.
pub struct Base {
    /// The root tree as an uncompressed tar (numeric owners, xattrs).
    pub tarball: PathBuf,
    /// When the base was built (seconds since the epoch): no file of the base is newer, so it
    /// serves as the image's SOURCE_DATE_EPOCH without touching the files' own times.
    pub built_at: u64,
}

const TARBALL: &str = "base.tar";
const BUILT_AT: &str = "built-at";
const LOG: &str = "mmdebstrap.log";

/// Returns the cached base of `recipe`, building it first when missing (two steps of `steps`).
pub fn ensure(recipe: &DebianRecipe, steps: &mut Steps) -> Result<Base> {
    let bases = util::cache_dir().join("rootfs-base");
    let dir = bases.join(recipe.base_key());
    if let Some(base) = cached(&dir)? {
        steps.skip("Debian base: cached");
        steps.skip("packing the base: cached");
        return Ok(base);
    }
    fs::create_dir_all(&bases)?;
    let lock = fs::File::create(bases.join(".lock"))?;
    lock.lock().context("locking the rootfs base cache")?;
    if let Some(base) = cached(&dir)? {
        steps.skip("Debian base: built meanwhile by another xtask");
        steps.skip("packing the base: cached");
        return Ok(base);
    }
    let scratch = bases.join(format!(".{}.partial", recipe.base_key()));
    super::scratch::remove_tree(&scratch)?;
    fs::create_dir_all(&scratch)?;
    let tree = scratch.join("tree");
    mmdebstrap(recipe, &tree, &scratch.join(LOG), steps)?;
    let built_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    pack(&tree, &scratch.join(TARBALL), steps)?;
    super::scratch::remove_tree(&tree)?;
    fs::write(scratch.join(BUILT_AT), format!("{built_at}\n"))?;
    fs::rename(&scratch, &dir).with_context(|| format!("installing {}", dir.display()))?;
    Ok(Base {
        tarball: dir.join(TARBALL),
        built_at,
    })
}

/// The complete base in `dir`, if there is one.
fn cached(dir: &Path) -> Result<Option<Base>> {
    let tarball = dir.join(TARBALL);
    let Ok(stamp) = fs::read_to_string(dir.join(BUILT_AT)) else {
        return Ok(None);
    };
    if !tarball.is_file() {
        return Ok(None);
    }
    let built_at = stamp
        .trim()
        .parse()
        .with_context(|| format!("parsing {}", dir.join(BUILT_AT).display()))?;
    Ok(Some(Base { tarball, built_at }))
}

/// Runs mmdebstrap into the directory `tree`, its own output into `log`.
///
/// `--mode=root`: xtask runs as root here, so mmdebstrap can chroot directly and the files get
/// their real owners; `unshare` mode also works but maps ids through /etc/subuid and needs
/// user namespaces, which buys nothing when we are root already.
fn mmdebstrap(recipe: &DebianRecipe, tree: &Path, log: &Path, steps: &mut Steps) -> Result<()> {
    let header = steps.next(&format!(
        "Debian {} ({}, {} packages) with mmdebstrap",
        recipe.suite,
        recipe.variant,
        recipe.packages.len()
    ));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--format=directory"])
        .arg(format!("--variant={}", recipe.variant))
        .arg(format!("--include={}", recipe.packages.join(",")))
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg("--aptopt=APT::Install-Suggests \"false\"");
    for filter in recipe.dpkg_path_filters {
        cmd.arg(format!("--dpkgopt={filter}"));
    }
    cmd.arg(recipe.suite).arg(tree);
    for source in recipe.sources {
        cmd.arg(source.line());
    }
    let log_file = fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let status = {
        let _watch = SizeWatch::start(header, tree);
        cmd.status().context("spawning mmdebstrap")?
    };
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "mmdebstrap failed with {status}; the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// Packs `tree` into `tarball` keeping numeric owners, permissions, xattrs (file capabilities)
/// and hard links.
fn pack(tree: &Path, tarball: &Path, steps: &mut Steps) -> Result<()> {
    let header = steps.next("packing the base for the cache");
    let _watch = SizeWatch::start(header, tarball);
    util::run(
        Command::new("tar")
            .args([
                "--create",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--sort=name",
            ])
            .arg("--file")
            .arg(tarball)
            .arg("--directory")
            .arg(tree)
            .arg("."),
    )
}

/// Unpacks a base tarball into the (empty or missing) directory `tree`.
pub fn unpack(tarball: &Path, tree: &Path) -> Result<()> {
    fs::create_dir_all(tree)?;
    util::run(
        Command::new("tar")
            .args([
                "--extract",
                "--numeric-owner",
                "--same-permissions",
                "--xattrs",
                "--xattrs-include=*",
            ])
            .arg("--file")
            .arg(tarball)
            .arg("--directory")
            .arg(tree),
    )
}
