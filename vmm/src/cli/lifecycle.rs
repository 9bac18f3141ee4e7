//! `paddock start|ls|stop|rm|snapshot|restore|reset|fork` and the hidden VMM process.

use super::{
    ForkArgs, LsArgs, NameArgs, ResetArgs, RestoreArgs, RmArgs, SnapshotArgs, StartArgs, StateArgs,
    VmmArgs,
};
use anyhow::Context;
use paddock_vmm::config::{default_kernel, default_rootfs};
use paddock_vmm::sandbox::{Launch, SandboxPaths, Sandboxes};
use std::time::Instant;

fn sandboxes(state: &StateArgs) -> Sandboxes {
    Sandboxes::new(state.state_dir.as_deref())
}

pub fn start(args: StartArgs) -> anyhow::Result<i32> {
    let m = args.machine;
    let kernel = default_kernel(m.kernel);
    let rootfs = default_rootfs(m.rootfs);
    let config = paddock_vmm::config::VmConfig {
        kernel: kernel.clone(),
        initrd: rootfs.clone(),
        vcpus: m.vcpus,
        memory_mib: m.memory,
        extra_cmdline: m.kernel_args.clone(),
        console_log: None,
        vsock_uds: Default::default(),
    };
    config.validate()?;
    let console = m
        .console
        .map(|path| {
            std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))
        })
        .transpose()?;
    let launch = Launch::Boot {
        kernel,
        rootfs,
        vcpus: m.vcpus,
        memory_mib: m.memory,
        console,
        kernel_args: m.kernel_args,
    };
    let info = sandboxes(&args.state).start(args.name.as_deref(), launch)?;
    println!("{}", info.name);
    eprintln!(
        "paddock: sandbox {} ready in {:.1} ms (pid {})",
        info.name, info.ready_ms, info.pid
    );
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
    let launch = Launch::Restore {
        dir,
        console: args.console_log,
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
