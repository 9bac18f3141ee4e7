//! KVM-side state: guest memory, the VM and its vCPUs.

pub mod memory;
pub mod pagemap;
pub mod persist;
pub mod prefault;
pub mod prepared;
pub mod reset_pages;
pub mod vcpu;
pub mod vm;
