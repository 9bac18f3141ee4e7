//! Shared helpers for the paddock benchmarks: booting, exec, memory figures.

use paddock_protocol::{ExecRequest, ExitStatus};
use paddock_vmm::config::{default_kernel, default_rootfs, VmConfig, CONTROL_PORT};
use paddock_vmm::sandbox::guest::GuestLink;
use paddock_vmm::vmm::Vmm;
use std::path::Path;
use std::time::Duration;

/// Whether benchmarks can run here (hardware KVM and built artifacts); says why not otherwise.
pub fn available() -> bool {
    if let Err(e) = paddock_vmm::kvm::open_kvm() {
        eprintln!("benchmarks skipped: {e}");
        return false;
    }
    if !default_kernel(None).is_file() || !default_rootfs(None).is_file() {
        eprintln!("benchmarks skipped: guest artifacts missing; run `cargo xtask build`");
        return false;
    }
    true
}

/// Whether the agent-profile benchmarks can run here (also the root image); says why not otherwise.
pub fn agent_available() -> bool {
    if !available() {
        return false;
    }
    match paddock_vmm::artifacts::Profile::Agent
        .artifacts(None, None, None)
        .image
    {
        Some(image) if image.is_file() => true,
        _ => {
            eprintln!(
                "agent benchmarks skipped: no root image; run `cargo xtask rootfs --profile agent`"
            );
            false
        }
    }
}

/// The VM configuration the targets are stated for: 1 vCPU, 256 MiB.
pub fn config(uds: &Path) -> VmConfig {
    VmConfig {
        kernel: default_kernel(None),
        initrd: default_rootfs(None),
        image: None,
        disk: None,
        vcpus: 1,
        memory_mib: 256,
        // Extra guest kernel arguments for experiments, e.g. "nopv".
        extra_cmdline: std::env::var("PADDOCK_BENCH_KERNEL_ARGS").ok(),
        console_log: None,
        vsock_uds: uds.to_path_buf(),
    }
}

/// The seccomp filters every VMM runs under, on the VM's own threads (the benchmark's own
/// thread stays unconfined).
pub fn seccomp() -> paddock_vmm::seccomp::SeccompScope {
    use paddock_vmm::seccomp::{Filters, Mode, SeccompScope};
    SeccompScope::VmThreads(std::sync::Arc::new(Filters::new(Mode::Enforce)))
}

/// Boots a VM in this process and waits for guest-init; returns the VM and guest-init's link
/// (keep it for as long as the VM runs).
pub fn boot_ready(uds: &Path) -> (Vmm, GuestLink) {
    let mut link = GuestLink::listen(uds).expect("listen for readiness");
    let vmm = paddock_vmm::builder::boot(&config(uds), &seccomp()).expect("boot");
    link.wait_ready(&vmm, Duration::from_secs(120))
        .expect("guest-init ready");
    (vmm, link)
}

/// Runs `argv` in the guest and returns its status.
pub fn exec(uds: &Path, argv: &[&str]) -> ExitStatus {
    let conn = paddock_vmm::client::connect(uds, CONTROL_PORT).expect("connect");
    let req = ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: None,
        stdin: false,
        tty: None,
    };
    conn.exec_output(&req, &[]).expect("exec").status
}

/// A field of /proc/<pid>/status in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Rss and Pss of a process from smaps_rollup, KiB.
pub fn rss_pss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let get = |f: &str| {
        text.lines()
            .find(|l| l.starts_with(f))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (get("Rss:"), get("Pss:"))
}

/// Restores `snapshot` in this process and waits for guest-init's answer; returns the VM and
/// guest-init's link (keep it for as long as the VM runs).
pub fn restore_ready(snapshot: &Path, uds: &Path) -> (Vmm, GuestLink) {
    let _ = std::fs::remove_file(uds);
    let mut link = GuestLink::listen(uds).expect("listen");
    let vmm =
        paddock_vmm::builder::restore(snapshot, uds, None, None, &seccomp()).expect("restore");
    link.resume(&vmm, Duration::from_secs(60)).expect("resume");
    (vmm, link)
}

/// The agent profile's template as the benchmarks use it: 1 vCPU, the profile's memory.
pub fn agent_template_spec() -> paddock_vmm::template::TemplateSpec {
    use paddock_vmm::artifacts::Profile;
    paddock_vmm::template::TemplateSpec {
        profile: Profile::Agent,
        artifacts: Profile::Agent.artifacts(None, None, None),
        vcpus: 1,
        memory_mib: Profile::Agent.default_memory_mib(),
        kernel_args: std::env::var("PADDOCK_BENCH_KERNEL_ARGS").ok(),
    }
}

/// The agent template (built now if no cached one matches) and whether it was built now.
pub fn agent_template(
    sandboxes: &paddock_vmm::sandbox::Sandboxes,
) -> (paddock_vmm::template::Template, bool) {
    use paddock_vmm::artifacts::DigestCache;
    use paddock_vmm::template::{build, TemplateStore};
    build::ensure(
        &TemplateStore::default_location(),
        sandboxes,
        &DigestCache::default_location(),
        &agent_template_spec(),
        &mut |_| {},
    )
    .expect("agent template")
}
