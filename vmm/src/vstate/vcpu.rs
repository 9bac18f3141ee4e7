//! vCPUs: creation, boot configuration, and the thread that runs each one.
//!
//! A vCPU thread owns its `VcpuFd`. It is stopped by setting `immediate_exit` in its `kvm_run`
//! page and sending it `SIGRTMIN` (the handler does nothing; the signal only interrupts
//! `KVM_RUN`), so a stop request can never be lost between two `KVM_RUN` calls.

use crate::arch::x86_64::{cpuid, msr, regs};
use crate::devices::bus::Bus;
use crate::vstate::memory::GuestMemory;
use kvm_bindings::{kvm_lapic_state, CpuId, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::EventFd;

/// Why a vCPU could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// KVM_CREATE_VCPU failed.
    #[error("creating vCPU {index} failed: {source}")]
    Create {
        index: u8,
        source: kvm_ioctls::Error,
    },
    /// A register-setting ioctl failed.
    #[error("configuring vCPU {index} ({what}) failed: {source}")]
    Configure {
        index: u8,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Building boot MSRs failed.
    #[error(transparent)]
    Msr(#[from] msr::MsrError),
    /// Writing boot tables failed.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// The vCPU thread could not be spawned.
    #[error("spawning the vCPU thread failed: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why the VM stopped running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest reset itself (i8042 reset or a KVM reset event): `reboot`, or a guest kernel
    /// panic (`panic=-1`).
    GuestReset,
    /// A vCPU triple-faulted: the guest crashed too hard to say why (no reboot asked for).
    TripleFault,
    /// The guest asked to power off.
    GuestShutdown,
    /// The VMM was asked to stop (signal, timeout or API call).
    Stopped,
    /// KVM or the VMM failed: the VM cannot go on.
    Fatal(String),
}

/// Where VM-ending events are reported: the first reason wins, and `evt` wakes the VMM.
pub struct ExitSignal {
    /// Written once a reason is recorded.
    pub evt: EventFd,
    reason: Mutex<Option<VmExitReason>>,
}

impl std::fmt::Debug for ExitSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitSignal")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl ExitSignal {
    /// A fresh signal.
    pub fn new() -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
            reason: Mutex::new(None),
        }))
    }

    /// Records `reason` unless one is already recorded, and wakes the VMM.
    pub fn exit(&self, reason: VmExitReason) {
        let mut slot = crate::devices::bus::lock(&self.reason);
        if slot.is_none() {
            *slot = Some(reason);
        }
        let _ = self.evt.write(1);
    }

    /// The recorded reason, if any.
    pub fn reason(&self) -> Option<VmExitReason> {
        crate::devices::bus::lock(&self.reason).clone()
    }
}

/// Creates and configures vCPU `index` of `count` for booting at `entry`.
pub fn create_boot_vcpu(
    vm: &VmFd,
    supported_cpuid: &CpuId,
    mem: &GuestMemory,
    index: u8,
    count: u8,
    entry: u64,
    protocol: regs::BootProtocol,
) -> Result<VcpuFd, VcpuError> {
    let fd = vm
        .create_vcpu(u64::from(index))
        .map_err(|source| VcpuError::Create { index, source })?;
    let cfg = |what| {
        move |source| VcpuError::Configure {
            index,
            what,
            source,
        }
    };
    let mut cpuid = supported_cpuid.clone();
    cpuid::normalize(&mut cpuid, index, count);
    fd.set_cpuid2(&cpuid).map_err(cfg("CPUID"))?;
    let msrs = msr::boot_msrs()?;
    let written = fd.set_msrs(&msrs).map_err(cfg("MSRs"))?;
    if written != msrs.as_slice().len() {
        tracing::warn!(index, written, "KVM accepted only some boot MSRs");
    }
    fd.set_regs(&regs::boot_regs(protocol, entry))
        .map_err(cfg("registers"))?;
    fd.set_fpu(&regs::boot_fpu()).map_err(cfg("FPU"))?;
    let mut sregs = fd.get_sregs().map_err(cfg("special registers"))?;
    regs::setup_sregs(mem, protocol, &mut sregs)?;
    fd.set_sregs(&sregs).map_err(cfg("special registers"))?;
    let mut lapic = fd.get_lapic().map_err(cfg("LAPIC"))?;
    set_lint(&mut lapic);
    fd.set_lapic(&lapic).map_err(cfg("LAPIC"))?;
    Ok(fd)
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &lapic.regs[offset..offset + 4];
    u32::from_le_bytes([
        b[0].cast_unsigned(),
        b[1].cast_unsigned(),
        b[2].cast_unsigned(),
        b[3].cast_unsigned(),
    ])
}

