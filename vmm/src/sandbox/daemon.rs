//! The background VMM process behind `paddock start|restore|fork`: boots or restores one VM,
//! reports readiness on its stdout, then serves the control socket until the VM ends.

use super::cgroup;
use super::control::{ControlRequest, ControlResponse};
use super::guest::GuestLink;
use super::paths::{LaunchKind, SandboxInfo, SandboxPaths};
use crate::builder::ReadSnapshot;
use crate::config::VmConfig;
use crate::seccomp::SeccompScope;
use crate::timings::{Span, SpanClock};
use crate::vmm::Vmm;
use crate::vmm::WorkingSetUse;
use crate::vstate::prepared::PreparedVm;
use crate::vstate::vcpu::VmExitReason;
use paddock_protocol::{read_frame, write_frame};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

impl Launch {
    /// The same launch with every path absolute (against this process's working directory,
    /// which a jailed VMM leaves).
    pub fn absolute(self) -> Self {
        let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let console = |c: ConsoleLog| match c {
            ConsoleLog::File(path) => ConsoleLog::File(abs(path)),
            other => other,
        };
        match self {
            Launch::Boot {
                kernel,
                rootfs,
                image,
                disk,
                vcpus,
                memory_mib,
                console: log,
                kernel_args,
            } => Launch::Boot {
                kernel: abs(kernel),
                rootfs: abs(rootfs),
                image: image.map(abs),
                disk: disk.map(abs),
                vcpus,
                memory_mib,
                console: console(log),
                kernel_args,
            },
            Launch::Restore {
                dir,
                console: log,
                image,
            } => Launch::Restore {
                dir: abs(dir),
                console: console(log),
                image: image.map(abs),
            },
        }
    }
}

/// The first line the VMM process prints: `READY <json>` or `ERROR <message>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LaunchReport {
    /// Up; guest-init answered.
    Ready(Box<SandboxInfo>),
    /// Failed; nothing is running.
    Failed(String),
}

/// The sandbox's VM and guest-init's link to it.
struct Running {
    vm: Vmm,
    guest: GuestLink,
    /// The latest snapshot taken of this sandbox, when it is not yet the VM's origin: where a
    /// reset without `--to` goes (its directory held open: the jail does not see its path).
    latest: Option<LatestSnapshot>,
    /// The working set was recorded at ready on the snapshot's first restore, and is recorded
    /// again once the first exec ends (then, or after any reset, no longer).
    working_set_pending: bool,
}

