//! Switches PID 1 to the agent root: runs the [`SwitchStep`]s of a plan, all or nothing.
//!
//! A failed step undoes the steps before it (mounts detached, moved mounts moved back), so
//! guest-init keeps serving from the initramfs with its system mounts where they were and the
//! sandbox stays usable for diagnosis. The initramfs contents are not freed after the switch:
//! they are small (guest-init and busybox), and keeping them costs nothing but their pages.

use super::mount_plan::SwitchStep;
use super::mounts::{self, MountSpec};
use crate::sys::{cstring, cvt};
use std::io;

/// Why the root switch failed (and was undone as far as possible).
#[derive(Debug, thiserror::Error)]
pub enum RootSwitchError {
    #[error("cannot create {path}: {source}")]
    MakeDir {
        path: &'static str,
        source: io::Error,
    },
    #[error("cannot mount {device} ({fstype}) on {target}: {source}")]
    Mount {
        device: String,
        fstype: String,
        target: String,
        source: io::Error,
    },
    #[error("cannot move the mount {from} to {to}: {source}")]
    Move {
        from: &'static str,
        to: &'static str,
        source: io::Error,
    },
    #[error("cannot enter the new root {new_root}: {source}")]
    EnterRoot {
        new_root: &'static str,
        source: io::Error,
    },
    /// The new root was moved onto `/` but could not be made PID 1's root: nothing to undo.
    #[error("moved {new_root} onto / but cannot chroot into it: {source}")]
    Chroot {
        new_root: &'static str,
        source: io::Error,
    },
}

/// Runs `steps` in order; on failure undoes the completed ones and returns the first error.
pub fn switch_root(steps: &[SwitchStep]) -> Result<(), RootSwitchError> {
    let mut done: Vec<&SwitchStep> = Vec::with_capacity(steps.len());
    for step in steps {
        if let Err(e) = run_step(step) {
            for completed in done.iter().rev() {
                if let Err(undo) = undo_step(completed) {
                    crate::console_log!("root switch: cannot undo {completed:?}: {undo}");
                }
            }
            return Err(e);
        }
        done.push(step);
    }
    Ok(())
}

fn run_step(step: &SwitchStep) -> Result<(), RootSwitchError> {
    match step {
        SwitchStep::MakeDir(path) => {
            mounts::make_dir(path).map_err(|source| RootSwitchError::MakeDir { path, source })
        }
        SwitchStep::Mount(spec) => mounts::mount(spec).map_err(|source| mount_error(spec, source)),
        SwitchStep::Move { from, to } => mounts::move_mount(from, to)
            .map_err(|source| RootSwitchError::Move { from, to, source }),
        SwitchStep::EnterRoot { new_root } => enter_root(new_root),
    }
}

fn mount_error(spec: &MountSpec, source: io::Error) -> RootSwitchError {
    RootSwitchError::Mount {
        device: spec.source.to_string(),
        fstype: spec.fstype.to_string(),
        target: spec.target.to_string(),
        source,
    }
}

fn undo_step(step: &SwitchStep) -> io::Result<()> {
    match step {
        // Directories in the staging area are harmless; they stay.
        SwitchStep::MakeDir(_) => Ok(()),
        SwitchStep::Mount(spec) => mounts::detach(&spec.target),
        SwitchStep::Move { from, to } => mounts::move_mount(to, from),
        // The last step: never completed when something is undone.
        SwitchStep::EnterRoot { .. } => Ok(()),
    }
}

/// What busybox `switch_root` does, staying PID 1: the new root replaces `/`.
fn enter_root(new_root: &'static str) -> Result<(), RootSwitchError> {
    let enter_error = |source| RootSwitchError::EnterRoot { new_root, source };
    std::env::set_current_dir(new_root).map_err(enter_error)?;
    if let Err(e) = mounts::move_mount(".", "/") {
        // Back to where we were so relative paths mean what they meant.
        let _ = std::env::set_current_dir("/");
        return Err(enter_error(e));
    }
    let dot = cstring(".").map_err(enter_error)?;
    // SAFETY: a valid NUL-terminated string that outlives the call.
    cvt(unsafe { libc::chroot(dot.as_ptr()) })
        .map_err(|source| RootSwitchError::Chroot { new_root, source })?;
    std::env::set_current_dir("/").map_err(|source| RootSwitchError::Chroot { new_root, source })
}
