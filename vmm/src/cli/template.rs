//! `paddock template build|ls|rm`.

use super::machine::{self, Plan};
use super::{TemplateBuildArgs, TemplateCommand, TemplateLsArgs, TemplateRmArgs};
use paddock_vmm::sandbox::Sandboxes;
use paddock_vmm::template::TemplateStore;

pub fn dispatch(command: TemplateCommand) -> anyhow::Result<i32> {
    match command {
        TemplateCommand::Build(args) => build(args),
        TemplateCommand::Ls(args) => ls(args),
        TemplateCommand::Rm(args) => rm(args),
    }
}

fn build(args: TemplateBuildArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        !args.machine.cold_boot && args.machine.disk.is_none(),
        "a template cannot be built with --cold-boot or --disk"
    );
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref());
    if args.force {
        // Remove the existing template of this shape first, so `plan` builds a new one.
        let spec = machine::resolve(args.machine.clone())?.template_spec();
        if let Some(existing) = machine::existing_template(&spec)? {
            TemplateStore::default_location().remove(&existing)?;
        }
    }
    let Plan::Template { template, .. } = machine::plan(args.machine, &sandboxes)? else {
        anyhow::bail!("this machine cannot come from a template");
    };
    println!("{}", template.manifest.key);
    eprintln!(
        "paddock: template {} at {}",
        template.manifest.key.short(),
        template.dir.display()
    );
    Ok(0)
}

fn ls(args: TemplateLsArgs) -> anyhow::Result<i32> {
    let store = TemplateStore::default_location();
    let templates = store.list();
    if args.json {
        let rows: Vec<serde_json::Value> = templates
            .iter()
            .map(|t| {
                serde_json::json!({
                    "key": t.manifest.key,
                    "dir": t.dir,
                    "disk_bytes": t.disk_bytes(),
                    "manifest": t.manifest,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<12} {:<8} {:>5} {:>8} {:>9} {:>9}  GUEST",
        "KEY", "PROFILE", "VCPUS", "MEMORY", "DISK", "BOOT"
    );
    for t in &templates {
        let m = &t.manifest;
        println!(
            "{:<12} {:<8} {:>5} {:>7}M {:>8.1}M {:>8.1}s  {}",
            m.key.short(),
            m.spec.profile,
            m.spec.vcpus,
            m.spec.memory_mib,
            t.disk_bytes() as f64 / f64::from(1 << 20),
            m.boot_ms / 1e3,
            m.guest
        );
    }
    if templates.is_empty() {
        eprintln!(
            "paddock: no templates in {} (the first `paddock start` of a shape builds one)",
            store.dir().display()
        );
    }
    Ok(0)
}

fn rm(args: TemplateRmArgs) -> anyhow::Result<i32> {
    let store = TemplateStore::default_location();
    let doomed = if args.all {
        store.list()
    } else {
        args.keys
            .iter()
            .map(|k| store.resolve(k))
            .collect::<Result<Vec<_>, _>>()?
    };
    for t in &doomed {
        store.remove(t)?;
        eprintln!("paddock: removed template {}", t.manifest.key.short());
    }
    Ok(0)
}
