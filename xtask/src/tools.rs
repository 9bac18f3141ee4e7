//! Every external host tool xtask (and the builds it drives) runs, the Debian package providing
//! it, and [`ensure`]: the check a task makes before running them, installing what is missing
//! when it can (as root) and otherwise failing with one line that says what to install.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// An external tool (or build input) a task needs on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// The package manager itself (downloads the lab kernel, installs the rest).
    AptGet,
    /// Package metadata queries (which cloud kernel the lab boots).
    AptCache,
    /// Unpacks the lab kernel's .deb.
    DpkgDeb,
    /// Whether a package is installed (how [`ensure`] checks non-program tools).
    DpkgQuery,
    /// Reads a kernel module's dependencies (the lab loads kvm-amd's chain).
    Modinfo,
    /// The lab machine.
    QemuSystemX86,
    /// Kernel build: make.
    Make,
    /// Kernel build: the C compiler (and libc headers for the host programs).
    Gcc,
    /// Kernel build: `bc` computes constants in the kernel headers.
    Bc,
    /// Kernel build: kconfig's lexer.
    Flex,
    /// Kernel build: kconfig's parser.
    Bison,
    /// Kernel build: objtool reads ELF through libelf.
    LibelfDev,
    /// Kernel build: certificate and signing helpers link against OpenSSL.
    LibsslDev,
    /// Debian's kernel source tarball under /usr/src.
    LinuxSource,
    /// Unpacks source tarballs.
    Tar,
    /// .xz tarballs and modules.
    Xz,
    /// .zst modules.
    Zstd,
    /// .gz modules and tarballs.
    Gzip,
    /// .bz2 kernel source tarballs (`--source`).
    Bzip2,
    /// The shell kconfig's merge_config.sh runs in.
    Sh,
    /// cpio archives (the rootfs-builder tests cross-check its newc output with it).
    Cpio,
    /// The statically linked busybox put into the lab and the minimal rootfs.
    BusyboxStatic,
    /// Builds a Debian root filesystem tree without root privileges.
    Mmdebstrap,
    /// Packs a root filesystem tree into an EROFS image.
    MkfsErofs,
    /// Installs the coding agents' npm packages into a rootfs.
    Npm,
    /// Runs them.
    Node,
    /// Runs the agent image's checks in a private mount namespace.
    Unshare,
    /// guest-init's egress capture test installs its NAT rules in a network namespace.
    IptablesRestore,
}

/// How to tell whether a tool is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// An executable of this name on PATH (a name with a `/` is taken as a path).
    Program(&'static str),
    /// The Debian package is installed (headers, source tarballs, a specific build of a program).
    Installed,
}

