//! The boot recipe: from a `VmConfig` to a running VM, step by step.

use crate::arch::x86_64::boot::{self, LoadError};
use crate::arch::x86_64::layout::{COM1_IRQ, COM1_PORT, I8042_PORT, MMIO_GAP_START, VIRTIO_IRQ_BASE, VIRTIO_MMIO_SIZE};
use crate::arch::x86_64::mptable::{self, MptableError};
use crate::config::{ConfigError, VmConfig, GUEST_CID};
use crate::devices::bus::Bus;
use crate::devices::console::{ConsoleSink, ConsoleTail};
use crate::devices::i8042::I8042;
use crate::devices::serial::SerialDevice;
use crate::devices::virtio::vsock as virtio_vsock;
use crate::kvm::{open_kvm, KvmError};
use crate::event_loop::Subscribers;
use crate::vmm::Vmm;
use crate::vstate::memory::{create_guest_ram, MemoryError};
use crate::vstate::vcpu::{create_boot_vcpu, spawn_vcpu, ExitSignal, VcpuError, VmExitReason};
use crate::vstate::vm::{create_vm, register_irqfd, register_mmio_ioevent, VmError};
use event_manager::{EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use linux_loader::cmdline::Cmdline;
use std::fs::{File, OpenOptions};
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
    Open { path: String, source: std::io::Error },
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

fn open(path: &std::path::Path) -> Result<File, BootError> {
    File::open(path).map_err(|source| BootError::Open { path: path.display().to_string(), source })
}

fn device_err(what: &'static str) -> impl Fn(std::io::Error) -> BootError {
    move |e| BootError::Device { what, reason: e.to_string() }
}

/// Boots a VM from `config` and returns it running.
pub fn boot(config: &VmConfig) -> Result<Vmm, BootError> {
    let started = Instant::now();
    config.validate()?;
    let mut kernel = open(&config.kernel)?;
    let mut initrd = open(&config.initrd)?;
    let console_log = match &config.console_log {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| BootError::Open { path: path.display().to_string(), source })?,
        ),
        None => None,
    };

    // KVM and memory.
    let kvm = open_kvm()?;
    let ram = create_guest_ram(config.memory_mib)?;
    let vm = create_vm(&kvm, &ram.memory)?;

    // Guest payload and what the guest learns about its machine.
    let kernel_image = boot::load_kernel(&ram.memory, &mut kernel)?;
    let initrd_placed = boot::load_initrd(&ram.memory, &mut initrd, kernel_image.end)?;
    let mut cmdline = Cmdline::new(crate::arch::x86_64::layout::CMDLINE_MAX_SIZE)
        .map_err(|e| LoadError::Cmdline(e.to_string()))?;
    cmdline.insert_str(config.cmdline()).map_err(|e| LoadError::Cmdline(e.to_string()))?;

    // Devices.
    let exit = ExitSignal::new().map_err(device_err("exit event"))?;
    let console = ConsoleTail::default();
    let mut subscribers = Subscribers::new().map_err(|e| BootError::Device { what: "event manager", reason: format!("{e:?}") })?;
    let mut pio = Bus::new();
    let mut mmio = Bus::new();

    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(device_err("serial"))?;
    register_irqfd(&vm, &serial_irq, COM1_IRQ)?;
    let serial = SerialDevice::new(serial_irq, ConsoleSink::new(console.clone(), console_log));
    pio.insert(u64::from(COM1_PORT), 8, Arc::new(Mutex::new(serial)))
        .map_err(|e| BootError::Device { what: "serial", reason: e.to_string() })?;

    let reset_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(device_err("i8042"))?;
    let i8042 = I8042::new(reset_evt.try_clone().map_err(device_err("i8042"))?);
    pio.insert(u64::from(I8042_PORT), 5, Arc::new(Mutex::new(i8042)))
        .map_err(|e| BootError::Device { what: "i8042", reason: e.to_string() })?;
    subscribers.add_subscriber(Arc::new(Mutex::new(ResetWatcher { evt: reset_evt, exit: exit.clone() })));

    // virtio-vsock, the first virtio-mmio device.
    let vsock_base = MMIO_GAP_START;
    let vsock_irq = VIRTIO_IRQ_BASE;
    let vsock = virtio_vsock::new_vsock(ram.memory.clone(), GUEST_CID, &config.vsock_uds)
        .map_err(|e| BootError::Device { what: "vsock", reason: e.to_string() })?;
    {
        let transport = crate::devices::bus::lock(&vsock.transport);
        for (index, evt) in transport.queue_events().iter().enumerate() {
            register_mmio_ioevent(&vm, evt, vsock_base + crate::devices::virtio::mmio::QUEUE_NOTIFY_OFFSET, index as u32)?;
        }
        register_irqfd(&vm, transport.interrupt_event(), vsock_irq)?;
    }
    mmio.insert(vsock_base, VIRTIO_MMIO_SIZE, vsock.transport.clone())
        .map_err(|e| BootError::Device { what: "vsock", reason: e.to_string() })?;
    subscribers.add_subscriber(vsock.subscriber.clone());
    cmdline
        .add_virtio_mmio_device(VIRTIO_MMIO_SIZE, vm_memory::GuestAddress(vsock_base), vsock_irq, None)
        .map_err(|e| LoadError::Cmdline(e.to_string()))?;

    boot::load_cmdline(&ram.memory, &cmdline)?;
    let cmdline_len = cmdline.as_cstring().map(|c| c.as_bytes().len()).unwrap_or(0);
    boot::write_boot_params(&ram.memory, kernel_image.protocol, cmdline_len, Some(initrd_placed), ram.size)?;
    mptable::setup_mptable(&ram.memory, config.vcpus)?;

    // vCPUs: configure all, then start all.
    let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(BootError::Cpuid)?;
    let mut fds = Vec::with_capacity(config.vcpus as usize);
    for index in 0..config.vcpus {
        fds.push(create_boot_vcpu(&vm, &supported, &ram.memory, index, config.vcpus, kernel_image.entry, kernel_image.protocol)?);
    }
    let mut vcpus = Vec::with_capacity(fds.len());
    for (index, fd) in fds.into_iter().enumerate() {
        vcpus.push(spawn_vcpu(fd, index as u8, pio.clone(), mmio.clone(), exit.clone())?);
    }
    tracing::debug!(protocol = ?kernel_image.protocol, elapsed = ?started.elapsed(), "VM started");
    Vmm::new(vm, ram, vcpus, exit, console, config.vsock_uds.clone(), started, subscribers).map_err(device_err("event loop"))
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