fn set_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in lapic.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *dst = src.cast_signed();
    }
}

/// LINT0 delivers ExtINT (the legacy PIC), LINT1 delivers NMI: the PC wiring the guest expects.
fn set_lint(lapic: &mut kvm_lapic_state) {
    let with_mode = |reg: u32, mode: u32| (reg & !0x700) | (mode << 8);
    let lvt0 = lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(lapic, APIC_LVT0, with_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, with_mode(lvt1, APIC_MODE_NMI));
}

/// Commands a running vCPU thread obeys (after being kicked out of KVM_RUN).
pub enum VcpuCommand {
    /// Stop running and wait for the next command; acknowledge on the response channel.
    Pause,
    /// Go back to running the guest.
    Resume,
    /// Run `f` on this vCPU's fd while paused (state save/restore); it sends its own reply.
    With(Box<dyn FnOnce(&mut VcpuFd) + Send>),
    /// End the thread.
    Exit,
}

impl std::fmt::Debug for VcpuCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pause => "Pause",
            Self::Resume => "Resume",
            Self::With(_) => "With(..)",
            Self::Exit => "Exit",
        })
    }
}

/// A pointer to a vCPU's `kvm_run.immediate_exit` byte.
struct KvmRunByte(*mut u8);
// SAFETY: the pointer targets the vCPU's kvm_run mapping; it is only written through
// `ImmediateExit`, under its lock, while the mapping exists (see there).
unsafe impl Send for KvmRunByte {}

/// A vCPU's `kvm_run.immediate_exit` byte, shared by its handle and its thread while the
/// thread's `VcpuFd` (and with it the kvm_run mapping) exists. The thread retires it before
/// the `VcpuFd` goes ([`Retire`]): a handle that kicks a thread which has just taken its
/// `Exit` and returned must not write into the unmapped page (it did: a SIGSEGV at the end of
/// `paddock run`, or a stray byte in whatever was mapped there next).
#[derive(Clone)]
struct ImmediateExit(Arc<Mutex<Option<KvmRunByte>>>);

impl ImmediateExit {
    fn set(&self) {
        let byte = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(byte) = byte.as_ref() {
            // SAFETY: the byte is in the kvm_run mapping, which exists while it is not retired
            // (checked under the lock the retiring thread takes); a single-byte volatile store
            // is atomic on x86.
            unsafe { std::ptr::write_volatile(byte.0, 1) };
        }
    }

    fn retire(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Retires the `immediate_exit` byte when dropped: the first field of the vCPU thread's loop,
/// so it goes before the loop's `VcpuFd`, whether the thread returns or unwinds.
struct Retire(ImmediateExit);

impl Drop for Retire {
    fn drop(&mut self) {
        self.0.retire();
    }
}

/// The controlling side of a running vCPU thread.
pub struct VcpuHandle {
    /// The vCPU's index.
    pub index: u8,
    commands: Sender<VcpuCommand>,
    /// Acknowledgements of `Pause` (the vCPU is out of KVM_RUN and waiting).
    pub paused: Receiver<()>,
    immediate_exit: ImmediateExit,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VcpuHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuHandle")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

extern "C" fn noop_handler(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler function pointer is a valid argument;
        // no SA_RESTART, so KVM_RUN returns EINTR when the signal arrives.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = noop_handler as *const () as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(kick_signal(), &act, std::ptr::null_mut());
        }
    });
}

impl VcpuHandle {
    /// Interrupts KVM_RUN so the thread looks at its commands.
    fn kick(&self) {
        self.immediate_exit.set();
        if let Some(thread) = &self.thread {
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: the pthread id belongs to a thread we have not joined yet.
            unsafe { libc::pthread_kill(thread.as_pthread_t(), kick_signal()) };
        }
    }

    /// Sends a command and kicks the thread out of the guest.
    pub fn send(&self, command: VcpuCommand) {
        if self.commands.send(command).is_ok() {
            self.kick();
        }
    }

    /// Pauses the vCPU and waits until it is out of KVM_RUN.
    pub fn pause(&self) -> bool {
        self.send(VcpuCommand::Pause);
        self.paused.recv().is_ok()
    }