impl Tool {
    /// Every tool, in table order.
    pub const ALL: &'static [Tool] = &[
        Tool::AptGet,
        Tool::AptCache,
        Tool::DpkgDeb,
        Tool::DpkgQuery,
        Tool::Modinfo,
        Tool::QemuSystemX86,
        Tool::Make,
        Tool::Gcc,
        Tool::Bc,
        Tool::Flex,
        Tool::Bison,
        Tool::LibelfDev,
        Tool::LibsslDev,
        Tool::LinuxSource,
        Tool::Tar,
        Tool::Xz,
        Tool::Zstd,
        Tool::Gzip,
        Tool::Bzip2,
        Tool::Sh,
        Tool::Cpio,
        Tool::BusyboxStatic,
        Tool::Mmdebstrap,
        Tool::MkfsErofs,
        Tool::Npm,
        Tool::Node,
        Tool::Unshare,
        Tool::IptablesRestore,
    ];

    /// How [`ensure`] finds it.
    pub const fn presence(self) -> Presence {
        use Presence::{Installed, Program};
        match self {
            Tool::AptGet => Program("apt-get"),
            Tool::AptCache => Program("apt-cache"),
            Tool::DpkgDeb => Program("dpkg-deb"),
            Tool::DpkgQuery => Program("dpkg-query"),
            Tool::Modinfo => Program("modinfo"),
            Tool::QemuSystemX86 => Program("qemu-system-x86_64"),
            Tool::Make => Program("make"),
            Tool::Gcc => Program("gcc"),
            Tool::Bc => Program("bc"),
            Tool::Flex => Program("flex"),
            Tool::Bison => Program("bison"),
            Tool::LibelfDev | Tool::LibsslDev | Tool::LinuxSource => Installed,
            Tool::Tar => Program("tar"),
            Tool::Xz => Program("xz"),
            Tool::Zstd => Program("zstd"),
            Tool::Gzip => Program("gzip"),
            Tool::Bzip2 => Program("bzip2"),
            Tool::Sh => Program("sh"),
            Tool::Cpio => Program("cpio"),
            // Debian's non-static busybox installs the same /bin/busybox: ask for the package.
            Tool::BusyboxStatic => Installed,
            Tool::Mmdebstrap => Program("mmdebstrap"),
            Tool::MkfsErofs => Program("mkfs.erofs"),
            Tool::Npm => Program("npm"),
            Tool::Node => Program("node"),
            Tool::Unshare => Program("unshare"),
            Tool::IptablesRestore => Program("iptables-restore"),
        }
    }

    /// The Debian (bookworm) package that provides it.
    pub const fn package(self) -> &'static str {
        match self {
            Tool::AptGet | Tool::AptCache => "apt",
            Tool::DpkgDeb | Tool::DpkgQuery => "dpkg",
            Tool::Modinfo => "kmod",
            Tool::QemuSystemX86 => "qemu-system-x86",
            Tool::Make | Tool::Gcc => "build-essential",
            Tool::Bc => "bc",
            Tool::Flex => "flex",
            Tool::Bison => "bison",
            Tool::LibelfDev => "libelf-dev",
            Tool::LibsslDev => "libssl-dev",
            Tool::LinuxSource => "linux-source",
            Tool::Tar => "tar",
            Tool::Xz => "xz-utils",
            Tool::Zstd => "zstd",
            Tool::Gzip => "gzip",
            Tool::Bzip2 => "bzip2",
            Tool::Sh => "dash",
            Tool::Cpio => "cpio",
            Tool::BusyboxStatic => "busybox-static",
            Tool::Mmdebstrap => "mmdebstrap",
            Tool::MkfsErofs => "erofs-utils",
            Tool::Npm => "npm",
            Tool::Node => "nodejs",
            Tool::Unshare => "util-linux",
            Tool::IptablesRestore => "iptables",
        }
    }

    /// The name to show the user: the program, or the package for non-program tools.
    pub const fn name(self) -> &'static str {
        match self.presence() {
            Presence::Program(program) => program,
            Presence::Installed => self.package(),
        }
    }

    /// The tool whose program is `program` (a path counts by its last component).
    pub fn for_program(program: &str) -> Option<Tool> {
        let base = program.rsplit('/').next().unwrap_or(program);
        Tool::ALL
            .iter()
            .copied()
            .find(|tool| matches!(tool.presence(), Presence::Program(name) if name == base))
    }

    fn is_present(self) -> bool {
        match self.presence() {
            Presence::Program(program) => program_on_path(program),
            Presence::Installed => package_installed(self.package()),
        }
    }
}

/// What the kernel build (`cargo xtask kernel`) runs and compiles against.
pub const KERNEL_BUILD: &[Tool] = &[
    Tool::Make,
    Tool::Gcc,
    Tool::Bc,
    Tool::Flex,
    Tool::Bison,
    Tool::LibelfDev,
    Tool::LibsslDev,
    Tool::Sh,
];

/// Every Debian package the table names, sorted and without repeats: what `cargo xtask deps`
/// prints and a fresh CI machine installs.
pub fn all_packages() -> Vec<&'static str> {
    let set: BTreeSet<&str> = Tool::ALL.iter().map(|tool| tool.package()).collect();
    set.into_iter().collect()
}

