//! `paddock run AGENT [DIR]`: a coding agent in a sandbox of its own, started from the agent
//! template with DIR shared at its own path (the agent's working directory), and kept after the
//! agent exits (unless `--rm`); run again, it comes back to the agent's detached session or
//! starts the agent anew in the same sandbox.

use super::interactive::{self, Tty};
use super::machine;
use super::outcome::{shared_code, terminal_outcome, Outcome};
use super::run::exec_in;
use super::signals::{block_handled_signals, host_window_size, SignalRouter};
use super::{parse_env, CommandArgs, RunArgs};
use anyhow::Context;
use paddock_protocol::{ErrorKind, ExecRequest, ExitStatus, WindowSize};
use paddock_vmm::agent::{self, Agent};
use paddock_vmm::artifacts::{image_agents, Profile};
use paddock_vmm::client::{self, PtyError};
use paddock_vmm::config::CONTROL_PORT;
use paddock_vmm::exit_codes;
use paddock_vmm::sandbox::paths::AgentRecord;
use paddock_vmm::sandbox::workspace::{WorkspaceMode, WorkspaceRecord};
use paddock_vmm::sandbox::Sandboxes;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub fn run(mut args: RunArgs) -> anyhow::Result<i32> {
    let name = args.agent.as_deref().unwrap_or_default();
    let agent = Agent::from_name(name).with_context(|| format!("unknown agent {name:?}"))?;
    let dir = workspace(args.dir.as_deref())?;
    let sandbox = match &args.name {
        Some(name) => name.clone(),
        None => agent::sandbox_name(agent, &dir),
    };
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref())
        .with_cpus(args.limits.cpus)
        .with_seccomp(args.limits.seccomp())
        .with_vmm_user(args.limits.vmm_user()?)?;
    let policy = super::policy::sandbox_policy(&args.egress)?;
    block_handled_signals();
    let signals = SignalRouter::spawn()?;

    let existing = sandboxes
        .list()?
        .into_iter()
        .find(|s| s.info.name == sandbox);
    match existing {
        Some(status) if status.state != "running" => anyhow::bail!(
            "sandbox {sandbox} exists but is {}; `paddock rm {sandbox}` removes it",
            status.state
        ),
        Some(status) => {
            if let Some(other) = status.agent.filter(|a| a != agent.name()) {
                eprintln!("paddock: note: sandbox {sandbox} was started for {other}");
            }
            if policy.is_some() {
                eprintln!(
                    "paddock: note: --policy, --allow and --deny apply to new sandboxes; \
                     `paddock policy allow|deny --sandbox {sandbox}` changes this one"
                );
            }
            let uds = sandboxes.vsock_path(&sandbox)?;
            if std::io::stdin().is_terminal() && !args.no_tty {
                if let Some((code, detached)) = reattach(&uds, &sandbox, &signals)? {
                    after_session(&sandboxes, &sandbox, agent, &dir, args.rm, detached)?;
                    return Ok(code);
                }
            }
            share_once(&sandboxes, &sandbox, &dir, args.workspace_mode.into())?;
            eprintln!(
                "paddock: {sandbox} is running; starting {} in it",
                agent.name()
            );
        }
        None => {
            if args.machine.profile.is_none() {
                args.machine.profile = Some(Profile::Agent);
            }
            check_image_has(agent, args.machine.image.clone())?;
            let plan = machine::plan(args.machine.clone(), &sandboxes)?;
            let info = sandboxes.start_prepared(Some(&sandbox), plan.launch(), &|paths| {
                super::policy::write_sandbox_policy(&policy, paths)
            })?;
            if let Err(e) = sandboxes.share_workspace(&sandbox, &dir, args.workspace_mode.into()) {
                let _ = sandboxes.remove(&sandbox, true);
                return Err(e).context("sharing the workspace");
            }
            let paths = sandboxes.paths(&sandbox)?;
            let record = AgentRecord {
                agent: agent.name().to_string(),
                workspace: dir.clone(),
            };
            if let Err(e) = record.write(&paths) {
                eprintln!("paddock: warning: {e}");
            }
            eprintln!(
                "paddock: sandbox {sandbox} ready in {:.0} ms ({} for {})",
                info.ready_ms,
                agent.name(),
                dir.display()
            );
        }
    }

    let uds = sandboxes.vsock_path(&sandbox)?;
    let workdir = args
        .workdir
        .clone()
        .unwrap_or_else(|| dir.display().to_string());
    let egress = super::egress::session(&sandboxes, &sandbox)?;
    prepare(&uds, &workdir, &egress.ca_pem)?;
    let mut env = agent.environment(args.ask);
    env.extend(egress.env);
    env.extend(parse_env(&args.env)?);
    let command = CommandArgs {
        timeout: args.timeout,
        env: Vec::new(),
        workdir: Some(workdir),
        command: agent::as_agent_user(agent.argv(args.ask, &args.args), &env),
    };
    let tty = session_tty(args.tty, args.no_tty);
    let outcome = exec_in(&uds, command, Vec::new(), tty, &signals, None)?;
    let detached = matches!(outcome, Outcome::Detached { .. });
    let code = shared_code(&outcome, Some(&sandbox)).unwrap_or_else(|| {
        eprintln!(
            "paddock: the sandbox's guest rebooted, stopped or was reset before the agent finished"
        );
        exit_codes::GUEST_ENDED
    });
    after_session(&sandboxes, &sandbox, agent, &dir, args.rm, detached)?;
    Ok(code)
}

