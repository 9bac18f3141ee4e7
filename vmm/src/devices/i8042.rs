//! Just enough of the i8042 keyboard controller for the guest to reboot: the CPU-reset command
//! (0xFE on port 0x64) ends the VM. With `reboot=k` this is how a guest `reboot` exits.

use super::bus::BusDevice;
use crate::vstate::vcpu::{ExitSignal, VmExitReason};
use std::sync::Arc;

const COMMAND_OFFSET: u64 = 4;
const CMD_RESET_CPU: u8 = 0xfe;

/// The i8042 at ports 0x60..=0x64.
#[derive(Debug)]
pub struct I8042 {
    exit: Arc<ExitSignal>,
}

impl I8042 {
    /// An i8042 that ends the VM (`GuestReset`, through `exit`) when the guest asks for a CPU
    /// reset. It does so at once, on the vCPU thread that wrote the command: the guest's own
    /// fallback, a deliberate triple fault a moment later, must not be taken for a crash.
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        Self { exit }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty; no keyboard data ever.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            // Said in the log: a reboot or a guest kernel panic (`panic=-1`) ends here.
            tracing::warn!("the guest asked the i8042 for a CPU reset (reboot or kernel panic)");
            self.exit.exit(VmExitReason::GuestReset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_ends_the_vm_as_a_guest_reset() {
        let exit = ExitSignal::new().unwrap();
        let mut dev = I8042::new(exit.clone());
        dev.write(COMMAND_OFFSET, &[0x20]);
        assert_eq!(exit.reason(), None, "other commands do nothing");
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(exit.reason(), Some(VmExitReason::GuestReset));
        assert_eq!(exit.evt.read().unwrap(), 1, "the VMM is woken");
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