/// The packages of the table's tools that are missing here, sorted and without repeats. A tool
/// found on PATH counts as present whatever installed it: a machine whose Node.js came from
/// another repository already has npm, and asking apt for Debian's npm would conflict with it.
pub fn missing_packages() -> Vec<&'static str> {
    let set: BTreeSet<&str> = Tool::ALL
        .iter()
        .filter(|tool| !tool.is_present())
        .map(|tool| tool.package())
        .collect();
    set.into_iter().collect()
}

/// Makes sure every tool in `tools` is present. Missing ones are installed from Debian when
/// running as root (`apt-get update` once per run, then one `apt-get install`); otherwise this
/// fails with one line naming each missing tool and the package to install.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let missing: Vec<Tool> = unique(tools.iter().copied().filter(|tool| !tool.is_present()));
    if missing.is_empty() {
        return Ok(());
    }
    // Debian puts modinfo and friends in /usr/sbin, which a normal user's PATH lacks.
    if let Some((tool, path)) = missing
        .iter()
        .find_map(|&tool| Some((tool, off_path(tool)?)))
    {
        bail!(
            "host tool {} is installed as {path} but that directory is not on PATH",
            tool.name()
        );
    }
    let packages = unique(missing.iter().map(|tool| tool.package()));
    if !running_as_root() {
        bail!("{}", missing_message(&missing, &packages));
    }
    install(&packages).with_context(|| missing_message(&missing, &packages))?;
    let still: Vec<Tool> = unique(missing.into_iter().filter(|tool| !tool.is_present()));
    if !still.is_empty() {
        let packages = unique(still.iter().map(|tool| tool.package()));
        bail!(
            "installed, but still {}",
            missing_message(&still, &packages)
        );
    }
    Ok(())
}

/// Like [`ensure`] for packages named directly (each must be one the table lists).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let mut tools = Vec::new();
    for package in packages {
        let tool = Tool::ALL
            .iter()
            .copied()
            .find(|tool| tool.package() == *package)
            .with_context(|| {
                format!(
                    "Debian package {package} is not in xtask's tool table (xtask/src/tools.rs)"
                )
            })?;
        tools.push(tool);
    }
    ensure(&tools)
}

/// "missing host tool modinfo (Debian package kmod): run `apt-get install kmod` as root".
fn missing_message(tools: &[Tool], packages: &[&str]) -> String {
    let listed: Vec<String> = tools
        .iter()
        .map(|tool| {
            if tool.name() == tool.package() {
                tool.name().to_owned()
            } else {
                format!("{} (Debian package {})", tool.name(), tool.package())
            }
        })
        .collect();
    let noun = if tools.len() == 1 { "tool" } else { "tools" };
    format!(
        "missing host {noun} {}: run `apt-get install {}` as root",
        listed.join(", "),
        packages.join(" ")
    )
}

/// Order-preserving de-duplication.
fn unique<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Set once `apt-get update` has run in this process.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

fn install(packages: &[&str]) -> Result<()> {
    if !program_on_path("apt-get") {
        bail!("apt-get is not available to install them");
    }
    eprintln!("xtask: installing Debian packages: {}", packages.join(" "));
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        crate::util::run(Command::new("apt-get").args(["update", "-qq"]))?;
    }
    crate::util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// True when `program` names an executable file: itself if it holds a `/`, else in a PATH entry.
fn program_on_path(program: &str) -> bool {
    if program.contains('/') {
        return is_executable(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

/// Where a program missing from PATH sits in a system directory normal users' PATH lacks.
fn off_path(tool: Tool) -> Option<String> {
    let Presence::Program(program) = tool.presence() else {
        return None;
    };
    ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| is_executable(path))
        .map(|path| path.display().to_string())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// dpkg's view: `install ok installed`. Without dpkg-query nothing counts as installed.
fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("install ok installed")
        })
}

#[cfg(test)]
mod tests;