/// A snapshot taken of the running sandbox, by its directory and the caller's path for it.
struct LatestSnapshot {
    dir: std::fs::File,
    path: PathBuf,
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

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Guest RAM the launch gives the VM, in bytes (a snapshot's from its state file).
fn guest_ram(launch: &Launch, snapshot: Option<&ReadSnapshot>) -> Result<u64, String> {
    match (launch, snapshot) {
        (Launch::Boot { memory_mib, .. }, _) => Ok(memory_mib.saturating_mul(1 << 20)),
        (Launch::Restore { .. }, Some(read)) => Ok(read.state.memory_bytes),
        (Launch::Restore { dir, .. }, None) => Err(format!(
            "the snapshot {} was not read before the restore",
            dir.display()
        )),
    }
}

/// How this VMM process came to its launch: spawned for it, or a warm VMM of the pool claimed
/// for it (`sandbox::pool`), with what it made ahead of time.
#[derive(Debug)]
pub struct VmmStart {
    /// When the process started, or when the claim reached it: where its spans begin.
    pub at: Instant,
    /// What a warm VMM made ahead.
    pub ahead: Option<MadeAhead>,
}

/// What a warm VMM made before it was claimed.
#[derive(Debug)]
pub struct MadeAhead {
    /// The VM (used by a restore; a boot makes its own).
    pub vm: crate::vstate::prepared::PreparedVm,
    /// Its cgroup, without limits yet.
    pub cgroup: cgroup::Placement,
    /// Its jail, without the sandbox's paths yet (none when the VMM runs unjailed).
    pub jail: Option<super::jail::PreparedJail>,
}

impl VmmStart {
    /// A VMM process spawned for its launch at `at`.
    pub fn spawned(at: Instant) -> Self {
        Self { at, ahead: None }
    }

    /// The name of the first span: from the start (or the claim) to the snapshot read.
    fn first_span(&self) -> &'static str {
        match self.ahead {
            Some(_) => "claimed from the pool, snapshot read",
            None => "VMM process started, snapshot read",
        }
    }
}

/// The cgroup and jail a warm VMM made ahead, for [`confine`] to complete.
type ConfinedAhead = Option<(cgroup::Placement, Option<super::jail::PreparedJail>)>;

fn bring_up(
    paths: &SandboxPaths,
    name: &str,
    launch: &Launch,
    snapshot: Option<ReadSnapshot>,
    resources: cgroup::Placement,
    seccomp: &SeccompScope,
    (spawned, prepared, mut clock): (Instant, Option<PreparedVm>, SpanClock),
) -> Result<(Running, SandboxInfo), String> {
    let from_pool = prepared.is_some();
    let uds = paths.vsock();
    let mut guest =
        GuestLink::listen(&uds).map_err(|e| format!("cannot listen for guest readiness: {e}"))?;
    let mut working_set_pending = false;
    let (mut vmm, boot, launched) = match launch {
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
            clock.lap("VM built, vCPUs running");
            let boot = guest
                .wait_ready(&vmm, boot_timeout(image.is_some()))
                .map_err(|e| e.to_string())?;
            clock.lap("guest booted and answered");
            (vmm, boot, LaunchKind::Boot)
        }
        Launch::Restore {
            dir,
            console,
            image,
        } => {
            let log = console.path(paths);
            let snapshot = snapshot.ok_or_else(|| {
                format!(
                    "the snapshot {} was not read before the restore",
                    dir.display()
                )
            })?;
            let mut vmm = crate::builder::restore_read(
                snapshot,
                &uds,
                log.as_deref(),
                image.as_deref(),
                seccomp,
                prepared,
            )
            .map_err(|e| e.to_string())?;
            clock.extend(std::mem::take(&mut vmm.launch_spans));
            let (boot, resumed_on) = guest
                .resume(&vmm, READY_TIMEOUT)
                .map_err(|e| e.to_string())?;
            clock.lap(resumed_on.span());
            if vmm.working_set == WorkingSetUse::Missing
                && record_working_set(&vmm, paths).is_some()
            {
                clock.lap("working set recorded");
                // Recorded again through the first exec: callers see the file, this VMM its
                // own flag (a reset clears both).
                working_set_pending = std::fs::write(paths.working_set_pending(), b"").is_ok();
            }
            (vmm, boot, LaunchKind::Restore)
        }
    };
    // The workspace server (once one is started) keeps its state in this VM's snapshots.
    vmm.companions
        .push(Box::new(super::workspace_control::WorkspaceCompanion::new(
            paths,
        )));
    let info = SandboxInfo {
        name: name.to_string(),
        pid: super::jail::host_pid(),
        vcpus: vmm.vcpu_count(),
        memory_mib: vmm.ram.size >> 20,
        created_unix_secs: now_secs(),
        origin_snapshot: vmm.origin.as_ref().map(|o| o.dir.clone()),
        latest_snapshot: None,
        ready_ms: spawned.elapsed().as_secs_f64() * 1e3,
        launched,
        guest: Some(boot),
        resources,
        spans: clock.into_spans(),
        from_pool,
        caller_spans: Vec::new(),
        minor_faults: own_minor_faults(),
        prefetched_pages: match vmm.working_set {
            WorkingSetUse::Prefetched { pages, .. } => Some(pages),
            _ => None,
        },
        pre_faulted_pages: match vmm.working_set {
            WorkingSetUse::Prefetched { pre_faulted, .. } => pre_faulted,
            _ => None,
        },
    };
    info.write(paths).map_err(|e| e.to_string())?;
    Ok((
        Running {
            working_set_pending,
            vm: vmm,
            guest,
            latest: None,
        },
        info,
    ))
}

