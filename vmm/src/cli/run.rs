//! `paddock run` (a throwaway sandbox for one command) and `paddock exec` (a command in a
//! running sandbox): stdin forwarded, stdout/stderr streamed apart, signals forwarded, the
//! command's exit status returned.

use super::interactive::{self, Tty};
use super::machine::{self, Plan};
use super::outcome::{shared_code, terminal_outcome, Outcome};
use super::signals::{block_handled_signals, SignalRouter, SignalTarget};
use super::{parse_env, CommandArgs, ExecArgs, RunArgs};
use anyhow::Context;
use paddock_protocol::ExecRequest;
use paddock_vmm::client::{self, ExecError};
use paddock_vmm::config::CONTROL_PORT;
use paddock_vmm::exit_codes;
use paddock_vmm::sandbox::{guest::GuestLink, Sandboxes};
use paddock_vmm::vstate::vcpu::{ExitSignal, VmExitReason};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A private directory for one `run`'s sockets, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> anyhow::Result<Self> {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let dir = base.join(format!("paddock-run-{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
            }
        }
        anyhow::bail!("cannot create a private directory in {}", base.display())
    }
}

use std::os::unix::fs::DirBuilderExt;

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `argv` in the guest behind `uds`, forwarding stdin, output, signals; handles --timeout.
/// `vm_exit`: the in-process VM's exit signal, when this process runs the VM (its ending then
/// ends the exec, even when the guest could not close the connection).
pub(super) fn exec_in(
    uds: &Path,
    cmd: CommandArgs,
    env: Vec<(String, String)>,
    tty: Tty,
    signals: &SignalRouter,
    vm_exit: Option<&Arc<ExitSignal>>,
) -> anyhow::Result<Outcome> {
    let timeout = cmd.timeout;
    let conn = client::connect(uds, CONTROL_PORT).context("connecting to guest-init")?;
    if let Some(exit) = vm_exit {
        close_when_the_vm_ends(exit.clone(), conn.closer()?)?;
    }
    let mut request = ExecRequest {
        argv: cmd.command,
        env,
        cwd: cmd.workdir,
        stdin: true,
        tty: None,
    };
    if tty != Tty::No {
        request.tty = Some(interactive::pty_config());
        request.stdin = matches!(tty, Tty::Interactive { .. });
        return on_terminal(conn, &request, tty, timeout, signals);
    }
    let running = match conn.start_exec(&request) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let signaller = running.signaller();
    signals.set(SignalTarget::Command(signaller.clone()));
    if let Some(sig) = signals.received() {
        // A signal that arrived while the command was being started still reaches it.
        let _ = signaller.signal(sig);
    }
    let timed_out = arm_timeout(timeout, signaller)?;
    let stdin: Box<dyn std::io::Read + Send> = Box::new(std::io::stdin());
    let result = running.wait(
        Some(stdin),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    if let Some(secs) = timeout.filter(|_| timed_out.load(Ordering::SeqCst)) {
        return Ok(Outcome::TimedOut(secs));
    }
    Ok(match result {
        Ok(status) => Outcome::Status(status),
        Err(ExecError::Disconnected) => Outcome::Disconnected,
        Err(e) => Outcome::Failed(e),
    })
}

/// Runs the request on a terminal in the guest, driven from the host's terminal.
fn on_terminal(
    conn: client::Connection,
    request: &ExecRequest,
    tty: Tty,
    timeout: Option<u64>,
    signals: &SignalRouter,
) -> anyhow::Result<Outcome> {
    let session = match conn.start_pty(request) {
        Ok(session) => session,
        Err(e) => return Ok(Outcome::TerminalFailed(e)),
    };
    let timed_out = arm_timeout(timeout, session.signaller())?;
    let end = interactive::drive(session, tty, signals)?;
    if let Some(secs) = timeout.filter(|_| timed_out.load(Ordering::SeqCst)) {
        return Ok(Outcome::TimedOut(secs));
    }
    Ok(terminal_outcome(end))
}

/// Closes the exec connection once the VM has ended (a triple fault leaves the guest no chance
/// to, and the VM's devices live on in this process until it stops them).
fn close_when_the_vm_ends(exit: Arc<ExitSignal>, closer: client::Closer) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vm-exit-watch".into())
        .spawn(move || {
            while exit.reason().is_none() {
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&exit.evt),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: `pfd` is a valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, 1000) };
            }
            closer.close();
        })
        .map(drop)
}

