//! The real [`Platform`] of a guest: wall clock, kernel RNG and reboot(2).

use crate::reaper::Reaper;
use crate::service::Platform;
use paddock_protocol::{BootInfo, ShutdownAction, UnixTime};
use std::io;
use std::sync::Arc;

pub struct GuestPlatform {
    reaper: Arc<Reaper>,
}

impl GuestPlatform {
    pub fn new(reaper: Arc<Reaper>) -> Self {
        Self { reaper }
    }
}

impl Platform for GuestPlatform {
    fn boot_info(&self) -> BootInfo {
        crate::sysinfo::boot_info()
    }

    fn resume(&self, wall_clock: UnixTime, entropy: &[u8]) -> io::Result<()> {
        crate::resume::set_wall_clock(wall_clock)?;
        crate::resume::add_entropy(entropy)
    }

    fn shutdown(&self, action: ShutdownAction) {
        super::power::shutdown(action, &self.reaper)
    }
}
