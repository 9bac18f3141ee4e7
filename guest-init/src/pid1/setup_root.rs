//! Mounts at boot: the early system mounts (needed to learn the profile), then the profile's
//! [`BootPlan`]: the root switch if any, and the late mounts.

use super::mount_plan::{boot_plan, BootPlan, Profile, SYSTEM_EARLY};
use super::mounts::mount_all;
use super::root_switch::{switch_root, RootSwitchError};

/// Where guest-init ended up running.
#[derive(Debug)]
pub enum RootOutcome {
    /// The minimal profile: the initramfs is the root.
    Initramfs,
    /// The agent root is `/`.
    Switched,
    /// The switch failed and was undone: still in the initramfs.
    Failed(RootSwitchError),
}

/// Mounts [`SYSTEM_EARLY`] (best effort, failures logged).
pub fn mount_early() {
    log_failures(&SYSTEM_EARLY);
}

/// Mounts everything else `profile` needs, logging what fails; only a failed root switch
/// changes the outcome (other mounts are best effort).
pub fn mount_profile(profile: &Profile) -> RootOutcome {
    run_plan(&boot_plan(profile))
}

/// Runs `plan` (after [`mount_early`]).
pub fn run_plan(plan: &BootPlan) -> RootOutcome {
    let outcome = match &plan.switch {
        None => RootOutcome::Initramfs,
        Some(steps) => match switch_root(steps) {
            Ok(()) => {
                crate::console_log!("switched to the agent root");
                RootOutcome::Switched
            }
            Err(e) => {
                crate::console_log!(
                    "cannot switch to the agent root, staying in the initramfs: {e}"
                );
                RootOutcome::Failed(e)
            }
        },
    };
    log_failures(&plan.late);
    outcome
}

fn log_failures(table: &[super::mounts::MountSpec]) {
    for failure in mount_all(table) {
        crate::console_log!("mount {}: {}", failure.target, failure.error);
    }
}
