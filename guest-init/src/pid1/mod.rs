//! guest-init as PID 1: system setup, then the signal loop that reaps children and handles
//! shutdown requests, with the control service and readiness announcement on other threads.

pub mod console;
pub mod engine_choice;
pub mod hostname;
pub mod listener;
pub mod loopback;
pub mod mount_plan;
pub mod mounts;
pub mod platform;
pub mod power;
pub mod readiness;
pub mod root_switch;
pub mod setup_root;
pub mod signals;

use crate::boot_params::{self, BootParams};
use crate::engine::{start_engine, EngineMonitor};
use crate::reaper::{ReapMode, Reaper};
use crate::service::ControlService;
use crate::vsock::VsockListener;
use engine_choice::EngineDecision;
use mount_plan::Profile;
use paddock_protocol::{EngineStage, EngineState, ShutdownAction, CONTROL_PORT};
use setup_root::RootOutcome;
use std::sync::Arc;

/// Boots the guest's userspace and never returns.
pub fn run() -> ! {
    // First, before any thread exists, so every thread inherits the blocked mask.
    let signals = match signals::SignalFd::new() {
        Ok(signals) => signals,
        Err(e) => {
            crate::console_log!("cannot set up signal handling: {e}");
            power::emergency_reboot();
        }
    };
    // Ctrl-Alt-Del becomes SIGINT to us instead of an immediate reboot.
    // SAFETY: plain syscall with a constant argument.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) };

    // Before the profile is known: /proc/cmdline says which one this is, and /dev holds the
    // console that must show a failed root switch.
    setup_root::mount_early();
    if let Err(e) = console::ensure_console_stdio() {
        crate::console_log!("console: {e}");
    }
    let params = read_boot_params();
    let profile = match &params.root {
        Some(device) => Profile::agent(device),
        None => Profile::Minimal,
    };
    let root = setup_root::mount_profile(&profile);
    match hostname::set_hostname() {
        Ok(name) if matches!(root, RootOutcome::Switched) => {
            if let Err(e) = hostname::ensure_hosts_entry(&name) {
                crate::console_log!("/etc/hosts: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => crate::console_log!("hostname: {e}"),
    }
    if let Err(e) = loopback::bring_up_loopback() {
        crate::console_log!("loopback: {e}");
    }

    let reaper = Reaper::new(ReapMode::Central);
    // Before the engine: dockerd reads the files egress writes, and its networking joins the
    // capture rules.
    crate::egress::start(&reaper, matches!(root, RootOutcome::Switched));
    let engine = start_engine_if_wanted(&params, &root, &reaper);
    start_control_service(&reaper, engine);
    signal_loop(&signals, &reaper)
}

/// paddock's kernel command line parameters; defaults (the minimal profile) if unreadable.
fn read_boot_params() -> BootParams {
    let (params, errors) = boot_params::read().unwrap_or_else(|e| {
        crate::console_log!("cannot read {}: {e}", boot_params::CMDLINE_PATH);
        boot_params::parse("")
    });
    for error in errors {
        crate::console_log!("ignoring a kernel parameter: {error}");
    }
    params
}

/// Starts the engine if [`engine_choice::decide`] says so; its monitor either way.
fn start_engine_if_wanted(
    params: &BootParams,
    root: &RootOutcome,
    reaper: &Arc<Reaper>,
) -> Arc<EngineMonitor> {
    let config = match engine_choice::decide(params, root) {
        EngineDecision::Settled(state) => return EngineMonitor::settled(state),
        EngineDecision::Start(config) => config,
    };
    let monitor = EngineMonitor::starting();
    if let Err(e) = start_engine(*config, Arc::clone(reaper), Arc::clone(&monitor)) {
        crate::console_log!("cannot start the engine thread: {e}");
        let detail = format!("cannot start the engine thread: {e}");
        monitor.settle(
            EngineState::failed(EngineStage::Dockerd, &detail),
            Vec::new(),
        );
    }
    monitor
}

/// Listens on the control port, then announces readiness and keeps the link to the host (the
/// host may connect right away). Announces only once the engine is up or has failed, so a template snapshot taken on `Ready`
/// always has the engine settled.
fn start_control_service(reaper: &Arc<Reaper>, engine: Arc<EngineMonitor>) {
    let platform = Arc::new(platform::GuestPlatform::new(
        Arc::clone(reaper),
        Arc::clone(&engine),
    ));
    let service = Arc::new(ControlService::new(platform, Arc::clone(reaper)));
    let listener = match VsockListener::bind(CONTROL_PORT) {
        Ok(listener) => listener,
        Err(e) => {
            // Keep running (and reaping) so the console shows what happened.
            crate::console_log!("cannot listen on vsock port {CONTROL_PORT}: {e}");
            return;
        }
    };
    let accept = {
        let service = Arc::clone(&service);
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || listener::serve_forever(listener, CONTROL_PORT, service))
    };
    if let Err(e) = accept {
        crate::console_log!("cannot start the control service: {e}");
        return;
    }
    let ready = std::thread::Builder::new()
        .name("ready".into())
        .spawn(move || {
            engine.wait_settled();
            readiness::announce_forever(&service)
        });
    if let Err(e) = ready {
        crate::console_log!("cannot start the readiness thread: {e}");
    }
}

fn signal_loop(signals: &signals::SignalFd, reaper: &Reaper) -> ! {
    loop {
        match signals.next() {
            Ok(libc::SIGCHLD) => reaper.reap_children(),
            Ok(libc::SIGINT | libc::SIGTERM) => power::shutdown(ShutdownAction::Reboot, reaper),
            Ok(libc::SIGUSR1 | libc::SIGUSR2 | libc::SIGPWR) => {
                power::shutdown(ShutdownAction::PowerOff, reaper)
            }
            Ok(_) => {}
            Err(e) => {
                crate::console_log!("signalfd: {e}");
                // Keep reaping even if signal delivery is broken.
                std::thread::sleep(std::time::Duration::from_millis(100));
                reaper.reap_children();
            }
        }
    }
}
