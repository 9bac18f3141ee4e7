//! `paddock start|ls|logs|stop|rm|snapshot|restore|reset|fork` and the hidden VMM process.

use super::machine::{self, Plan};
use super::{
    ForkArgs, LogsArgs, LsArgs, NameArgs, ResetArgs, RestoreArgs, RmArgs, SnapshotArgs, StartArgs,
    StateArgs, VmmArgs,
};
use anyhow::Context;
use paddock_vmm::sandbox::workspace::{SnapshotShare, WorkspaceMode};
use paddock_vmm::sandbox::{ConsoleLog, Launch, SandboxPaths, Sandboxes};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub(super) fn sandboxes(state: &StateArgs) -> Sandboxes {
    Sandboxes::new(state.state_dir.as_deref())
}

pub fn start(args: StartArgs) -> anyhow::Result<i32> {
    let sandboxes = sandboxes(&args.state)
        .with_cpus(args.limits.cpus)
        .with_seccomp(args.limits.seccomp())
        .with_vmm_user(args.limits.vmm_user()?)?;
    // Checked before anything starts.
    let workspace = resolve_workspace(&args.workspace)?;
    let plan = machine::plan(args.machine, &sandboxes)?;
    let policy = super::policy::sandbox_policy(&args.egress)?;
    let info = sandboxes.start_prepared(args.name.as_deref(), plan.launch(), &|paths| {
        super::policy::write_sandbox_policy(&policy, paths)
    })?;
    let shared = share(&sandboxes, &info.name, workspace.as_ref())?;
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
    if let Some(dir) = shared {
        eprintln!("paddock: {} is shared at the same path", dir.display());
    }
    Ok(0)
}

/// The workspace `args` name (absolute, symlinks resolved, a directory) and its mode.
fn resolve_workspace(
    args: &super::WorkspaceArgs,
) -> anyhow::Result<Option<(PathBuf, WorkspaceMode)>> {
    let Some(dir) = &args.workspace else {
        return Ok(None);
    };
    let dir = paddock_vmm::sandbox::workspace::resolve(dir)?;
    Ok(Some((dir, args.workspace_mode.unwrap_or_default().into())))
}

/// The workspace a sandbox restored or forked from the snapshot in `snapshot` shares: the one
/// `args` names, else the one the snapshot's sandbox shared (its mode kept: the guest's mount
/// carries on as it was), with what the snapshot kept of that share.
fn restored_workspace(
    snapshot: &std::path::Path,
    args: &super::WorkspaceArgs,
) -> anyhow::Result<Option<(PathBuf, WorkspaceMode, Option<SnapshotShare>)>> {
    let kept = SnapshotShare::read(snapshot)?;
    let Some(kept) = kept else {
        return Ok(resolve_workspace(args)?.map(|(dir, mode)| (dir, mode, None)));
    };
    let named = args.workspace.as_ref().unwrap_or(&kept.record.dir);
    let dir = paddock_vmm::sandbox::workspace::resolve(named).with_context(|| {
        format!(
            "the snapshot shared {}: name the directory to share with --workspace DIR",
            kept.record.dir.display()
        )
    })?;
    let mode = kept.record.mode;
    if let Some(asked) = args.workspace_mode {
        anyhow::ensure!(
            WorkspaceMode::from(asked) == mode,
            "the snapshot shares its workspace {}: --workspace-mode cannot change that",
            match mode {
                WorkspaceMode::Live => "live",
                WorkspaceMode::Cow => "copy-on-write",
            }
        );
    }
    Ok(Some((dir, mode, Some(kept))))
}

/// Shares `workspace` with the new sandbox `name`; if that fails, the sandbox goes too
/// (nothing half-made stays behind: the sandbox asked for is one with its share).
fn share(
    sandboxes: &Sandboxes,
    name: &str,
    workspace: Option<&(PathBuf, WorkspaceMode)>,
) -> anyhow::Result<Option<PathBuf>> {
    let workspace = workspace.map(|(dir, mode)| (dir.clone(), *mode, None));
    share_restored(sandboxes, name, workspace.as_ref())
}

