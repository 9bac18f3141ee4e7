//! A running VM: its vCPU threads, the device event loop, and how it ends.

use crate::devices::console::ConsoleTail;
use crate::vstate::memory::GuestRam;
use crate::vstate::vcpu::{ExitSignal, VcpuHandle, VmExitReason};
use crate::event_loop::{EventLoop, Subscribers};
use kvm_ioctls::VmFd;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The device event loop.
    pub event_loop: EventLoop,
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
        subscribers: Subscribers,
    ) -> std::io::Result<Self> {
        let exit_for_loop = exit.clone();
        let event_loop = EventLoop::spawn(subscribers, move |e| exit_for_loop.exit(VmExitReason::Fatal(e)))?;
        Ok(Self { vm, ram, vcpus, exit, console, vsock_uds, started, event_loop })
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
        self.event_loop.stop();
        let _ = std::fs::remove_file(&self.vsock_uds);
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}
