//! `cargo xtask kernel`: builds the guest vmlinux from `kernel-config/paddock.config` merged onto
//! `tinyconfig`, checks every fragment setting reached the final `.config` and that the image
//! has a PVH entry, and caches the result by content hash under `<cache>/kernel/<hash>/`. Before
//! building it checks the fragment covers Docker's documented requirements.

mod config_check;
mod docker_requirements;
mod pvh_note;
mod source;

use crate::tools;
use crate::util;
use anyhow::{bail, Context, Result};
use source::KernelSource;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Bump when the build steps below change in a way that changes the output.
const RECIPE_VERSION: &str =
    "paddock-kernel-recipe-1: tinyconfig + merge_config -m + olddefconfig, vmlinux";

/// Builds (or finds in the cache) the guest vmlinux, points `<cache>/default/vmlinux` at it and
/// returns its path. The final `.config` lies beside it as `config`.
pub fn build(source: Option<&Path>) -> Result<PathBuf> {
    let fragment_path = util::project_root().join("kernel-config/paddock.config");
    let fragment_text = fs::read_to_string(&fragment_path)
        .with_context(|| format!("reading {}", fragment_path.display()))?;
    let fragment = config_check::parse(&fragment_text)
        .with_context(|| format!("parsing {}", fragment_path.display()))?;
    check_docker_requirements(&fragment)?;

    let source = KernelSource::locate(source)?;
    let identity = source.identity()?;
    let key = util::hash_parts([RECIPE_VERSION, identity.as_str(), fragment_text.as_str()]);
    let kernels = util::cache_dir().join("kernel");
    let vmlinux = kernels.join(&key).join("vmlinux");
    if !vmlinux.is_file() {
        fs::create_dir_all(&kernels)?;
        // One kernel build at a time: they share unpacked sources and build directories.
        let lock = fs::File::create(kernels.join(".lock"))?;
        lock.lock().context("locking the kernel cache")?;
        if !vmlinux.is_file() {
            build_into(
                &source,
                &identity,
                &fragment_path,
                &fragment,
                &kernels.join(&key),
            )?;
        }
    }
    util::link_default("vmlinux", &vmlinux)?;
    Ok(vmlinux)
}

/// Where the options Docker documents as needed are listed (see the file's header).
const DOCKER_REQUIREMENTS: &str = "kernel-config/docker-check-config.list";

/// Fails naming every option of [`DOCKER_REQUIREMENTS`] the fragment does not build in.
fn check_docker_requirements(fragment: &config_check::Settings) -> Result<()> {
    let path = util::project_root().join(DOCKER_REQUIREMENTS);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let requirements =
        docker_requirements::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    let uncovered = docker_requirements::uncovered(&requirements, fragment);
    if !uncovered.is_empty() {
        let list: Vec<String> = uncovered.iter().map(ToString::to_string).collect();
        bail!(
            "kernel-config/paddock.config lacks {} option(s) Docker needs ({DOCKER_REQUIREMENTS}): {}",
            uncovered.len(),
            list.join("; ")
        );
    }
    Ok(())
}

/// Configures, checks, compiles and installs one kernel into `dest` (atomically, by rename).
fn build_into(
    source: &KernelSource,
    identity: &str,
    fragment_path: &Path,
    fragment: &config_check::Settings,
    dest: &Path,
) -> Result<()> {
    tools::ensure(tools::KERNEL_BUILD)?;
    let tree = source.tree(identity)?;
    // The build directory is per source, not per fragment: a fragment change then rebuilds
    // incrementally (kbuild tracks which objects each CONFIG_ symbol affects).
    let build_dir = util::cache_dir()
        .join("kernel-build")
        .join(util::hash_parts([RECIPE_VERSION, identity]));
    fs::create_dir_all(&build_dir)?;
    let started = Instant::now();

    make(&tree, &build_dir, &["tinyconfig"])?;
    let merged = util::run(
        Command::new("sh")
            .arg(tree.join("scripts/kconfig/merge_config.sh"))
            .arg("-m")
            .arg("-O")
            .arg(&build_dir)
            .arg(build_dir.join(".config"))
            .arg(fragment_path)
            .stdout(Stdio::from(std::io::stderr())),
    );
    merged.context("merging the config fragment")?;
    make(&tree, &build_dir, &["olddefconfig"])?;
    let final_text = fs::read_to_string(build_dir.join(".config"))?;
    let final_config = config_check::parse(&final_text).context("parsing the final .config")?;
    let missing = config_check::mismatches(fragment, &final_config);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("  {m}")).collect();
        bail!(
            "{} setting(s) of {} did not reach the final .config (unmet dependencies?); \
             see {}:\n{}",
            missing.len(),
            fragment_path.display(),
            build_dir.join(".config").display(),
            list.join("\n")
        );
    }

    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    make(&tree, &build_dir, &[&format!("-j{jobs}"), "vmlinux"])?;
    let built = build_dir.join("vmlinux");
    let image = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    let Some(entry) = pvh_note::pvh_entry(&image)? else {
        bail!(
            "{} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)",
            built.display()
        );
    };
    let release = fs::read_to_string(build_dir.join("include/config/kernel.release"))?;
    eprintln!(
        "xtask: built Linux {} in {:.0?}: vmlinux {:.1} MiB, PVH entry {entry:#x}",
        release.trim(),
        started.elapsed(),
        image.len() as f64 / (1024.0 * 1024.0)
    );

    install(&built, &build_dir.join(".config"), dest)
}

