//! The real [`Platform`] of a guest: wall clock, kernel RNG, reboot(2), the engine state and
//! the workspace mount.

use crate::engine::EngineMonitor;
use crate::reaper::Reaper;
use crate::service::Platform;
use paddock_protocol::{BootInfo, ShutdownAction, UnixTime};
use std::io;
use std::sync::Arc;

pub struct GuestPlatform {
    reaper: Arc<Reaper>,
    engine: Arc<EngineMonitor>,
}

impl std::fmt::Debug for GuestPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPlatform").finish_non_exhaustive()
    }
}

impl GuestPlatform {
    pub fn new(reaper: Arc<Reaper>, engine: Arc<EngineMonitor>) -> Self {
        Self { reaper, engine }
    }
}

impl Platform for GuestPlatform {
    fn boot_info(&self) -> BootInfo {
        // Cached: a resume must not wait for the engine.
        crate::sysinfo::boot_info(self.engine.current())
    }

    fn resume(&self, wall_clock: UnixTime, entropy: &[u8]) -> io::Result<()> {
        crate::resume::set_wall_clock(wall_clock)?;
        crate::resume::add_entropy(entropy)?;
        // A workspace mount the snapshot held stays: its relay reconnects by itself.
        Ok(())
    }

    fn shutdown(&self, action: ShutdownAction) {
        super::power::shutdown(action, &self.reaper)
    }

    fn mount_workspace(
        &self,
        path: &str,
        mode: paddock_protocol::WorkspaceMode,
    ) -> Result<crate::workspace::Mounted, crate::workspace::MountError> {
        crate::workspace::mount(path, mode)
    }

    fn workspace_changes(
        &self,
        path: &str,
    ) -> Result<Vec<paddock_protocol::workspace::WorkspaceChange>, crate::workspace::ChangesError>
    {
        crate::workspace::changes(path)
    }
}