/// With `--timeout`, SIGKILLs the command after `secs`; the flag tells whether it did.
fn arm_timeout(
    timeout: Option<u64>,
    killer: client::Signaller,
) -> std::io::Result<Arc<AtomicBool>> {
    let timed_out = Arc::new(AtomicBool::new(false));
    if let Some(secs) = timeout {
        let flag = timed_out.clone();
        std::thread::Builder::new()
            .name("timeout".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(secs));
                flag.store(true, Ordering::SeqCst);
                let _ = killer.signal(libc::SIGKILL);
            })?;
    }
    Ok(timed_out)
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    if args.agent.is_some() {
        return super::run_agent::run(args);
    }
    if args.args.is_empty() {
        anyhow::bail!(
            "name an agent (`paddock run claude .`; claude, gemini, codex or shell) or a command \
             after `--` (`paddock run -- uname -a`)"
        );
    }
    anyhow::ensure!(
        args.limits.cpus.is_none(),
        "--cpus limits sandboxes (`paddock start`, `paddock run AGENT`); a throwaway \
         `paddock run -- CMD` runs in this process, which is not moved into a cgroup"
    );
    anyhow::ensure!(
        args.limits.vmm_user.is_none(),
        "--vmm-user applies to sandboxes (`paddock start`, `paddock run AGENT`); a throwaway \
         `paddock run -- CMD` runs its VM in this process, as you"
    );
    if std::env::var_os("PADDOCK_VMM_USER").is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "paddock: note: PADDOCK_VMM_USER does not apply to a throwaway `paddock run -- CMD`: \
             its VM runs in this process, as you"
        );
    }
    // The VM runs in this process: its own threads (vCPUs, devices) are confined, this one,
    // which also serves the terminal, is not.
    let seccomp = if args.limits.seccomp() {
        paddock_vmm::seccomp::SeccompScope::VmThreads(std::sync::Arc::new(
            paddock_vmm::seccomp::Filters::new(paddock_vmm::seccomp::Mode::from_env()),
        ))
    } else {
        paddock_vmm::seccomp::SeccompScope::Off
    };
    block_handled_signals();
    let signals = SignalRouter::spawn()?;
    let env = parse_env(&args.env)?;
    let dir = RunDir::create()?;
    let uds = dir.0.join("vsock.sock");
    // Templates are built by a background VMM process under the default state directory.
    let command = args.command();
    let plan = machine::plan(args.machine, &Sandboxes::new(None))?;
    // Kept until the VM ends: guest-init serves its announcement link for as long as it lasts.
    let mut guest = GuestLink::listen(&uds)?;
    let (vmm, ready) = match &plan {
        Plan::Boot(boot) => {
            let vmm = paddock_vmm::builder::boot(&boot.vm_config(uds.clone()), &seccomp)?;
            signals.set(SignalTarget::Vm(vmm.exit.clone()));
            let timeout = args.boot_timeout.map_or(
                if boot.artifacts.image.is_some() {
                    paddock_vmm::sandbox::daemon::ENGINE_BOOT_TIMEOUT
                } else {
                    paddock_vmm::sandbox::daemon::READY_TIMEOUT
                },
                Duration::from_secs,
            );
            let ready = guest.wait_ready(&vmm, timeout);
            (vmm, ready)
        }
        Plan::Template {
            template,
            console,
            image,
        } => {
            let vmm = paddock_vmm::builder::restore(
                &template.dir,
                &uds,
                console.as_deref(),
                image.as_deref(),
                &seccomp,
            )?;
            signals.set(SignalTarget::Vm(vmm.exit.clone()));
            let timeout = args.boot_timeout.map_or(
                paddock_vmm::sandbox::daemon::READY_TIMEOUT,
                Duration::from_secs,
            );
            let ready = guest.resume(&vmm, timeout).map(|(boot, _)| boot);
            (vmm, ready)
        }
    };
    if let Some(sig) = signals.received() {
        vmm.stop();
        eprintln!("paddock: interrupted by signal {sig} while the sandbox started");
        return Ok(128 + sig);
    }
    match ready {
        Err(e) => {
            vmm.stop();
            anyhow::bail!(e);
        }
        Ok(boot) => {
            if let paddock_protocol::EngineState::Failed { .. } = &boot.engine {
                eprintln!(
                    "paddock: warning: the sandbox's Docker engine is not running: {}",
                    paddock_vmm::sandbox::paths::describe_engine(&boot.engine)
                );
            }
        }
    }
    tracing::info!(elapsed = ?vmm.started.elapsed(), "guest-init ready");
    let tty = run_tty(args.tty, args.no_tty);
    let outcome = exec_in(&uds, command, env, tty, &signals, Some(&vmm.exit));
    let code = match outcome {
        Ok(Outcome::Disconnected) => match vmm.wait_exit(Some(Duration::from_secs(5))) {
            Some(VmExitReason::GuestReset | VmExitReason::GuestShutdown)
                if !vmm.console.text().contains("Kernel panic") =>
            {
                eprintln!("paddock: the guest rebooted or shut down before the command finished");
                exit_codes::GUEST_ENDED
            }
            Some(reason) => {
                eprintln!(
                    "paddock: the VM stopped ({reason:?}); last console lines:\n{}",
                    vmm.console.last_lines(30)
                );
                exit_codes::PADDOCK_ERROR
            }
            None => {
                eprintln!(
                    "paddock: guest-init closed the connection before the command's exit status"
                );
                exit_codes::PADDOCK_ERROR
            }
        },
        Ok(outcome) => shared_code(&outcome, None).unwrap_or(exit_codes::PADDOCK_ERROR),
        Err(e) => {
            eprintln!("paddock: {e:#}");
            exit_codes::PADDOCK_ERROR
        }
    };
    vmm.stop();
    drop(dir);
    Ok(code)
}

pub fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    block_handled_signals();
    let signals = SignalRouter::spawn()?;
    let env = parse_env(&args.cmd.env)?;
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref());
    let uds = sandboxes.vsock_path(&args.name)?;
    let tty = Tty::choose(args.tty, args.interactive, true);
    let outcome = exec_in(&uds, args.cmd, env, tty, &signals, None)?;
    // Costs only speed when it fails: later restores prefetch what they have.
    if let Err(e) = sandboxes.exec_ended(&args.name) {
        tracing::debug!("working set not recorded through the first exec: {e}");
    }
    Ok(shared_code(&outcome, Some(&args.name)).unwrap_or_else(|| {
        eprintln!("paddock: the sandbox's guest rebooted, stopped or was reset before the command finished");
        exit_codes::GUEST_ENDED
    }))
}

/// `run` gives the command a terminal when stdin and stdout are terminals (or with `-t`, when
/// stdin is), unless `-T`. The sandbox ends with the command, so there is nothing to detach
/// from: the detach keys are typed through.
fn run_tty(tty: bool, no_tty: bool) -> Tty {
    use std::io::IsTerminal;
    let wanted = !no_tty && (tty || std::io::stdout().is_terminal());
    Tty::choose(wanted, true, false)
}
