//! Smoke checks run inside the assembled tree before it becomes an image: each tool the agent
//! needs starts and reports what it should (iptables its nft backend, Node its pinned version),
//! and the `agent` user exists with its groups and passwordless sudo. Any failure fails the build.

use super::chroot;
use anyhow::{bail, Result};
use rootfs_builder::agent::DebianRecipe;
use std::path::Path;

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

/// Runs every check in `tree`; reports each and fails listing those that failed.
pub fn run(tree: &Path, recipe: &DebianRecipe) -> Result<()> {
    let mut failed = Vec::new();
    for check in checks(recipe) {
        let argv: Vec<&str> = check.argv.iter().map(String::as_str).collect();
        let shown = argv.join(" ");
        match chroot::run(tree, &argv) {
            Ok(out) if check.expect.met_by(&out) => {
                let first = out.lines().next().unwrap_or_default();
                eprintln!("xtask:   ok   {shown}: {first}");
            }
            Ok(out) => {
                eprintln!("xtask:   FAIL {shown}: {}", out.trim());
                failed.push(format!(
                    "{shown}: expected {:?}, got {:?}",
                    check.expect,
                    out.trim()
                ));
            }
            Err(e) => {
                eprintln!("xtask:   FAIL {shown}: {e:#}");
                failed.push(format!("{shown}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} check(s) of the image failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
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
}
