//! How a helper process (the workspace server, the egress proxy) confines itself: its jail
//! (see `paddock_vmm::sandbox::jail`), then no capability and no way to gain one.

use anyhow::Context;
use paddock_vmm::sandbox::jail::{self, JailPlan};
use paddock_vmm::sandbox::privileges;
use paddock_vmm::seccomp;
use std::path::Path;

/// Enters `plan`'s jail built on `root`, then drops every capability and forbids new
/// privileges. A host that forbids the user namespace an ordinary user needs leaves the helper
/// unjailed with a warning (its capabilities still go); any other failure is an error.
/// `helper` names it in messages ("the egress proxy"). Call it single-threaded.
pub fn confine_helper(plan: &JailPlan, root: &Path, helper: &str) -> anyhow::Result<()> {
    match jail::enter_as_helper(plan, root) {
        Ok(()) => {}
        Err(e) if e.is_unavailable() => tracing::warn!(
            "{helper} runs unjailed: this host forbids user namespaces ({})",
            seccomp::describe(&e)
        ),
        Err(e) => {
            return Err(anyhow::anyhow!(seccomp::describe(&e)))
                .with_context(|| format!("confining {helper}"))
        }
    }
    privileges::drop_capabilities()
        .and_then(|()| privileges::forbid_new_privileges())
        .with_context(|| format!("dropping the privileges of {helper}"))
}
