//! The boot recipe: from a `VmConfig` to a running VM, step by step.

use crate::arch::x86_64::boot::{self, LoadError};
use crate::arch::x86_64::cpu_compat;
use crate::arch::x86_64::mptable::{self, MptableError};
use crate::artifacts::disk::{self, DiskError};
use crate::artifacts::DigestCache;
use crate::config::{ConfigError, VmConfig, GUEST_CID, READY_PORT};
use crate::device_manager::legacy::{LegacyDevices, LegacyError};
use crate::device_manager::mmio::AttachError;
use crate::device_manager::persist::{check_device_list, DevicesRestoreError, RestoreResources};
use crate::device_manager::persist::{ManagedBlock, VirtioDeviceState};
use crate::device_manager::DeviceManager;
use crate::devices::bus::lock;
use crate::devices::console::{ConsoleSink, ConsoleTail};
use crate::devices::serial::{SerialConstructorArgs, SerialDevice, SerialStateError};
use crate::devices::virtio::block::{new_block, BlockError};
use crate::devices::virtio::vsock::{self as virtio_vsock, VsockError};
use crate::event_loop::EventLoop;
use crate::event_loop::Subscribers;
use crate::kvm::{open_kvm, KvmError};
use crate::seccomp::{SeccompScope, ThreadKind};
use crate::snapshot::persist::Persist;
use crate::snapshot::state::SnapshotState;
use crate::snapshot::store::{self, StoreError};
use crate::timings::SpanClock;
use crate::vmm::{Origin, Vmm};
use crate::vstate::memory::{self, GuestRam, MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use crate::vstate::memory::{create_guest_ram, MemoryError};
use crate::vstate::persist::{self, PersistError};
use crate::vstate::prepared::PreparedVm;
use crate::vstate::vcpu::{
    create_boot_vcpu, spawn_vcpu, ExitSignal, VcpuCommand, VcpuError, VmExitReason,
};
use crate::vstate::vm::{create_vm, register_memory, VmError};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use linux_loader::cmdline::Cmdline;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
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
    /// COM1 or the i8042 could not be set up.
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    /// The vsock device could not be created.
    #[error("setting up the vsock device failed: {0}")]
    Vsock(#[from] VsockError),
    /// A virtio device could not be attached.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// A disk could not be opened or is unusable.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A block device could not be created.
    #[error("setting up a block device failed: {0}")]
    Block(#[from] BlockError),
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

/// Boots a VM from `config` and returns it running, its threads confined as `seccomp` says.
pub fn boot(config: &VmConfig, seccomp: &SeccompScope) -> Result<Vmm, BootError> {
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
    let mut devices = DeviceManager::new(LegacyDevices::attach(&vm, serial, &exit)?);
    // virtio devices, in the order the guest will see them (vsock takes the first slot).
    let vsock = virtio_vsock::new_vsock(ram.memory.clone(), GUEST_CID, &config.vsock_uds)?;
    // guest-init's link to this VMM survives snapshots: a restore hands it the clock and entropy
    // on that link instead of waiting for guest-init to connect again.
    lock(&vsock.device).set_kept_port(guest_link_kept().then_some(READY_PORT));
    devices
        .virtio
        .attach_virtio(&vm, Box::new(vsock), &mut cmdline)?;
    // The root image first (the guest's /dev/vda), then the scratch disk.
    let digests = DigestCache::default_location();
    let root = config
        .image
        .as_deref()
        .map(|path| disk::open_root_image(path, &digests));
    let scratch = config.disk.as_deref().map(disk::open_scratch_disk);
    for opened in root.into_iter().chain(scratch) {
        let opened = opened?;
        let block = new_block(ram.memory.clone(), opened.file, opened.config)?;
        let managed = ManagedBlock {
            block,
            mem: ram.memory.clone(),
        };
        devices
            .virtio
            .attach_virtio(&vm, Box::new(managed), &mut cmdline)?;
    }
    let subscribers = subscribe(&devices).map_err(|e| BootError::Device {
        what: "event manager",
        reason: format!("{e:?}"),
    })?;

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
        devices,
        subscribers,
        vsock_uds: config.vsock_uds.clone(),
        started,
        cmdline,
        origin: None,
        msr_indices,
        seccomp: seccomp.clone(),
    })
    .map_err(|e| BootError::Device {
        what: "vCPU threads",
        reason: e.to_string(),
    })?;
    tracing::debug!(protocol = ?kernel_image.protocol, elapsed = ?started.elapsed(), "VM started");
    Ok(vmm)
}

/// The event loop's subscribers: every device's handler.
fn subscribe(devices: &DeviceManager) -> Result<Subscribers, event_manager::Error> {
    let mut subscribers = Subscribers::new()?;
    devices.subscribe_all(&mut subscribers);
    Ok(subscribers)
}

/// Everything a VM needs before its threads start.
struct Parts {
    kvm: Kvm,
    vm: VmFd,
    ram: GuestRam,
    fds: Vec<VcpuFd>,
    exit: Arc<ExitSignal>,
    console: ConsoleTail,
    devices: DeviceManager,
    subscribers: Subscribers,
    vsock_uds: PathBuf,
    started: Instant,
    cmdline: String,
    origin: Option<Origin>,
    msr_indices: Vec<u32>,
    seccomp: SeccompScope,
}

/// Starts the vCPU threads and the event loop. Each confines itself first (when `seccomp` says
/// so); with [`SeccompScope::Process`] the calling thread does too, and only then do the vCPUs
/// run their first guest instruction.
fn start(p: Parts) -> Result<Vmm, String> {
    let filters = p.seccomp.filters().cloned();
    let mut vcpus = Vec::with_capacity(p.fds.len());
    for (index, fd) in p.fds.into_iter().enumerate() {
        let index = u8::try_from(index).map_err(|_| format!("vCPU index {index} out of range"))?;
        vcpus.push(
            spawn_vcpu(
                fd,
                index,
                p.devices.pio_bus().clone(),
                p.devices.mmio_bus().clone(),
                p.exit.clone(),
                filters.clone(),
            )
            .map_err(|e| e.to_string())?,
        );
    }
    let exit_for_loop = p.exit.clone();
    let event_loop = EventLoop::spawn(
        p.subscribers,
        move |e| exit_for_loop.exit(VmExitReason::Fatal(e)),
        filters,
    )
    .map_err(|e| e.to_string())?;
    let vmm = Vmm {
        kvm: p.kvm,
        vm: p.vm,
        ram: p.ram,
        vcpus,
        exit: p.exit,
        console: p.console,
        vsock_uds: p.vsock_uds,
        started: p.started,
        event_loop,
        devices: p.devices,
        cmdline: p.cmdline,
        origin: p.origin,
        msr_indices: p.msr_indices,
        launch_spans: Vec::new(),
        working_set: crate::vmm::WorkingSetUse::NotUsed,
        companions: Vec::new(),
    };
    if let SeccompScope::Process(filters) = &p.seccomp {
        // On failure the parked vCPUs end with `vmm` unrun.
        filters
            .install(ThreadKind::Vmm)
            .map_err(|e| crate::seccomp::describe(&e))?;
    }
    // Every thread is confined: the guest may run.
    for vcpu in &vmm.vcpus {
        vcpu.send(VcpuCommand::Resume);
    }
    Ok(vmm)
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
    /// The virtio device list is unusable, or a device in it could not be restored.
    #[error(transparent)]
    Devices(#[from] DevicesRestoreError),
    /// COM1 refused its saved registers.
    #[error("restoring the serial device failed: {0}")]
    Serial(#[from] SerialStateError),
    /// COM1 or the i8042 could not be set up.
    #[error(transparent)]
    Legacy(#[from] LegacyError),
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
    /// A disk the snapshot names is missing, changed or unusable.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Reads and checks a snapshot: format, memory file, shape (if `expected` = (vCPUs, bytes)),
/// and that this host's CPU offers every feature the snapshot's guest may be using.
pub fn load_snapshot(
    dir: &Path,
    kvm: &Kvm,
    expected: Option<(u8, u64)>,
) -> Result<Origin, RestoreError> {
    check_snapshot(read_snapshot(dir)?, kvm, expected)
}

/// A snapshot's state file, decoded (once: the sandbox daemon sizes its cgroup and jail from it
/// before the restore uses it), and where its memory file is.
#[derive(Debug)]
pub struct ReadSnapshot {
    /// The snapshot's directory.
    pub dir: PathBuf,
    /// Its decoded state.
    pub state: SnapshotState,
    /// Its memory file.
    pub memory_path: PathBuf,
}

/// Reads and decodes the snapshot in `dir` (format, checksum, memory file present and sized).
pub fn read_snapshot(dir: &Path) -> Result<ReadSnapshot, RestoreError> {
    let (state, memory_path) = store::read(dir, SnapshotState::memory)?;
    Ok(ReadSnapshot {
        dir: dir.to_path_buf(),
        state,
        memory_path,
    })
}

/// Checks a read snapshot (see [`load_snapshot`]) and opens its memory file.
fn check_snapshot(
    read: ReadSnapshot,
    kvm: &Kvm,
    expected: Option<(u8, u64)>,
) -> Result<Origin, RestoreError> {
    let ReadSnapshot {
        dir,
        state,
        memory_path,
    } = read;
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
    check_device_list(&state.devices)?;
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
        dir,
        state: Arc::new(state),
        memory,
    })
}

/// Opens the disks a snapshot's block devices served, in list order, checking each is the one
/// the snapshot names (the root image by content, at `image` when it moved).
fn reopen_disks(
    state: &SnapshotState,
    image: Option<&Path>,
) -> Result<
    std::collections::VecDeque<(File, crate::devices::virtio::block::DiskIdentity)>,
    DiskError,
> {
    let digests = DigestCache::default_location();
    state
        .devices
        .iter()
        .filter_map(|entry| match &entry.device {
            VirtioDeviceState::Block(block) => Some(block),
            _ => None,
        })
        .map(|block| {
            let moved_to = image.filter(|_| block.identity.digest.is_some());
            disk::reopen(&block.identity, moved_to, &digests)
        })
        .collect()
}

/// Restores the snapshot in `dir` into a new running VM serving vsock on `vsock_uds`. Guest
/// memory maps the snapshot's memory file privately: nothing is read up front. `image` is where
/// the snapshot's root image is now, when it moved (it must have the same content).
pub fn restore(
    dir: &Path,
    vsock_uds: &Path,
    console_log: Option<&Path>,
    image: Option<&Path>,
    seccomp: &SeccompScope,
) -> Result<Vmm, RestoreError> {
    restore_read(
        read_snapshot(dir)?,
        vsock_uds,
        console_log,
        image,
        seccomp,
        None,
    )
}

/// [`restore`] of a snapshot already read with [`read_snapshot`], into `prepared` when a VM was
/// made ahead of time (a warm VMM's: its KVM, VM and first vCPUs are used, not made now).
pub fn restore_read(
    snapshot: ReadSnapshot,
    vsock_uds: &Path,
    console_log: Option<&Path>,
    image: Option<&Path>,
    seccomp: &SeccompScope,
    prepared: Option<PreparedVm>,
) -> Result<Vmm, RestoreError> {
    let started = Instant::now();
    let mut clock = SpanClock::starting_at(started);
    let (kvm, prepared_vm, prepared_vcpus) = match prepared {
        Some(prepared) => {
            let (kvm, vm, vcpus) = prepared.into_parts();
            (kvm, Some(vm), vcpus)
        }
        None => (open_kvm()?, None, Vec::new()),
    };
    if prepared_vcpus.len() > snapshot.state.vcpus.len() {
        return Err(RestoreError::Invalid(format!(
            "{} vCPUs were made ahead for a snapshot of {}",
            prepared_vcpus.len(),
            snapshot.state.vcpus.len()
        )));
    }
    let origin = check_snapshot(snapshot, &kvm, None)?;
    let disks = reopen_disks(&origin.state, image)?;
    clock.lap("snapshot checked");
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
    clock.lap("memory mapped");
    let (working_set, recorded) = prefetch_working_set(&origin);
    clock.lap("working set prefetched");
    let vm = match prepared_vm {
        Some(vm) => {
            register_memory(&vm, &ram.memory)?;
            vm
        }
        None => create_vm(&kvm, &ram.memory)?,
    };
    persist::restore_vm(&vm, &state.vm)?;
    clock.lap("VM created");
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
    let serial_args = SerialConstructorArgs {
        irq: serial_irq,
        sink: ConsoleSink::new(console.clone(), console_log),
    };
    let serial = SerialDevice::restore(serial_args, &state.serial)?;
    let mut devices = DeviceManager::new(LegacyDevices::attach(&vm, serial, &exit)?);
    // The devices come back in their saved slots; none may interrupt the guest yet.
    let resources = RestoreResources {
        mem: ram.memory.clone(),
        vsock_uds: Some(vsock_uds.to_path_buf()),
        disks,
    };
    devices
        .virtio
        .restore_devices(&vm, &state.devices, resources)?;
    let subscribers = subscribe(&devices).map_err(|e| RestoreError::Device {
        what: "event manager",
        reason: format!("{e:?}"),
    })?;
    clock.lap("devices");

    let mut fds = Vec::with_capacity(state.vcpus.len());
    let mut made_ahead = prepared_vcpus.into_iter();
    for (index, vcpu_state) in state.vcpus.iter().enumerate() {
        // The count was checked against the u8 `vcpu_count` above.
        let index = u8::try_from(index)
            .map_err(|_| RestoreError::Invalid(format!("vCPU index {index} out of range")))?;
        let fd = match made_ahead.next() {
            Some(fd) => fd,
            None => vm
                .create_vcpu(u64::from(index))
                .map_err(|source| RestoreError::Vcpu { index, source })?,
        };
        persist::restore_vcpu(&fd, vcpu_state, true)?;
        fds.push(fd);
    }
    // Only now, with the vCPUs' LAPICs in place, may the devices interrupt the guest (vsock's
    // per-connection resets): an interrupt raised earlier would be overwritten by the restored LAPIC
    // state, or sent before the vCPU exists.
    devices.virtio.after_restore();
    clock.lap("vCPU state");
    let working_set = match (recorded, fds.first()) {
        (Some(set), Some(vcpu)) if crate::vstate::prefault::available(&vm) => {
            let pre_faulted = pre_fault_working_set(&set, &ram.memory, vcpu);
            clock.lap("working set pre-faulted");
            working_set.with_pre_faulted(pre_faulted)
        }
        _ => working_set,
    };
    tracing::debug!(elapsed = ?started.elapsed(), "restore: devices and vCPUs restored");
    let msr_indices = state.vcpus[0].msrs.iter().map(|m| m.index).collect();
    let cmdline = state.cmdline.clone();
    let mut vmm = start(Parts {
        kvm,
        vm,
        ram,
        fds,
        exit,
        console,
        devices,
        subscribers,
        vsock_uds: vsock_uds.to_path_buf(),
        started,
        cmdline,
        origin: Some(origin),
        msr_indices,
        seccomp: seccomp.clone(),
    })
    .map_err(|reason| RestoreError::Device {
        what: "vCPU threads",
        reason,
    })?;
    clock.lap("vCPUs running");
    vmm.launch_spans = clock.into_spans();
    vmm.working_set = working_set;
    Ok(vmm)
}

/// Whether snapshots of a VM booted now keep guest-init's link (`PADDOCK_KEEP_GUEST_LINK=off`
/// makes them, and every snapshot descended from them, reset it instead, so that guest-init
/// connects again after each restore or reset: to measure without, or to debug).
fn guest_link_kept() -> bool {
    std::env::var_os("PADDOCK_KEEP_GUEST_LINK").is_none_or(|v| v != "off")
}

/// Whether restores use working-set records (`PADDOCK_WORKING_SET=off` turns them off, to
/// measure without).
fn working_sets_enabled() -> bool {
    std::env::var_os("PADDOCK_WORKING_SET").is_none_or(|v| v != "off")
}

/// Starts reading the pages the snapshot's working-set record names into the page cache, before
/// any vCPU runs (the reads overlap the rest of the restore). A missing or stale record asks
/// for one to be recorded; a corrupt one is ignored with a warning (and recorded again); a
/// failure to prefetch costs only speed. Prefetching rather than populating the page tables:
/// docs/BENCHMARKS.md has the measurements that chose it.
/// Returns the record too when it was prefetched, for [`pre_fault_working_set`].
pub(crate) fn prefetch_working_set(
    origin: &Origin,
) -> (
    crate::vmm::WorkingSetUse,
    Option<crate::snapshot::working_set::WorkingSet>,
) {
    use crate::snapshot::working_set::WorkingSet;
    use crate::vmm::WorkingSetUse;
    if !working_sets_enabled() {
        return (WorkingSetUse::NotUsed, None);
    }
    let (name, bytes) = origin.state.memory();
    match WorkingSet::load(&origin.dir, name, bytes) {
        Ok(Some(set)) => match set.prefetch(&origin.memory) {
            Ok(pages) => (
                WorkingSetUse::Prefetched {
                    pages,
                    pre_faulted: None,
                },
                Some(set),
            ),
            Err(e) => {
                tracing::warn!(
                    "working set not prefetched: {}",
                    crate::seccomp::describe(&e)
                );
                (WorkingSetUse::NotUsed, None)
            }
        },
        Ok(None) => (WorkingSetUse::Missing, None),
        Err(e) => {
            tracing::warn!(
                "ignoring the working-set record of {}: {}",
                origin.dir.display(),
                crate::seccomp::describe(&e)
            );
            (WorkingSetUse::Missing, None)
        }
    }
}

/// Maps the working set into KVM's stage-2 tables through `vcpu` (restored), where the host's
/// KVM can ([`crate::vstate::prefault`]); returns the pages mapped. A failure costs only speed:
/// the guest faults the rest in itself.
fn pre_fault_working_set(
    set: &crate::snapshot::working_set::WorkingSet,
    memory: &crate::vstate::memory::GuestMemory,
    vcpu: &kvm_ioctls::VcpuFd,
) -> u64 {
    match crate::vstate::prefault::pre_fault(vcpu, set.guest_ranges(memory)) {
        Ok(bytes) => bytes / crate::vstate::pagemap::PAGE,
        Err(e) => {
            tracing::warn!(
                "working set not pre-faulted: {}",
                crate::seccomp::describe(&e)
            );
            0
        }
    }
}
