//! Shared helpers: paths, the content-hash cache, running commands, installing Debian packages.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where heavy artifacts are cached by content hash, outside the checkout:
/// `$PADDOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/paddock`, else `~/.cache/paddock`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PADDOCK_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("paddock")
}

/// The directory of stable links to the newest default artifacts (`vmlinux`, `rootfs.cpio`);
/// `paddock run` falls back to these when no `--kernel` / `--rootfs` is given.
pub fn default_artifacts_dir() -> PathBuf {
    cache_dir().join("default")
}

/// Points `default_artifacts_dir()/name` at `target` (atomically replacing an older link).
pub fn link_default(name: &str, target: &Path) -> Result<()> {
    let dir = default_artifacts_dir();
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// A hex SHA-256 over a sequence of byte strings (each length-prefixed, so boundaries count).
pub fn hash_parts<I, B>(parts: I) -> String
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    let mut hasher = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs a command, failing with its rendering when it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let rendered = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| spawn_failure(cmd, &rendered))?;
    if !status.success() {
        bail!("{rendered} failed with {status}");
    }
    Ok(())
}

/// "spawning <command>", naming the Debian package of a known tool (for one no task ensured).
fn spawn_failure(cmd: &Command, rendered: &str) -> String {
    let program = cmd.get_program().to_string_lossy();
    match crate::tools::Tool::for_program(&program) {
        Some(tool) => format!(
            "spawning {rendered} ({} comes with the Debian package {})",
            tool.name(),
            tool.package()
        ),
        None => format!("spawning {rendered}"),
    }
}

/// Runs a command and returns its stdout as a string.
pub fn output(cmd: &mut Command) -> Result<String> {
    let rendered = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| spawn_failure(cmd, &rendered))?;
    if !out.status.success() {
        bail!(
            "{rendered} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Makes sure the Debian packages are installed (each must be in `tools`' table): installs them
/// as root, else fails naming them. Prefer [`crate::tools::ensure`] with the tools a task runs.
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    crate::tools::ensure_packages(packages)
}

/// The target triple static binaries are built for (gnu + crt-static; no extra rustup targets).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds `bin` of `package` as a static release binary and returns its path.
pub fn build_static_bin(package: &str, bin: &str) -> Result<PathBuf> {
    let root = project_root();
    run(Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            package,
            "--bin",
            bin,
            "--target",
            STATIC_TARGET,
        ])
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        ))?;
    Ok(target_dir().join(STATIC_TARGET).join("release").join(bin))
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// True when this host has hardware-accelerated KVM paddock can use natively (not PVM).
pub fn host_has_hardware_kvm() -> bool {
    Path::new("/dev/kvm").exists() && !Path::new("/sys/module/kvm_pvm").exists()
}
