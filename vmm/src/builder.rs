//! The boot recipe: from a `VmConfig` to a running VM, step by step.

use crate::arch::x86_64::boot::{self, LoadError};
use crate::arch::x86_64::cpu_compat;
use crate::arch::x86_64::layout::{
    COM1_IRQ, COM1_PORT, I8042_PORT, MMIO_GAP_START, VIRTIO_IRQ_BASE, VIRTIO_MMIO_SIZE,
};
use crate::arch::x86_64::mptable::{self, MptableError};
use crate::config::{ConfigError, VmConfig, GUEST_CID};
use crate::devices::bus::Bus;
use crate::devices::console::{ConsoleSink, ConsoleTail};
use crate::devices::i8042::I8042;
use crate::devices::serial::SerialDevice;
use crate::devices::virtio::mmio::MMIO_QUEUE_NOTIFY_OFFSET;
use crate::devices::virtio::vsock as virtio_vsock;
use crate::devices::virtio::vsock::Vsock;
use crate::event_loop::EventLoop;
use crate::event_loop::Subscribers;
use crate::kvm::{open_kvm, KvmError};
use crate::snapshot::state::SnapshotState;
use crate::snapshot::store::{self, StoreError};
use crate::vmm::{Devices, Origin, Vmm};
use crate::vstate::memory::{self, GuestRam, MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use crate::vstate::memory::{create_guest_ram, MemoryError};
use crate::vstate::persist::{self, PersistError};
use crate::vstate::vcpu::{create_boot_vcpu, spawn_vcpu, ExitSignal, VcpuError, VmExitReason};
use crate::vstate::vm::{create_vm, register_irqfd, register_mmio_ioevent, VmError};
use event_manager::{EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use linux_loader::cmdline::Cmdline;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// Why a VM could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// KVM is unusable on this host.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// An artifact or the console log could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    /// Guest memory could not be created.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The VM could not be created.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The kernel, initramfs or boot parameters could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The MP table could not be written.
    #[error(transparent)]
    Mptable(#[from] MptableError),
    /// A vCPU could not be set up.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("reading the host's supported CPUID failed: {0}")]
    Cpuid(#[source] kvm_ioctls::Error),
    /// A device could not be created.
    #[error("setting up the {what} device failed: {reason}")]
    Device { what: &'static str, reason: String },
}

/// Opens the console log for appending, if one was asked for.
fn open_console_log(path: Option<&Path>) -> Result<Option<File>, (String, std::io::Error)> {
    path.map(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| (p.display().to_string(), e))
    })
    .transpose()
}

fn open(path: &std::path::Path) -> Result<File, BootError> {
    File::open(path).map_err(|source| BootError::Open {
        path: path.display().to_string(),
        source,
    })
}

fn device_err(what: &'static str) -> impl Fn(std::io::Error) -> BootError {
    move |e| BootError::Device {
        what,
        reason: e.to_string(),
    }
}

/// Boots a VM from `config` and returns it running.
pub fn boot(config: &VmConfig) -> Result<Vmm, BootError> {
    let started = Instant::now();
    config.validate()?;
    let mut kernel = open(&config.kernel)?;
    let mut initrd = open(&config.initrd)?;
    let console_log = open_console_log(config.console_log.as_deref())
        .map_err(|(path, source)| BootError::Open { path, source })?;

    // KVM and memory.
    let kvm = open_kvm()?;
    let ram = create_guest_ram(config.memory_mib)?;
    let vm = create_vm(&kvm, &ram.memory)?;

    // Guest payload and what the guest learns about its machine.
    let kernel_image = boot::load_kernel(&ram.memory, &mut kernel)?;
    let initrd_placed = boot::load_initrd(&ram.memory, &mut initrd, kernel_image.end)?;
    let mut cmdline = Cmdline::new(crate::arch::x86_64::layout::CMDLINE_MAX_SIZE)
        .map_err(|e| LoadError::Cmdline(e.to_string()))?;
    cmdline
        .insert_str(config.cmdline())
        .map_err(|e| LoadError::Cmdline(e.to_string()))?;

    // Devices.
    let exit = ExitSignal::new().map_err(device_err("exit event"))?;
    let console = ConsoleTail::default();
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(device_err("serial"))?;
    let serial = SerialDevice::new(serial_irq, ConsoleSink::new(console.clone(), console_log));
    let vsock =
        virtio_vsock::new_vsock(ram.memory.clone(), GUEST_CID, &config.vsock_uds).map_err(|e| {
            BootError::Device {
                what: "vsock",
                reason: e.to_string(),
            }
        })?;
    let wired = attach_devices(&vm, serial, vsock, &exit)?;
    cmdline
        .add_virtio_mmio_device(
            VIRTIO_MMIO_SIZE,
            vm_memory::GuestAddress(VSOCK_MMIO_BASE),
            VSOCK_IRQ,
            None,
        )
        .map_err(|e| LoadError::Cmdline(e.to_string()))?;

    boot::load_cmdline(&ram.memory, &cmdline)?;
    let cmdline_len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes().len())
        .unwrap_or(0);
    boot::write_boot_params(
        &ram.memory,
        kernel_image.protocol,
        cmdline_len,
        Some(initrd_placed),
        ram.size,
    )?;
    mptable::setup_mptable(&ram.memory, config.vcpus)?;

    // vCPUs: configure all, then start all.
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(BootError::Cpuid)?;
    let mut fds = Vec::with_capacity(config.vcpus as usize);
    for index in 0..config.vcpus {
        fds.push(create_boot_vcpu(
            &vm,
            &supported,
            &ram.memory,
            index,
            config.vcpus,
            kernel_image.entry,
            kernel_image.protocol,
        )?);
    }
    let msr_indices = persist::saveable_msrs(&kvm).map_err(|e| BootError::Device {
        what: "MSR list",
        reason: e.to_string(),
    })?;
    let cmdline = config.cmdline();
    let vmm = start(Parts {
        kvm,
        vm,
        ram,
        fds,
        exit,
        console,
        wired,
        vsock_uds: config.vsock_uds.clone(),
        started,
        cmdline,
        origin: None,
        msr_indices,
    })
    .map_err(|e| BootError::Device {
        what: "vCPU threads",
        reason: e.to_string(),
    })?;
    tracing::debug!(protocol = ?kernel_image.protocol, elapsed = ?started.elapsed(), "VM started");
    Ok(vmm)
}

/// Where the vsock device lives.
const VSOCK_MMIO_BASE: u64 = MMIO_GAP_START;
/// Its interrupt line.
const VSOCK_IRQ: u32 = VIRTIO_IRQ_BASE;

/// Devices on their buses, with their event subscribers registered.
pub struct WiredDevices {
    pio: Bus,
    mmio: Bus,
    subscribers: Subscribers,
    devices: Devices,
}

/// Puts COM1, the i8042 and virtio-vsock on the buses and wires their interrupts and
/// notifications into KVM. The same for a boot and a restore.
fn attach_devices(
    vm: &VmFd,
    serial: SerialDevice,
    vsock: Vsock,
    exit: &Arc<ExitSignal>,
) -> Result<WiredDevices, BootError> {
    let mut subscribers = Subscribers::new().map_err(|e| BootError::Device {
        what: "event manager",
        reason: format!("{e:?}"),
    })?;
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let bus_err = |what| {
        move |e: crate::devices::bus::BusError| BootError::Device {
            what,
            reason: e.to_string(),
        }
    };

    register_irqfd(vm, &serial.serial.interrupt_evt().0, COM1_IRQ)?;
    let serial = Arc::new(Mutex::new(serial));
    pio.insert(u64::from(COM1_PORT), 8, serial.clone())
        .map_err(bus_err("serial"))?;

    let reset_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(device_err("i8042"))?;
    let i8042 = I8042::new(reset_evt.try_clone().map_err(device_err("i8042"))?);
    pio.insert(u64::from(I8042_PORT), 5, Arc::new(Mutex::new(i8042)))
        .map_err(bus_err("i8042"))?;
    subscribers.add_subscriber(Arc::new(Mutex::new(ResetWatcher {
        evt: reset_evt,
        exit: exit.clone(),
    })));

    {
        let transport = crate::devices::bus::lock(&vsock.transport);
        for (index, evt) in transport.queue_events().iter().enumerate() {
            register_mmio_ioevent(
                vm,
                evt,
                VSOCK_MMIO_BASE + MMIO_QUEUE_NOTIFY_OFFSET,
                index as u32,
            )?;
        }
        register_irqfd(vm, transport.interrupt_event(), VSOCK_IRQ)?;
    }
    mmio.insert(VSOCK_MMIO_BASE, VIRTIO_MMIO_SIZE, vsock.transport.clone())
        .map_err(bus_err("vsock"))?;
    subscribers.add_subscriber(vsock.device.clone());
    Ok(WiredDevices {
        pio,
        mmio,
        subscribers,
        devices: Devices { serial, vsock },
    })
}

/// Everything a VM needs before its threads start.
struct Parts {
    kvm: Kvm,
    vm: VmFd,
    ram: GuestRam,
    fds: Vec<VcpuFd>,
    exit: Arc<ExitSignal>,
    console: ConsoleTail,
    wired: WiredDevices,
    vsock_uds: PathBuf,
    started: Instant,
    cmdline: String,
    origin: Option<Origin>,
    msr_indices: Vec<u32>,
}

/// Starts the vCPU threads and the event loop.
fn start(p: Parts) -> Result<Vmm, String> {
    let mut vcpus = Vec::with_capacity(p.fds.len());
    for (index, fd) in p.fds.into_iter().enumerate() {
        vcpus.push(
            spawn_vcpu(
                fd,
                index as u8,
                p.wired.pio.clone(),
                p.wired.mmio.clone(),
                p.exit.clone(),
            )
            .map_err(|e| e.to_string())?,
        );
    }
    let exit_for_loop = p.exit.clone();
    let event_loop = EventLoop::spawn(p.wired.subscribers, move |e| {
        exit_for_loop.exit(VmExitReason::Fatal(e))
    })
    .map_err(|e| e.to_string())?;
    Ok(Vmm {
        kvm: p.kvm,
        vm: p.vm,
        ram: p.ram,
        vcpus,
        exit: p.exit,
        console: p.console,
        vsock_uds: p.vsock_uds,
        started: p.started,
        event_loop,
        devices: p.wired.devices,
        cmdline: p.cmdline,
        origin: p.origin,
        msr_indices: p.msr_indices,
    })
}

/// Why a snapshot could not be restored. Nothing is started when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// KVM is unusable on this host.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The snapshot directory or its files are unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state is internally inconsistent.
    #[error("snapshot state is inconsistent: {0}")]
    Invalid(String),
    /// The snapshot is of another shape than the sandbox it should reset.
    #[error("snapshot shape ({vcpus} vCPUs, {memory_mib} MiB) differs from this sandbox ({want_vcpus} vCPUs, {want_memory_mib} MiB)")]
    Shape {
        vcpus: u8,
        memory_mib: u64,
        want_vcpus: u8,
        want_memory_mib: u64,
    },
    /// The snapshot's guest uses CPU features this host lacks.
    #[error("the snapshot was taken on a CPU with features this host lacks: {0}")]
    CpuFeatures(String),
    /// Reading the host's CPUID failed.
    #[error("reading the host's supported CPUID failed: {0}")]
    Cpuid(#[source] kvm_ioctls::Error),
    /// Mapping the memory file failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Creating the VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Restoring KVM state failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A device could not be restored.
    #[error("restoring the {what} device failed: {reason}")]
    Device { what: &'static str, reason: String },
    /// A vCPU could not be created.
    #[error("creating vCPU {index} failed: {source}")]
    Vcpu {
        index: u8,
        source: kvm_ioctls::Error,
    },
    /// Opening the console log failed.
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

impl From<BootError> for RestoreError {
    fn from(e: BootError) -> Self {
        RestoreError::Device {
            what: "VM",
            reason: e.to_string(),
        }
    }
}

/// Reads and checks a snapshot: format, memory file, shape (if `expected` = (vCPUs, bytes)),
/// and that this host's CPU offers every feature the snapshot's guest may be using.
pub fn load_snapshot(
    dir: &Path,
    kvm: &Kvm,
    expected: Option<(u8, u64)>,
) -> Result<Origin, RestoreError> {
    let (state, memory_path) = store::read(dir, SnapshotState::memory)?;
    let vcpus = state.vcpu_count;
    if vcpus == 0
        || vcpus > crate::arch::x86_64::mptable::MAX_VCPUS
        || state.vcpus.len() != usize::from(vcpus)
    {
        return Err(RestoreError::Invalid(format!(
            "{} vCPU states for {vcpus} vCPUs",
            state.vcpus.len()
        )));
    }
    let mib = state.memory_bytes >> 20;
    if state.memory_bytes % (1 << 20) != 0 || !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(RestoreError::Invalid(format!(
            "guest memory of {} bytes",
            state.memory_bytes
        )));
    }
    if let Some((want_vcpus, want_bytes)) = expected {
        if (vcpus, state.memory_bytes) != (want_vcpus, want_bytes) {
            return Err(RestoreError::Shape {
                vcpus,
                memory_mib: mib,
                want_vcpus,
                want_memory_mib: want_bytes >> 20,
            });
        }
    }
    let host = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(RestoreError::Cpuid)?;
    let missing = cpu_compat::missing_features(&state.vcpus[0].cpuid, host.as_slice());
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(RestoreError::CpuFeatures(list.join(", ")));
    }
    let memory = File::open(&memory_path).map_err(|source| StoreError::Io {
        what: "opening",
        path: memory_path,
        source,
    })?;
    Ok(Origin {
        dir: dir.to_path_buf(),
        state: Arc::new(state),
        memory,
    })
}

/// Restores the snapshot in `dir` into a new running VM serving vsock on `vsock_uds`. Guest
/// memory maps the snapshot's memory file privately: nothing is read up front.
pub fn restore(
    dir: &Path,
    vsock_uds: &Path,
    console_log: Option<&Path>,
) -> Result<Vmm, RestoreError> {
    let started = Instant::now();
    let kvm = open_kvm()?;
    let origin = load_snapshot(dir, &kvm, None)?;
    tracing::debug!(elapsed = ?started.elapsed(), "restore: snapshot loaded");
    let console_log = open_console_log(console_log)
        .map_err(|(path, source)| RestoreError::Open { path, source })?;
    let state = origin.state.clone();
    let memory = memory::map_guest_ram(
        &origin.memory,
        state.memory_bytes,
        libc::MAP_PRIVATE | libc::MAP_NORESERVE,
    )?;
    let file = origin
        .memory
        .try_clone()
        .map_err(|e| MemoryError::Mmap(e.to_string()))?;
    let ram = GuestRam {
        memory,
        file,
        size: state.memory_bytes,
    };
    let vm = create_vm(&kvm, &ram.memory)?;
    persist::restore_vm(&vm, &state.vm)?;
    tracing::debug!(elapsed = ?started.elapsed(), "restore: VM created");

    let exit = ExitSignal::new().map_err(|e| RestoreError::Device {
        what: "exit event",
        reason: e.to_string(),
    })?;
    let console = ConsoleTail::default();
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| RestoreError::Device {
        what: "serial",
        reason: e.to_string(),
    })?;
    let serial = SerialDevice::restore(
        serial_irq,
        ConsoleSink::new(console.clone(), console_log),
        &state.serial,
    )
    .map_err(|reason| RestoreError::Device {
        what: "serial",
        reason,
    })?;
    let vsock = Vsock::restore(ram.memory.clone(), &state.vsock, vsock_uds).map_err(|e| {
        RestoreError::Device {
            what: "vsock",
            reason: e.to_string(),
        }
    })?;
    let wired = attach_devices(&vm, serial, vsock, &exit)?;

    let mut fds = Vec::with_capacity(state.vcpus.len());
    for (index, vcpu_state) in state.vcpus.iter().enumerate() {
        let index = index as u8;
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(|source| RestoreError::Vcpu { index, source })?;
        persist::restore_vcpu(&fd, vcpu_state, true)?;
        fds.push(fd);
    }
    // Only now, with the vCPUs' LAPICs in place, may the vsock device interrupt the guest.
    wired.devices.vsock.reset_guest_transport();
    tracing::debug!(elapsed = ?started.elapsed(), "restore: devices and vCPUs restored");
    let msr_indices = state.vcpus[0].msrs.iter().map(|m| m.index).collect();
    let cmdline = state.cmdline.clone();
    start(Parts {
        kvm,
        vm,
        ram,
        fds,
        exit,
        console,
        wired,
        vsock_uds: vsock_uds.to_path_buf(),
        started,
        cmdline,
        origin: Some(origin),
        msr_indices,
    })
    .map_err(|reason| RestoreError::Device {
        what: "vCPU threads",
        reason,
    })
}

/// Turns the i8042 reset request into the VM's end.
struct ResetWatcher {
    evt: EventFd,
    exit: Arc<ExitSignal>,
}

impl MutEventSubscriber for ResetWatcher {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.evt.read();
        self.exit.exit(VmExitReason::GuestReset);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            tracing::error!("watching the i8042 reset event failed: {e:?}");
        }
    }
}
