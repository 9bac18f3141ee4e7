//! A running VM: its vCPU threads, devices and event loop; pausing it, snapshotting it, resetting
//! it in place, and how it ends.

use crate::arch::x86_64::cpu_compat::missing_features;
use crate::device_manager::persist::LayoutMismatch;
use crate::device_manager::{DeviceManager, DevicesResetError};
use crate::devices::bus::lock;
use crate::devices::console::ConsoleTail;
use crate::event_loop::EventLoop;
use crate::snapshot::memory_file::{self, MemoryFileError};
use crate::snapshot::state::SnapshotState;
use crate::snapshot::store::{self, StoreError};
use crate::snapshot::working_set::{WorkingSet, WorkingSetError};
use crate::timings::{Span, SpanClock};
use crate::vstate::memory::{self, GuestRam, MemoryError};
use crate::vstate::persist::{self, PersistError, VcpuState};
use crate::vstate::vcpu::{ExitSignal, VcpuCommand, VcpuHandle, VmExitReason};
use kvm_ioctls::{Kvm, VmFd};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The snapshot a VM's memory currently maps (privately): what `reset` returns to.
pub struct Origin {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Its parsed state.
    pub state: Arc<SnapshotState>,
    /// Its memory file, kept open (the directory may be re-snapshotted meanwhile).
    pub memory: File,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A booted (or restored) VM.
pub struct Vmm {
    /// The KVM system fd.
    pub kvm: Kvm,
    /// The KVM VM.
    pub vm: VmFd,
    /// Guest RAM and the file it currently maps.
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
    /// Every device: COM1 and the i8042, and the virtio devices in attach order.
    pub devices: DeviceManager,
    /// The kernel command line.
    pub cmdline: String,
    /// The snapshot this VM came from or was last reset to.
    pub origin: Option<Origin>,
    /// MSRs saved in snapshots.
    pub msr_indices: Vec<u32>,
    /// Where a restore's time went, up to the vCPUs running (empty after a boot).
    pub launch_spans: Vec<Span>,
    /// What the restore did with its snapshot's working-set record.
    pub working_set: WorkingSetUse,
    /// The processes beside the VMM whose state snapshots keep ([`crate::companion`]).
    pub companions: Vec<Box<dyn crate::companion::Companion>>,
}

/// What a restore did with its snapshot's working-set record
/// ([`crate::snapshot::working_set`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkingSetUse {
    /// Not a restore, or turned off (`PADDOCK_WORKING_SET=off`).
    #[default]
    NotUsed,
    /// The snapshot has no usable record: this restore should record one once the guest is
    /// ready ([`Vmm::working_set`]).
    Missing,
    /// The record's pages were prefetched into the page cache before the vCPUs ran.
    Prefetched {
        /// Pages asked for.
        pages: u64,
        /// Pages mapped into KVM's stage-2 tables too, where the host's KVM can
        /// ([`crate::vstate::prefault`]).
        pre_faulted: Option<u64>,
    },
}

