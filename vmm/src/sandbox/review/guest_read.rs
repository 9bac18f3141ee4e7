//! Reading one file of a copy-on-write workspace as the guest has it. The guest decides how
//! big its files are (up to its memory), so none is ever held whole: it is streamed into a
//! writer (`apply` writes it beside its target), or read into memory up to a cap (`diff
//! --patch`) and no further.

use crate::client;
use paddock_protocol::{ExecRequest, ExitStatus, CONTROL_PORT};
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// The most of one guest file `paddock diff --patch` reads into memory.
pub const MAX_PATCH_FILE: u64 = 16 << 20;

/// Why a guest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GuestReadError {
    /// guest-init could not be reached.
    #[error("connecting to guest-init: {0}")]
    Connect(#[from] client::ConnectError),
    /// The reading command failed to run, or its output could not be written.
    #[error("reading it in the guest: {0}")]
    Exec(#[from] client::ExecError),
    /// It ran and failed (the file is gone or unreadable); `stderr` is the start of what it
    /// said.
    #[error("reading it in the guest failed (exit status {}): {stderr}", status.shell_code())]
    Failed { status: ExitStatus, stderr: String },
    /// It has more bytes than may be read into memory; no more than `limit` were read.
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The guest took longer than this to send it all.
    #[error("the guest took longer than {after:?} to send it")]
    TimedOut { after: Duration },
    /// The connection could not be set up.
    #[error("talking to guest-init: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the guest's bytes of `rel` (relative to the workspace `dir`) to `out` as they
/// arrive. The name goes in on stdin, NUL-terminated, so any bytes are fine.
pub fn guest_file_into(
    uds: &Path,
    dir: &Path,
    rel: &[u8],
    out: &mut dyn Write,
) -> Result<(), GuestReadError> {
    let request = ExecRequest {
        argv: ["xargs", "-0", "cat", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        env: Vec::new(),
        cwd: Some(dir.display().to_string()),
        stdin: true,
        tty: None,
    };
    let conn = client::connect(uds, CONTROL_PORT)?;
    conn.set_timeout(Some(super::REVIEW_TIMEOUT))?;
    let input = [rel, b"\0"].concat();
    let done = within(super::REVIEW_TIMEOUT, conn.closer()?, || {
        conn.exec_streaming(&request, &input, out)
    })?;
    if !done.status.success() {
        return Err(GuestReadError::Failed {
            status: done.status,
            stderr: String::from_utf8_lossy(&done.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Runs `read` (a read from the guest), ending its connection through `closer` if it takes
/// longer than `limit` in all: a guest that sends a byte now and then must not hold the host's
/// `apply` or `diff` forever.
fn within<T>(
    limit: Duration,
    closer: client::Closer,
    read: impl FnOnce() -> Result<T, client::ExecError>,
) -> Result<T, GuestReadError> {
    let (finished, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || match watch.recv_timeout(limit) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            closer.close();
            true
        }
        _ => false,
    });
    let result = read();
    drop(finished);
    let timed_out = watchdog.join().unwrap_or(false);
    match result {
        Ok(value) => Ok(value),
        Err(_) if timed_out => Err(GuestReadError::TimedOut { after: limit }),
        Err(e) => Err(e.into()),
    }
}

/// The guest's bytes of `rel` (relative to the workspace `dir`), if there are no more than
/// `limit` of them; of a larger file, no more than `limit` are read.
pub fn guest_file(
    uds: &Path,
    dir: &Path,
    rel: &[u8],
    limit: u64,
) -> Result<Vec<u8>, GuestReadError> {
    let mut buffer = CappedBuffer::new(crate::cast::u64_to_usize(limit));
    match guest_file_into(uds, dir, rel, &mut buffer) {
        Ok(()) => Ok(buffer.bytes),
        Err(GuestReadError::Exec(client::ExecError::Output(_))) if buffer.overflowed => {
            Err(GuestReadError::TooLarge { limit })
        }
        Err(e) => Err(e),
    }
}

/// Memory for at most `limit` bytes: a write that would pass it fails (ending the read) and
/// nothing is reserved beyond it.
#[derive(Debug)]
struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl CappedBuffer {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let len = self.bytes.len().saturating_add(data.len());
        if len > self.limit {
            self.overflowed = true;
            return Err(io::Error::from(io::ErrorKind::FileTooLarge));
        }
        if len > self.bytes.capacity() {
            // Doubling as a Vec does, but never past the limit.
            let capacity = len.max(self.bytes.capacity() * 2).min(self.limit);
            self.bytes.reserve_exact(capacity - self.bytes.len());
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
