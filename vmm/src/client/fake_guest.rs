//! A stand-in for a running guest in tests: the real guest-init control service (commands run
//! on the host), behind a stand-in for the VMM's vsock Unix socket (the `CONNECT` handshake,
//! then bytes flow to the service).

use guest_init::{ControlService, Platform, ReapMode, Reaper};
use paddock_protocol::{BootInfo, ShutdownAction, UnixTime, CONTROL_PORT};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Host port the stand-in VMM reports in its `OK` answer.
pub(crate) const FAKE_HOST_PORT: u32 = 1_073_741_824;
/// A port where the stand-in answers garbage instead of `OK`.
pub(crate) const GARBLED_PORT: u32 = 7;

#[derive(Default)]
pub(crate) struct TestPlatform {
    pub(crate) shutdowns: Mutex<Vec<ShutdownAction>>,
    pub(crate) resumes: Mutex<Vec<(UnixTime, Vec<u8>)>>,
}

impl Platform for TestPlatform {
    fn boot_info(&self) -> BootInfo {
        BootInfo {
            uptime_ns: 7,
            kernel_release: "test-kernel".into(),
            init_version: "test".into(),
            engine: paddock_protocol::EngineState::Absent,
        }
    }

    fn resume(&self, wall_clock: UnixTime, entropy: &[u8]) -> io::Result<()> {
        self.resumes
            .lock()
            .unwrap()
            .push((wall_clock, entropy.to_vec()));
        Ok(())
    }

    fn shutdown(&self, action: ShutdownAction) {
        self.shutdowns.lock().unwrap().push(action);
    }

    fn mount_workspace(
        &self,
        path: &str,
        _mode: paddock_protocol::WorkspaceMode,
    ) -> Result<guest_init::workspace::Mounted, guest_init::workspace::MountError> {
        match path {
            "/home/me/project" => Ok(guest_init::workspace::Mounted::Fresh),
            other => Err(guest_init::workspace::MountError::Path(other.to_string())),
        }
    }
}

pub(crate) struct FakeVm {
    _dir: tempfile::TempDir,
    pub(crate) uds: PathBuf,
    pub(crate) platform: Arc<TestPlatform>,
}

/// Serves the vsock handshake on `uds`: port 1024 reaches the control service, GARBLED_PORT
/// gets a bad answer, any other port is closed as "not listening".
pub(crate) fn serve_vsock_socket(uds: &Path, platform: Arc<TestPlatform>) {
    let listener = UnixListener::bind(uds).unwrap();
    let service = Arc::new(ControlService::new(
        platform,
        Reaper::new(ReapMode::PerChild),
    ));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let service = Arc::clone(&service);
            std::thread::spawn(move || {
                let mut line = Vec::new();
                let mut byte = [0u8];
                while stream.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
                    line.push(byte[0]);
                }
                let port: u32 = String::from_utf8(line)
                    .ok()
                    .and_then(|l| l.strip_prefix("CONNECT ")?.parse().ok())
                    .unwrap_or(0);
                if port == CONTROL_PORT {
                    stream
                        .write_all(format!("OK {FAKE_HOST_PORT}\n").as_bytes())
                        .unwrap();
                    let _ = service.serve(stream);
                } else if port == GARBLED_PORT {
                    let _ = stream.write_all(b"FAILURE\n");
                }
            });
        }
    });
}

pub(crate) fn fake_vm() -> FakeVm {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let platform = Arc::new(TestPlatform::default());
    serve_vsock_socket(&uds, Arc::clone(&platform));
    FakeVm {
        _dir: dir,
        uds,
        platform,
    }
}
