//! paddock VMM library: boots and runs one microVM sandbox on KVM.

pub mod client;
pub mod devices;
