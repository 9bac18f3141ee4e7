//! The VMM's own conversations with guest-init, watching the VM while it waits: readiness after
//! a boot, and handing over the clock and fresh entropy after a restore or reset.

use crate::client::{self, ConnectOptions, ReadyListener};
use crate::config::{CONTROL_PORT, READY_PORT};
use crate::vmm::Vmm;
use paddock_protocol::{BootInfo, UnixTime, RESUME_ENTROPY_MIN};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why guest-init did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum GuestReadyError {
    /// The VM ended first.
    #[error(
        "the guest stopped before guest-init was ready ({reason}); last console lines:\n{console}"
    )]
    VmEnded { reason: String, console: String },
    /// Nothing within the timeout.
    #[error("guest-init was not ready within {secs} s; last console lines:\n{console}\n{vcpus}")]
    Timeout {
        secs: u64,
        console: String,
        vcpus: String,
    },
    /// Listening for readiness failed.
    #[error(transparent)]
    Listen(#[from] client::ReadyError),
    /// Reading host entropy failed.
    #[error("reading host entropy failed: {0}")]
    Entropy(#[source] std::io::Error),
}

/// Polling step while waiting: short enough to notice a dead VM at once.
const STEP: Duration = Duration::from_millis(20);

fn vm_ended(vmm: &Vmm) -> Option<GuestReadyError> {
    vmm.exit.reason().map(|reason| GuestReadyError::VmEnded {
        reason: format!("{reason:?}"),
        console: vmm.console.last_lines(30),
    })
}

/// Binds the readiness socket for a VM whose vsock socket will be `uds` (before it boots).
pub fn listen_ready(uds: &Path) -> Result<ReadyListener, GuestReadyError> {
    Ok(ReadyListener::bind(uds, READY_PORT)?)
}

/// Waits for guest-init's `Ready`, or for the VM to end, or `timeout`.
pub fn wait_ready(
    listener: &ReadyListener,
    vmm: &Vmm,
    timeout: Duration,
) -> Result<BootInfo, GuestReadyError> {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.wait(STEP) {
            Ok(ready) => return Ok(ready.boot),
            Err(client::ReadyError::Timeout(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(e) = vm_ended(vmm) {
            return Err(e);
        }
        if Instant::now() >= deadline {
            return Err(GuestReadyError::Timeout {
                secs: timeout.as_secs(),
                console: vmm.console.last_lines(30),
                vcpus: vmm.vcpu_summary(),
            });
        }
    }
}

fn fresh_entropy() -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; RESUME_ENTROPY_MIN * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// After a restore or reset: hands guest-init the wall clock and fresh entropy and waits for
/// `Resumed`, the moment the sandbox is ready again. Retries while the guest's vsock transport
/// is coming back from its reset.
pub fn resume(vmm: &Vmm, timeout: Duration) -> Result<BootInfo, GuestReadyError> {
    let deadline = Instant::now() + timeout;
    let entropy = fresh_entropy().map_err(GuestReadyError::Entropy)?;
    let options = ConnectOptions {
        handshake_timeout: Duration::from_secs(2),
        retry_for: Some(STEP),
    };
    loop {
        let attempt = client::connect_with(&vmm.vsock_uds, CONTROL_PORT, &options)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                conn.set_timeout(Some(Duration::from_secs(10)))
                    .map_err(|e| e.to_string())?;
                conn.resume(UnixTime::now(), &entropy)
                    .map_err(|e| e.to_string())
            });
        match attempt {
            Ok(info) => return Ok(info),
            Err(e) => {
                if let Some(err) = vm_ended(vmm) {
                    return Err(err);
                }
                if Instant::now() >= deadline {
                    tracing::warn!("resume failed: {e}");
                    return Err(GuestReadyError::Timeout {
                        secs: timeout.as_secs(),
                        console: vmm.console.last_lines(30),
                        vcpus: vmm.vcpu_summary(),
                    });
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}