/// After the agent's session: with `--rm` and the agent gone, the sandbox goes too; otherwise,
/// on a terminal, how to come back or clean up.
fn after_session(
    sandboxes: &Sandboxes,
    sandbox: &str,
    agent: Agent,
    dir: &Path,
    rm: bool,
    detached: bool,
) -> anyhow::Result<()> {
    if rm && !detached {
        sandboxes
            .remove(sandbox, true)
            .with_context(|| format!("removing sandbox {sandbox}"))?;
    } else if !detached && std::io::stdin().is_terminal() {
        eprintln!(
            "paddock: sandbox {sandbox} keeps running: `paddock run {} {}` starts {} in it again, \
             `paddock rm {sandbox}` removes it",
            agent.name(),
            dir.display(),
            agent.name()
        );
    }
    Ok(())
}

/// Shares DIR with a running sandbox that does not share a directory yet (one started before
/// workspaces existed); a sandbox that shares another one, or in another mode, keeps it, with
/// a note.
fn share_once(
    sandboxes: &Sandboxes,
    sandbox: &str,
    dir: &Path,
    mode: WorkspaceMode,
) -> anyhow::Result<()> {
    let paths = sandboxes.paths(sandbox)?;
    match WorkspaceRecord::read(&paths) {
        Some(record) if record.dir != dir => eprintln!(
            "paddock: note: sandbox {sandbox} shares {}, not {}",
            record.dir.display(),
            dir.display()
        ),
        Some(record) if record.mode != mode => eprintln!(
            "paddock: note: sandbox {sandbox} shares {} in {:?} mode; \
             `paddock rm {sandbox}` and run again to change it",
            record.dir.display(),
            record.mode
        ),
        Some(_) => {}
        None => {
            sandboxes
                .share_workspace(sandbox, dir, mode)
                .context("sharing the workspace")?;
        }
    }
    Ok(())
}

/// DIR (default: the current directory), absolute and without symlinks; it must be a directory.
fn workspace(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = dir.unwrap_or(Path::new("."));
    let resolved =
        std::fs::canonicalize(dir).with_context(|| format!("workspace {}", dir.display()))?;
    anyhow::ensure!(
        resolved.is_dir(),
        "workspace {}: not a directory",
        dir.display()
    );
    Ok(resolved)
}

/// Refuses, before anything starts, an image that lists its agents and lacks this one.
fn check_image_has(agent: Agent, image: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(image) = Profile::Agent.artifacts(None, None, image).image else {
        return Ok(());
    };
    let listed = image_agents(&image)?;
    if listed.entries().is_empty() || listed.entries().iter().any(|e| e.name == agent.name()) {
        return Ok(());
    }
    let names: Vec<&str> = listed.entries().iter().map(|e| e.name.as_str()).collect();
    anyhow::bail!(
        "the image {} has no {} (it has: {})",
        image.display(),
        agent.name(),
        names.join(", ")
    )
}

/// How long preparing a session may take (a `mkdir` and a few small files in a running guest).
const PREPARE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Makes the agent's directory in the guest and installs the sandbox's egress CA (see
/// [`agent::PREPARE_SCRIPT`]).
fn prepare(uds: &Path, dir: &str, ca_pem: &str) -> anyhow::Result<()> {
    let request = ExecRequest {
        argv: ["sh", "-c", agent::PREPARE_SCRIPT, "sh", dir]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        env: Vec::new(),
        cwd: None,
        stdin: true,
        tty: None,
    };
    let conn = client::connect(uds, CONTROL_PORT).context("connecting to guest-init")?;
    // A guest that stopped answering is an error here, not a wait without end.
    conn.set_timeout(Some(PREPARE_TIMEOUT))
        .context("connecting to guest-init")?;
    let output = conn
        .exec_output(&request, ca_pem.as_bytes())
        .context("preparing the agent's session")?;
    anyhow::ensure!(
        output.status == ExitStatus::Code(0),
        "cannot prepare the agent's session in the sandbox ({dir}, egress CA): {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Back to the sandbox's detached terminal session: the exit status and whether it was
/// detached again; `None` when the sandbox has no detached session.
fn reattach(
    uds: &Path,
    sandbox: &str,
    signals: &SignalRouter,
) -> anyhow::Result<Option<(i32, bool)>> {
    let conn = client::connect(uds, CONTROL_PORT).context("connecting to guest-init")?;
    let size = host_window_size().unwrap_or(WindowSize::FALLBACK);
    let session = match conn.attach(None, size) {
        Ok(session) => session,
        Err(PtyError::Guest {
            kind: ErrorKind::NoDetachedSession,
            ..
        }) => return Ok(None),
        Err(e) => return Err(e).context("attaching"),
    };
    eprintln!("paddock: back to the detached session in {sandbox}");
    let end = interactive::drive(session, Tty::Interactive { detach: true }, signals)?;
    let outcome = terminal_outcome(end);
    let detached = matches!(outcome, Outcome::Detached { .. });
    let code = shared_code(&outcome, Some(sandbox)).unwrap_or_else(|| {
        eprintln!("paddock: the sandbox's guest rebooted, stopped or was reset during the session");
        exit_codes::GUEST_ENDED
    });
    Ok(Some((code, detached)))
}

/// A terminal (with the detach keys: the sandbox outlives the session) when stdin and stdout
/// are terminals, or with `-t` when stdin is; never with `-T`.
fn session_tty(tty: bool, no_tty: bool) -> Tty {
    let wanted = !no_tty && (tty || std::io::stdout().is_terminal());
    Tty::choose(wanted, true, true)
}
