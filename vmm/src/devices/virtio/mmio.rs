//! The virtio-mmio transport, version 2 ("modern", virtio 1.x spec §4.2.2).
//!
//! vCPU threads reach it through the MMIO bus. It keeps the queue configuration the driver
//! writes, negotiates features, and hands validated copies of the queues to the device on
//! DRIVER_OK. Notifications normally arrive through KVM ioeventfds bound to the same eventfds as
//! [`MmioTransport::queue_events`]; a trapped QueueNotify write signals them too.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateError, GuestMemory, Interrupt, VirtioDevice, INTERRUPT_CONFIG_CHANGE,
    VIRTIO_F_VERSION_1,
};
use crate::devices::bus::{lock, BusDevice};

/// "virt" in little endian.
pub const MMIO_MAGIC_VALUE: u32 = 0x7472_6976;
/// The modern virtio-mmio interface.
pub const MMIO_VERSION: u32 = 2;
/// Vendor ID reported to the guest ("PDCK" would be cute; any value is accepted by Linux).
pub const MMIO_VENDOR_ID: u32 = 0x4b43_4450;
/// Size of one virtio-mmio device window (registers + config space).
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// Offset of QueueNotify, for registering the KVM ioeventfds.
pub const MMIO_QUEUE_NOTIFY_OFFSET: u64 = reg::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
/// Device-specific configuration space starts here.
const CONFIG_SPACE_OFFSET: u64 = reg::VIRTIO_MMIO_CONFIG as u64;
/// Reading a nonexistent shared-memory region's length/base yields all ones.
const NO_SHM_REGION: u32 = u32::MAX;

/// Register-level state of the transport, as saved in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Registers {
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub acked_features: u64,
    pub queue_sel: u32,
    pub status: u32,
    pub config_generation: u32,
}