/// Records the guest pages touched since the restore (to guest-init's answer, or through the
/// first exec) in the sandbox's directory; the host-side caller moves the record beside the
/// snapshot. Returns its pages; a failure costs later restores only speed.
fn record_working_set(vmm: &crate::vmm::Vmm, paths: &SandboxPaths) -> Option<u64> {
    let recorded = vmm
        .touched_working_set()
        .map(|set| set.and_then(|set| set.write(&paths.recorded_working_set()).map(|()| set)));
    match recorded {
        Some(Ok(set)) => {
            tracing::info!(
                pages = set.pages(),
                runs = set.runs.len(),
                "working set recorded"
            );
            Some(set.pages())
        }
        Some(Err(e)) => {
            tracing::warn!("working set not recorded: {}", crate::seccomp::describe(&e));
            None
        }
        None => None,
    }
}

/// This process's minor page faults so far (`/proc/self/stat`, field 10).
fn own_minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(7)?.parse().ok()
}

/// How long a control client may take to send its request (and to take the answer): one that
/// connects and stalls must not hold the VMM's only thread.
const CONTROL_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves control requests on this thread, the process's main one, until the VM ends; returns
/// why it ended. One thread both waits for the end and answers requests: a confined VMM cannot
/// start threads, and a control thread started ahead for them cost every restore a thread and a
/// seccomp filter before the VM could be built.
fn serve_until_exit(
    listener: &UnixListener,
    vmm: &Mutex<Option<Running>>,
    paths: &SandboxPaths,
    info: &Mutex<SandboxInfo>,
    exit: &crate::vstate::vcpu::ExitSignal,
) -> VmExitReason {
    use std::os::fd::AsRawFd;
    // Accepting never blocks, so the end of the VM is seen at once.
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!("the control socket stays blocking: {e}");
    }
    loop {
        if let Some(reason) = exit.reason() {
            return reason;
        }
        let mut fds = [
            libc::pollfd {
                fd: exit.evt.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if fds[1].revents & libc::POLLIN == 0 {
            continue;
        }
        if let Ok((stream, _)) = listener.accept() {
            serve_one(stream, vmm, paths, info, exit);
        }
    }
}

/// Reads one control request from `stream`, handles it and answers.
fn serve_one(
    mut stream: std::os::unix::net::UnixStream,
    vmm: &Mutex<Option<Running>>,
    paths: &SandboxPaths,
    info: &Mutex<SandboxInfo>,
    exit: &crate::vstate::vcpu::ExitSignal,
) {
    if stream.set_read_timeout(Some(CONTROL_IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(CONTROL_IO_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(request) = read_frame::<_, ControlRequest>(&mut stream) else {
        return;
    };
    let dir = match request.directory() {
        Some(_) => match super::control::receive_directory(&stream) {
            Ok(dir) => Some(dir),
            Err(e) => {
                let message = format!("the request's directory: {e}");
                let _ = write_frame(&mut stream, &ControlResponse::Error { message });
                return;
            }
        },
        None => None,
    };
    // A bug met while serving a request must not leave a VM nobody can reach: it ends the
    // sandbox, loudly, and the client hears why.
    let served_request = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle(vmm, paths, info, request, dir)
    }));
    let response = served_request.unwrap_or_else(|panic| {
        let what = panic_message(panic.as_ref());
        tracing::error!("control request panicked: {what}");
        exit.exit(VmExitReason::Fatal(format!("internal error: {what}")));
        ControlResponse::Error {
            message: format!("internal error in the VMM, the sandbox ends: {what}"),
        }
    });
    let _ = write_frame(&mut stream, &response);
}

fn report_failure(report: &mut impl Write, message: String) -> i32 {
    let _ = writeln!(
        report,
        "{}",
        serde_json::to_string(&LaunchReport::Failed(message)).unwrap_or_default()
    );
    crate::exit_codes::PADDOCK_ERROR
}

/// How the VMM process is confined.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The seccomp filters, and which threads get them.
    pub seccomp: SeccompScope,
    /// Whether the process enters its jail (it is then PID 1 of its own PID namespace, which
    /// the supervisor made: see `supervisor::fork_vmm`).
    pub jailed: bool,
    /// The user a VMM started by root becomes (`--vmm-user`); none: it keeps its own uid.
    pub user: Option<super::vmm_user::VmmUser>,
}

