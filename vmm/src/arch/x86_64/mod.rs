//! x86_64 guest setup: memory layout, CPUID, MSRs, registers, MP table and boot protocols.

pub mod boot;
pub mod cpu_compat;
pub mod cpuid;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;
