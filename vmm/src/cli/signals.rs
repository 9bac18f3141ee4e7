//! Signals paddock handles on a thread of its own instead of dying from them: forwarded to the
//! command, used to abandon a boot, or, for a terminal session, turned into window size
//! updates (SIGWINCH) and a hang-up.

use paddock_protocol::WindowSize;
use paddock_vmm::client::{self, PtyControl};
use paddock_vmm::vstate::vcpu::{ExitSignal, VmExitReason};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// Signals paddock handles (the first four are forwarded to a command).
const HANDLED_SIGNALS: [i32; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGWINCH,
];

fn handled_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the handled signals in this thread and every thread spawned after it, so that only
/// the router's thread (sigwait) ever receives them.
pub(super) fn block_handled_signals() {
    let set = handled_sigset();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Where a signal goes: nowhere yet (remembered), the VM (while it boots: the boot is
/// abandoned), the running command, or a terminal session.
#[derive(Default)]
pub(super) enum SignalTarget {
    #[default]
    Nobody,
    Vm(Arc<ExitSignal>),
    Command(client::Signaller),
    /// A command on a terminal: SIGWINCH sends the new window size; other signals go to the
    /// command when `forward` is set (its input is not ours: Ctrl-C still signals locally),
    /// else they hang the session up (raw mode: they came from outside, like a closed
    /// terminal).
    Terminal {
        control: PtyControl,
        forward: Option<client::Signaller>,
    },
}

/// Routes SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGWINCH from a dedicated thread (they are blocked
/// elsewhere).
#[derive(Clone, Default)]
pub(super) struct SignalRouter {
    target: Arc<Mutex<SignalTarget>>,
    received: Arc<AtomicI32>,
}

impl SignalRouter {
    pub(super) fn spawn() -> anyhow::Result<Self> {
        let router = Self::default();
        let r = router.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let set = handled_sigset();
                loop {
                    let mut sig = 0;
                    // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
                    if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                        continue;
                    }
                    r.route(sig);
                }
            })?;
        Ok(router)
    }

    fn route(&self, sig: i32) {
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if sig == libc::SIGWINCH {
            if let SignalTarget::Terminal { control, .. } = &*target {
                if let Some(size) = host_window_size() {
                    let _ = control.resize(size);
                }
            }
            return;
        }
        self.received.store(sig, Ordering::SeqCst);
        match &*target {
            SignalTarget::Nobody => {}
            SignalTarget::Vm(exit) => exit.exit(VmExitReason::Stopped),
            SignalTarget::Command(s)
            | SignalTarget::Terminal {
                forward: Some(s), ..
            } => {
                let _ = s.signal(sig);
            }
            SignalTarget::Terminal {
                control,
                forward: None,
            } => control.hang_up(),
        }
    }

    pub(super) fn set(&self, target: SignalTarget) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    /// The last signal received (SIGWINCH aside), if any.
    pub(super) fn received(&self) -> Option<i32> {
        Some(self.received.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}

/// The size of the terminal paddock runs in (stdin's, else stdout's), if known.
pub(super) fn host_window_size() -> Option<WindowSize> {
    paddock_vmm::terminal::window_size(std::io::stdin())
        .or_else(|| paddock_vmm::terminal::window_size(std::io::stdout()))
}