impl WorkingSetUse {
    /// The same, with `pages` pre-faulted.
    pub fn with_pre_faulted(self, pages: u64) -> Self {
        match self {
            Self::Prefetched { pages: asked, .. } => Self::Prefetched {
                pages: asked,
                pre_faulted: Some(pages),
            },
            other => other,
        }
    }
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm").finish_non_exhaustive()
    }
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The VM is not running.
    #[error("the VM is not running ({0:?})")]
    NotRunning(VmExitReason),
    /// KVM state could not be read.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A vCPU thread did not answer.
    #[error("vCPU {0} did not answer")]
    VcpuGone(u8),
    /// Writing guest memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryFileError),
    /// Writing the snapshot directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a reset failed. After a failure partway, the VM is stopped rather than left half-reset.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Nothing to reset to.
    #[error("this sandbox neither came from a snapshot nor has one taken; name one with --to DIR")]
    NoOrigin,
    /// The target snapshot is unusable or of another shape.
    #[error(transparent)]
    Snapshot(#[from] crate::builder::RestoreError),
    /// Remapping or discarding memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Restoring KVM state failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The target snapshot has other virtio devices, or in other slots.
    #[error("the snapshot's devices differ from this sandbox's: {0}")]
    Layout(#[from] LayoutMismatch),
    /// A device refused its saved state.
    #[error(transparent)]
    Devices(#[from] DevicesResetError),
    /// A vCPU thread did not answer.
    #[error("vCPU {0} did not answer")]
    VcpuGone(u8),
    /// The target snapshot's CPU features differ from this VM's.
    #[error("the snapshot's CPU features differ from this sandbox's; restore it into a new sandbox instead")]
    Cpu,
}

/// What a snapshot cost.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotStats {
    /// Time the vCPUs were paused.
    pub paused: Duration,
    /// Guest memory bytes written (untouched and zero pages are holes).
    pub memory_written: u64,
}

impl Vmm {
    /// The number of vCPUs. They were created from a u8 count, so it always fits; the fallback
    /// only saturates.
    pub(crate) fn vcpu_count(&self) -> u8 {
        u8::try_from(self.vcpus.len()).unwrap_or(u8::MAX)
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
                    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
                }
                None => -1,
            };
            let mut pfd = libc::pollfd {
                fd: self.exit.evt.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is a valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        }
    }

    /// Pauses the vCPUs, then the device event loop: nothing touches guest memory afterwards.
    pub fn pause(&self) {
        for vcpu in &self.vcpus {
            vcpu.pause();
        }
        self.event_loop.pause();
    }

    /// The host end of guest-init's link as the last restore or reset resumed it, once: `None`
    /// after a boot, or when the snapshot was taken while the link was busy or absent (guest-init
    /// then connects again).
    pub fn take_guest_link(&self) -> Option<std::os::unix::net::UnixStream> {
        self.devices.virtio.take_guest_link()
    }

    /// Resumes devices, then vCPUs.
    pub fn resume(&self) {
        self.event_loop.resume();
        for vcpu in &self.vcpus {
            vcpu.send(VcpuCommand::Resume);
        }
    }

    /// Runs `f` on every (paused) vCPU's fd on its own thread and collects the results.
    fn on_each_vcpu<T: Send + 'static>(
        &self,
        f: impl Fn(u8, &mut kvm_ioctls::VcpuFd) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, u8> {
        let f = Arc::new(f);
        let mut results = Vec::with_capacity(self.vcpus.len());
        for vcpu in &self.vcpus {
            let (tx, rx) = channel();
            let f = f.clone();
            let index = vcpu.index;
            vcpu.send(VcpuCommand::With(Box::new(move |fd| {
                let _ = tx.send(f(index, fd));
            })));
            results.push(rx.recv().map_err(|_| vcpu.index)?);
        }
        Ok(results)
    }

    /// A one-line-per-vCPU description (instruction pointer, MP state, pending interrupt),
    /// for diagnosing a guest that stopped answering. Briefly pauses the VM.
    pub fn vcpu_summary(&self) -> String {
        if self.exit.reason().is_some() {
            return "the VM has stopped".into();
        }
        self.pause();
        let lines = self.on_each_vcpu(|index, fd| {
            let regs = fd.get_regs().map(|r| format!("rip={:#x} rsp={:#x} rflags={:#x}", r.rip, r.rsp, r.rflags));
            let mp = fd.get_mp_state().map(|m| m.mp_state);
            let events = fd.get_vcpu_events().map(|e| (e.interrupt.injected, e.nmi.pending));
            let lapic = fd.get_lapic().map(|l| {
                let reg = |off: usize| u32::from_le_bytes([l.regs[off].cast_unsigned(), l.regs[off + 1].cast_unsigned(), l.regs[off + 2].cast_unsigned(), l.regs[off + 3].cast_unsigned()]);
                let irr: Vec<String> = (0..8).map(|i| format!("{:08x}", reg(0x200 + i * 0x10))).collect();
                let isr: Vec<String> = (0..8).map(|i| format!("{:08x}", reg(0x100 + i * 0x10))).collect();
                format!("lvtt={:#x} tmict={:#x} tmcct={:#x} irr={} isr={}", reg(0x320), reg(0x380), reg(0x390), irr.join(""), isr.join(""))
            });
            let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry { index: 0x6e0, ..Default::default() }, kvm_bindings::kvm_msr_entry { index: 0x10, ..Default::default() }]).ok();
            let deadline = msrs.as_mut().and_then(|m| fd.get_msrs(m).ok().map(|_| (m.as_slice()[0].data, m.as_slice()[1].data)));
            format!(
                "vCPU {index}: {} mp_state={mp:?} irq_injected/nmi_pending={events:?} lapic: {} tsc_deadline/tsc={deadline:x?}",
                regs.unwrap_or_else(|e| e.to_string()),
                lapic.unwrap_or_else(|e| e.to_string())
            )
        });
        let device_lines = self.virtio_summary();
        self.resume();
        match lines {
            Ok(lines) => lines.join("\n") + "\n" + &device_lines,
            Err(index) => format!("vCPU {index} did not answer"),
        }
    }

    /// One line per virtio device: its status, interrupt status and queue positions (as the
    /// driver published them in guest memory, and as the device last saw them).
    fn virtio_summary(&self) -> String {
        use vm_memory::Bytes;
        let ring_index = |ring: u64| -> Option<u16> {
            self.ram
                .memory
                .read_obj(vm_memory::GuestAddress(ring.wrapping_add(2)))
                .ok()
        };
        let lines: Vec<String> = self
            .devices
            .virtio
            .devices()
            .iter()
            .map(|attached| {
                let state = lock(attached.device.transport()).save();
                let queues: Vec<String> = state
                    .queues
                    .iter()
                    .map(|q| {
                        format!(
                            "[avail.idx={:?} next_avail={} used.idx={:?} next_used={}]",
                            ring_index(q.avail_ring),
                            q.next_avail,
                            ring_index(q.used_ring),
                            q.next_used
                        )
                    })
                    .collect();
                format!(
                    "{} at {}: status={:#x} interrupt_status={:#x} queues={}",
                    attached.device.kind(),
                    attached.slot,
                    state.status,
                    state.interrupt_status,
                    queues.join(" ")
                )
            })
            .collect();
        lines.join("\n")
    }

    /// Writes a snapshot of the (running) VM into `dir`; resumes it afterwards unless
    /// `stop_after`, in which case the VM is left paused and the caller ends it.
    pub fn snapshot(
        &mut self,
        dir: &Path,
        stop_after: bool,
    ) -> Result<SnapshotStats, SnapshotError> {
        if let Some(reason) = self.exit.reason() {
            return Err(SnapshotError::NotRunning(reason));
        }
        let paused_at = Instant::now();
        self.pause();
        let result = self.write_snapshot(dir);
        let paused = paused_at.elapsed();
        if !stop_after || result.is_err() {
            self.resume();
        }
        result.map(|memory_written| SnapshotStats {
            paused,
            memory_written,
        })
    }

    fn write_snapshot(&self, dir: &Path) -> Result<u64, SnapshotError> {
        let msrs = self.msr_indices.clone();
        let vcpus: Vec<VcpuState> = self
            .on_each_vcpu(move |_, fd| persist::save_vcpu(fd, &msrs))
            .map_err(SnapshotError::VcpuGone)?
            .into_iter()
            .collect::<Result<_, _>>()?;
        let memory_file = store::new_memory_name();
        let state = SnapshotState {
            vcpu_count: self.vcpu_count(),
            memory_bytes: self.ram.size,
            memory_file: memory_file.clone(),
            created_unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cmdline: self.cmdline.clone(),
            vm: persist::save_vm(&self.vm)?,
            vcpus,
            serial: self.devices.legacy.save(),
            devices: self.devices.virtio.save(),
            companions: crate::companion::save_all(&self.companions),
        };
        let mut written = 0;
        let mut memory_error = None;
        store::write(dir, &memory_file, self.ram.size, &state, |dest| {
            match memory_file::write_sparse(&self.ram.memory, &self.ram.file, dest) {
                Ok(n) => {
                    written = n;
                    fault_hook_stall_snapshot();
                    Ok(())
                }
                Err(e) => {
                    let io = std::io::Error::other(e.to_string());
                    memory_error = Some(e);
                    Err(io)
                }
            }
        })
        .map_err(|e| {
            memory_error
                .map(SnapshotError::Memory)
                .unwrap_or(SnapshotError::Store(e))
        })?;
        Ok(written)
    }

    /// The guest pages touched since guest RAM was mapped from the snapshot (read or written):
    /// the working set to record once the guest is ready. `None` when the VM was not restored.
    pub fn touched_working_set(&self) -> Option<Result<WorkingSet, WorkingSetError>> {
        let origin = self.origin.as_ref()?;
        Some(WorkingSet::of(
            &self.ram.memory,
            origin.state.memory_bytes,
            &origin.state.memory_file,
        ))
    }

    /// Resets the VM in place to its origin snapshot, or to the snapshot in `to` (which must
    /// have this VM's shape). The VM is paused during the reset and resumed after.
    pub fn reset(&mut self, to: Option<&Path>) -> Result<Vec<Span>, ResetError> {
        let mut clock = SpanClock::starting_at(Instant::now());
        let target = match to {
            Some(dir) => Some(crate::builder::load_snapshot(
                dir,
                &self.kvm,
                Some((self.vcpu_count(), self.ram.size)),
            )?),
            None => None,
        };
        if target.is_none() && self.origin.is_none() {
            return Err(ResetError::NoOrigin);
        }
        if let Some(target) = &target {
            self.check_same_cpu(target)?;
            // Checked before pausing: a reset keeps this VM's devices, it cannot add or move one.
            self.devices
                .virtio
                .check_same_layout(&target.state.devices)?;
            clock.lap("target snapshot checked");
        }
        self.pause();
        clock.lap("paused");
        let result = self.reset_paused(target, &mut clock);
        if result.is_err() {
            // A half-reset guest must not run on: end it.
            self.exit.exit(VmExitReason::Fatal("reset failed".into()));
        }
        self.resume();
        clock.lap("resumed");
        tracing::debug!(spans = ?clock.spans(), "reset");
        result.map(|()| clock.into_spans())
    }

    /// A vCPU's CPUID cannot change once it has run: a reset target must have been taken with
    /// the same CPU features as this VM's vCPUs have.
    fn check_same_cpu(&self, target: &Origin) -> Result<(), ResetError> {
        let current = self
            .on_each_vcpu(|_, fd| {
                fd.get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
                    .map(|c| c.as_slice().to_vec())
            })
            .map_err(ResetError::VcpuGone)?;
        for (index, cpuid) in current.into_iter().enumerate() {
            let cpuid = cpuid.map_err(|source| PersistError::Kvm {
                op: "get",
                what: "CPUID",
                source,
            })?;
            let wanted = &target.state.vcpus[index].cpuid;
            let differs = !missing_features(wanted, &cpuid).is_empty()
                || !missing_features(&cpuid, wanted).is_empty();
            if differs {
                return Err(ResetError::Cpu);
            }
        }
        Ok(())
    }

    fn reset_paused(
        &mut self,
        target: Option<Origin>,
        clock: &mut SpanClock,
    ) -> Result<(), ResetError> {
        let started = Instant::now();
        match target {
            Some(new_origin) => {
                memory::remap_private(&self.ram.memory, &new_origin.memory)?;
                // Prefetched only: the new mapping's pages are not pre-faulted into KVM's
                // tables (this runs on the main thread, and the vCPU fds are the vCPU
                // threads').
                self.working_set = crate::builder::prefetch_working_set(&new_origin).0;
                // The old backing (a live memfd, or an older snapshot) is no longer mapped.
                // A memfd would keep its pages while its fd is open: free them.
                if self.origin.is_none() {
                    let _ = self.ram.file.set_len(0);
                }
                self.ram.file = new_origin
                    .memory
                    .try_clone()
                    .map_err(|e| MemoryError::Mmap(e.to_string()))?;
                self.origin = Some(new_origin);
            }
            None => {
                // `ram.file` is the origin's memory file, which guest RAM maps privately.
                let returned = crate::vstate::reset_pages::return_written_pages(
                    &self.ram.memory,
                    &self.ram.file,
                    crate::vstate::reset_pages::copy_back_limit(),
                )?;
                tracing::debug!(?returned, elapsed = ?started.elapsed(), "reset: written guest pages");
            }
        }
        clock.lap("memory");
        let origin = self.origin.as_ref().ok_or(ResetError::NoOrigin)?;
        let state = origin.state.clone();
        persist::restore_vm(&self.vm, &state.vm)?;
        for vcpu in &self.vcpus {
            let (tx, rx) = channel();
            let state = origin.state.clone();
            let index = usize::from(vcpu.index);
            vcpu.send(VcpuCommand::With(Box::new(move |fd| {
                let _ = tx.send(persist::restore_vcpu(fd, &state.vcpus[index], false));
            })));
            rx.recv().map_err(|_| ResetError::VcpuGone(vcpu.index))??;
        }
        clock.lap("VM and vCPU state");
        // Devices last, after every vCPU and its LAPIC: the interrupts they raise at the end
        // (vsock's per-connection resets) must not be overwritten by the restored LAPIC state.
        self.devices.reset_to(&state.serial, &state.devices)?;
        clock.lap("devices");
        // Before the vCPUs run: the guest's side of a companion (its workspace mount) carries
        // on from the snapshot's moment at once.
        if crate::companion::restore_all(&self.companions, &state.companions) {
            clock.lap("companions");
        }
        Ok(())
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

/// Test-only fault injection: when `$PADDOCK_FAULT_SNAPSHOT_STALL` names a file that exists,
/// a snapshot stalls after writing guest memory and before committing its state (creating
/// `<file>.stalled` to say so), so tests can kill the VMM mid-snapshot deterministically.
fn fault_hook_stall_snapshot() {
    let Some(trigger) = std::env::var_os("PADDOCK_FAULT_SNAPSHOT_STALL").map(PathBuf::from) else {
        return;
    };
    if trigger.exists() {
        let _ = std::fs::write(trigger.with_extension("stalled"), b"");
        std::thread::sleep(Duration::from_secs(60));
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}
