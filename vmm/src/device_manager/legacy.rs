//! The legacy port-I/O devices every VM has at fixed places: COM1 (with its irqfd) and the
//! i8042, whose reset line ends the VM.

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use crate::arch::x86_64::layout::{COM1_IRQ, COM1_PORT, I8042_PORT};
use crate::devices::bus::{lock, Bus, BusError};
use crate::devices::i8042::I8042;
use crate::devices::serial::{SerialDevice, SerialState, SerialStateError};
use crate::snapshot::persist::Persist;
use crate::vstate::vcpu::ExitSignal;
use crate::vstate::vm::{register_irqfd, VmError};

/// Ports COM1 decodes.
const COM1_PORTS: u64 = 8;
/// Ports the i8042 decodes (0x60..=0x64).
const I8042_PORTS: u64 = 5;

/// Why the legacy devices could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// KVM refused COM1's irqfd.
    #[error("wiring COM1's interrupt into KVM failed: {0}")]
    Kvm(#[source] VmError),
    /// A device's ports overlap another's.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// COM1 and the i8042 on the port-I/O bus.
pub struct LegacyDevices {
    bus: Bus,
    serial: Arc<Mutex<SerialDevice>>,
}

impl std::fmt::Debug for LegacyDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyDevices").finish_non_exhaustive()
    }
}

impl LegacyDevices {
    /// Puts `serial` (new or restored) on COM1 and an i8042 whose reset request ends the VM
    /// through `exit`.
    pub fn attach(
        vm: &VmFd,
        serial: SerialDevice,
        exit: &Arc<ExitSignal>,
    ) -> Result<Self, LegacyError> {
        let mut bus = Bus::new();
        register_irqfd(vm, &serial.serial.interrupt_evt().0, COM1_IRQ).map_err(LegacyError::Kvm)?;
        let serial = Arc::new(Mutex::new(serial));
        bus.insert(u64::from(COM1_PORT), COM1_PORTS, serial.clone())?;

        let i8042 = I8042::new(exit.clone());
        bus.insert(
            u64::from(I8042_PORT),
            I8042_PORTS,
            Arc::new(Mutex::new(i8042)),
        )?;
        Ok(Self { bus, serial })
    }

    /// The port-I/O bus the vCPU threads dispatch to.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// COM1's registers (VM paused).
    pub fn save(&self) -> SerialState {
        lock(&self.serial).save()
    }

    /// Puts COM1's registers back in place (VM paused).
    pub fn reset_to(&self, state: &SerialState) -> Result<(), SerialStateError> {
        lock(&self.serial).reset_to(state)
    }
}