    /// Stops the thread and waits for it.
    pub fn join(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.send(VcpuCommand::Exit);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts the thread for `fd`; guest I/O goes to the buses, VM-ending events to `exit`. The
/// thread installs `filters`' vCPU filter first, then waits, paused, for its first `Resume`:
/// no guest instruction runs before the caller has confined itself too.
pub fn spawn_vcpu(
    mut fd: VcpuFd,
    index: u8,
    pio: Bus,
    mmio: Bus,
    exit: Arc<ExitSignal>,
    filters: Option<Arc<crate::seccomp::Filters>>,
) -> Result<VcpuHandle, VcpuError> {
    install_kick_handler();
    let (commands, command_rx) = channel();
    let (paused_tx, paused) = channel();
    let byte = KvmRunByte(&mut fd.get_kvm_run().immediate_exit as *mut u8);
    let immediate_exit = ImmediateExit(Arc::new(Mutex::new(Some(byte))));
    let retire = Retire(immediate_exit.clone());
    let thread = std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            // Built first, so that every way out of this thread retires the byte before the
            // VcpuFd goes.
            let vcpu = VcpuLoop {
                _retire: retire,
                fd,
                index,
                pio,
                mmio,
                exit,
                commands: command_rx,
                paused: paused_tx,
                io_incomplete: false,
                ended: false,
            };
            if let Some(filters) = filters {
                if let Err(e) = filters.install(crate::seccomp::ThreadKind::Vcpu) {
                    vcpu.exit.exit(VmExitReason::Fatal(format!(
                        "vCPU {index}: {}",
                        crate::seccomp::describe(&e)
                    )));
                    return;
                }
            }
            vcpu.run()
        })
        .map_err(VcpuError::Spawn)?;
    Ok(VcpuHandle {
        index,
        commands,
        paused,
        immediate_exit,
        thread: Some(thread),
    })
}

struct VcpuLoop {
    /// First: dropped before `fd` (fields drop in order).
    _retire: Retire,
    fd: VcpuFd,
    index: u8,
    pio: Bus,
    mmio: Bus,
    exit: Arc<ExitSignal>,
    commands: Receiver<VcpuCommand>,
    paused: Sender<()>,
    /// The last exit was port or MMIO I/O, which KVM completes only on the next `KVM_RUN`.
    io_incomplete: bool,
    /// The VM ended while this vCPU was completing I/O for a pause.
    ended: bool,
}

/// How many back-to-back I/O exits completing one instruction may take (a split MMIO access
/// takes two); more means KVM is not finishing it and the pause goes ahead regardless.
const MAX_IO_COMPLETION_EXITS: usize = 8;

enum Step {
    Continue,
    Stop,
}

impl VcpuLoop {
    fn run(mut self) {
        // Parked until the first Resume (see `spawn_vcpu`).
        if let Step::Stop = self.drain_commands(true) {
            return;
        }
        loop {
            if let Step::Stop = self.drain_commands(false) {
                return;
            }
            if self.ended || matches!(self.run_once(), Step::Stop) {
                // The VM is over; wait for the owner to tell us to exit (or be dropped).
                loop {
                    match self.commands.recv() {
                        Ok(VcpuCommand::Exit) | Err(_) => return,
                        Ok(VcpuCommand::Pause) => {
                            let _ = self.paused.send(());
                        }
                        Ok(VcpuCommand::With(f)) => f(&mut self.fd),
                        Ok(VcpuCommand::Resume) => {}
                    }
                }
            }
        }
    }

    /// Handles queued commands; while paused, blocks until resumed.
    fn drain_commands(&mut self, mut paused: bool) -> Step {
        loop {
            let command = if paused {
                match self.commands.recv() {
                    Ok(c) => c,
                    Err(_) => return Step::Stop,
                }
            } else {
                match self.commands.try_recv() {
                    Ok(c) => c,
                    Err(std::sync::mpsc::TryRecvError::Empty) => return Step::Continue,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return Step::Stop,
                }
            };
            match command {
                VcpuCommand::Pause => {
                    if !paused {
                        self.complete_pending_io();
                    }
                    paused = true;
                    let _ = self.paused.send(());
                }
                VcpuCommand::Resume => paused = false,
                VcpuCommand::With(f) => f(&mut self.fd),
                VcpuCommand::Exit => return Step::Stop,
            }
        }
    }

    /// KVM finishes a port or MMIO instruction (stores the value read, advances RIP) only when
    /// `KVM_RUN` is entered again. Before this vCPU's state is saved or replaced, enter it once
    /// with `immediate_exit` set, so the instruction completes now and no further guest
    /// instruction runs. Otherwise a snapshot holds a half-done instruction, and after a reset
    /// KVM would apply the old instruction's completion on top of the restored registers.
    fn complete_pending_io(&mut self) {
        for _ in 0..MAX_IO_COMPLETION_EXITS {
            if !self.io_incomplete || self.ended {
                return;
            }
            self.fd.set_kvm_immediate_exit(1);
            if let Step::Stop = self.run_once() {
                self.ended = true;
            }
        }
        if self.io_incomplete {
            tracing::warn!(
                index = self.index,
                "KVM kept exiting for I/O while completing it"
            );
        }
    }

