//! `cargo xtask rootfs --profile agent`: builds the agent image of
//! [`rootfs_builder::agent::AGENT`] into `<cache>/rootfs/<image key>/rootfs-agent.img` (linked as
//! `<cache>/default/rootfs-agent.img`): Node.js, npm and the coding agents from the npm
//! registry, the Debian base from mmdebstrap (cached separately), the assembly and its checks in
//! a scratch tree, then erofs + the paddock trailer (with the agent manifest the checks
//! produced), renamed into place when complete.

use super::coding_agents::{self, AgentPackages};
use super::progress::{human_bytes, Steps};
use super::{assemble, checks, debian_base, erofs, node, scratch};
use crate::tools::{self, Tool};
use crate::util;
use anyhow::{bail, Context, Result};
use rootfs_builder::agent::{DebianRecipe, AGENT};
use rootfs_builder::disk_image::{self, AgentManifest};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const STEPS: usize = 9;

/// Builds (or finds in the cache) the agent image and returns its path.
pub fn build() -> Result<PathBuf> {
    let recipe = &AGENT;
    let key = recipe.image_key();
    let dir = util::cache_dir().join("rootfs").join(&key);
    let image = dir.join(format!("rootfs-{}.img", recipe.profile));
    if image.is_file() {
        let trailer = disk_image::read_trailer(&mut fs::File::open(&image)?)
            .with_context(|| format!("checking the cached {}", image.display()))?;
        eprintln!(
            "xtask: rootfs {}: cache hit (filesystem sha256 {}; agents: {})",
            recipe.profile,
            trailer.digest_hex(),
            agents_line(trailer.agents())
        );
    } else {
        ensure_host_tools()?;
        if fs::metadata("/proc/self")?.uid() != 0 {
            bail!("building the agent image needs root (mmdebstrap --mode=root, chroot)");
        }
        fs::create_dir_all(&dir)?;
        let lock = fs::File::create(dir.join(".lock"))?;
        lock.lock().context("locking the agent image cache entry")?;
        if !image.is_file() {
            build_image(recipe, &key, &dir, &image)?;
        }
    }
    util::link_default(&format!("rootfs-{}.img", recipe.profile), &image)?;
    Ok(image)
}

/// Host tools the agent image needs. The one place to switch to xtask's tools table.
fn ensure_host_tools() -> Result<()> {
    // Any npm will do (it only fetches and checks tarballs); Debian's when there is none.
    tools::ensure(&[
        Tool::Mmdebstrap,
        Tool::MkfsErofs,
        Tool::Unshare,
        Tool::Tar,
        Tool::Gzip,
        Tool::Npm,
    ])
}

fn build_image(recipe: &DebianRecipe, key: &str, dir: &Path, image: &Path) -> Result<()> {
    let mut steps = Steps::new(STEPS);
    steps.next(&format!(
        "Node.js {} and npm {} from the npm registry",
        recipe.node.version, recipe.npm.version
    ));
    let tarballs = node::fetch(&recipe.node, &recipe.npm)?;
    let header = steps.next(&format!(
        "coding agents from the npm registry ({})",
        recipe
            .agents
            .iter()
            .map(|a| format!("{} {}", a.name, a.version))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let agents = coding_agents::fetch(recipe, header)?;
    let base = debian_base::ensure(recipe, &mut steps)?;

    let work = util::cache_dir().join("rootfs-work");
    remove_stale_scratch(&work, key)?;
    let scratch = work.join(format!("{key}.{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let result = assemble_and_write(
        recipe, key, &base, &tarballs, &agents, &scratch, dir, image, &mut steps,
    );
    scratch::remove_tree(&scratch)?;
    result?;
    eprintln!(
        "xtask: rootfs {}: built in {}s: {} ({})",
        recipe.profile,
        steps.elapsed().as_secs(),
        image.display(),
        human_bytes(fs::metadata(image)?.len())
    );
    Ok(())
}

/// Removes scratch trees of `key` left by interrupted builds (the caller holds the key's lock,
/// so no other build is using them).
fn remove_stale_scratch(work: &Path, key: &str) -> Result<()> {
    let Ok(entries) = fs::read_dir(work) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{key}."))
        {
            scratch::remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn assemble_and_write(
    recipe: &DebianRecipe,
    key: &str,
    base: &debian_base::Base,
    tarballs: &node::NodeTarballs,
    agents: &AgentPackages,
    scratch: &Path,
    dir: &Path,
    image: &Path,
    steps: &mut Steps,
) -> Result<()> {
    let tree = scratch.join("tree");
    let header = steps.next("unpacking the base and assembling the agent root");
    {
        let _watch = super::progress::SizeWatch::start(header, &tree);
        debian_base::unpack(&base.tarball, &tree)?;
    }
    assemble::configure(&tree, recipe, tarballs, scratch)?;
    let header = steps.next(&format!(
        "installing the coding agents (npm ci --offline into {})",
        rootfs_builder::agent::AGENTS_DIR
    ));
    coding_agents::install(recipe, agents, &tree, scratch, header)?;

    steps.next("checking the tools and the agents inside the tree (chroot)");
    let manifest = checks::run(&tree, recipe)?;
    assemble::scrub(&tree, recipe)?;
    assemble::check_nothing_host_specific(&tree, recipe)?;

    let tmp = dir.join(format!(
        ".rootfs-{}.img.tmp-{}",
        recipe.profile,
        std::process::id()
    ));
    erofs::remove_stale(&tmp)?;
    let header = steps.next("mkfs.erofs (uncompressed)");
    let uuid = erofs::uuid_from_key(key)?;
    let sealed = erofs::make_filesystem(&tree, &tmp, base.built_at, &uuid, header).and_then(|()| {
        steps.next("paddock trailer: hashing, writing, verifying");
        erofs::seal(&tmp, recipe.profile, &manifest)
    });
    let trailer = match sealed {
        Ok(trailer) => trailer,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    eprintln!(
        "xtask:   filesystem {}, sha256 {}, agents: {}",
        human_bytes(trailer.fs_len()),
        trailer.digest_hex(),
        agents_line(trailer.agents())
    );
    fs::rename(&tmp, image).with_context(|| format!("installing {}", image.display()))?;
    Ok(())
}

/// `claude 2.1.332, gemini 0.61.0, codex 0.171.0, shell (bash) 5.2.15(1)-release`.
fn agents_line(agents: &AgentManifest) -> String {
    if agents.is_empty() {
        return "none".to_owned();
    }
    agents
        .entries()
        .iter()
        .map(|e| {
            if e.name == e.command {
                format!("{} {}", e.name, e.version)
            } else {
                format!("{} ({}) {}", e.name, e.command, e.version)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
