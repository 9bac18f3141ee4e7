//! The coding agents of the agent image (`rootfs_builder::agent::CODING_AGENTS`), from the npm
//! registry:
//!
//! 1. **fetch**: the host's `npm cache add` puts every tarball the committed lockfile lists for
//!    linux-x64-glibc into an npm cache under `<cache>/rootfs-npm/agents-cache/` (the host's npm
//!    knows the host's network: proxies, certificates);
//! 2. **install**: the image's own pinned npm, run by its pinned Node, does `npm ci --offline
//!    --ignore-scripts` in the tree's `AGENTS_DIR` from that cache: exactly the lockfile, each
//!    tarball checked against the lockfile's `sha512` integrity, no network, no install script;
//!    then the one postinstall a package needs runs inside the tree (chroot), and each agent's
//!    command is linked into `/usr/local/bin`.
//!
//! `cargo xtask agents-lock` rewrites the lockfile after a pin changes.

use super::chroot;
use super::progress::SizeWatch;
use crate::util;
use anyhow::{bail, Context, Result};
use rootfs_builder::agent::{package_json, CodingAgent, DebianRecipe, AGENTS_DIR};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The platform the image runs on, as npm's `os`, `cpu` and `libc` package fields name it.
const PLATFORM: (&str, &str, &str) = ("linux", "x64", "glibc");

/// Where the lockfile lives in the repository.
const LOCKFILE_IN_REPO: &str = "rootfs-builder/agents/package-lock.json";

/// An npm cache holding every tarball the lockfile needs on the image's platform.
pub struct AgentPackages {
    cache: PathBuf,
}

/// One tarball of the lockfile.
#[derive(Debug, PartialEq, Eq)]
struct Locked {
    path: String,
    resolved: String,
}

/// Checks the lockfile against the pins, then fetches its tarballs into the npm cache.
pub fn fetch(recipe: &DebianRecipe, header: String) -> Result<AgentPackages> {
    let tarballs = locked_tarballs(recipe.agents, recipe.agents_lockfile)?;
    let cache = util::cache_dir().join("rootfs-npm/agents-cache");
    fs::create_dir_all(&cache)?;
    let _watch = SizeWatch::start(header, &cache);
    util::run(
        Command::new("npm")
            .args(["cache", "add", "--prefer-offline", "--cache"])
            .arg(&cache)
            .args(tarballs.iter().map(|t| &t.resolved)),
    )
    .context("fetching the coding agents' packages from the npm registry")?;
    Ok(AgentPackages { cache })
}

