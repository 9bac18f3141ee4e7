//! Building a template: boot a sandbox from the spec, wait until guest-init is ready (for the
//! `agent` profile, with the Docker engine up), snapshot it into a staging directory, stop it,
//! and move the snapshot into place under its key.

use super::key::{KeyError, TemplateSpec};
use super::store::{new_manifest, Template, TemplateStore, TemplateStoreError};
use crate::artifacts::DigestCache;
use crate::sandbox::{ConsoleLog, Launch, SandboxError, Sandboxes};
use std::time::Instant;

/// Progress of [`ensure`], for a display.
#[derive(Debug, Clone)]
pub enum BuildStep {
    /// No template of this key yet: booting one (the first start of this shape).
    Booting { key: String },
    /// The guest is ready; what it reported.
    Ready { boot_ms: f64, guest: String },
    /// Writing the snapshot.
    Snapshotting,
    /// Built.
    Built { total_ms: f64, memory_bytes: u64 },
}

/// Why a template could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TemplateBuildError {
    /// An artifact could not be identified.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] TemplateStoreError),
    /// Booting, snapshotting or stopping the build sandbox failed.
    #[error("building the template failed: {0}")]
    Sandbox(#[from] SandboxError),
    /// The guest came up without what the profile promises (the engine failed to start).
    #[error("the template's guest is not usable: {reason}\n(guest console: {console})")]
    Unusable { reason: String, console: String },
}

/// The template for `spec`: the cached one, else one built now (waiting for a concurrent build
/// of the same key instead of building twice). Returns it and whether it was built by this call.
pub fn ensure(
    store: &TemplateStore,
    sandboxes: &Sandboxes,
    digests: &DigestCache,
    spec: &TemplateSpec,
    progress: &mut dyn FnMut(BuildStep),
) -> Result<(Template, bool), TemplateBuildError> {
    let artifact_digests = spec.digests(digests)?;
    let key = spec.key(&artifact_digests);
    if let Some(found) = store.find(&key)? {
        return Ok((found, false));
    }
    let _lock = store.lock(&key)?;
    if let Some(found) = store.find(&key)? {
        return Ok((found, false));
    }
    progress(BuildStep::Booting {
        key: key.short().to_string(),
    });
    let started = Instant::now();
    let staging = store.staging_dir(&key)?;
    let name = format!("template-{}-{}", key.short(), std::process::id());
    let launch = Launch::Boot {
        kernel: spec.artifacts.kernel.clone(),
        rootfs: spec.artifacts.initrd.clone(),
        image: spec.artifacts.image.clone(),
        disk: None,
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        console: ConsoleLog::Sandbox,
        kernel_args: spec.kernel_args.clone(),
    };
    let built = (|| {
        let info = sandboxes.start(Some(&name), launch)?;
        let guest = info.guest_summary();
        progress(BuildStep::Ready {
            boot_ms: info.ready_ms,
            guest: guest.clone(),
        });
        if let Some(reason) = info.unusable_reason(spec.profile) {
            let console = std::fs::read_to_string(sandboxes.paths(&name)?.console())
                .map(|text| last_lines(&text, 20))
                .unwrap_or_default();
            return Err(TemplateBuildError::Unusable { reason, console });
        }
        progress(BuildStep::Snapshotting);
        let (_, memory_bytes) = sandboxes.snapshot(&name, &staging, true)?;
        // A template trusts no CA: every sandbox restored from it gets a CA of its own.
        let _ = std::fs::remove_file(staging.join("egress.json"));
        Ok((info.ready_ms, guest, memory_bytes))
    })();
    // The build sandbox is gone in every case (it was stopped by the snapshot, or failed).
    let _ = sandboxes.remove(&name, true);
    let (boot_ms, guest, memory_bytes) = match built {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let manifest = new_manifest(key, spec.clone(), artifact_digests, boot_ms, guest);
    let template = store.commit(&staging, manifest)?;
    progress(BuildStep::Built {
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        memory_bytes,
    });
    Ok((template, true))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
