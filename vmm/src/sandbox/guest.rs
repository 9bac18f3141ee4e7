//! The VMM's own conversations with guest-init: waiting for readiness after a boot, and
//! handing it the clock and fresh entropy after a restore or reset.

use crate::config::{CONTROL_PORT, READY_PORT};
use crate::vmm::Vmm;
use paddock_protocol::{read_frame, write_frame, BootInfo, FrameError, Request, Response, UnixTime, RESUME_ENTROPY_MIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why guest-init did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// The VM ended first.
    #[error("the guest stopped before guest-init was ready ({reason}); last console lines:\n{console}")]
    VmEnded { reason: String, console: String },
    /// Nothing within the timeout.
    #[error("guest-init was not ready within {secs} s; last console lines:\n{console}")]
    Timeout { secs: u64, console: String },
    /// The exchange failed.
    #[error("talking to guest-init failed: {0}")]
    Frame(#[from] FrameError),
    /// A socket operation failed.
    #[error("vsock socket: {0}")]
    Io(#[from] std::io::Error),
    /// guest-init answered something unexpected.
    #[error("guest-init answered {0}")]
    Unexpected(String),
}

/// The host end of guest-init's readiness report: the Unix socket `<uds>_<READY_PORT>`.
pub struct ReadyListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ReadyListener {
    /// Listens for the readiness connection of the VM whose vsock socket is `uds`.
    pub fn bind(uds: &Path) -> std::io::Result<Self> {
        let path = PathBuf::from(format!("{}_{READY_PORT}", uds.display()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    /// Waits for guest-init's `Ready`, watching for the VM ending meanwhile.
    pub fn wait(&self, vmm: &Vmm, timeout: Duration) -> Result<BootInfo, ReadyError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100))))?;
                    return match read_frame(&mut stream)? {
                        Response::Ready(info) => Ok(info),
                        other => Err(ReadyError::Unexpected(format!("{other:?}"))),
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(reason) = vmm.wait_exit(Some(Duration::from_millis(2))) {
                return Err(ReadyError::VmEnded { reason: format!("{reason:?}"), console: vmm.console.last_lines(30) });
            }
            if Instant::now() >= deadline {
                return Err(ReadyError::Timeout { secs: timeout.as_secs(), console: vmm.console.last_lines(30) });
            }
        }
    }
}

impl Drop for ReadyListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Opens a stream to guest vsock `port` through the VMM's Unix socket (`CONNECT <port>`).
pub fn connect(uds: &Path, port: u32, timeout: Duration) -> Result<UnixStream, ReadyError> {
    let mut stream = UnixStream::connect(uds)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    let mut line = Vec::new();
    BufReader::new((&mut stream).take(64)).read_until(b'\n', &mut line)?;
    if !line.starts_with(b"OK ") {
        return Err(ReadyError::Unexpected(format!("the vsock handshake got {:?}", String::from_utf8_lossy(&line))));
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

fn fresh_entropy() -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; RESUME_ENTROPY_MIN * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// After a restore or reset: hands guest-init the wall clock and fresh entropy and waits for
/// `Resumed` — the moment the sandbox is ready again. Retries while the guest's vsock transport
/// is still coming back.
pub fn resume(vmm: &Vmm, timeout: Duration) -> Result<(), ReadyError> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = (|| {
            let mut stream = connect(&vmm.vsock_uds, CONTROL_PORT, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write_frame(&mut stream, &Request::Resume { wall_clock: UnixTime::now(), entropy: fresh_entropy()? })?;
            match read_frame(&mut stream)? {
                Response::Resumed(_) => Ok(()),
                other => Err(ReadyError::Unexpected(format!("{other:?}"))),
            }
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => {
                if let Some(reason) = vmm.exit.reason() {
                    return Err(ReadyError::VmEnded { reason: format!("{reason:?}"), console: vmm.console.last_lines(30) });
                }
                if Instant::now() >= deadline {
                    tracing::warn!("resume failed: {e}");
                    return Err(ReadyError::Timeout { secs: timeout.as_secs(), console: vmm.console.last_lines(30) });
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}
