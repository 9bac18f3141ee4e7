//! The background VMM process behind `paddock start|restore|fork`: boots or restores one VM,
//! reports readiness on its stdout, then serves the control socket until the VM ends.

use super::cgroup;
use super::control::{ControlRequest, ControlResponse};
use super::guest::GuestLink;
use super::paths::{LaunchKind, SandboxInfo, SandboxPaths};
use crate::config::VmConfig;
use crate::seccomp::{SeccompScope, ThreadKind};
use crate::snapshot::state::SnapshotState;
use crate::vmm::Vmm;
use crate::vstate::vcpu::VmExitReason;
use paddock_protocol::{read_frame, write_frame};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a sandbox's guest console goes (it is also always kept in memory for error reports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleLog {
    /// Appended to the sandbox's own `console.log` (what `paddock logs` shows).
    #[default]
    Sandbox,
    /// Appended to this file (absolute; a relative path resolves against the VMM process's
    /// working directory).
    File(PathBuf),
    /// Kept in memory only.
    Off,
}

impl ConsoleLog {
    /// `File(path)` when a path is given, else the sandbox's log.
    pub fn from_option(path: Option<PathBuf>) -> Self {
        path.map_or(ConsoleLog::Sandbox, ConsoleLog::File)
    }

    fn path(&self, paths: &SandboxPaths) -> Option<PathBuf> {
        match self {
            ConsoleLog::Sandbox => Some(paths.console()),
            ConsoleLog::File(path) => Some(path.clone()),
            ConsoleLog::Off => None,
        }
    }
}

/// How the VMM process gets its VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Launch {
    /// Cold boot (kernel, initramfs, root image, scratch disk, sizes, where the guest console
    /// goes, extra kernel arguments).
    Boot {
        kernel: PathBuf,
        rootfs: PathBuf,
        image: Option<PathBuf>,
        disk: Option<PathBuf>,
        vcpus: u8,
        memory_mib: u64,
        console: ConsoleLog,
        /// Appended to the guest kernel command line.
        kernel_args: Option<String>,
    },
    /// Restore a snapshot directory (`image`: where its root image is now, if it moved).
    Restore {
        dir: PathBuf,
        console: ConsoleLog,
        image: Option<PathBuf>,
    },
}

/// The first line the VMM process prints: `READY <json>` or `ERROR <message>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LaunchReport {
    /// Up; guest-init answered.
    Ready(SandboxInfo),
    /// Failed; nothing is running.
    Failed(String),
}

/// The sandbox's VM and guest-init's link to it.
struct Running {
    vm: Vmm,
    guest: GuestLink,
}

/// How long a restore may take to reach guest-init, and a boot of the minimal guest.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a boot from a root image may take: guest-init waits for the Docker engine before it
/// announces itself (minutes in the software-emulated test lab). `$PADDOCK_BOOT_TIMEOUT`
/// (seconds) overrides both.
pub const ENGINE_BOOT_TIMEOUT: Duration = Duration::from_secs(600);

