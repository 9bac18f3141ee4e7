//! Running commands inside an unpacked root tree: `chroot` in a private mount and UTS namespace
//! with /proc, /dev and fresh tmpfs on /run and /tmp, all of which vanish with the process, so
//! nothing is left mounted on failure and nothing written to /run or /tmp reaches the image.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Sets the mounts up in the new namespace, then becomes `chroot TREE ARGV...`.
const ENTER_SCRIPT: &str = r#"set -e
tree="$1"; shift
hostname localhost
mount -t proc proc "$tree/proc"
mount --rbind /dev "$tree/dev"
mount -t tmpfs -o mode=0755 tmpfs "$tree/run"
mount -t tmpfs -o mode=1777 tmpfs "$tree/tmp"
exec chroot "$tree" "$@""#;

/// `argv` run as root inside `tree`, with a clean environment.
pub fn command(tree: &Path, argv: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--uts", "--propagation", "private", "--"])
        .args(["sh", "-c", ENTER_SCRIPT, "paddock-chroot"])
        .arg(tree)
        .args(argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8");
    cmd
}

/// Runs `argv` inside `tree`; fails with its output when it exits non-zero.
pub fn run(tree: &Path, argv: &[&str]) -> Result<String> {
    let out = command(tree, argv)
        .output()
        .with_context(|| format!("running {argv:?} in {}", tree.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{argv:?} in the image failed with {}:\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}
