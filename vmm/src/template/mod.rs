//! Templates: a sandbox booted once per (kernel, initramfs, root image, profile, machine shape)
//! until guest-init is ready (for the `agent` profile: the Docker engine answers), then
//! snapshotted into the artifact cache. `paddock start` and `paddock run` restore the matching
//! template instead of booting, so only the first start of a shape pays for a boot.
//!
//! A template is keyed by the content of everything that went into it ([`key`]), so a changed
//! kernel or image never restores a stale template. It never holds anything specific to one
//! sandbox or host path: the workspace, the clock, entropy and secrets are handed over after
//! every restore.

pub mod build;
pub mod key;
pub mod store;

pub use build::{BuildStep, TemplateBuildError};
pub use key::{KeyError, TemplateKey, TemplateSpec};
pub use store::{Template, TemplateManifest, TemplateStore, TemplateStoreError};
