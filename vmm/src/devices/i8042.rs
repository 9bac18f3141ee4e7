//! Just enough of the i8042 keyboard controller for the guest to reboot: the CPU-reset command
//! (0xFE on port 0x64) ends the VM. With `reboot=k` this is how a guest `reboot` exits.

use super::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

const COMMAND_OFFSET: u64 = 4;
const CMD_RESET_CPU: u8 = 0xfe;

/// The i8042 at ports 0x60..=0x64.
pub struct I8042 {
    reset: EventFd,
}

impl I8042 {
    /// An i8042 that signals `reset` when the guest asks for a CPU reset.
    pub fn new(reset: EventFd) -> Self {
        Self { reset }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty; no keyboard data ever.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            if let Err(e) = self.reset.write(1) {
                tracing::error!("signalling guest reset failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_signals_the_vmm() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = I8042::new(evt.try_clone().unwrap());
        dev.write(COMMAND_OFFSET, &[0x20]);
        assert!(evt.read().is_err(), "other commands do nothing");
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
