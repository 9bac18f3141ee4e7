//! `paddock start|ls|logs|stop|rm|snapshot|restore|reset|fork` and the hidden VMM process.

use super::machine::{self, Plan};
use super::{
    ForkArgs, LogsArgs, LsArgs, NameArgs, ResetArgs, RestoreArgs, RmArgs, SnapshotArgs, StartArgs,
    StateArgs, VmmArgs,
};
use anyhow::Context;
use paddock_vmm::sandbox::{ConsoleLog, Launch, SandboxPaths, Sandboxes};
use std::io::Write;
use std::time::Instant;

fn sandboxes(state: &StateArgs) -> Sandboxes {
    Sandboxes::new(state.state_dir.as_deref())
}

pub fn start(args: StartArgs) -> anyhow::Result<i32> {
    let sandboxes = sandboxes(&args.state);
    let plan = machine::plan(args.machine, &sandboxes)?;
    let info = sandboxes.start(args.name.as_deref(), plan.launch())?;
    println!("{}", info.name);
    let how = match &plan {
        Plan::Template { template, .. } => {
            format!("restored from template {}", template.manifest.key.short())
        }
        Plan::Boot(_) => "booted".to_string(),
    };
    eprintln!(
        "paddock: sandbox {} {how}, ready in {:.1} ms (pid {}){}",
        info.name,
        info.ready_ms,
        info.pid,
        info.guest_note()
    );
    Ok(0)
}

pub fn logs(args: LogsArgs) -> anyhow::Result<i32> {
    let paths = sandboxes(&args.state).paths(&args.name)?;
    anyhow::ensure!(paths.dir.is_dir(), "no sandbox named {:?}", args.name);
    let console = paths.console();
    let text = match std::fs::read(&console) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", console.display())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    for line in &lines[from..] {
        writeln!(out, "{line}")?;
    }
    Ok(0)
}

pub fn ls(args: LsArgs) -> anyhow::Result<i32> {
    let list = sandboxes(&args.state).list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    println!(
        "{:<24} {:<8} {:>8} {:>9} {:>8} {:>9}  ORIGIN",
        "NAME", "STATE", "PID", "MEMORY", "RSS", "UPTIME"
    );
    for s in list {
        let rss = s
            .rss_bytes
            .map(|b| format!("{:.1}M", b as f64 / (1 << 20) as f64))
            .unwrap_or_else(|| "-".into());
        let origin = s
            .info
            .origin_snapshot
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<8} {:>8} {:>8}M {:>8} {:>8}s  {}",
            s.info.name, s.state, s.info.pid, s.info.memory_mib, rss, s.uptime_secs, origin
        );
    }
    Ok(0)
}

pub fn stop(args: NameArgs) -> anyhow::Result<i32> {
    sandboxes(&args.state).stop(&args.name)?;
    Ok(0)
}

pub fn rm(args: RmArgs) -> anyhow::Result<i32> {
    let s = sandboxes(&args.state);
    let mut status = 0;
    for name in &args.names {
        if let Err(e) = s.remove(name, args.force) {
            eprintln!("paddock: {e}");
            status = 1;
        }
    }
    Ok(status)
}

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let (paused_ms, written) = sandboxes(&args.state).snapshot(&args.name, &args.dir, args.stop)?;
    eprintln!(
        "paddock: snapshot of {} written to {} in {:.1} ms (vCPUs paused {:.1} ms, {:.1} MiB of memory)",
        args.name,
        args.dir.display(),
        started.elapsed().as_secs_f64() * 1e3,
        paused_ms,
        written as f64 / (1 << 20) as f64
    );
    Ok(0)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let image = args
        .image
        .map(|p| std::path::absolute(&p).with_context(|| format!("resolving {}", p.display())))
        .transpose()?;
    let launch = Launch::Restore {
        dir,
        console: ConsoleLog::Sandbox,
        image,
    };
    let info = sandboxes(&args.state).start(args.name.as_deref(), launch)?;
    println!("{}", info.name);
    eprintln!(
        "paddock: sandbox {} restored and ready in {:.1} ms (pid {})",
        info.name, info.ready_ms, info.pid
    );
    Ok(0)
}

pub fn reset(args: ResetArgs) -> anyhow::Result<i32> {
    let (reset_ms, ready_ms) = sandboxes(&args.state).reset(&args.name, args.to.as_deref())?;
    eprintln!(
        "paddock: {} reset in {:.2} ms, guest ready after {:.2} ms",
        args.name, reset_ms, ready_ms
    );
    Ok(0)
}

pub fn fork(args: ForkArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let started = Instant::now();
    let infos = sandboxes(&args.state).fork(&dir, args.count, &args.prefix, false)?;
    for info in &infos {
        println!("{}", info.name);
    }
    eprintln!(
        "paddock: {} sandboxes forked in {:.1} ms",
        infos.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(0)
}

pub fn vmm_process(args: VmmArgs) -> anyhow::Result<i32> {
    let spawned = Instant::now();
    let launch: Launch = serde_json::from_str(&args.launch).context("bad --launch")?;
    let paths = SandboxPaths::new(&args.state_dir, &args.name)?;
    ignore_terminal_signals();
    Ok(paddock_vmm::sandbox::daemon::run(
        paths,
        &args.name,
        launch,
        std::io::stdout(),
        spawned,
    ))
}

/// The VMM process outlives the terminal that started it: it ignores SIGHUP, SIGINT and
/// SIGPIPE. (SIGTERM/SIGKILL end it; `paddock ls` then shows it stopped.)
fn ignore_terminal_signals() {
    // SAFETY: setting SIG_IGN for SIGHUP/SIGINT/SIGPIPE has no memory effects.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
