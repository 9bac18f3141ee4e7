//! From `MachineArgs` to what a new sandbox starts from: the matching template (built first
//! when there is none, with progress on stderr), or a cold boot (`--cold-boot`, or a shape that
//! cannot come from a template).

use super::MachineArgs;
use anyhow::Context;
use paddock_vmm::artifacts::{Artifacts, DigestCache, Profile};
use paddock_vmm::config::VmConfig;
use paddock_vmm::sandbox::{ConsoleLog, Launch, Sandboxes};
use paddock_vmm::template::{self, BuildStep, Template, TemplateSpec, TemplateStore};
use std::path::PathBuf;

/// How a new sandbox comes up.
pub enum Plan {
    /// Restore this template (the guest console going to `console`, else the sandbox's log;
    /// the root image from `image`, which has the content the template was built with).
    Template {
        template: Box<Template>,
        console: Option<PathBuf>,
        image: Option<PathBuf>,
    },
    /// Boot this machine.
    Boot(Box<BootPlan>),
}

/// A cold boot's ingredients.
pub struct BootPlan {
    pub profile: Profile,
    pub artifacts: Artifacts,
    pub vcpus: u8,
    pub memory_mib: u64,
    pub kernel_args: Option<String>,
    pub disk: Option<PathBuf>,
    pub console: Option<PathBuf>,
}

impl BootPlan {
    /// The launch description for a background VMM process.
    pub fn launch(&self) -> Launch {
        Launch::Boot {
            kernel: self.artifacts.kernel.clone(),
            rootfs: self.artifacts.initrd.clone(),
            image: self.artifacts.image.clone(),
            disk: self.disk.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            console: ConsoleLog::from_option(self.console.clone()),
            kernel_args: self.kernel_args.clone(),
        }
    }

    /// What a template of this machine is made of.
    pub fn template_spec(&self) -> TemplateSpec {
        TemplateSpec {
            profile: self.profile,
            artifacts: self.artifacts.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            kernel_args: self.kernel_args.clone(),
        }
    }

    /// The VM configuration for an in-process boot.
    pub fn vm_config(&self, vsock_uds: PathBuf) -> VmConfig {
        VmConfig {
            kernel: self.artifacts.kernel.clone(),
            initrd: self.artifacts.initrd.clone(),
            image: self.artifacts.image.clone(),
            disk: self.disk.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            extra_cmdline: self.kernel_args.clone(),
            console_log: self.console.clone(),
            vsock_uds,
        }
    }
}

/// Resolves the machine a new sandbox gets, building its template when needed.
pub fn plan(machine: MachineArgs, sandboxes: &Sandboxes) -> anyhow::Result<Plan> {
    let cold_boot = machine.cold_boot;
    let boot = resolve(machine)?;
    // A scratch disk is attached at boot and belongs to one sandbox: no template holds one.
    if cold_boot || boot.disk.is_some() {
        return Ok(Plan::Boot(Box::new(boot)));
    }
    let (template, _) = template::build::ensure(
        &TemplateStore::default_location(),
        sandboxes,
        &DigestCache::default_location(),
        &boot.template_spec(),
        &mut show_progress,
    )?;
    Ok(Plan::Template {
        template: Box::new(template),
        console: boot.console,
        image: boot.artifacts.image,
    })
}

impl Plan {
    /// The launch description for a background VMM process.
    pub fn launch(&self) -> Launch {
        match self {
            Plan::Template {
                template,
                console,
                image,
            } => Launch::Restore {
                dir: template.dir.clone(),
                console: ConsoleLog::from_option(console.clone()),
                image: image.clone(),
            },
            Plan::Boot(boot) => boot.launch(),
        }
    }
}

/// The template already built for `spec`, if any.
pub fn existing_template(spec: &TemplateSpec) -> anyhow::Result<Option<Template>> {
    let digests = spec.digests(&DigestCache::default_location())?;
    Ok(TemplateStore::default_location().find(&spec.key(&digests))?)
}

/// The machine `machine` describes, checked (profile, memory, files) but not started.
pub fn resolve(machine: MachineArgs) -> anyhow::Result<BootPlan> {
    let profile = match machine.profile {
        Some(p) => p,
        None => Profile::from_env_or_default()?,
    };
    let memory_mib = machine
        .memory
        .unwrap_or_else(|| profile.default_memory_mib());
    if memory_mib < profile.min_memory_mib() {
        anyhow::bail!(
            "--memory {memory_mib} is too small for the {profile} profile: it needs at least {} MiB \
             (default {} MiB)",
            profile.min_memory_mib(),
            profile.default_memory_mib()
        );
    }
    let artifacts = profile.artifacts(machine.kernel, machine.rootfs, machine.image);
    let console = machine
        .console
        .map(|path| {
            std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))
        })
        .transpose()?;
    let disk = machine
        .disk
        .map(|path| {
            std::fs::canonicalize(&path).with_context(|| format!("--disk {}", path.display()))
        })
        .transpose()?;
    let boot = BootPlan {
        profile,
        artifacts,
        vcpus: machine.vcpus,
        memory_mib,
        kernel_args: machine.kernel_args,
        disk,
        console,
    };
    boot.vm_config(PathBuf::new()).validate()?;
    Ok(boot)
}

/// Prints template build progress on stderr.
pub fn show_progress(step: BuildStep) {
    match step {
        BuildStep::Booting { key } => eprintln!(
            "paddock: no template of this shape yet: building template {key} (one boot, then \
             every start restores it)..."
        ),
        BuildStep::Ready { boot_ms, guest } => eprintln!(
            "paddock: template guest ready after {:.1} s: {guest}",
            boot_ms / 1e3
        ),
        BuildStep::Snapshotting => eprintln!("paddock: writing the template snapshot..."),
        BuildStep::Built {
            total_ms,
            memory_bytes,
        } => eprintln!(
            "paddock: template built in {:.1} s ({:.1} MiB of guest memory)",
            total_ms / 1e3,
            memory_bytes as f64 / f64::from(1 << 20)
        ),
    }
}