/// A virtio device behind the virtio-mmio register interface.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemory,
    interrupt: Arc<Interrupt>,
    queue_evts: Vec<EventFd>,
    /// The queue configuration as the driver programmed it (the device runs on copies).
    queues: Vec<Queue>,
    device_type: u32,
    avail_features: u64,
    regs: Registers,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device_type)
            .field("avail_features", &self.avail_features)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    /// Wraps `device`. `queue_evts` (one per queue) and `interrupt` must be the ones the device
    /// was built with: the transport signals them, the device consumes them.
    pub fn new(
        mem: GuestMemory,
        device: Arc<Mutex<dyn VirtioDevice>>,
        queue_evts: Vec<EventFd>,
        interrupt: Arc<Interrupt>,
    ) -> Self {
        let (device_type, avail_features, queues) = {
            let dev = lock(&device);
            let queues = dev
                .queue_max_sizes()
                .iter()
                // A max size the queue crate rejects becomes a zero-sized, never-valid queue.
                .filter_map(|&max| Queue::new(max).ok())
                .collect();
            (dev.device_type(), dev.avail_features(), queues)
        };
        Self {
            device,
            mem,
            interrupt,
            queue_evts,
            queues,
            device_type,
            avail_features,
            regs: Registers::default(),
        }
    }

    /// The queue notification eventfds, indexed by queue: register each as a KVM ioeventfd at
    /// `base + MMIO_QUEUE_NOTIFY_OFFSET` with datamatch = the queue index.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The eventfd to register as the irqfd of this device's GSI.
    pub fn interrupt_event(&self) -> &EventFd {
        self.interrupt.event()
    }

    /// The Status register.
    pub fn status(&self) -> u32 {
        self.regs.status
    }

    pub(crate) fn registers(&self) -> &Registers {
        &self.regs
    }

    pub(crate) fn queues(&self) -> &[Queue] {
        &self.queues
    }

    pub(crate) fn device(&self) -> &Arc<Mutex<dyn VirtioDevice>> {
        &self.device
    }

    pub(crate) fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// The guest memory the transport validates queues against.
    pub(crate) fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// Rebuilds a transport from saved registers and queue configuration (snapshot restore).
    /// The device is not touched: the caller re-activates it if the saved status says so.
    pub(crate) fn from_parts(
        mem: GuestMemory,
        device: Arc<Mutex<dyn VirtioDevice>>,
        queue_evts: Vec<EventFd>,
        interrupt: Arc<Interrupt>,
        queues: Vec<Queue>,
        regs: Registers,
    ) -> Self {
        let mut transport = Self::new(mem, device, queue_evts, interrupt);
        transport.queues = queues;
        transport.regs = regs;
        transport
    }

    fn selected_queue(&self) -> Option<&Queue> {
        self.queues.get(self.regs.queue_sel as usize)
    }

    /// Queue registers are writable only between FEATURES_OK and DRIVER_OK.
    fn selected_queue_mut(&mut self) -> Option<&mut Queue> {
        let s = self.regs.status;
        if s & VIRTIO_CONFIG_S_FEATURES_OK == 0 || s & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            return None;
        }
        self.queues.get_mut(self.regs.queue_sel as usize)
    }

    fn read_register(&self, offset: u32) -> u32 {
        match offset {
            reg::VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC_VALUE,
            reg::VIRTIO_MMIO_VERSION => MMIO_VERSION,
            reg::VIRTIO_MMIO_DEVICE_ID => self.device_type,
            reg::VIRTIO_MMIO_VENDOR_ID => MMIO_VENDOR_ID,
            reg::VIRTIO_MMIO_DEVICE_FEATURES => match self.regs.device_features_sel {
                0 => (self.avail_features & 0xffff_ffff) as u32,
                1 => (self.avail_features >> 32) as u32,
                _ => 0,
            },
            reg::VIRTIO_MMIO_QUEUE_NUM_MAX => {
                self.selected_queue().map_or(0, |q| q.max_size().into())
            }
            reg::VIRTIO_MMIO_QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready().into()),
            reg::VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            reg::VIRTIO_MMIO_STATUS => self.regs.status,
            reg::VIRTIO_MMIO_SHM_LEN_LOW
            | reg::VIRTIO_MMIO_SHM_LEN_HIGH
            | reg::VIRTIO_MMIO_SHM_BASE_LOW
            | reg::VIRTIO_MMIO_SHM_BASE_HIGH => NO_SHM_REGION,
            reg::VIRTIO_MMIO_CONFIG_GENERATION => self.regs.config_generation,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u32, value: u32) {
        match offset {
            reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.regs.device_features_sel = value,
            reg::VIRTIO_MMIO_DRIVER_FEATURES => self.write_driver_features(value),
            reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.regs.driver_features_sel = value,
            reg::VIRTIO_MMIO_QUEUE_SEL => self.regs.queue_sel = value,
            reg::VIRTIO_MMIO_QUEUE_NUM => {
                if let (Some(q), Ok(size)) = (self.selected_queue_mut(), u16::try_from(value)) {
                    q.set_size(size);
                }
            }
            reg::VIRTIO_MMIO_QUEUE_READY => {
                if let Some(q) = self.selected_queue_mut() {
                    q.set_ready(value == 1);
                }
            }
            reg::VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(value),
            reg::VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(value),
            reg::VIRTIO_MMIO_STATUS => self.write_status(value),
            reg::VIRTIO_MMIO_QUEUE_DESC_LOW => {
                self.with_queue(|q| q.set_desc_table_address(Some(value), None))
            }
            reg::VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                self.with_queue(|q| q.set_desc_table_address(None, Some(value)))
            }
            reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW => {
                self.with_queue(|q| q.set_avail_ring_address(Some(value), None))
            }
            reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                self.with_queue(|q| q.set_avail_ring_address(None, Some(value)))
            }
            reg::VIRTIO_MMIO_QUEUE_USED_LOW => {
                self.with_queue(|q| q.set_used_ring_address(Some(value), None))
            }
            reg::VIRTIO_MMIO_QUEUE_USED_HIGH => {
                self.with_queue(|q| q.set_used_ring_address(None, Some(value)))
            }
            _ => tracing::debug!("virtio-mmio: ignored write of {value:#x} at {offset:#x}"),
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue_mut() {
            f(q);
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        let s = self.regs.status;
        if s & VIRTIO_CONFIG_S_DRIVER == 0 || s & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            tracing::debug!("virtio-mmio: DriverFeatures written in status {s:#x}, ignored");
            return;
        }
        let acked = &mut self.regs.acked_features;
        match self.regs.driver_features_sel {
            0 => *acked = (*acked & !0xffff_ffff) | u64::from(value),
            1 => *acked = (*acked & 0xffff_ffff) | (u64::from(value) << 32),
            _ => {}
        }
    }

    fn notify(&self, queue_index: u32) {
        if let Some(evt) = self.queue_evts.get(queue_index as usize) {
            if let Err(e) = evt.write(1) {
                tracing::warn!("virtio-mmio: queue {queue_index} notify failed: {e}");
            }
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.regs.status;
        // The driver only ever adds bits; clearing any (other than by reset) is a driver bug.
        if old & !value != 0 {
            tracing::warn!("virtio-mmio: status {old:#x} -> {value:#x} clears bits, ignored");
            return;
        }
        let added = value & !old;
        let mut status = value;
        if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 && !self.features_acceptable() {
            // The driver reads Status back and gives up when FEATURES_OK did not stick.
            status &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
        if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            let activated = if status & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                Err(ActivateError::FeaturesNotAccepted)
            } else {
                self.activate()
            };
            if let Err(e) = activated {
                tracing::error!(
                    "virtio-mmio: device {} not activated: {e}",
                    self.device_type
                );
                status = (status & !VIRTIO_CONFIG_S_DRIVER_OK) | VIRTIO_CONFIG_S_NEEDS_RESET;
                self.regs.status = status;
                self.interrupt.trigger(INTERRUPT_CONFIG_CHANGE);
                return;
            }
        }
        self.regs.status = status;
    }

    /// Modern-only device: the driver must accept VERSION_1 and nothing we did not offer.
    fn features_acceptable(&self) -> bool {
        let acked = self.regs.acked_features;
        acked & !self.avail_features == 0 && acked & VIRTIO_F_VERSION_1 != 0
    }

    fn activate(&mut self) -> Result<(), ActivateError> {
        let mut device_queues = Vec::with_capacity(self.queues.len());
        for (index, q) in self.queues.iter().enumerate() {
            if !q.ready() || !q.is_valid(&self.mem) {
                return Err(ActivateError::QueueNotReady(index));
            }
            let copy =
                Queue::try_from(q.state()).map_err(|_| ActivateError::QueueNotReady(index))?;
            device_queues.push(copy);
        }
        lock(&self.device).activate(device_queues, self.regs.acked_features)
    }

    fn reset(&mut self) {
        lock(&self.device).reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.set_status(0);
        let generation = self.regs.config_generation;
        self.regs = Registers {
            config_generation: generation,
            ..Registers::default()
        };
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE_OFFSET {
            lock(&self.device).read_config(offset - CONFIG_SPACE_OFFSET, data);
            return;
        }
        // Registers are 32 bits wide and naturally aligned; anything else reads as zeros.
        let value = match (u32::try_from(offset), data.len()) {
            (Ok(off), 4) if off % 4 == 0 => self.read_register(off),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(bytes.len());
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE_OFFSET {
            lock(&self.device).write_config(offset - CONFIG_SPACE_OFFSET, data);
            return;
        }
        match (u32::try_from(offset), <[u8; 4]>::try_from(data)) {
            (Ok(off), Ok(bytes)) if off % 4 == 0 => {
                self.write_register(off, u32::from_le_bytes(bytes))
            }
            _ => tracing::debug!(
                "virtio-mmio: ignored {}-byte write at {offset:#x}",
                data.len()
            ),
        }
    }
}
