//! paddock guest-init: PID 1 of the sandbox guest. See the `guest_init` library for the parts.

use guest_init::pid1;

fn main() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("guest-init: must run as PID 1 (e.g. the initramfs /init)");
        std::process::exit(1);
    }
    // PID 1 must never just die: the kernel would panic. Log and reboot instead.
    std::panic::set_hook(Box::new(|info| {
        guest_init::console_log!("fatal: {info}");
        pid1::power::emergency_reboot();
    }));
    pid1::run()
}