fn boot_timeout(with_image: bool) -> Duration {
    std::env::var("PADDOCK_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(if with_image {
            ENGINE_BOOT_TIMEOUT
        } else {
            READY_TIMEOUT
        })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Guest RAM the launch gives the VM, in bytes (a snapshot's from its state file).
fn guest_ram(launch: &Launch) -> Result<u64, String> {
    match launch {
        Launch::Boot { memory_mib, .. } => Ok(memory_mib.saturating_mul(1 << 20)),
        Launch::Restore { dir, .. } => {
            crate::snapshot::store::read::<SnapshotState>(dir, SnapshotState::memory)
                .map(|(state, _)| state.memory_bytes)
                .map_err(|e| e.to_string())
        }
    }
}

fn bring_up(
    paths: &SandboxPaths,
    name: &str,
    launch: &Launch,
    resources: cgroup::Placement,
    seccomp: &SeccompScope,
    spawned: Instant,
) -> Result<(Running, SandboxInfo), String> {
    let uds = paths.vsock();
    let mut guest =
        GuestLink::listen(&uds).map_err(|e| format!("cannot listen for guest readiness: {e}"))?;
    let (vmm, boot, launched) = match launch {
        Launch::Boot {
            kernel,
            rootfs,
            image,
            disk,
            vcpus,
            memory_mib,
            console,
            kernel_args,
        } => {
            let config = VmConfig {
                kernel: kernel.clone(),
                initrd: rootfs.clone(),
                image: image.clone(),
                disk: disk.clone(),
                vcpus: *vcpus,
                memory_mib: *memory_mib,
                extra_cmdline: kernel_args.clone(),
                console_log: console.path(paths),
                vsock_uds: uds.clone(),
            };
            let vmm = crate::builder::boot(&config, seccomp).map_err(|e| e.to_string())?;
            let boot = guest
                .wait_ready(&vmm, boot_timeout(image.is_some()))
                .map_err(|e| e.to_string())?;
            (vmm, boot, LaunchKind::Boot)
        }
        Launch::Restore {
            dir,
            console,
            image,
        } => {
            let log = console.path(paths);
            let vmm = crate::builder::restore(dir, &uds, log.as_deref(), image.as_deref(), seccomp)
                .map_err(|e| e.to_string())?;
            let boot = guest
                .resume(&vmm, READY_TIMEOUT)
                .map_err(|e| e.to_string())?;
            (vmm, boot, LaunchKind::Restore)
        }
    };
    let info = SandboxInfo {
        name: name.to_string(),
        pid: std::process::id(),
        vcpus: vmm.vcpu_count(),
        memory_mib: vmm.ram.size >> 20,
        created_unix_secs: now_secs(),
        origin_snapshot: vmm.origin.as_ref().map(|o| o.dir.clone()),
        ready_ms: spawned.elapsed().as_secs_f64() * 1e3,
        launched,
        guest: Some(boot),
        resources,
    };
    info.write(paths).map_err(|e| e.to_string())?;
    Ok((Running { vm: vmm, guest }, info))
}

/// What the control thread needs once the VM is up.
struct ControlSetup {
    listener: UnixListener,
    info: Arc<Mutex<SandboxInfo>>,
    exit: Arc<crate::vstate::vcpu::ExitSignal>,
}

/// Starts the control thread before the VM exists (a confined VMM cannot start threads): it
/// confines itself, says so, and waits for the listener it serves.
fn spawn_control_thread(
    vmm: Arc<Mutex<Option<Running>>>,
    paths: SandboxPaths,
    seccomp: &SeccompScope,
) -> Result<std::sync::mpsc::Sender<ControlSetup>, String> {
    let filters = seccomp.filters().cloned();
    let (setup_tx, setup_rx) = std::sync::mpsc::channel::<ControlSetup>();
    let (confined_tx, confined_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("vmm-control".into())
        .spawn(move || {
            if let Some(filters) = filters {
                if let Err(e) = filters.install(ThreadKind::Vmm) {
                    let _ = confined_tx.send(Err(crate::seccomp::describe(&e)));
                    return;
                }
            }
            let _ = confined_tx.send(Ok(()));
            // No setup: the VM did not come up.
            if let Ok(setup) = setup_rx.recv() {
                serve_control(setup, &vmm, &paths);
            }
        })
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    confined_rx
        .recv()
        .map_err(|_| "the control thread ended at start".to_string())??;
    Ok(setup_tx)
}

/// Answers control requests until the process ends.
fn serve_control(setup: ControlSetup, vmm: &Mutex<Option<Running>>, paths: &SandboxPaths) {
    for stream in setup.listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let Ok(request) = read_frame::<_, ControlRequest>(&mut stream) else {
            continue;
        };
        // A bug met while serving a request must not leave a VM nobody can reach: it ends
        // the sandbox, loudly, and the client hears why.
        let served_request = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(vmm, paths, &setup.info, request)
        }));
        let response = served_request.unwrap_or_else(|panic| {
            let what = panic_message(panic.as_ref());
            tracing::error!("control request panicked: {what}");
            setup
                .exit
                .exit(VmExitReason::Fatal(format!("internal error: {what}")));
            ControlResponse::Error {
                message: format!("internal error in the VMM, the sandbox ends: {what}"),
            }
        });
        let _ = write_frame(&mut stream, &response);
    }
}

fn report_failure(report: &mut impl Write, message: String) -> i32 {
    let _ = writeln!(
        report,
        "{}",
        serde_json::to_string(&LaunchReport::Failed(message)).unwrap_or_default()
    );
    crate::exit_codes::PADDOCK_ERROR
}

