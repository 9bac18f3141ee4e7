//! Turns an unpacked Debian base into the agent root: the iptables backend, the `agent` user and
//! its sudo rule, Node.js and npm (the coding agents are [`super::coding_agents`]), then the
//! removal of everything host-specific or stale (what the checks left in the user's home
//! included) and the empty mount points the guest puts tmpfs on.

use super::chroot;
use super::node::{self, NodeTarballs};
use anyhow::{bail, Context, Result};
use rootfs_builder::agent::{DebianRecipe, UserSpec};
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;

/// Files the build host leaks into a bootstrapped tree, or that must not be shared between
/// machines, removed from the image (paths relative to the root).
const HOST_SPECIFIC: &[&str] = &[
    // mmdebstrap copies the host's resolver configuration and name in; guest-init sets both.
    "etc/resolv.conf",
    "etc/hostname",
    "etc/mailname",
    "var/lib/dbus/machine-id",
];

/// Logs, backups and caches of the installation, removed: they describe the build, not the
/// image, and change with every build.
const BUILD_LEFTOVERS_IN: &[(&str, &[&str])] = &[
    (
        "var/log",
        &["dpkg.log", "alternatives.log", "bootstrap.log"],
    ),
    ("var/log/apt", &["eipp.log.xz", "history.log", "term.log"]),
    (
        "var/cache/debconf",
        &["config.dat-old", "templates.dat-old"],
    ),
    (
        "var/lib/dpkg",
        &["diversions-old", "statoverride-old", "status-old"],
    ),
    ("var/cache/ldconfig", &["aux-cache"]),
    (
        "etc",
        &[
            "passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-",
        ],
    ),
];

/// Configures the tree: iptables backend, user, Node.js and npm.
pub fn configure(
    tree: &Path,
    recipe: &DebianRecipe,
    tarballs: &NodeTarballs,
    scratch: &Path,
) -> Result<()> {
    for (name, nft) in [
        ("iptables", "/usr/sbin/iptables-nft"),
        ("ip6tables", "/usr/sbin/ip6tables-nft"),
    ] {
        chroot::run(tree, &["update-alternatives", "--set", name, nft])?;
    }
    add_user(tree, &recipe.user)?;
    node::install(tarballs, tree, scratch)
}

/// Creates the user, its group and home, its supplementary groups and its sudo rule.
fn add_user(tree: &Path, user: &UserSpec) -> Result<()> {
    let uid = user.uid.to_string();
    let gid = user.gid.to_string();
    chroot::run(tree, &["groupadd", "--gid", &gid, user.name])?;
    let groups = user.groups.join(",");
    let mut useradd = vec![
        "useradd",
        "--uid",
        &uid,
        "--gid",
        &gid,
        "--create-home",
        "--home-dir",
        user.home,
        "--shell",
        user.shell,
    ];
    if !groups.is_empty() {
        useradd.extend(["--groups", &groups]);
    }
    useradd.push(user.name);
    chroot::run(tree, &useradd)?;
    if user.passwordless_sudo {
        let rule = tree.join("etc/sudoers.d").join(user.name);
        fs::write(
            &rule,
            format!("{} ALL=(ALL:ALL) NOPASSWD: ALL\n", user.name),
        )?;
        chown(&rule, Some(0), Some(0))?;
        fs::set_permissions(&rule, fs::Permissions::from_mode(0o440))?;
        let inside = format!("/etc/sudoers.d/{}", user.name);
        chroot::run(tree, &["visudo", "--check", "--strict", "--file", &inside])?;
    }
    Ok(())
}

/// Removes host-specific files and build leftovers, empties `/etc/machine-id` and leaves the
/// runtime mount points as empty directories. Run after the checks, which may leave traces.
pub fn scrub(tree: &Path, recipe: &DebianRecipe) -> Result<()> {
    for path in HOST_SPECIFIC {
        remove_if_present(&tree.join(path))?;
    }
    for (dir, names) in BUILD_LEFTOVERS_IN {
        for name in *names {
            remove_if_present(&tree.join(dir).join(name))?;
        }
    }
    let machine_id = tree.join("etc/machine-id");
    if machine_id.exists() {
        fs::write(&machine_id, "")?;
    }
    for extra in home_extras(tree, &recipe.user)? {
        let path = tree
            .join(recipe.user.home.trim_start_matches('/'))
            .join(extra);
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    let ssh = tree.join("etc/ssh");
    if ssh.is_dir() {
        for entry in fs::read_dir(&ssh)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                fs::remove_file(entry.path())?;
            }
        }
    }
    for dir in recipe.empty_dirs {
        let path = tree.join(dir.trim_start_matches('/'));
        if fs::symlink_metadata(&path).is_ok() {
            fs::remove_dir_all(&path).with_context(|| format!("emptying {dir}"))?;
        }
        fs::create_dir_all(&path)?;
        let mode = match *dir {
            "/tmp" => 0o1777,
            "/var/lib/docker" => 0o710,
            _ => 0o755,
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Fails when something host-specific is still in the tree.
pub fn check_nothing_host_specific(tree: &Path, recipe: &DebianRecipe) -> Result<()> {
    let mut found = Vec::new();
    for path in HOST_SPECIFIC {
        if fs::symlink_metadata(tree.join(path)).is_ok() {
            found.push(format!("/{path} exists"));
        }
    }
    if fs::metadata(tree.join("etc/machine-id")).is_ok_and(|m| m.len() != 0) {
        found.push("/etc/machine-id is not empty".to_owned());
    }
    for extra in home_extras(tree, &recipe.user)? {
        found.push(format!("{}/{extra} (not from /etc/skel)", recipe.user.home));
    }
    if let Ok(entries) = fs::read_dir(tree.join("etc/ssh")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") {
                found.push(format!("/etc/ssh/{name} (an ssh host key)"));
            }
        }
    }
    if let Ok(host_name) = fs::read_to_string("/etc/hostname") {
        let host_name = host_name.trim();
        let hosts = fs::read_to_string(tree.join("etc/hosts")).unwrap_or_default();
        if !host_name.is_empty()
            && hosts
                .split_whitespace()
                .any(|word| word == host_name && host_name != "localhost")
        {
            found.push(format!("/etc/hosts names the build host {host_name}"));
        }
    }
    for dir in recipe.empty_dirs {
        let path = tree.join(dir.trim_start_matches('/'));
        let empty = fs::read_dir(&path)
            .with_context(|| format!("{dir} is missing"))?
            .next()
            .is_none();
        if !empty {
            found.push(format!("{dir} is not empty"));
        }
    }
    if !found.is_empty() {
        bail!(
            "host-specific or runtime files in the image:\n  {}",
            found.join("\n  ")
        );
    }
    Ok(())
}

/// The entries of the user's home that `/etc/skel` did not put there: what the checks (the
/// coding agents' first start: `~/.gemini`, `~/.codex`, …) wrote.
fn home_extras(tree: &Path, user: &UserSpec) -> Result<Vec<String>> {
    let names = |dir: &Path| -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    };
    let skel = names(&tree.join("etc/skel"))?;
    let home = names(&tree.join(user.home.trim_start_matches('/')))?;
    let mut extras: Vec<String> = home.into_iter().filter(|n| !skel.contains(n)).collect();
    extras.sort();
    Ok(extras)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
