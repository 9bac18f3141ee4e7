//! `paddock run` (a throwaway sandbox for one command) and `paddock exec` (a command in a
//! running sandbox): stdin forwarded, stdout/stderr streamed apart, signals forwarded, the
//! command's exit status returned.

use super::machine::{self, Plan};
use super::{parse_env, CommandArgs, ExecArgs, RunArgs};
use anyhow::Context;
use paddock_protocol::{ExecRequest, ExitStatus};
use paddock_vmm::client::{self, ExecError};
use paddock_vmm::config::CONTROL_PORT;
use paddock_vmm::exit_codes;
use paddock_vmm::sandbox::{guest::GuestLink, Sandboxes};
use paddock_vmm::vstate::vcpu::ExitSignal;
use paddock_vmm::vstate::vcpu::VmExitReason;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Signals paddock forwards to the command instead of dying from them.
const FORWARDED_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn forwarded_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the forwarded signals in this thread and every thread spawned after it, so that only
/// the forwarding thread (sigwait) ever receives them.
fn block_forwarded_signals() {
    let set = forwarded_sigset();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Where a forwarded signal goes: nowhere yet (remembered), the VM (while it boots: the boot is
/// abandoned), or the running command.
#[derive(Default)]
enum SignalTarget {
    #[default]
    Nobody,
    Vm(Arc<ExitSignal>),
    Command(client::Signaller),
}

/// Routes SIGINT/SIGTERM/SIGHUP/SIGQUIT from a dedicated thread (they are blocked elsewhere).
#[derive(Clone, Default)]
struct SignalRouter {
    target: Arc<Mutex<SignalTarget>>,
    received: Arc<AtomicI32>,
}

impl SignalRouter {
    fn spawn() -> anyhow::Result<Self> {
        let router = Self::default();
        let r = router.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let set = forwarded_sigset();
                loop {
                    let mut sig = 0;
                    // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
                    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                        continue;
                    }
                    r.received.store(sig, Ordering::SeqCst);
                    match &*r.target.lock().unwrap_or_else(|p| p.into_inner()) {
                        SignalTarget::Nobody => {}
                        SignalTarget::Vm(exit) => exit.exit(VmExitReason::Stopped),
                        SignalTarget::Command(s) => {
                            let _ = s.signal(sig);
                        }
                    }
                }
            })?;
        Ok(router)
    }

    fn set(&self, target: SignalTarget) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    /// The signal received before a command could take it, if any.
    fn received(&self) -> Option<i32> {
        Some(self.received.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}

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

/// What the exec ended with.
enum Outcome {
    Status(ExitStatus),
    TimedOut(u64),
    Disconnected,
    Failed(ExecError),
}

/// Runs `argv` in the guest behind `uds`, forwarding stdin, output, signals; handles --timeout.
fn exec_in(
    uds: &Path,
    cmd: CommandArgs,
    env: Vec<(String, String)>,
    signals: &SignalRouter,
) -> anyhow::Result<Outcome> {
    let timeout = cmd.timeout;
    let conn = client::connect(uds, CONTROL_PORT).context("connecting to guest-init")?;
    let request = ExecRequest {
        argv: cmd.command,
        env,
        cwd: cmd.workdir,
        stdin: true,
        tty: None,
    };
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
    let timed_out = Arc::new(AtomicBool::new(false));
    if let Some(secs) = timeout {
        let flag = timed_out.clone();
        let killer = signaller.clone();
        std::thread::Builder::new()
            .name("timeout".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(secs));
                flag.store(true, Ordering::SeqCst);
                let _ = killer.signal(libc::SIGKILL);
            })?;
    }
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

fn status_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Code(c) => c,
        ExitStatus::Signal(n) => 128 + n,
    }
}

/// Maps an exec failure to paddock's exit codes, explaining it on stderr.
fn failed(e: ExecError) -> i32 {
    eprintln!("paddock: {e}");
    match &e {
        ExecError::Guest(m) if m.contains("os error 2)") => exit_codes::NOT_FOUND,
        ExecError::Guest(_) => exit_codes::CANNOT_EXECUTE,
        _ => exit_codes::PADDOCK_ERROR,
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    block_forwarded_signals();
    let signals = SignalRouter::spawn()?;
    let env = parse_env(&args.cmd.env)?;
    let dir = RunDir::create()?;
    let uds = dir.0.join("vsock.sock");
    // Templates are built by a background VMM process under the default state directory.
    let plan = machine::plan(args.machine, &Sandboxes::new(None))?;
    // Kept until the VM ends: guest-init serves its announcement link for as long as it lasts.
    let mut guest = GuestLink::listen(&uds)?;
    let (vmm, ready) = match &plan {
        Plan::Boot(boot) => {
            let vmm = paddock_vmm::builder::boot(&boot.vm_config(uds.clone()))?;
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
            )?;
            signals.set(SignalTarget::Vm(vmm.exit.clone()));
            let timeout = args.boot_timeout.map_or(
                paddock_vmm::sandbox::daemon::READY_TIMEOUT,
                Duration::from_secs,
            );
            let ready = guest.resume(&vmm, timeout);
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
    let outcome = exec_in(&uds, args.cmd, env, &signals);
    let code = match outcome {
        Ok(Outcome::Status(status)) => status_code(status),
        Ok(Outcome::TimedOut(secs)) => {
            eprintln!("paddock: the command timed out after {secs} s and was killed");
            exit_codes::TIMEOUT
        }
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
        Ok(Outcome::Failed(e)) => failed(e),
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
    block_forwarded_signals();
    let signals = SignalRouter::spawn()?;
    let env = parse_env(&args.cmd.env)?;
    let uds = Sandboxes::new(args.state.state_dir.as_deref()).vsock_path(&args.name)?;
    Ok(match exec_in(&uds, args.cmd, env, &signals)? {
        Outcome::Status(status) => status_code(status),
        Outcome::TimedOut(secs) => {
            eprintln!("paddock: the command timed out after {secs} s and was killed");
            exit_codes::TIMEOUT
        }
        Outcome::Disconnected => {
            eprintln!("paddock: the sandbox's guest rebooted, stopped or was reset before the command finished");
            exit_codes::GUEST_ENDED
        }
        Outcome::Failed(e) => failed(e),
    })
}
