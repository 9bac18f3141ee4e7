//! What a snapshot's state file holds.

use crate::device_manager::persist::DeviceState;
use crate::devices::serial::SerialState;
use crate::vstate::persist::{VcpuState, VmState};
use serde::{Deserialize, Serialize};

/// Everything but guest memory, plus the name and size of the memory file.
#[derive(Serialize, Deserialize)]
pub struct SnapshotState {
    /// Number of vCPUs (a restore gets exactly this many).
    pub vcpu_count: u8,
    /// Guest RAM size in bytes (the memory file's exact length).
    pub memory_bytes: u64,
    /// The memory file, inside the snapshot directory.
    pub memory_file: String,
    /// When the snapshot was taken (seconds since the Unix epoch).
    pub created_unix_secs: u64,
    /// The kernel command line the guest booted with (informational).
    pub cmdline: String,
    /// Interrupt controllers, PIT, kvmclock.
    pub vm: VmState,
    /// One entry per vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    /// COM1.
    pub serial: SerialState,
    /// The virtio devices with their transports and slots, in attach order.
    pub devices: Vec<DeviceState>,
    /// What the processes beside the VMM kept of this moment (see [`crate::companion`]).
    pub companions: Vec<CompanionState>,
}

/// One companion process's state, as it gave it (opaque here; the companion checks it).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct CompanionState {
    /// Which companion ([`crate::companion::Companion::name`]).
    pub name: String,
    /// Its bytes.
    pub state: Vec<u8>,
}

impl std::fmt::Debug for CompanionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanionState")
            .field("name", &self.name)
            .field("bytes", &self.state.len())
            .finish()
    }
}

impl std::fmt::Debug for SnapshotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotState")
            .field("vcpu_count", &self.vcpu_count)
            .field("memory_bytes", &self.memory_bytes)
            .field("memory_file", &self.memory_file)
            .finish_non_exhaustive()
    }
}

impl SnapshotState {
    /// The memory file name and expected size, for `store::read`.
    pub fn memory(&self) -> (&str, u64) {
        (&self.memory_file, self.memory_bytes)
    }

    /// What companion `name` kept in this snapshot, if anything.
    pub fn companion(&self, name: &str) -> Option<&[u8]> {
        self.companions
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.state.as_slice())
    }
}