/// Confines this process before any VM exists: into the sandbox's cgroup (so all of the VM's
/// memory is charged there), into its jail (when `jailed`), under its resource limits, and
/// without capabilities or a way to gain privileges — before any other thread starts. Returns
/// the cgroup placement.
fn confine(
    paths: &SandboxPaths,
    name: &str,
    launch: &Launch,
    snapshot: Option<&ReadSnapshot>,
    (cpus, ahead): (Option<f64>, ConfinedAhead),
    &Confinement { jailed, user, .. }: &Confinement,
    clock: &mut SpanClock,
) -> Result<cgroup::Placement, String> {
    let ram = guest_ram(launch, snapshot)?;
    let limits = cgroup::Limits::for_guest(ram, cpus);
    let (resources, jail_ahead) = match ahead {
        Some((placement, jail)) => {
            cgroup::limit(&placement, &limits).map_err(|e| e.to_string())?;
            (placement, jail)
        }
        None => (
            cgroup::enter(name, &limits).map_err(|e| e.to_string())?,
            None,
        ),
    };
    clock.lap("cgroup");
    let plan = jail_plan(paths, launch, snapshot, user)?;
    if jailed {
        let root = paths.dir.join(JAIL_ROOT);
        match jail_ahead {
            Some(prepared) => super::jail::finish(prepared, &root, &plan.jail),
            None => super::jail::enter(&plan.jail, &root),
        }
        .map_err(|e| crate::seccomp::describe(&e))?;
        // PID 1 of its namespace gets only the signals it handles: SIGTERM still ends it.
        // SAFETY: installs an async-signal-safe handler (it only calls _exit).
        unsafe {
            libc::signal(
                libc::SIGTERM,
                exit_on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    clock.lap("jail");
    super::rlimits::Limits::for_guest(ram, plan.largest_writable_file)
        .apply()
        .map_err(|e| crate::seccomp::describe(&e))?;
    if let Some(user) = user {
        // The bounding set while CAP_SETPCAP is still held; the uid change takes the rest.
        super::privileges::drop_bounding_set().map_err(|e| crate::seccomp::describe(&e))?;
        // /dev/kvm while it may still be opened (it is root's, often mode 0600).
        crate::kvm::open_early();
        user.become_user()
            .map_err(|e| crate::seccomp::describe(&e))?;
    }
    super::privileges::drop_capabilities()
        .and_then(|()| super::privileges::forbid_new_privileges())
        .map_err(|e| crate::seccomp::describe(&e))?;
    clock.lap("limits, capabilities dropped");
    Ok(resources)
}

/// Runs the VMM process; returns its exit status. `report` receives the launch report line.
/// With [`SeccompScope::Process`] every thread of the process is confined before the guest
/// runs; the main thread then waits for the VM to end and answers the control socket.
pub fn run(
    paths: SandboxPaths,
    name: &str,
    launch: Launch,
    cpus: Option<f64>,
    confinement: Confinement,
    mut report: impl Write,
    start: VmmStart,
) -> i32 {
    let launch = launch.absolute();
    // A snapshot's state file is read and decoded once, here: it sizes the cgroup, names the
    // disks the jail must show, and is what the restore uses.
    let snapshot = match &launch {
        Launch::Restore { dir, .. } => match crate::builder::read_snapshot(dir) {
            Ok(read) => Some(read),
            Err(e) => return report_failure(&mut report, e.to_string()),
        },
        Launch::Boot { .. } => None,
    };
    let mut clock = SpanClock::starting_at(start.at);
    clock.lap(start.first_span());
    let (prepared, ahead) = match start.ahead {
        Some(MadeAhead { vm, cgroup, jail }) => (Some(vm), Some((cgroup, jail))),
        None => (None, None),
    };
    let confined = confine(
        &paths,
        name,
        &launch,
        snapshot.as_ref(),
        (cpus, ahead),
        &confinement,
        &mut clock,
    );
    let resources = match confined {
        Ok(resources) => resources,
        Err(message) => return report_failure(&mut report, message),
    };
    let brought_up = bring_up(
        &paths,
        name,
        &launch,
        snapshot,
        resources,
        &confinement.seccomp,
        (start.at, prepared, clock),
    );
    let (running, info) = match brought_up {
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
        serde_json::to_string(&LaunchReport::Ready(Box::new(info.clone()))).unwrap_or_default()
    );
    let _ = report.flush();
    drop(report);

    // Test hook (vmm/tests/e2e_seccomp.rs): once up, make a syscall no filter allows. It can
    // only end this VMM, as killing it would.
    if std::env::var_os("PADDOCK_TEST_FORBIDDEN_SYSCALL").is_some() {
        // SAFETY: getuid has no memory effects.
        unsafe { libc::syscall(libc::SYS_getuid) };
    }
    // Test hook (vmm/tests/e2e_seccomp.rs): once up, try to open a host file, as a VMM taken
    // over by its guest might, and log what happened.
    if let Some(path) = std::env::var_os("PADDOCK_TEST_OPEN_HOST_FILE") {
        let result = std::fs::File::open(&path).map(drop);
        tracing::warn!(
            "test hook: opening {}: {}",
            Path::new(&path).display(),
            result.map_or_else(|e| e.to_string(), |()| "opened".into())
        );
    }
    let exit = running.vm.exit.clone();
    let vmm = Mutex::new(Some(running));
    // Wait for the VM to end (guest shutdown, Stop request, fatal error), answering requests.
    let reason = serve_until_exit(&listener, &vmm, &paths, &Mutex::new(info), &exit);
    if let Some(running) = crate::devices::bus::lock(&vmm).take() {
        if matches!(reason, VmExitReason::TripleFault) {
            dump_after_triple_fault(&running.vm, &paths);
        }
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

/// With `PADDOCK_DUMP_ON_TRIPLE_FAULT` set (debugging): writes guest RAM, in memory-file order,
/// to `guest-memory.dump` in the sandbox's directory when the guest triple-faulted, so its page
/// tables and kernel state can be examined afterwards (KVM has reset the vCPU's registers, so
/// memory is all that is left). Pages of zeros are left as holes: the file costs what the guest
/// used, which matters where the sandbox's directory is in memory (tmpfs is charged to the
/// sandbox's memory cgroup).
fn dump_after_triple_fault(vm: &crate::vmm::Vmm, paths: &SandboxPaths) {
    use std::os::unix::fs::FileExt;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
    if std::env::var_os("PADDOCK_DUMP_ON_TRIPLE_FAULT").is_none() {
        return;
    }
    let path = paths.dir.join("guest-memory.dump");
    let dumped = std::fs::File::create(&path).and_then(|file| {
        let mut page = [0u8; 4096];
        let mut offset = 0u64;
        for region in vm.ram.memory.iter() {
            let start = region.start_addr().0;
            for at in (start..start + region.len()).step_by(page.len()) {
                vm.ram
                    .memory
                    .read_slice(&mut page, GuestAddress(at))
                    .map_err(std::io::Error::other)?;
                if page.iter().any(|b| *b != 0) {
                    file.write_all_at(&page, offset)?;
                }
                offset += page.len() as u64;
            }
        }
        file.set_len(offset)
    });
    match dumped {
        Ok(()) => tracing::warn!("guest memory after the triple fault: {}", path.display()),
        Err(e) => tracing::warn!("guest memory not dumped to {}: {e}", path.display()),
    }
}

/// SIGTERM's handler in a jailed VMM (PID 1 of its namespace ignores signals it has no
/// handler for): ends the process as the default action would have.
extern "C" fn exit_on_sigterm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + libc::SIGTERM) };
}

/// The empty directory, in the sandbox's own, that the jail's root is mounted on (seen mounted
/// only inside the jail).
pub const JAIL_ROOT: &str = "jail-root";

/// What the jail of a launch exposes, and the largest file the VMM writes through.
#[derive(Debug, Default)]
struct LaunchJail {
    jail: super::jail::JailPlan,
    largest_writable_file: u64,
}

impl LaunchJail {
    /// Adds `path` if it exists (a missing artifact is the builder's to report, in its words).
    fn add(&mut self, path: &Path, writable: bool) {
        if let Ok(meta) = std::fs::metadata(path) {
            if writable && meta.is_file() {
                self.largest_writable_file = self.largest_writable_file.max(meta.len());
            }
            self.jail.bind(path, writable);
        }
    }
}

/// The paths a launch's VMM opens: its sandbox's directory, the image digest cache, its
/// artifacts (a root image read-only, a scratch disk writable) or its snapshot and the disks
/// that snapshot names, and its console log. With a VMM `user`, the files and directories it
/// writes that root made are handed or opened to it.
fn jail_plan(
    paths: &SandboxPaths,
    launch: &Launch,
    snapshot: Option<&ReadSnapshot>,
    user: Option<super::vmm_user::VmmUser>,
) -> Result<LaunchJail, String> {
    let mut plan = LaunchJail::default();
    plan.add(&paths.dir, true);
    let digests = crate::config::cache_dir().join("digests");
    let _ = std::fs::create_dir_all(&digests);
    if let Some(user) = user {
        // Best effort, like the cache itself: one it cannot write only costs a re-hash.
        let _ = super::vmm_user::share_dir(&digests, user.gid);
    }
    plan.add(&digests, true);
    let console = match launch {
        Launch::Boot {
            kernel,
            rootfs,
            image,
            disk,
            console,
            ..
        } => {
            plan.add(kernel, false);
            plan.add(rootfs, false);
            if let Some(image) = image {
                plan.add(image, false);
            }
            if let Some(disk) = disk {
                plan.add(disk, true);
            }
            console
        }
        Launch::Restore {
            dir,
            console,
            image,
        } => {
            plan.add(dir, false);
            if let Some(ReadSnapshot { state, .. }) = snapshot {
                for entry in &state.devices {
                    if let crate::device_manager::persist::VirtioDeviceState::Block(block) =
                        &entry.device
                    {
                        match (&block.identity.digest, image) {
                            (Some(_), Some(moved)) => plan.add(moved, false),
                            (Some(_), None) => plan.add(&block.identity.path, false),
                            (None, _) => plan.add(&block.identity.path, true),
                        }
                    }
                }
            }
            console
        }
    };
    // Test-only fault hook (see `vmm::fault_hook_stall_snapshot`): its trigger and the file it
    // creates beside it must be reachable from the jail.
    if let Some(trigger) = std::env::var_os("PADDOCK_FAULT_SNAPSHOT_STALL") {
        if let Some(dir) = Path::new(&trigger).parent() {
            plan.add(dir, true);
        }
    }
    if let ConsoleLog::File(path) = console {
        // Created now, so that it can be bound.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Some(user) = user {
            super::vmm_user::share_file(path, user.gid)
                .map_err(|e| crate::seccomp::describe(&e))?;
        }
        plan.add(path, true);
    }
    Ok(plan)
}

/// The text a panic carried (`panic!` with a literal or a formatted message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Writes a snapshot into the directory reached at `reached` (the caller's `path`).
fn snapshot(vm: &mut Vmm, reached: &Path, path: &Path, stop: bool) -> ControlResponse {
    match vm.snapshot(reached, stop) {
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
            message: format!("snapshot failed: {}", in_callers_words(&e, reached, path)),
        },
    }
}

