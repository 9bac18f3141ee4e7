//! Smoke checks run inside the assembled tree before it becomes an image: each tool the agent
//! needs starts and reports what it should (iptables its nft backend, Node its pinned version),
//! the `agent` user exists with its groups and passwordless sudo, and each coding agent's
//! `--version`, run as that user with its home, reports the pinned version. Any failure fails
//! the build. The versions the agents (and the shell) report become the image's agent manifest.

use super::chroot;
use anyhow::{bail, Context, Result};
use rootfs_builder::agent::{DebianRecipe, SHELL_AGENT};
use rootfs_builder::disk_image::AgentManifest;
use std::path::Path;

/// How long one check may run (a coding agent's first start can be slow in a cold cache).
const CHECK_TIMEOUT_SECS: &str = "120";

/// One command and what its output must show.
struct Check {
    argv: Vec<String>,
    expect: Expect,
}

/// What the output of a check must show.
#[derive(Debug)]
enum Expect {
    /// The text somewhere in the output.
    Contains(String),
    /// The whole output, trimmed, is this.
    Exactly(String),
    /// One of the whitespace-separated words of the output is this.
    Word(String),
}

impl Expect {
    fn met_by(&self, out: &str) -> bool {
        match self {
            Expect::Contains(text) => out.contains(text.as_str()),
            Expect::Exactly(text) => out.trim() == text,
            Expect::Word(word) => out.split_whitespace().any(|w| w == word),
        }
    }
}

fn check(argv: &[&str], expect: Expect) -> Check {
    Check {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        expect,
    }
}

fn contains(text: &str) -> Expect {
    Expect::Contains(text.to_owned())
}

/// The checks for `recipe`.
fn checks(recipe: &DebianRecipe) -> Vec<Check> {
    let user = recipe.user;
    let identity = format!(
        "uid={}({}) gid={}({})",
        user.uid, user.name, user.gid, user.name
    );
    let mut list = vec![
        check(&["docker", "--version"], contains("Docker version")),
        check(&["containerd", "--version"], contains("containerd")),
        check(&["runc", "--version"], contains("runc version")),
        check(&["tini", "--version"], contains("tini version")),
        // busybox-static: an image built FROM scratch around it runs.
        check(
            &["busybox", "echo", "busybox runs"],
            contains("busybox runs"),
        ),
        check(&["iptables", "--version"], contains("(nf_tables)")),
        check(&["ip6tables", "--version"], contains("(nf_tables)")),
        check(
            &["node", "--version"],
            Expect::Exactly(format!("v{}", recipe.node.version)),
        ),
        check(
            &["npm", "--version"],
            Expect::Exactly(recipe.npm.version.to_owned()),
        ),
        check(
            &["npx", "--version"],
            Expect::Exactly(recipe.npm.version.to_owned()),
        ),
        check(&["git", "--version"], contains("git version")),
        check(&["curl", "--version"], contains("curl")),
        check(&["python3", "--version"], contains("Python 3.")),
        check(&["sudo", "-u", user.name, "id"], contains(&identity)),
        check(&["visudo", "--check"], contains("parsed OK")),
    ];
    for group in user.groups {
        list.push(check(
            &["id", "-nG", user.name],
            Expect::Word((*group).to_owned()),
        ));
    }
    if user.passwordless_sudo {
        list.push(check(
            &["sudo", "-u", user.name, "sudo", "-n", "id", "-u"],
            Expect::Exactly("0".to_owned()),
        ));
    }
    list
}

/// `argv` run as the recipe's user, with its home, as a login would (sudo's clean environment).
fn as_user(recipe: &DebianRecipe, argv: &[&str]) -> Vec<String> {
    ["sudo", "-u", recipe.user.name, "-H", "--"]
        .iter()
        .chain(argv)
        .map(|a| (*a).to_owned())
        .collect()
}

/// The version checks of the coding agents and the shell, as the recipe's user: each agent must
/// report its pinned version (a word of the output: `2.1.332 (Claude Code)`,
/// `codex-cli 0.171.0`); bash reports its own.
fn agent_checks(recipe: &DebianRecipe) -> Vec<(Check, &'static str, &'static str)> {
    let mut list: Vec<_> = recipe
        .agents
        .iter()
        .map(|agent| {
            let check = Check {
                argv: as_user(recipe, &[agent.command, "--version"]),
                expect: Expect::Word(agent.version.to_owned()),
            };
            (check, agent.name, agent.command)
        })
        .collect();
    let (name, command) = SHELL_AGENT;
    let check = Check {
        argv: as_user(recipe, &[command, "--version"]),
        expect: contains("GNU bash, version "),
    };
    list.push((check, name, command));
    list
}

/// The version `command --version` printed: the pinned one for an agent (checked), the word
/// after `version` for bash (`GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)`).
fn reported_version(expect: &Expect, out: &str) -> Option<String> {
    match expect {
        Expect::Word(version) => Some(version.clone()),
        _ => {
            let mut words = out.split_whitespace();
            words.find(|w| *w == "version")?;
            words.next().map(str::to_owned)
        }
    }
}

