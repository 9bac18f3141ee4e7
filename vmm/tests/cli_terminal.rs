//! The `paddock` CLI's terminal sessions (`exec -it`, `exec -t`, detach, `attach`, pipes)
//! driven through a host pseudo-terminal, against a stand-in sandbox: a state directory whose
//! vsock socket is served by the real guest-init control service in this process, so commands
//! run on this host. No KVM needed; the same scenarios run in a real guest in `e2e_terminal`.

mod host_terminal;

use guest_init::{ControlService, Platform, ReapMode, Reaper};
use host_terminal::scenarios;
use paddock_protocol::{BootInfo, EngineState, ShutdownAction, UnixTime, CONTROL_PORT};
use paddock_vmm::sandbox::paths::{LaunchKind, SandboxInfo, SandboxPaths};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;

struct HostPlatform;

impl Platform for HostPlatform {
    fn boot_info(&self) -> BootInfo {
        BootInfo {
            uptime_ns: 0,
            kernel_release: "stand-in".into(),
            init_version: "stand-in".into(),
            engine: EngineState::Absent,
        }
    }

    fn resume(&self, _: UnixTime, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    fn shutdown(&self, _: ShutdownAction) {}
}

/// A sandbox record and vsock socket that lead to guest-init's service on this host.
struct StandIn {
    _dir: tempfile::TempDir,
    state: PathBuf,
    /// Stands for the VMM process the record names (it must be alive).
    vmm: Child,
}

impl StandIn {
    fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let paths = SandboxPaths::new(&state, name).unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        let vmm = Command::new("sleep").arg("1000").spawn().unwrap();
        SandboxInfo {
            name: name.into(),
            pid: vmm.id(),
            vcpus: 1,
            memory_mib: 1,
            created_unix_secs: 0,
            origin_snapshot: None,
            latest_snapshot: None,
            ready_ms: 0.0,
            launched: LaunchKind::Boot,
            guest: None,
            resources: Default::default(),
            spans: Vec::new(),
            minor_faults: None,
            prefetched_pages: None,
            pre_faulted_pages: None,
            from_pool: false,
            caller_spans: Vec::new(),
        }
        .write(&paths)
        .unwrap();
        let listener = UnixListener::bind(paths.vsock()).unwrap();
        let service = Arc::new(ControlService::new(
            Arc::new(HostPlatform),
            Reaper::new(ReapMode::PerChild),
        ));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let service = Arc::clone(&service);
                std::thread::spawn(move || {
                    // The VMM's side of the `CONNECT <port>` handshake.
                    let mut line = Vec::new();
                    let mut byte = [0u8];
                    while stream.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
                        line.push(byte[0]);
                    }
                    if line == format!("CONNECT {CONTROL_PORT}").as_bytes()
                        && stream.write_all(b"OK 1073741824\n").is_ok()
                    {
                        let _ = service.serve(stream);
                    }
                });
            }
        });
        Self {
            _dir: dir,
            state,
            vmm,
        }
    }

    /// `paddock SUBCOMMAND --state-dir STATE ARGS...`.
    fn paddock(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paddock"));
        cmd.arg(args[0])
            .arg("--state-dir")
            .arg(&self.state)
            .args(&args[1..]);
        cmd
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.vmm.kill();
        let _ = self.vmm.wait();
    }
}

fn with_stand_in(scenario: fn(scenarios::Paddock, &str)) {
    let sandbox = StandIn::start("box");
    scenario(&|args: &[&str]| sandbox.paddock(args), "box");
}

#[test]
fn exec_it_follows_the_window_passes_ctrl_c_and_ends_on_ctrl_d() {
    with_stand_in(scenarios::exec_it_follows_the_window_passes_ctrl_c_and_ends_on_ctrl_d);
}

#[test]
fn detach_then_attach_returns_to_the_same_shell() {
    with_stand_in(scenarios::detach_then_attach_returns_to_the_same_shell);
}

#[test]
fn a_lone_ctrl_p_is_typed_through() {
    with_stand_in(scenarios::a_lone_ctrl_p_is_typed_through);
}

#[test]
fn a_signal_to_paddock_hangs_the_session_up() {
    with_stand_in(scenarios::a_signal_to_paddock_hangs_the_session_up);
}

#[test]
fn tty_without_interactive_signals_ctrl_c() {
    with_stand_in(scenarios::tty_without_interactive_signals_ctrl_c);
}

#[test]
fn a_missing_command_on_a_terminal_is_127() {
    with_stand_in(scenarios::a_missing_command_on_a_terminal_is_127);
}

#[test]
fn without_a_terminal_pipes_keep_working() {
    with_stand_in(scenarios::without_a_terminal_pipes_keep_working);
}
