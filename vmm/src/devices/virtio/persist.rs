//! Snapshot state of the virtio-mmio transport and its queues (Firecracker's Persist pattern:
//! `save() -> State`, and a constructor from `State` that validates everything it is given).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;
use virtio_queue::{Queue, QueueState, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::{MmioTransport, Registers};
use super::{ActivateError, GuestMemory, Interrupt, VirtioDevice};
use crate::devices::bus::lock;

/// One virtqueue: the driver's configuration and the device's ring positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
}

impl From<QueueState> for QueueSnapshot {
    fn from(s: QueueState) -> Self {
        Self {
            max_size: s.max_size,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx_enabled: s.event_idx_enabled,
        }
    }
}

impl From<QueueSnapshot> for QueueState {
    fn from(s: QueueSnapshot) -> Self {
        Self {
            max_size: s.max_size,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx_enabled: s.event_idx_enabled,
        }
    }
}

/// The virtio-mmio transport's registers and queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioState {
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub acked_features: u64,
    pub queue_sel: u32,
    pub status: u32,
    pub config_generation: u32,
    pub interrupt_status: u32,
    pub queues: Vec<QueueSnapshot>,
}

/// Why saved transport state was rejected.
#[derive(Debug, thiserror::Error)]
pub enum MmioRestoreError {
    /// The state describes a different number of queues than the device has.
    #[error("state has {got} queues, device has {expected}")]
    QueueCount { expected: usize, got: usize },
    /// A queue's saved configuration is inconsistent.
    #[error("queue {index}: invalid state: {reason}")]
    InvalidQueue { index: usize, reason: String },
    /// The driver had features the device does not offer.
    #[error("acked features {acked:#x} exceed offered {offered:#x}")]
    Features { acked: u64, offered: u64 },
    /// Re-activating the device failed.
    #[error("cannot re-activate the device: {0}")]
    Activate(#[from] ActivateError),
}

impl MmioTransport {
    /// Captures the transport; queue positions come from the device once it is active.
    pub fn save(&self) -> MmioState {
        let regs = self.registers();
        let live = lock(self.device()).queue_states();
        let queues = match live {
            Some(states) => states.into_iter().map(QueueSnapshot::from).collect(),
            None => self
                .queues()
                .iter()
                .map(|q| QueueSnapshot::from(q.state()))
                .collect(),
        };
        MmioState {
            device_features_sel: regs.device_features_sel,
            driver_features_sel: regs.driver_features_sel,
            acked_features: regs.acked_features,
            queue_sel: regs.queue_sel,
            status: regs.status,
            config_generation: regs.config_generation,
            interrupt_status: self.interrupt().status(),
            queues,
        }
    }

    /// Rebuilds a transport around a freshly built `device` and re-activates the device if the
    /// driver had (DRIVER_OK). Guest memory must already hold the snapshot's contents.
    pub fn restore(
        mem: GuestMemory,
        device: Arc<Mutex<dyn VirtioDevice>>,
        queue_evts: Vec<EventFd>,
        interrupt: Arc<Interrupt>,
        state: &MmioState,
    ) -> Result<Self, MmioRestoreError> {
        let (max_sizes, offered) = {
            let dev = lock(&device);
            (dev.queue_max_sizes().to_vec(), dev.avail_features())
        };
        if state.queues.len() != max_sizes.len() {
            return Err(MmioRestoreError::QueueCount {
                expected: max_sizes.len(),
                got: state.queues.len(),
            });
        }
        if state.acked_features & !offered != 0 {
            return Err(MmioRestoreError::Features {
                acked: state.acked_features,
                offered,
            });
        }
        let mut queues = Vec::with_capacity(max_sizes.len());
        for (index, (snap, max)) in state.queues.iter().zip(max_sizes).enumerate() {
            let invalid = |reason: String| MmioRestoreError::InvalidQueue { index, reason };
            if snap.max_size != max {
                return Err(invalid(format!("max size {} != {max}", snap.max_size)));
            }
            let queue =
                Queue::try_from(QueueState::from(*snap)).map_err(|e| invalid(e.to_string()))?;
            queues.push(queue);
        }
        let active = state.status & VIRTIO_CONFIG_S_DRIVER_OK != 0;
        if active {
            let mut device_queues = Vec::with_capacity(queues.len());
            for (index, q) in queues.iter().enumerate() {
                if !q.is_valid(&mem) {
                    return Err(ActivateError::QueueNotReady(index).into());
                }
                device_queues.push(
                    Queue::try_from(q.state()).map_err(|_| ActivateError::QueueNotReady(index))?,
                );
            }
            lock(&device).activate(device_queues, state.acked_features)?;
        }
        interrupt.set_status(state.interrupt_status);
        let regs = Registers {
            device_features_sel: state.device_features_sel,
            driver_features_sel: state.driver_features_sel,
            acked_features: state.acked_features,
            queue_sel: state.queue_sel,
            status: state.status,
            config_generation: state.config_generation,
        };
        Ok(MmioTransport::from_parts(
            mem, device, queue_evts, interrupt, queues, regs,
        ))
    }
}
