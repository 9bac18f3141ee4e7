//! paddock VMM library: boots and runs one microVM sandbox on KVM.
//!
//! `builder::boot` is the boot recipe; `vmm::Vmm` is the running VM; `client` talks to
//! guest-init over vsock.

pub mod agent;
pub mod arch;
pub mod artifacts;
pub mod builder;
pub mod capped_log;
mod cast;
pub mod client;
pub mod companion;
pub mod config;
pub mod device_manager;
pub mod devices;
pub mod event_loop;
pub mod exit_codes;
pub mod kvm;
pub mod sandbox;
pub mod seccomp;
pub mod snapshot;
pub mod template;
pub mod terminal;
pub mod timings;
pub mod vmm;
pub mod vstate;
