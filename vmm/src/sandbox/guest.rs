//! The VMM's own conversations with guest-init, watching the VM while it waits: readiness after
//! a boot, and handing over the clock and fresh entropy after a restore or reset, both over the
//! link guest-init opens to the host's ready port. The vsock device keeps that link across
//! snapshots, restores and resets, so a restore speaks on it at once.

use crate::client::{self, Connection, ReadyListener};
use crate::config::READY_PORT;
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

/// Which link carried a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumedOn {
    /// The link the snapshot kept: guest-init answered without reconnecting.
    KeptLink,
    /// A new link: the snapshot could not keep guest-init's (it was busy, or absent), so
    /// guest-init connected again first.
    NewLink,
}

impl ResumedOn {
    /// The name of the timing span that ends when guest-init answered.
    pub fn span(self) -> &'static str {
        match self {
            Self::KeptLink => "guest answered",
            Self::NewLink => "guest reconnected and answered",
        }
    }
}

/// guest-init's link to this VMM: the readiness listener guest-init announces itself on (after
/// a boot, and again whenever its link broke), and the live link, which guest-init serves
/// requests on and which the vsock device keeps across snapshots.
pub struct GuestLink {
    listener: ReadyListener,
    /// Held open, not read: closing it would make guest-init announce itself again.
    link: Option<Connection>,
}

impl std::fmt::Debug for GuestLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestLink").finish_non_exhaustive()
    }
}

impl GuestLink {
    /// Listens for guest-init on behalf of the VM whose vsock socket will be `uds`. Bind before
    /// the VM's vCPUs run, so the first announcement finds it.
    pub fn listen(uds: &Path) -> Result<Self, GuestReadyError> {
        Ok(Self {
            listener: ReadyListener::bind(uds, READY_PORT)?,
            link: None,
        })
    }

    /// After a boot: waits for guest-init's announcement, or for the VM to end, or `timeout`.
    pub fn wait_ready(
        &mut self,
        vmm: &Vmm,
        timeout: Duration,
    ) -> Result<BootInfo, GuestReadyError> {
        let ready = self.accept(vmm, Instant::now() + timeout, timeout)?;
        self.link = Some(ready.link);
        Ok(ready.boot)
    }

    /// After a restore or reset: hands guest-init the wall clock and fresh entropy and waits for
    /// `Resumed`, the moment the sandbox is ready again. The link the snapshot kept carries it
    /// at once (guest-init was blocked reading it when the snapshot was taken); without one (a
    /// snapshot taken while the link was busy), or if it fails, guest-init connects again and
    /// the new link carries it.
    pub fn resume(
        &mut self,
        vmm: &Vmm,
        timeout: Duration,
    ) -> Result<(BootInfo, ResumedOn), GuestReadyError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let entropy = fresh_entropy().map_err(GuestReadyError::Entropy)?;
        // The old link's host stream went with the restore or reset.
        self.link = None;
        if let Some(stream) = vmm.take_guest_link() {
            match resume_on(vmm, Connection::from_stream(stream), deadline, &entropy) {
                Ok((link, info)) => {
                    tracing::debug!(resumed = ?started.elapsed(), "guest-init resumed on the kept link");
                    self.link = Some(link);
                    return Ok((info, ResumedOn::KeptLink));
                }
                Err(ResumeFailed::Guest(e)) => return Err(e),
                // Dropping the link closes it: guest-init sees the end and connects again.
                Err(ResumeFailed::Link(e)) => {
                    tracing::debug!("the kept link failed, waiting for guest-init: {e}");
                }
            }
        }
        loop {
            let ready = self.accept(vmm, deadline, timeout)?;
            let announced = started.elapsed();
            match resume_on(vmm, ready.link, deadline, &entropy) {
                Ok((link, info)) => {
                    tracing::debug!(?announced, resumed = ?started.elapsed(), "guest-init resumed");
                    self.link = Some(link);
                    return Ok((info, ResumedOn::NewLink));
                }
                Err(ResumeFailed::Guest(e)) => return Err(e),
                // An announcement from before the reset whose connection the reset cut: the
                // guest announces itself again. A guest that keeps announcing and failing still
                // runs out of time.
                Err(ResumeFailed::Link(e)) => {
                    tracing::debug!("announcement link failed, waiting for the next: {e}");
                    if let Some(e) = vm_ended(vmm) {
                        return Err(e);
                    }
                    if Instant::now() >= deadline {
                        return Err(timed_out(vmm, timeout));
                    }
                }
            }
        }
    }

    /// Waits for the next announcement until `deadline`, watching the VM.
    fn accept(
        &self,
        vmm: &Vmm,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<client::Ready, GuestReadyError> {
        loop {
            match self.listener.wait(STEP) {
                Ok(ready) => return Ok(ready),
                Err(client::ReadyError::Timeout(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(e) = vm_ended(vmm) {
                return Err(e);
            }
            if Instant::now() >= deadline {
                return Err(timed_out(vmm, timeout));
            }
        }
    }
}

/// Sends `Resume` on `link` and waits for the answer until `deadline`, watching the VM; the
/// link to keep and what guest-init reported.
fn resume_on(
    vmm: &Vmm,
    mut link: Connection,
    deadline: Instant,
    entropy: &[u8],
) -> Result<(Connection, BootInfo), ResumeFailed> {
    let left = deadline.saturating_duration_since(Instant::now());
    let failed = |e: &dyn std::fmt::Display| ResumeFailed::Link(e.to_string());
    link.set_timeout(Some(left.max(STEP)))
        .map_err(|e| failed(&e))?;
    link.send_resume(UnixTime::now(), entropy)
        .map_err(|e| failed(&e))?;
    while !link.wait_readable(STEP).map_err(|e| failed(&e))? {
        if let Some(e) = vm_ended(vmm) {
            return Err(ResumeFailed::Guest(e));
        }
        if Instant::now() >= deadline {
            return Err(ResumeFailed::Link("no answer in time".into()));
        }
    }
    let info = link.read_resumed().map_err(|e| failed(&e))?;
    let _ = link.set_timeout(None);
    Ok((link, info))
}

/// How handing over the clock on one link failed.
#[derive(Debug)]
enum ResumeFailed {
    /// The link failed (guest-init may connect again).
    Link(String),
    /// The VM ended: nothing will answer.
    Guest(GuestReadyError),
}

/// The guest did not get ready in time: what its console and vCPUs show.
fn timed_out(vmm: &Vmm, timeout: Duration) -> GuestReadyError {
    GuestReadyError::Timeout {
        secs: timeout.as_secs(),
        console: vmm.console.last_lines(30),
        vcpus: vmm.vcpu_summary(),
    }
}

fn fresh_entropy() -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; RESUME_ENTROPY_MIN * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}