/// The tarballs the lockfile installs on [`PLATFORM`]; fails when the lockfile does not pin
/// exactly `agents` (a pin changed without `cargo xtask agents-lock`).
fn locked_tarballs(agents: &[CodingAgent], lockfile: &str) -> Result<Vec<Locked>> {
    let lock: Value = serde_json::from_str(lockfile).context("parsing the agents' lockfile")?;
    let packages = lock["packages"]
        .as_object()
        .context("the agents' lockfile has no `packages` (lockfile version 3 expected)")?;
    let root = &packages
        .get("")
        .context("the agents' lockfile has no root package")?["dependencies"];
    let pinned = root.as_object().map_or(0, |deps| deps.len());
    let stale = pinned != agents.len()
        || agents.iter().any(|agent| {
            root[agent.package].as_str() != Some(agent.version)
                || packages
                    .get(&format!("node_modules/{}", agent.package))
                    .and_then(|p| p["version"].as_str())
                    != Some(agent.version)
        });
    if stale {
        bail!(
            "{LOCKFILE_IN_REPO} does not pin {}: run `cargo xtask agents-lock`",
            agents
                .iter()
                .map(CodingAgent::spec)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut tarballs = Vec::new();
    for (path, package) in packages {
        if path.is_empty() || !for_platform(package) {
            continue;
        }
        let resolved = package["resolved"].as_str();
        let integrity = package["integrity"].as_str();
        let (Some(resolved), Some(integrity)) = (resolved, integrity) else {
            bail!("{LOCKFILE_IN_REPO}: {path} has no `resolved` URL or no `integrity`");
        };
        if !integrity.starts_with("sha512-") {
            bail!("{LOCKFILE_IN_REPO}: {path} has no sha512 integrity ({integrity})");
        }
        tarballs.push(Locked {
            path: path.clone(),
            resolved: resolved.to_owned(),
        });
    }
    Ok(tarballs)
}

/// Whether npm installs `package` on [`PLATFORM`] (its `os`, `cpu`, `libc` lists allow it).
fn for_platform(package: &Value) -> bool {
    let (os, cpu, libc) = PLATFORM;
    [("os", os), ("cpu", cpu), ("libc", libc)]
        .into_iter()
        .all(|(field, ours)| match package[field].as_array() {
            None => true,
            Some(allowed) => allowed.iter().any(|a| a.as_str() == Some(ours)),
        })
}

/// Installs the agents into `tree` (Node.js and npm must be installed there already).
pub fn install(
    recipe: &DebianRecipe,
    packages: &AgentPackages,
    tree: &Path,
    scratch: &Path,
    header: String,
) -> Result<()> {
    let project = tree.join(AGENTS_DIR.trim_start_matches('/'));
    fs::create_dir_all(&project)?;
    fs::write(project.join("package.json"), package_json(recipe.agents))?;
    fs::write(project.join("package-lock.json"), recipe.agents_lockfile)?;
    let npm_home = scratch.join("npm-home");
    fs::create_dir_all(&npm_home)?;
    let userconfig = npm_home.join("npmrc");
    fs::write(&userconfig, "")?;
    {
        let _watch = SizeWatch::start(header, &project);
        util::run(
            Command::new(tree.join("usr/local/bin/node"))
                .arg(tree.join("usr/local/lib/node_modules/npm/bin/npm-cli.js"))
                .args([
                    "ci",
                    "--offline",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                ])
                .args(["--update-notifier=false", "--loglevel=warn", "--cache"])
                .arg(&packages.cache)
                .arg("--userconfig")
                .arg(&userconfig)
                .arg("--logs-dir")
                .arg(npm_home.join("logs"))
                .current_dir(&project)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", &npm_home),
        )
        .context("installing the coding agents (`npm ci --offline` from the lockfile)")?;
    }
    fs::remove_dir_all(&npm_home)?;
    for agent in recipe.agents {
        if let Some(script) = agent.postinstall {
            let inside = format!("{AGENTS_DIR}/node_modules/{}/{script}", agent.package);
            chroot::run(tree, &["node", &inside])
                .with_context(|| format!("running {}'s {script}", agent.package))?;
        }
        link_command(tree, agent)?;
    }
    Ok(())
}

/// `/usr/local/bin/<command>` -> the project's `node_modules/.bin/<command>` (relative links).
fn link_command(tree: &Path, agent: &CodingAgent) -> Result<()> {
    let bin = format!("{AGENTS_DIR}/node_modules/.bin/{}", agent.command);
    if fs::symlink_metadata(tree.join(bin.trim_start_matches('/'))).is_err() {
        bail!(
            "{} installed no `{}` command ({bin} is missing)",
            agent.spec(),
            agent.command
        );
    }
    let relative = format!(
        "../lib/{}/node_modules/.bin/{}",
        AGENTS_DIR
            .strip_prefix("/usr/local/lib/")
            .context("AGENTS_DIR is not under /usr/local/lib")?,
        agent.command
    );
    let link = tree.join("usr/local/bin").join(agent.command);
    symlink(&relative, &link).with_context(|| format!("linking {}", link.display()))
}

/// `cargo xtask agents-lock`: rewrites the committed lockfile from the pins with the host's npm
/// (`npm install --package-lock-only`: resolves and records, installs nothing, runs nothing).
pub fn write_lockfile() -> Result<PathBuf> {
    crate::tools::ensure(&[crate::tools::Tool::Npm])?;
    let agents = rootfs_builder::agent::CODING_AGENTS;
    let work = util::cache_dir().join(format!("agents-lock.{}", std::process::id()));
    fs::create_dir_all(&work)?;
    let result = (|| -> Result<PathBuf> {
        fs::write(work.join("package.json"), package_json(agents))?;
        // No user configuration: `omit-lockfile-registry-resolved` and the like would change
        // what is recorded.
        fs::write(work.join("npmrc"), "")?;
        util::run(
            Command::new("npm")
                .args(["install", "--package-lock-only", "--ignore-scripts"])
                .args(["--no-audit", "--no-fund", "--userconfig", "npmrc"])
                .current_dir(&work),
        )?;
        let lockfile = fs::read_to_string(work.join("package-lock.json"))?;
        locked_tarballs(agents, &lockfile).context("checking the new lockfile")?;
        let target = util::project_root().join(LOCKFILE_IN_REPO);
        fs::write(&target, lockfile)?;
        Ok(target)
    })();
    fs::remove_dir_all(&work)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rootfs_builder::agent::{AGENTS_LOCKFILE, CODING_AGENTS};

    #[test]
    fn the_committed_lockfile_pins_the_agents_and_their_linux_x64_binaries() {
        let tarballs = locked_tarballs(CODING_AGENTS, AGENTS_LOCKFILE).unwrap();
        let paths: Vec<&str> = tarballs.iter().map(|t| t.path.as_str()).collect();
        for needed in [
            "node_modules/@anthropic-ai/claude-code",
            "node_modules/@anthropic-ai/claude-code-linux-x64",
            "node_modules/@google/gemini-cli",
            "node_modules/@openai/codex",
            "node_modules/@openai/codex-linux-x64",
        ] {
            assert!(paths.contains(&needed), "{needed} is not fetched");
        }
        for foreign in ["darwin", "win32", "arm64", "musl"] {
            assert!(
                paths.iter().all(|p| !p.contains(foreign)),
                "{foreign} fetched"
            );
        }
    }

    #[test]
    fn a_pin_the_lockfile_lacks_is_refused_naming_the_fix() {
        let mut agents = CODING_AGENTS.to_vec();
        agents[0].version = "2.1.333";
        let err = locked_tarballs(&agents, AGENTS_LOCKFILE).unwrap_err();
        assert!(
            err.to_string().contains("cargo xtask agents-lock"),
            "{err:#}"
        );
        let err = locked_tarballs(&CODING_AGENTS[..2], AGENTS_LOCKFILE).unwrap_err();
        assert!(err.to_string().contains("agents-lock"), "{err:#}");
    }

    #[test]
    fn platform_fields_select_packages() {
        let pkg = |json: &str| for_platform(&serde_json::from_str(json).unwrap());
        assert!(pkg(r#"{}"#));
        assert!(pkg(r#"{"os":["linux"],"cpu":["x64"],"libc":["glibc"]}"#));
        assert!(!pkg(r#"{"os":["linux"],"cpu":["x64"],"libc":["musl"]}"#));
        assert!(!pkg(r#"{"os":["darwin"],"cpu":["x64"]}"#));
        assert!(!pkg(r#"{"cpu":["arm64"]}"#));
    }
}
