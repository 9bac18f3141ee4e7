//! guest-init as PID 1: system setup, then the signal loop that reaps children and handles
//! shutdown requests, with the control service and readiness announcement on other threads.

pub mod console;
pub mod hostname;
pub mod listener;
pub mod loopback;
pub mod mounts;
pub mod platform;
pub mod power;
pub mod readiness;
pub mod signals;

use crate::reaper::{ReapMode, Reaper};
use crate::service::ControlService;
use crate::vsock::VsockListener;
use paddock_protocol::{ShutdownAction, CONTROL_PORT};
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

    for failure in mounts::mount_all(&mounts::MOUNTS) {
        crate::console_log!("mount {}: {}", failure.target, failure.error);
    }
    if let Err(e) = console::ensure_console_stdio() {
        crate::console_log!("console: {e}");
    }
    if let Err(e) = hostname::set_hostname() {
        crate::console_log!("hostname: {e}");
    }
    if let Err(e) = loopback::bring_up_loopback() {
        crate::console_log!("loopback: {e}");
    }

    let reaper = Reaper::new(ReapMode::Central);
    start_control_service(&reaper);
    signal_loop(&signals, &reaper)
}

/// Listens on the control port, then announces readiness and keeps the link to the host (the
/// host may connect right away).
fn start_control_service(reaper: &Arc<Reaper>) {
    let platform = Arc::new(platform::GuestPlatform::new(Arc::clone(reaper)));
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
        .spawn(move || readiness::announce_forever(&service));
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