    fn run_once(&mut self) -> Step {
        self.io_incomplete = false;
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !self.pio.read(u64::from(port), data) {
                    data.fill(0xff); // floating bus
                }
                self.io_incomplete = true;
                Step::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                self.pio.write(u64::from(port), data);
                self.io_incomplete = true;
                Step::Continue
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !self.mmio.read(addr, data) {
                    data.fill(0xff);
                }
                self.io_incomplete = true;
                Step::Continue
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                self.mmio.write(addr, data);
                self.io_incomplete = true;
                Step::Continue
            }
            Ok(VcpuExit::Shutdown) => {
                self.log_triple_fault();
                self.end(VmExitReason::TripleFault)
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                KVM_SYSTEM_EVENT_RESET => self.end(VmExitReason::GuestReset),
                KVM_SYSTEM_EVENT_SHUTDOWN => self.end(VmExitReason::GuestShutdown),
                other => self.end(VmExitReason::Fatal(format!(
                    "unexpected KVM system event {other}"
                ))),
            },
            Ok(VcpuExit::Hlt) => self.end(VmExitReason::GuestShutdown),
            Ok(VcpuExit::FailEntry(reason, cpu)) => self.end(VmExitReason::Fatal(format!(
                "KVM entry failed on vCPU {cpu}: hardware reason {reason:#x}"
            ))),
            Ok(VcpuExit::InternalError) => self.end(VmExitReason::Fatal(format!(
                "KVM internal error on vCPU {}",
                self.index
            ))),
            Ok(other) => {
                tracing::warn!(index = self.index, "unhandled vCPU exit {other:?}");
                Step::Continue
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                Step::Continue
            }
            Err(e) => self.end(VmExitReason::Fatal(format!(
                "KVM_RUN failed on vCPU {}: {e}",
                self.index
            ))),
        }
    }

    /// A triple fault leaves no trace in the guest's console: record where the vCPU was.
    fn log_triple_fault(&self) {
        match (self.fd.get_regs(), self.fd.get_sregs()) {
            // AMD's KVM INITs the vCPU on a shutdown exit, so where it faulted is lost.
            (Ok(regs), Ok(sregs)) if regs.rip == 0xfff0 && sregs.cr3 == 0 => tracing::warn!(
                "vCPU {} triple-faulted (guest reset); KVM already reset its registers",
                self.index
            ),
            (Ok(regs), Ok(sregs)) => tracing::warn!(
                "vCPU {} triple-faulted (guest reset): rip {:#x} rsp {:#x} cr2 {:#x} cr3 {:#x} \
                 idt {:#x}+{:#x} gdt {:#x}",
                self.index,
                regs.rip,
                regs.rsp,
                sregs.cr2,
                sregs.cr3,
                sregs.idt.base,
                sregs.idt.limit,
                sregs.gdt.base,
            ),
            _ => tracing::warn!("vCPU {} triple-faulted (guest reset)", self.index),
        }
    }

    fn end(&self, reason: VmExitReason) -> Step {
        tracing::debug!(index = self.index, ?reason, "vCPU stopped the VM");
        self.exit.exit(reason);
        Step::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_pins_get_extint_and_nmi() {
        let mut lapic = kvm_lapic_state::default();
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0000); // masked, fixed
        set_lint(&mut lapic);
        assert_eq!((lapic_reg(&lapic, APIC_LVT0) >> 8) & 0x7, APIC_MODE_EXTINT);
        assert_eq!((lapic_reg(&lapic, APIC_LVT1) >> 8) & 0x7, APIC_MODE_NMI);
        assert_eq!(
            lapic_reg(&lapic, APIC_LVT0) & 0x0001_0000,
            0x0001_0000,
            "other bits kept"
        );
    }

    #[test]
    fn first_exit_reason_wins() {
        let exit = ExitSignal::new().unwrap();
        exit.exit(VmExitReason::GuestReset);
        exit.exit(VmExitReason::Fatal("late".into()));
        assert_eq!(exit.reason(), Some(VmExitReason::GuestReset));
        assert_eq!(exit.evt.read().unwrap(), 2);
    }
}
