//! The lab kernel: Debian's cloud kernel and the KVM modules it needs, unpacked from the .deb (never
//! installed into the host's /boot) and cached under `<cache>/lab/<hash>/`.
//!
//! `PADDOCK_LAB_KERNEL=backports` takes the newer cloud kernel of the host release's backports
//! suite instead (Debian 12: Linux 6.12, with `PAGEMAP_SCAN` and `KVM_PRE_FAULT_MEMORY`), read
//! through a private apt configuration under the cache: the host's apt sources stay as they are.

use crate::tools::{self, Tool};
use crate::util;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage that names the current cloud kernel package.
const METAPACKAGE: &str = "linux-image-cloud-amd64";
/// The module the lab exists for; its dependencies (irqbypass, kvm) are loaded first.
const TARGET_MODULE: &str = "kvm_amd";
/// Bumped when the extraction below changes.
const RECIPE_VERSION: &str = "paddock-lab-kernel-1";
const MANIFEST: &str = "manifest";
const MANIFEST_MAGIC: &str = "paddock-lab-kernel 1";

/// An unpacked lab kernel.
#[derive(Debug, Clone)]
pub struct LabKernel {
    /// The bzImage to boot.
    pub vmlinuz: PathBuf,
    /// Uncompressed modules in load order (dependencies first), ending with kvm-amd.
    pub modules: Vec<PathBuf>,
    /// The kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
}

/// Which Debian suite the lab kernel comes from.
enum Suite {
    /// The host's own apt sources (the release's kernel): the default, what CI runs.
    Host,
    /// `<codename>-backports`, through a private apt configuration.
    Backports(AptPrivate),
}

impl Suite {
    /// From `PADDOCK_LAB_KERNEL` (`stable`, the default, or `backports`).
    fn from_env() -> Result<Self> {
        match std::env::var("PADDOCK_LAB_KERNEL").as_deref() {
            Err(_) | Ok("" | "stable") => Ok(Self::Host),
            Ok("backports") => Ok(Self::Backports(AptPrivate::backports()?)),
            Ok(other) => bail!("PADDOCK_LAB_KERNEL={other}: expected `stable` or `backports`"),
        }
    }

    /// An apt command reading this suite's package lists.
    fn apt(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        if let Self::Backports(private) = self {
            command.args(private.options());
        }
        command
    }

    /// Fetches this suite's package lists.
    fn update(&self) -> Result<()> {
        if let Self::Backports(private) = self {
            private.prepare()?;
        }
        util::run(self.apt("apt-get").args(["update", "-qq"]))
    }
}

/// A private apt configuration (sources, lists, cache) under `<cache>/lab/apt-<suite>/`.
struct AptPrivate {
    dir: PathBuf,
    suite: String,
}

impl AptPrivate {
    fn backports() -> Result<Self> {
        let release =
            std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
        let codename = release
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .map(|c| c.trim_matches('"').to_owned())
            .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
            .context("/etc/os-release names no release codename, so no backports suite")?;
        let suite = format!("{codename}-backports");
        Ok(Self {
            dir: util::cache_dir().join("lab").join(format!("apt-{suite}")),
            suite,
        })
    }

    fn sources(&self) -> PathBuf {
        self.dir.join("sources.list")
    }