/// Runs the VMM process; returns its exit status. `report` receives the launch report line.
/// With [`SeccompScope::Process`] every thread of the process is confined before the guest
/// runs (the control thread, started first, too).
pub fn run(
    paths: SandboxPaths,
    name: &str,
    launch: Launch,
    cpus: Option<f64>,
    seccomp: SeccompScope,
    mut report: impl Write,
    spawned: Instant,
) -> i32 {
    // Into the sandbox's cgroup before the VM exists, so all of its memory is charged there;
    // then no capability is needed any more (see `privileges`), before any other thread.
    let resources = match guest_ram(&launch).and_then(|ram| {
        cgroup::enter(name, &cgroup::Limits::for_guest(ram, cpus)).map_err(|e| e.to_string())
    }) {
        Ok(resources) => resources,
        Err(message) => return report_failure(&mut report, message),
    };
    if let Err(e) = super::privileges::drop_capabilities() {
        return report_failure(&mut report, crate::seccomp::describe(&e));
    }
    let vmm: Arc<Mutex<Option<Running>>> = Arc::new(Mutex::new(None));
    let control = match spawn_control_thread(vmm.clone(), paths.clone(), &seccomp) {
        Ok(control) => control,
        Err(message) => return report_failure(&mut report, message),
    };
    let (running, info) = match bring_up(&paths, name, &launch, resources, &seccomp, spawned) {
        Ok(up) => up,
        Err(message) => return report_failure(&mut report, message),
    };
    let listener = match UnixListener::bind(paths.control()) {
        Ok(l) => l,
        Err(e) => {
            let msg = format!(
                "cannot bind the control socket {}: {e}",
                paths.control().display()
            );
            return report_failure(&mut report, msg);
        }
    };
    let _ = writeln!(
        report,
        "{}",
        serde_json::to_string(&LaunchReport::Ready(info.clone())).unwrap_or_default()
    );
    let _ = report.flush();
    drop(report);

    // Test hook (vmm/tests/e2e_seccomp.rs): once up, make a syscall no filter allows. It can
    // only end this VMM, as killing it would.
    if std::env::var_os("PADDOCK_TEST_FORBIDDEN_SYSCALL").is_some() {
        // SAFETY: getuid has no memory effects.
        unsafe { libc::syscall(libc::SYS_getuid) };
    }
    let exit = running.vm.exit.clone();
    *crate::devices::bus::lock(&vmm) = Some(running);
    let _ = control.send(ControlSetup {
        listener,
        info: Arc::new(Mutex::new(info)),
        exit: exit.clone(),
    });

    // Wait for the VM to end (guest shutdown, Stop request, fatal error).
    let reason = loop {
        if let Some(reason) = exit.reason() {
            break reason;
        }
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&exit.evt),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
    };
    if let Some(running) = crate::devices::bus::lock(&vmm).take() {
        running.vm.stop();
    }
    let _ = std::fs::remove_file(paths.control());
    let _ = std::fs::remove_file(paths.vsock());
    tracing::info!(?reason, "sandbox VMM exiting");
    match reason {
        VmExitReason::GuestReset
        | VmExitReason::TripleFault
        | VmExitReason::GuestShutdown
        | VmExitReason::Stopped => 0,
        VmExitReason::Fatal(_) => crate::exit_codes::PADDOCK_ERROR,
    }
}

/// The text a panic carried (`panic!` with a literal or a formatted message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn handle(
    vmm: &Mutex<Option<Running>>,
    paths: &SandboxPaths,
    info: &Mutex<SandboxInfo>,
    request: ControlRequest,
) -> ControlResponse {
    let mut guard = crate::devices::bus::lock(vmm);
    let Some(Running { vm, guest }) = guard.as_mut() else {
        return ControlResponse::Error {
            message: "the sandbox is stopping".into(),
        };
    };
    match request {
        ControlRequest::Status => ControlResponse::Status {
            pid: std::process::id(),
            origin_snapshot: vm.origin.as_ref().map(|o| o.dir.clone()),
            rss_bytes: super::process_rss(std::process::id()).unwrap_or(0),
        },
        ControlRequest::Snapshot { dir, stop } => match vm.snapshot(&dir, stop) {
            Ok(stats) => {
                if stop {
                    vm.exit.exit(VmExitReason::Stopped);
                }
                ControlResponse::Snapshotted {
                    paused_ms: stats.paused.as_secs_f64() * 1e3,
                    memory_written: stats.memory_written,
                }
            }
            Err(e) => ControlResponse::Error {
                message: format!("snapshot failed: {e}"),
            },
        },
        ControlRequest::Reset { to } => {
            let started = Instant::now();
            if let Err(e) = vm.reset(to.as_deref()) {
                return ControlResponse::Error {
                    message: format!("reset failed: {e}"),
                };
            }
            let reset_ms = started.elapsed().as_secs_f64() * 1e3;
            if let Err(e) = guest.resume(vm, READY_TIMEOUT) {
                return ControlResponse::Error {
                    message: format!("the guest did not come back after the reset: {e}"),
                };
            }
            let ready_ms = started.elapsed().as_secs_f64() * 1e3;
            let mut record = crate::devices::bus::lock(info);
            record.origin_snapshot = vm.origin.as_ref().map(|o| o.dir.clone());
            let _ = record.write(paths);
            ControlResponse::Reset { reset_ms, ready_ms }
        }
        ControlRequest::Stop => {
            vm.exit.exit(VmExitReason::Stopped);
            ControlResponse::Stopping
        }
    }
}