/// Runs every check in `tree`; reports each and fails listing those that failed. Returns the
/// agent manifest: each agent with the version it reported.
pub fn run(tree: &Path, recipe: &DebianRecipe) -> Result<AgentManifest> {
    let mut failed = Vec::new();
    for check in checks(recipe) {
        let shown = check.argv.join(" ");
        if let Err(failure) = run_one(tree, &check) {
            failed.push(format!("{shown}: {failure}"));
        }
    }
    let mut manifest = AgentManifest::new();
    for (check, name, command) in agent_checks(recipe) {
        let shown = check.argv.join(" ");
        match run_one(tree, &check) {
            Ok(out) => {
                let version = reported_version(&check.expect, &out)
                    .with_context(|| format!("{shown} printed no version: {out:?}"))?;
                manifest
                    .push(name, command, &version)
                    .with_context(|| format!("recording agent {name}"))?;
            }
            Err(failure) => failed.push(format!("{shown} (agent {name}): {failure}")),
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} check(s) of the image failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(manifest)
}

/// Runs one check (under `timeout`), reports it; returns its output, or why it failed.
fn run_one(tree: &Path, check: &Check) -> Result<String, String> {
    let shown = check.argv.join(" ");
    let mut argv = vec!["timeout", CHECK_TIMEOUT_SECS];
    argv.extend(check.argv.iter().map(String::as_str));
    match chroot::run(tree, &argv) {
        Ok(out) if check.expect.met_by(&out) => {
            let first = out.lines().next().unwrap_or_default();
            eprintln!("xtask:   ok   {shown}: {first}");
            Ok(out)
        }
        Ok(out) => {
            eprintln!("xtask:   FAIL {shown}: {}", out.trim());
            Err(format!("expected {:?}, got {:?}", check.expect, out.trim()))
        }
        Err(e) => {
            eprintln!("xtask:   FAIL {shown}: {e:#}");
            Err(format!("{e:#}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rootfs_builder::agent::AGENT;

    #[test]
    fn expectations_are_not_fooled_by_near_misses() {
        assert!(Expect::Exactly("0".into()).met_by("0\n"));
        assert!(!Expect::Exactly("0".into()).met_by("1000\n"));
        assert!(Expect::Word("docker".into()).met_by("agent docker\n"));
        assert!(!Expect::Word("docker".into()).met_by("agent dockerd\n"));
        assert!(contains("(nf_tables)").met_by("iptables v1.8.9 (nf_tables)\n"));
        assert!(!contains("(nf_tables)").met_by("iptables v1.8.9 (legacy)\n"));
    }

    #[test]
    fn the_agent_checks_cover_its_tools_and_user() {
        let list = checks(&AGENT);
        let programs: Vec<&str> = list.iter().map(|c| c.argv[0].as_str()).collect();
        for program in [
            "docker",
            "containerd",
            "runc",
            "iptables",
            "node",
            "npm",
            "git",
            "python3",
            "sudo",
        ] {
            assert!(programs.contains(&program), "{program} is not checked");
        }
        let node = list.iter().find(|c| c.argv[0] == "node").unwrap();
        assert!(node.expect.met_by(&format!("v{}\n", AGENT.node.version)));
        assert!(!node.expect.met_by("v18.19.0\n"));
    }

    #[test]
    fn each_agent_reports_its_pinned_version_as_the_agent_user() {
        let list = agent_checks(&AGENT);
        let names: Vec<&str> = list.iter().map(|(_, name, _)| *name).collect();
        assert_eq!(names, ["claude", "gemini", "codex", "shell"]);
        for (check, _, command) in &list {
            assert_eq!(check.argv[..5], ["sudo", "-u", "agent", "-H", "--"]);
            assert_eq!(check.argv[5..], [*command, "--version"]);
        }
        let outputs = [
            "2.1.332 (Claude Code)\n",
            "0.61.0\n",
            "codex-cli 0.171.0\n",
            "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\nCopyright\n",
        ];
        let versions: Vec<String> = list
            .iter()
            .zip(outputs)
            .map(|((check, _, _), out)| {
                assert!(check.expect.met_by(out), "{out}");
                reported_version(&check.expect, out).unwrap()
            })
            .collect();
        assert_eq!(
            versions,
            ["2.1.332", "0.61.0", "0.171.0", "5.2.15(1)-release"]
        );
        // The stub Claude Code leaves without its native binary, and an older version, fail.
        let claude = &list[0].0;
        assert!(!claude
            .expect
            .met_by("Error: claude native binary not installed.\n"));
        assert!(!claude.expect.met_by("2.1.331 (Claude Code)\n"));
        assert!(!claude.expect.met_by("2.1.3320\n"));
    }
}