    fn prepare(&self) -> Result<()> {
        for dir in ["lists/partial", "cache/archives/partial", "parts"] {
            let dir = self.dir.join(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let line = format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian {} main\n",
            self.suite
        );
        std::fs::write(self.sources(), line)
            .with_context(|| format!("writing {}", self.sources().display()))
    }

    fn options(&self) -> Vec<String> {
        [
            ("Dir::Etc::SourceList", self.sources()),
            ("Dir::Etc::SourceParts", self.dir.join("parts")),
            ("Dir::State::Lists", self.dir.join("lists")),
            ("Dir::Cache", self.dir.join("cache")),
        ]
        .into_iter()
        .flat_map(|(key, path)| ["-o".to_owned(), format!("{key}={}", path.display())])
        // The lists live in root's cache, which apt's _apt sandbox user cannot write.
        .chain(["-o".to_owned(), "APT::Sandbox::User=root".to_owned()])
        .collect()
    }
}

/// Returns the lab kernel, downloading and unpacking it on a cache miss.
pub fn lab_kernel() -> Result<LabKernel> {
    let suite = Suite::from_env()?;
    let package = resolve_package(&suite)?;
    let hash = util::hash_parts([
        RECIPE_VERSION,
        &package.name,
        &package.version,
        &package.sha256,
    ]);
    let dir = util::cache_dir().join("lab").join(hash);
    if let Ok(kernel) = read_manifest(&dir) {
        return Ok(kernel);
    }
    eprintln!("xtask: lab: unpacking {} {}", package.name, package.version);
    let staging = dir.with_file_name(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = unpack(&suite, &package, &staging).and_then(|()| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(staging.join("out"), &dir)
            .with_context(|| format!("moving into {}", dir.display()))
    });
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    read_manifest(&dir)
}

/// The versioned kernel package the metapackage currently points at.
struct Package {
    name: String,
    version: String,
    /// The .deb's SHA-256 from the archive index: part of the cache key.
    sha256: String,
}

fn resolve_package(suite: &Suite) -> Result<Package> {
    tools::ensure(&[Tool::AptGet, Tool::AptCache])?;
    let depends = match util::output(suite.apt("apt-cache").args(["depends", METAPACKAGE])) {
        Ok(text) if text.contains("Depends:") => text,
        _ => {
            // No package lists yet (fresh machine): fetch them once.
            suite.update()?;
            util::output(suite.apt("apt-cache").args(["depends", METAPACKAGE]))?
        }
    };
    let name = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|dep| dep.starts_with("linux-image-") && dep.ends_with("-cloud-amd64"))
        .with_context(|| {
            format!("{METAPACKAGE} does not depend on a versioned cloud kernel:\n{depends}")
        })?
        .to_owned();
    let show = util::output(
        suite
            .apt("apt-cache")
            .args(["show", "--no-all-versions", &name]),
    )?;
    let field = |key: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .with_context(|| format!("apt-cache show {name} has no {key}"))
    };
    Ok(Package {
        version: field("Version:")?,
        sha256: field("SHA256:")?,
        name,
    })
}

/// Downloads and unpacks the package into `staging`, leaving the result in `staging/out`.
fn unpack(suite: &Suite, package: &Package, staging: &Path) -> Result<()> {
    let (download, root, out) = (
        staging.join("deb"),
        staging.join("root"),
        staging.join("out"),
    );
    tools::ensure(&[Tool::DpkgDeb, Tool::Modinfo])?;
    for dir in [&download, &root, &out] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    util::run(
        suite
            .apt("apt-get")
            .current_dir(&download)
            // Downloading into root's cache: apt's _apt sandbox user could not write there.
            .args(["-o", "APT::Sandbox::User=root", "download", "-qq"])
            .arg(format!("{}={}", package.name, package.version)),
    )?;
    let deb = only_entry(&download, |name| name.ends_with(".deb"))?;
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;

    let vmlinuz = only_entry(&root.join("boot"), |name| name.starts_with("vmlinuz-"))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .context("odd vmlinuz name")?
        .to_owned();
    std::fs::copy(&vmlinuz, out.join("vmlinuz"))?;

    let index = index_modules(&root.join("lib/modules").join(&release).join("kernel"))?;
    let mut manifest = format!("{MANIFEST_MAGIC}\nrelease {release}\n");
    for name in load_order(TARGET_MODULE, &|m| module_depends(&index, m))? {
        let file = format!("{name}.ko");
        decompress_module(&index[&name], &out.join(&file))?;
        manifest.push_str(&format!("module {file}\n"));
    }
    std::fs::write(out.join(MANIFEST), manifest)?;
    Ok(())
}

/// The single entry of `dir` whose name satisfies `pick`.
fn only_entry(dir: &Path, pick: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(&pick))
        .map(|e| e.path())
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!("expected one matching file in {}, found {n}", dir.display()),
    }
}

/// Module name (`kvm_amd`; '-' and '_' are the same to the kernel) -> module file, for the whole tree.
fn index_modules(kernel_dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut pending = vec![kernel_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(module_name)
            {
                index.insert(name, path);
            }
        }
    }
    Ok(index)
}