/// [`share`] for a sandbox restored or forked from a snapshot (see [`restored_workspace`]).
fn share_restored(
    sandboxes: &Sandboxes,
    name: &str,
    workspace: Option<&(PathBuf, WorkspaceMode, Option<SnapshotShare>)>,
) -> anyhow::Result<Option<PathBuf>> {
    let Some((dir, mode, kept)) = workspace else {
        return Ok(None);
    };
    match sandboxes.share_workspace_from(name, dir, *mode, kept.as_ref()) {
        Ok(dir) => Ok(Some(dir)),
        Err(e) => {
            let _ = sandboxes.remove(name, true);
            Err(e).context("sharing the workspace")
        }
    }
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
    print!("{}", ls_table(&list));
    Ok(0)
}

/// `paddock ls`'s table: one sandbox a line, columns as wide as their widest cell.
fn ls_table(list: &[paddock_vmm::sandbox::SandboxStatus]) -> String {
    let header = [
        "NAME",
        "STATE",
        "AGENT",
        "WORKSPACE",
        "ORIGIN",
        "MEMORY",
        "RSS",
        "UPTIME",
        "PID",
    ];
    let rows: Vec<[String; 9]> = list
        .iter()
        .map(|s| {
            let dash = || "-".to_string();
            [
                s.info.name.clone(),
                s.state.to_string(),
                s.agent.clone().unwrap_or_else(dash),
                s.workspace
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(dash),
                // Where a reset returns: the latest snapshot taken, else the template or
                // snapshot it was restored from.
                match (
                    &s.info.latest_snapshot,
                    &s.template,
                    &s.info.origin_snapshot,
                ) {
                    (Some(latest), _, _) => latest.display().to_string(),
                    // Keys are long hashes: their start tells them apart.
                    (None, Some(key), _) => key.chars().take(12).collect(),
                    (None, None, Some(origin)) => origin.display().to_string(),
                    (None, None, None) => dash(),
                },
                format!("{}M", s.info.memory_mib),
                s.rss_bytes
                    .map(|b| format!("{:.1}M", b as f64 / f64::from(1 << 20)))
                    .unwrap_or_else(dash),
                if s.state == "running" {
                    uptime(s.uptime_secs)
                } else {
                    dash()
                },
                s.info.pid.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `42s`, `5m03s`, `2h07m`, `3d04h`.
fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
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
        written as f64 / f64::from(1 << 20)
    );
    Ok(0)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<i32> {
    let requested = Instant::now();
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let image = args
        .image
        .map(|p| std::path::absolute(&p).with_context(|| format!("resolving {}", p.display())))
        .transpose()?;
    let workspace = restored_workspace(&dir, &args.workspace)?;
    let launch = Launch::Restore {
        dir,
        console: ConsoleLog::Sandbox,
        image,
    };
    let sandboxes = sandboxes(&args.state)
        .with_cpus(args.limits.cpus)
        .with_seccomp(args.limits.seccomp())
        .with_vmm_user(args.limits.vmm_user()?)?;
    let info = sandboxes.start(args.name.as_deref(), launch)?;
    share_restored(&sandboxes, &info.name, workspace.as_ref())?;
    let wall_ms = ms_since(requested);
    if args.timings.json {
        print_json_timings(&[(&info.name, wall_ms, &info.spans, &info.caller_spans)]);
    } else {
        println!("{}", info.name);
    }
    eprintln!(
        "paddock: sandbox {} restored and ready in {:.1} ms (pid {}{})",
        info.name,
        info.ready_ms,
        info.pid,
        if info.from_pool { ", a warm VMM" } else { "" }
    );
    if args.timings.timings && !args.timings.json {
        eprint!("{}", timings_text(&info.name, wall_ms, &info.spans));
        eprint!(
            "paddock: {}: this command's part, meanwhile\n{}",
            info.name,
            paddock_vmm::timings::describe(&info.caller_spans)
        );
    }
    Ok(0)
}

pub fn reset(args: ResetArgs) -> anyhow::Result<i32> {
    let requested = Instant::now();
    let report = sandboxes(&args.state).reset(&args.name, args.to.as_deref())?;
    let wall_ms = ms_since(requested);
    eprintln!(
        "paddock: {} reset in {:.2} ms, guest ready after {:.2} ms",
        args.name, report.reset_ms, report.ready_ms
    );
    if args.timings.json {
        print_json_timings(&[(&args.name, wall_ms, &report.spans, &[])]);
    } else if args.timings.timings {
        eprint!("{}", timings_text(&args.name, wall_ms, &report.spans));
    }
    Ok(0)
}

fn ms_since(from: Instant) -> f64 {
    from.elapsed().as_secs_f64() * 1e3
}

/// `--timings`: the VMM's spans, then the wall clock this command saw from its request to the
/// guest answering (the rest is the command's round trips and process starts).
fn timings_text(name: &str, wall_ms: f64, spans: &[paddock_vmm::timings::Span]) -> String {
    format!(
        "paddock: {name}: where the time went (the VMM's spans)\n{}  wall clock, request to ready, as this command saw it: {wall_ms:.2} ms\n",
        paddock_vmm::timings::describe(spans)
    )
}

/// The spans of one sandbox for `--timings --json`: its name, the wall clock, the VMM's spans
/// and the caller's.
type TimingReport<'a> = (
    &'a str,
    f64,
    &'a [paddock_vmm::timings::Span],
    &'a [paddock_vmm::timings::Span],
);

/// `--timings --json`: one object per sandbox, `{name, wall_ms, spans: [{span, ms}],
/// caller_spans: [...]}` (the caller's own, where measured), as a list.
fn print_json_timings(reports: &[TimingReport<'_>]) {
    let list: Vec<serde_json::Value> = reports
        .iter()
        .map(|(name, wall_ms, spans, caller)| {
            serde_json::json!({
                "name": name, "wall_ms": wall_ms, "spans": spans, "caller_spans": caller
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(list));
}

pub fn fork(args: ForkArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let workspace = restored_workspace(&dir, &args.workspace)?;
    let started = Instant::now();
    let sandboxes = sandboxes(&args.state)
        .with_cpus(args.limits.cpus)
        .with_seccomp(args.limits.seccomp())
        .with_vmm_user(args.limits.vmm_user()?)?;
    let infos = sandboxes.fork(&dir, args.count, &args.prefix, false)?;
    for info in &infos {
        if let Err(e) = share_restored(&sandboxes, &info.name, workspace.as_ref()) {
            // All of them, or none.
            for other in &infos {
                let _ = sandboxes.remove(&other.name, true);
            }
            return Err(e);
        }
    }
    let wall_ms = ms_since(started);
    if args.timings.json {
        let reports: Vec<TimingReport<'_>> = infos
            .iter()
            .map(|i| (i.name.as_str(), wall_ms, i.spans.as_slice(), &[][..]))
            .collect();
        print_json_timings(&reports);
    } else {
        for info in &infos {
            println!("{}", info.name);
        }
    }
    eprintln!(
        "paddock: {} sandboxes forked in {wall_ms:.1} ms",
        infos.len(),
    );
    if args.timings.timings && !args.timings.json {
        for info in &infos {
            eprint!("{}", timings_text(&info.name, wall_ms, &info.spans));
        }
    }
    Ok(0)
}

pub fn vmm_process(args: VmmArgs) -> anyhow::Result<i32> {
    use paddock_vmm::sandbox::daemon::{Confinement, VmmStart};
    use paddock_vmm::sandbox::pool::warm::{wait_for_claim, WarmError};
    use paddock_vmm::sandbox::supervisor::{fork_vmm, Side};
    let spawned = Instant::now();
    let user = args
        .vmm_user
        .as_deref()
        .map(paddock_vmm::sandbox::vmm_user::VmmUser::parse)
        .transpose()?;
    // What a VMM started for a sandbox is given up front; a warm one learns it from its claim.
    let given = match (&args.pool_entry, &args.name, &args.launch) {
        (None, Some(name), Some(launch)) => {
            let launch: Launch = serde_json::from_str(launch).context("bad --launch")?;
            Some((
                SandboxPaths::new(&args.state_dir, name)?,
                name.clone(),
                launch,
            ))
        }
        (Some(_), _, _) => None,
        _ => anyhow::bail!("__vmm needs --name and --launch, or --pool-entry"),
    };
    ignore_terminal_signals();
    paddock_vmm::capped_log::cap_stderr().context("capping the VMM's log")?;
    // The jail is for debugging only to leave off, like the filters.
    let jail = std::env::var_os("PADDOCK_JAIL").is_none_or(|v| v != "off");
    if !jail {
        tracing::warn!("the VMM's jail is OFF (PADDOCK_JAIL=off): for debugging only");
    }
    // A parent that outlives a seccomp kill to report it (see `supervisor`).
    let jailed = match fork_vmm(jail).context("forking the VMM")? {
        Side::Ended(status) => return Ok(status),
        Side::Vmm { jailed } => jailed,
    };
    let confinement = Confinement {
        seccomp: seccomp_scope(args.no_seccomp),
        jailed,
        user,
    };
    use paddock_vmm::sandbox::daemon::run;
    match (given, &args.pool_entry) {
        (Some((paths, name, launch)), _) => Ok(run(
            paths,
            &name,
            launch,
            args.cpus,
            confinement,
            std::io::stdout(),
            VmmStart::spawned(spawned),
        )),
        (None, Some(entry)) => match wait_for_claim(&args.state_dir, entry, jailed) {
            Ok(claimed) => Ok(run(
                claimed.paths,
                &claimed.name,
                claimed.launch,
                claimed.cpus,
                confinement,
                claimed.stream,
                VmmStart {
                    at: claimed.at,
                    ahead: Some(claimed.ahead),
                },
            )),
            Err(WarmError::Discarded) => {
                tracing::info!("warm VMM taken out of the pool unclaimed");
                Ok(0)
            }
            Err(e) => Err(e).context("warm VMM"),
        },
        (None, None) => anyhow::bail!("__vmm needs --name and --launch, or --pool-entry"),
    }
}

/// The VMM's seccomp filters (`--no-seccomp`: none, loudly).
fn seccomp_scope(off: bool) -> paddock_vmm::seccomp::SeccompScope {
    use paddock_vmm::seccomp::{Filters, Mode, SeccompScope};
    if off {
        tracing::warn!("seccomp filters are OFF (--no-seccomp): for debugging only");
        return SeccompScope::Off;
    }
    let mode = Mode::from_env();
    if mode == Mode::Log {
        tracing::warn!("PADDOCK_SECCOMP=log: syscalls outside the filters are logged, not refused");
    }
    SeccompScope::Process(std::sync::Arc::new(Filters::new(mode)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_vmm::sandbox::{SandboxInfo, SandboxStatus};

    fn status(name: &str, agent: Option<&str>, running: bool) -> SandboxStatus {
        SandboxStatus {
            info: SandboxInfo {
                name: name.into(),
                pid: 4242,
                vcpus: 2,
                memory_mib: 2048,
                created_unix_secs: 0,
                origin_snapshot: None,
                latest_snapshot: None,
                ready_ms: 240.0,
                launched: Default::default(),
                guest: None,
                resources: Default::default(),
                spans: Vec::new(),
                minor_faults: None,
                prefetched_pages: None,
                pre_faulted_pages: None,
                from_pool: false,
                caller_spans: Vec::new(),
            },
            state: if running { "running" } else { "stopped" },
            uptime_secs: 3725,
            rss_bytes: Some(25 << 20),
            agent: agent.map(str::to_string),
            workspace: agent.map(|_| "/home/me/project".into()),
            template: agent.map(|_| "0123456789abcdef0123".into()),
        }
    }

    #[test]
    fn ls_shows_the_agent_workspace_template_memory_and_uptime() {
        let table = ls_table(&[
            status("claude-project", Some("claude"), true),
            status("plain", None, false),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let words = |line: &str| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words(lines[0]),
            [
                "NAME",
                "STATE",
                "AGENT",
                "WORKSPACE",
                "ORIGIN",
                "MEMORY",
                "RSS",
                "UPTIME",
                "PID"
            ]
        );
        assert_eq!(
            words(lines[1]),
            [
                "claude-project",
                "running",
                "claude",
                "/home/me/project",
                "0123456789ab",
                "2048M",
                "25.0M",
                "1h02m",
                "4242"
            ]
        );
        assert_eq!(
            words(lines[2]),
            ["plain", "stopped", "-", "-", "-", "2048M", "25.0M", "-", "4242"]
        );
        // Columns line up: every row's AGENT starts where the header's does.
        let at = lines[0].find("AGENT").unwrap();
        assert_eq!(&lines[1][at..at + 6], "claude");
    }

    #[test]
    fn uptimes_read_at_a_glance() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(303), "5m03s");
        assert_eq!(uptime(7620), "2h07m");
        assert_eq!(uptime(3 * 86400 + 4 * 3600), "3d04h");
    }
}
