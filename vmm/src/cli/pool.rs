//! `paddock pool fill|show|drain`: the warm VMMs sandboxes claim (`sandbox::pool`).

use super::{LimitArgs, PoolCommand, PoolDrainArgs, PoolFillArgs, PoolShowArgs};
use paddock_vmm::sandbox::pool::PoolStatus;
use paddock_vmm::sandbox::Sandboxes;
use std::time::Duration;

/// How long `fill` waits for new warm VMMs to be ready.
const FILL_TIMEOUT: Duration = Duration::from_secs(120);

pub fn dispatch(command: PoolCommand) -> anyhow::Result<i32> {
    match command {
        PoolCommand::Fill(args) => fill(args),
        PoolCommand::Show(args) => show(args),
        PoolCommand::Drain(args) => drain(args),
    }
}

fn fill(args: PoolFillArgs) -> anyhow::Result<i32> {
    let limits = LimitArgs {
        cpus: None,
        no_seccomp: args.no_seccomp,
        vmm_user: args.vmm_user.clone(),
    };
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref())
        .with_seccomp(limits.seccomp())
        .with_vmm_user(limits.vmm_user()?)?;
    let status = sandboxes.pool().fill(args.size, FILL_TIMEOUT)?;
    print_status(&status, args.json)?;
    Ok(0)
}

fn show(args: PoolShowArgs) -> anyhow::Result<i32> {
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref())
        .with_vmm_user(LimitArgs::default().vmm_user()?)?;
    print_status(&sandboxes.pool().status(), args.json)?;
    Ok(0)
}

fn drain(args: PoolDrainArgs) -> anyhow::Result<i32> {
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref());
    let stopped = sandboxes.pool().drain()?;
    eprintln!("paddock: {stopped} warm VMM(s) stopped; the pool's size is 0");
    Ok(0)
}

fn print_status(status: &PoolStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    let ready = status.entries.iter().filter(|e| e.state == "ready").count();
    println!("pool size {}: {ready} ready", status.size);
    if status.entries.is_empty() {
        return Ok(());
    }
    println!(
        "{:<14} {:<9} {:>8} {:>12} {:>8}",
        "ID", "STATE", "PID", "RSS", "AGE"
    );
    for entry in &status.entries {
        println!(
            "{:<14} {:<9} {:>8} {:>12} {:>8}",
            entry.id,
            entry.state,
            entry.pid.map_or("-".into(), |p| p.to_string()),
            entry
                .rss_bytes
                .map_or("-".into(), |b| format!("{} KiB", b >> 10)),
            entry.age_secs.map_or("-".into(), |s| format!("{s}s")),
        );
    }
    Ok(())
}
