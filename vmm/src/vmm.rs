//! A running VM: its vCPU threads, the device event loop, and how it ends.

use crate::devices::console::ConsoleTail;
use crate::vstate::memory::GuestRam;
use crate::vstate::vcpu::{ExitSignal, VcpuHandle, VmExitReason};
use event_manager::{EventManager, MutEventSubscriber};
use kvm_ioctls::VmFd;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The event manager type every device subscriber registers with.
pub type Subscribers = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

/// A booted (or restored) VM.
pub struct Vmm {
    /// The KVM VM.
    pub vm: VmFd,
    /// Guest RAM and its backing file.
    pub ram: GuestRam,
    /// One handle per running vCPU thread.
    pub vcpus: Vec<VcpuHandle>,
    /// How the VM ended, once it has.
    pub exit: Arc<ExitSignal>,
    /// The last console output.
    pub console: ConsoleTail,
    /// The vsock Unix socket.
    pub vsock_uds: PathBuf,
    /// When the VMM started building this VM (for boot-to-ready figures).
    pub started: Instant,
    event_loop: Option<JoinHandle<()>>,
    event_loop_stop: Arc<AtomicBool>,
}

impl Vmm {
    pub(crate) fn new(
        vm: VmFd,
        ram: GuestRam,
        vcpus: Vec<VcpuHandle>,
        exit: Arc<ExitSignal>,
        console: ConsoleTail,
        vsock_uds: PathBuf,
        started: Instant,
        mut subscribers: Subscribers,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let exit_for_loop = exit.clone();
        let event_loop = std::thread::Builder::new().name("vmm-events".into()).spawn(move || {
            while !stop_flag.load(Ordering::Acquire) {
                if let Err(e) = subscribers.run_with_timeout(50) {
                    exit_for_loop.exit(VmExitReason::Fatal(format!("device event loop failed: {e:?}")));
                    return;
                }
            }
        })?;
        Ok(Self { vm, ram, vcpus, exit, console, vsock_uds, started, event_loop: Some(event_loop), event_loop_stop: stop })
    }

    /// Waits up to `timeout` (forever if `None`) for the VM to end; returns why it ended.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> Option<VmExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(reason) = self.exit.reason() {
                return Some(reason);
            }
            let wait_ms = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    left.as_millis().min(i32::MAX as u128) as i32
                }
                None => -1,
            };
            let mut pfd = libc::pollfd { fd: self.exit.evt.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: `pfd` is a valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        }
    }

    /// Stops the VM: records `Stopped` (unless it already ended), stops vCPUs and the event loop.
    pub fn stop(mut self) -> VmExitReason {
        self.exit.exit(VmExitReason::Stopped);
        self.shutdown_threads();
        self.exit.reason().unwrap_or(VmExitReason::Stopped)
    }

    fn shutdown_threads(&mut self) {
        for vcpu in self.vcpus.drain(..) {
            vcpu.join();
        }
        self.event_loop_stop.store(true, Ordering::Release);
        if let Some(t) = self.event_loop.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.vsock_uds);
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}
