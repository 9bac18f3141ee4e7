//! Seccomp filters for the VMM process, one per thread kind, and for the workspace server and
//! egress proxy processes (`paddock __workspace`, `paddock __egress`: one filter for all the
//! threads of each), compiled at build time (`build.rs`)
//! from the reviewed data in `vmm/seccomp/x86_64.json` and installed by each thread before it handles anything the guest
//! sends. A syscall no filter allows kills the VMM (`SECCOMP_RET_KILL_PROCESS`).
//!
//! Threads are created before any filter goes in (the vCPUs, the device event loop, the control
//! thread), so no filter allows `clone`, `fork` or `execve`: once the guest runs, the VMM can
//! neither start a thread nor a program.

#[cfg(test)]
mod data;
mod names;

pub use names::syscall_name;

use seccompiler::{sock_filter, BpfProgram};
use std::sync::Arc;

/// What a thread does, and so which filter it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The VMM's main thread: builds nothing once filtered, but answers the control socket
    /// (snapshots, resets) until the VM ends.
    Vmm,
    /// The device event loop (virtio queues, vsock connections, block I/O).
    Events,
    /// A vCPU: `KVM_RUN` and the port and MMIO exits it hands to the devices.
    Vcpu,
    /// Every thread of the workspace server, a process of its own: file operations beneath the
    /// shared directory and its guest connection, nothing else.
    Workspace,
    /// Every thread of the egress proxy, a process of its own: its sockets, the resolver, its
    /// policy, log and name files. An unlisted syscall fails with `EPERM` instead of killing it.
    Egress,
}

impl ThreadKind {
    /// Every kind, in the order of the filter data.
    pub const ALL: [ThreadKind; 5] = [
        ThreadKind::Vmm,
        ThreadKind::Events,
        ThreadKind::Vcpu,
        ThreadKind::Workspace,
        ThreadKind::Egress,
    ];

    /// The kind's name in the filter data.
    pub fn key(self) -> &'static str {
        match self {
            ThreadKind::Vmm => "vmm",
            ThreadKind::Events => "events",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Workspace => "workspace",
            ThreadKind::Egress => "egress",
        }
    }

    /// Whether an unlisted syscall kills the process (else it fails with `EPERM`).
    pub fn kills(self) -> bool {
        self != ThreadKind::Egress
    }
}

impl std::fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// What a syscall outside the filter meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The VMM is killed (SIGSYS): the default.
    #[default]
    Enforce,
    /// The syscall goes ahead and the kernel logs it (`PADDOCK_SECCOMP=log`): for finding what a
    /// filter misses, never for use.
    Log,
}

impl Mode {
    /// `PADDOCK_SECCOMP=log` asks for [`Mode::Log`]; anything else (or nothing) enforces.
    pub fn from_env() -> Self {
        match std::env::var("PADDOCK_SECCOMP").as_deref() {
            Ok("log") => Mode::Log,
            _ => Mode::Enforce,
        }
    }
}

/// Why a filter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The kernel refused the filter (no seccomp support, or a filter already forbids it).
    #[error("installing the seccomp filter of a {kind} thread failed")]
    Install {
        /// Which thread.
        kind: ThreadKind,
        /// What the kernel said.
        source: seccompiler::Error,
    },
}

/// The filters as BPF, compiled from the filter data by the build script.
mod bpf {
    include!(concat!(env!("OUT_DIR"), "/bpf.rs"));
}

fn program(instructions: &[(u16, u8, u8, u32)]) -> BpfProgram {
    instructions
        .iter()
        .map(|&(code, jt, jf, k)| sock_filter { code, jt, jf, k })
        .collect()
}

/// The filters, one per thread kind.
#[derive(Debug)]
pub struct Filters {
    vmm: BpfProgram,
    events: BpfProgram,
    vcpu: BpfProgram,
    workspace: BpfProgram,
    egress: BpfProgram,
}

impl Filters {
    /// The filters compiled into the binary (no parsing or compiling at run time).
    pub fn new(mode: Mode) -> Self {
        let (vmm, events, vcpu, workspace, egress) = match mode {
            Mode::Enforce => (
                bpf::ENFORCE_VMM,
                bpf::ENFORCE_EVENTS,
                bpf::ENFORCE_VCPU,
                bpf::ENFORCE_WORKSPACE,
                bpf::ENFORCE_EGRESS,
            ),
            Mode::Log => (
                bpf::LOG_VMM,
                bpf::LOG_EVENTS,
                bpf::LOG_VCPU,
                bpf::LOG_WORKSPACE,
                bpf::LOG_EGRESS,
            ),
        };
        Filters {
            vmm: program(vmm),
            events: program(events),
            vcpu: program(vcpu),
            workspace: program(workspace),
            egress: program(egress),
        }
    }

    /// Installs `kind`'s filter on the calling thread (for good: filters cannot be removed).
    /// Threads the caller creates afterwards inherit it.
    pub fn install(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        seccompiler::apply_filter(self.program(kind))
            .map_err(|source| SeccompError::Install { kind, source })
    }

    /// Installs `kind`'s filter on every thread of the process at once (`SECCOMP_FILTER_FLAG_TSYNC`):
    /// for a process whose threads all do one kind of work and are all started before it.
    pub fn install_on_all_threads(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        seccompiler::apply_filter_all_threads(self.program(kind))
            .map_err(|source| SeccompError::Install { kind, source })
    }

    fn program(&self, kind: ThreadKind) -> &BpfProgram {
        match kind {
            ThreadKind::Vmm => &self.vmm,
            ThreadKind::Events => &self.events,
            ThreadKind::Vcpu => &self.vcpu,
            ThreadKind::Workspace => &self.workspace,
            ThreadKind::Egress => &self.egress,
        }
    }
}

/// Which threads of a VM the builder confines.
#[derive(Debug, Clone, Default)]
pub enum SeccompScope {
    /// None (`--no-seccomp`, or a library caller that confines its process itself).
    #[default]
    Off,
    /// The VM's own threads (vCPUs, device event loop), not the caller's: for a VM run inside
    /// a process that does other work (`paddock run -- CMD` runs its VM in the CLI process).
    VmThreads(Arc<Filters>),
    /// The VM's threads and the calling thread (the VMM process's main thread), before the
    /// first guest instruction runs.
    Process(Arc<Filters>),
}

impl SeccompScope {
    /// The filters, unless off.
    pub fn filters(&self) -> Option<&Arc<Filters>> {
        match self {
            SeccompScope::Off => None,
            SeccompScope::VmThreads(f) | SeccompScope::Process(f) => Some(f),
        }
    }
}

/// An error and its sources, on one line (for the exit reason and the log).
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