/// Runs `make -C <tree> O=<build dir> ARCH=x86 <args>`, its output on stderr (stdout carries
/// only the vmlinux path).
fn make(tree: &Path, build_dir: &Path, args: &[&str]) -> Result<()> {
    util::run(
        Command::new("make")
            .arg("-C")
            .arg(tree)
            .arg(format!("O={}", build_dir.display()))
            .arg("ARCH=x86")
            .args(args)
            .stdout(Stdio::from(std::io::stderr())),
    )
}

/// Copies the image and its config to a scratch directory, then renames it to `dest`, so a
/// cache entry is either complete or absent.
fn install(vmlinux: &Path, config: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().context("cache entry has no parent")?;
    let name = dest
        .file_name()
        .context("cache entry has no name")?
        .to_string_lossy();
    let scratch = parent.join(format!(".{name}.partial"));
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    fs::create_dir_all(&scratch)?;
    fs::copy(vmlinux, scratch.join("vmlinux"))?;
    fs::copy(config, scratch.join("config"))?;
    fs::rename(&scratch, dest).with_context(|| format!("installing {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::config_check::{parse, Setting};
    use crate::util;
    use std::fs;

    fn fragment(name: &str) -> super::config_check::Settings {
        let path = util::project_root().join("kernel-config").join(name);
        parse(&fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The options the guest cannot boot or talk to the host without (the kernel-config issue).
    #[test]
    fn fragment_enables_what_the_guest_needs() {
        let settings = fragment("paddock.config");
        for name in [
            "64BIT",
            "SMP",
            "PVH",
            "KVM_GUEST",
            "SERIAL_8250",
            "SERIAL_8250_CONSOLE",
            "VIRTIO_MMIO",
            "VIRTIO_MMIO_CMDLINE_DEVICES",
            "NET",
            "UNIX",
            "INET",
            "VSOCKETS",
            "VIRTIO_VSOCKETS",
            "DEVTMPFS",
            "TMPFS",
            "PROC_FS",
            "SYSFS",
            "BLK_DEV_INITRD",
            "BINFMT_ELF",
            "FUTEX",
            "EPOLL",
            "SIGNALFD",
            "UNIX98_PTYS",
            "BLOCK",
            "VIRTIO_BLK",
            "EROFS_FS",
            "EROFS_FS_XATTR",
            "EXT4_FS",
            "FUSE_FS",
            "VIRTIO_FS",
            "TMPFS_XATTR",
        ] {
            let symbol = format!("CONFIG_{name}");
            assert_eq!(
                settings.get(&symbol),
                Some(&Setting::Value("y".into())),
                "{symbol}"
            );
        }
        for name in ["ACPI", "PCI", "MODULES"] {
            let symbol = format!("CONFIG_{name}");
            assert_eq!(settings.get(&symbol), Some(&Setting::NotSet), "{symbol}");
        }
    }

    /// The options moby's check-config.sh asks for (overlay2, bridge, cgroup v2) are all built in.
    #[test]
    fn fragment_covers_dockers_requirements() {
        super::check_docker_requirements(&fragment("paddock.config")).unwrap();
    }

    /// The check fails, naming each option, when the fragment lacks some.
    #[test]
    fn docker_check_names_what_a_fragment_lacks() {
        let mut settings = fragment("paddock.config");
        settings.remove("CONFIG_OVERLAY_FS");
        settings.insert("CONFIG_CGROUP_BPF".into(), Setting::NotSet);
        let error = super::check_docker_requirements(&settings)
            .unwrap_err()
            .to_string();
        assert!(error.contains("lacks 2 option(s)"), "{error}");
        assert!(error.contains("CONFIG_OVERLAY_FS: missing"), "{error}");
        assert!(
            error.contains("CONFIG_CGROUP_BPF: the fragment says not set"),
            "{error}"
        );
    }

    /// later.config is meant to be merged on top of paddock.config, never to contradict it.
    #[test]
    fn later_options_do_not_contradict_the_fragment() {
        let now = fragment("paddock.config");
        for (name, later) in fragment("later.config") {
            if let Some(current) = now.get(&name) {
                assert_eq!(current, &later, "{name} differs between the two files");
            }
        }
    }
}