/// Where the VMM reaches a directory a request sent open: through its descriptor (the jail
/// does not see the host's path).
fn reachable(dir: &std::fs::File) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(dir)
    ))
}

/// An error's text, with the descriptor path it names spelled as the caller's path.
fn in_callers_words(error: &dyn std::error::Error, reached: &Path, path: &Path) -> String {
    crate::seccomp::describe(error)
        .replace(&reached.display().to_string(), &path.display().to_string())
}

fn handle(
    vmm: &Mutex<Option<Running>>,
    paths: &SandboxPaths,
    info: &Mutex<SandboxInfo>,
    request: ControlRequest,
    dir: Option<std::fs::File>,
) -> ControlResponse {
    let mut guard = crate::devices::bus::lock(vmm);
    let Some(Running {
        vm,
        guest,
        latest,
        working_set_pending,
    }) = guard.as_mut()
    else {
        return ControlResponse::Error {
            message: "the sandbox is stopping".into(),
        };
    };
    match request {
        ControlRequest::Status => ControlResponse::Status {
            pid: super::jail::host_pid(),
            origin_snapshot: vm.origin.as_ref().map(|o| o.dir.clone()),
            rss_bytes: super::own_rss().unwrap_or(0),
        },
        ControlRequest::Snapshot { dir: path, stop } => {
            let Some(dir) = dir else {
                return ControlResponse::Error {
                    message: "the snapshot's directory did not come with the request".into(),
                };
            };
            let response = snapshot(vm, &reachable(&dir), &path, stop);
            if let ControlResponse::Snapshotted { .. } = response {
                let mut record = crate::devices::bus::lock(info);
                record.latest_snapshot = Some(path.clone());
                let _ = record.write(paths);
                *latest = Some(LatestSnapshot { dir, path });
            }
            response
        }
        ControlRequest::Reset { to } => {
            let started = Instant::now();
            // The pages touched from here on belong to the reset's timeline, not the restore's.
            if std::mem::take(working_set_pending) {
                let _ = std::fs::remove_file(paths.working_set_pending());
            }
            // Without --to: the latest snapshot taken, else the origin (restored from). After a
            // successful reset, whatever its target, that target is the origin: no latest. A
            // failed one changes nothing, the latest snapshot included.
            let (dir, to, kept, from_latest) = match (dir, to, latest.take()) {
                (None, None, Some(snapshot)) => {
                    (Some(snapshot.dir), Some(snapshot.path), None, true)
                }
                (dir, to, kept) => (dir, to, kept, false),
            };
            let reached = dir.as_ref().map(reachable);
            let mut spans = match vm.reset(reached.as_deref()) {
                Ok(spans) => spans,
                Err(e) => {
                    let message = match (&reached, &to) {
                        (Some(reached), Some(to)) => in_callers_words(&e, reached, to),
                        _ => crate::seccomp::describe(&e),
                    };
                    *latest = match (kept, dir, to) {
                        (Some(kept), _, _) => Some(kept),
                        (None, Some(dir), Some(path)) if from_latest => {
                            Some(LatestSnapshot { dir, path })
                        }
                        _ => None,
                    };
                    return ControlResponse::Error {
                        message: format!("reset failed: {message}"),
                    };
                }
            };
            // The origin by the caller's name for it, not the descriptor's (closed after this).
            if let (Some(origin), Some(to)) = (vm.origin.as_mut(), to) {
                origin.dir = to;
            }
            let reset_ms = started.elapsed().as_secs_f64() * 1e3;
            let resumed_on = match guest.resume(vm, READY_TIMEOUT) {
                Ok((_, resumed_on)) => resumed_on,
                Err(e) => {
                    return ControlResponse::Error {
                        message: format!("the guest did not come back after the reset: {e}"),
                    }
                }
            };
            let ready_ms = started.elapsed().as_secs_f64() * 1e3;
            spans.push(Span {
                span: resumed_on.span().into(),
                ms: ready_ms - reset_ms,
            });
            let mut record = crate::devices::bus::lock(info);
            record.origin_snapshot = vm.origin.as_ref().map(|o| o.dir.clone());
            record.latest_snapshot = None;
            let _ = record.write(paths);
            ControlResponse::Reset {
                reset_ms,
                ready_ms,
                spans,
            }
        }
        ControlRequest::Stop => {
            vm.exit.exit(VmExitReason::Stopped);
            ControlResponse::Stopping
        }
        ControlRequest::RecordWorkingSet => ControlResponse::WorkingSetRecorded {
            pages: if std::mem::take(working_set_pending) {
                let _ = std::fs::remove_file(paths.working_set_pending());
                record_working_set(vm, paths)
            } else {
                None
            },
        },
    }
}
