//! Shutting the guest down: stop every process, sync, then reboot(2).

use crate::reaper::Reaper;
use crate::sys::cvt;
use paddock_protocol::ShutdownAction;
use std::time::{Duration, Instant};

/// How long processes get to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for SIGKILLed processes to disappear.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// Terminates all processes, syncs and powers off or reboots. Does not return.
pub fn shutdown(action: ShutdownAction, reaper: &Reaper) -> ! {
    crate::console_log!("{action:?}: stopping all processes");
    crate::engine::supervisor::stop_restarts();
    // SAFETY: kill(-1) signals every process except PID 1 itself and kernel threads.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    if !wait_for_no_processes(TERM_GRACE, reaper) {
        // SAFETY: as above.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        wait_for_no_processes(KILL_GRACE, reaper);
    }
    // A paddock VM has no ACPI: RB_POWER_OFF would only halt the CPUs, leaving the VMM waiting.
    // Both actions therefore end in a reset (i8042, `reboot=k`), which the VMM turns into a
    // clean exit; the action only changes what is logged.
    final_reboot(libc::RB_AUTOBOOT)
}

/// Reboots at once after syncing; used when guest-init itself cannot continue (a panic).
pub fn emergency_reboot() -> ! {
    final_reboot(libc::RB_AUTOBOOT)
}

fn final_reboot(how: libc::c_int) -> ! {
    // SAFETY: plain syscalls; reboot only returns on failure.
    unsafe {
        libc::sync();
        if let Err(e) = cvt(libc::reboot(how)) {
            crate::console_log!("reboot failed: {e}");
        }
    }
    // Nothing sensible is left to do; exiting PID 1 would panic the kernel, which with
    // `panic=-1` reboots as well.
    std::process::exit(1)
}

/// Reaps and waits until no process other than us remains, or `limit` passes.
fn wait_for_no_processes(limit: Duration, reaper: &Reaper) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        reaper.reap_children();
        // SAFETY: signal 0 only checks whether any process can be signalled.
        let none_left = unsafe { libc::kill(-1, 0) } < 0;
        if none_left || Instant::now() >= deadline {
            return none_left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