/// `kvm-amd.ko[.xz|.zst|.gz]` -> `kvm_amd`.
fn module_name(file_name: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// The modules `name` depends on, from its `.modinfo` (kmod's modinfo reads compressed modules too).
fn module_depends(index: &BTreeMap<String, PathBuf>, name: &str) -> Result<Vec<String>> {
    let path = index
        .get(name)
        .with_context(|| format!("module {name} is not in the kernel package"))?;
    let depends = util::output(Command::new("modinfo").args(["-F", "depends"]).arg(path))?;
    Ok(depends
        .trim()
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

/// Dependencies before dependents (depth-first post-order), ending with `target`.
fn load_order(target: &str, depends: &dyn Fn(&str) -> Result<Vec<String>>) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        depends: &dyn Fn(&str) -> Result<Vec<String>>,
        visiting: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|m| m == name) {
            return Ok(());
        }
        if !visiting.insert(name.to_owned()) {
            bail!("module dependency cycle through {name}");
        }
        for dep in depends(name)? {
            visit(&dep, depends, visiting, order)?;
        }
        order.push(name.to_owned());
        Ok(())
    }
    let mut order = Vec::new();
    visit(target, depends, &mut BTreeSet::new(), &mut order)?;
    Ok(order)
}

/// Copies a module, decompressing it: busybox insmod cannot load compressed modules.
fn decompress_module(from: &Path, to: &Path) -> Result<()> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Tool::Xz
    } else if name.ends_with(".zst") {
        Tool::Zstd
    } else if name.ends_with(".gz") {
        Tool::Gzip
    } else {
        std::fs::copy(from, to).with_context(|| format!("copying {name}"))?;
        return Ok(());
    };
    tools::ensure(&[tool])?;
    let tool = tool.name();
    let out = std::fs::File::create(to)?;
    let status = Command::new(tool)
        .arg("-dc")
        .arg(from)
        .stdout(out)
        .status()?;
    if !status.success() {
        bail!("{tool} -dc {name} failed with {status}");
    }
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<LabKernel> {
    let text = std::fs::read_to_string(dir.join(MANIFEST))?;
    let mut lines = text.lines();
    if lines.next() != Some(MANIFEST_MAGIC) {
        bail!("unknown lab kernel manifest in {}", dir.display());
    }
    let mut release = None;
    let mut modules = Vec::new();
    for line in lines {
        match line.split_once(' ') {
            Some(("release", value)) => release = Some(value.to_owned()),
            Some(("module", file)) => modules.push(dir.join(file)),
            _ => bail!("bad lab kernel manifest line {line:?}"),
        }
    }
    let kernel = LabKernel {
        vmlinuz: dir.join("vmlinuz"),
        release: release.context("manifest lacks the release")?,
        modules,
    };
    if !kernel.vmlinuz.is_file()
        || kernel.modules.is_empty()
        || !kernel.modules.iter().all(|m| m.is_file())
    {
        bail!("incomplete lab kernel in {}", dir.display());
    }
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_normalise_dashes_and_compression() {
        assert_eq!(module_name("kvm-amd.ko").as_deref(), Some("kvm_amd"));
        assert_eq!(module_name("irqbypass.ko.xz").as_deref(), Some("irqbypass"));
        assert_eq!(module_name("kvm.ko.zst").as_deref(), Some("kvm"));
        assert_eq!(module_name("modules.order"), None);
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let graph: BTreeMap<&str, Vec<String>> = BTreeMap::from([
            ("kvm_amd", vec!["kvm".to_owned(), "ccp".to_owned()]),
            ("kvm", vec!["irqbypass".to_owned()]),
            ("ccp", vec!["irqbypass".to_owned()]),
            ("irqbypass", vec![]),
        ]);
        let deps = |m: &str| Ok(graph[m].clone());
        assert_eq!(
            load_order("kvm_amd", &deps).unwrap(),
            ["irqbypass", "kvm", "ccp", "kvm_amd"]
        );
    }

    #[test]
    fn load_order_rejects_cycles() {
        let deps = |m: &str| Ok(vec![if m == "a" { "b" } else { "a" }.to_owned()]);
        assert!(load_order("a", &deps).is_err());
    }
}
