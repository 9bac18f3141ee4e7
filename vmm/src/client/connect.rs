//! The `CONNECT <port>` handshake with the VMM's vsock Unix socket, with optional retries while
//! the guest is not listening yet.

use super::connection::Connection;
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest handshake reply accepted (`OK ` + a u32 + newline fits easily).
const MAX_REPLY: usize = 32;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit for one attempt's handshake (the VMM's answer).
    pub handshake_timeout: Duration,
    /// Keep retrying this long while the socket is missing or refuses, or the guest port is
    /// not listening yet (the VMM closes the connection). `None`: a single attempt.
    pub retry_for: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            retry_for: None,
        }
    }
}

/// Errors of [`connect`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to the vsock socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("guest port {port} is not listening (the VMM closed the connection)")]
    NotListening { port: u32 },
    #[error("no handshake answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected handshake answer {reply:?}")]
    BadReply { reply: String },
    #[error("handshake i/o: {0}")]
    Io(#[source] io::Error),
}

impl ConnectError {
    /// Whether another attempt may succeed (the guest or VMM may simply not be up yet).
    fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Socket { source, .. } => matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused
            ),
            ConnectError::NotListening { .. } | ConnectError::Timeout(_) => true,
            ConnectError::BadReply { .. } | ConnectError::Io(_) => false,
        }
    }
}

/// Connects to guest `port` through the VMM's vsock socket at `uds_path` (one attempt).
pub fn connect(uds_path: impl AsRef<Path>, port: u32) -> Result<Connection, ConnectError> {
    connect_with(uds_path, port, &ConnectOptions::default())
}

/// Connects to guest `port` through the VMM's vsock socket at `uds_path`.
pub fn connect_with(
    uds_path: impl AsRef<Path>,
    port: u32,
    options: &ConnectOptions,
) -> Result<Connection, ConnectError> {
    let uds_path = uds_path.as_ref();
    let deadline = options.retry_for.map(|limit| Instant::now() + limit);
    let mut delay = Duration::from_millis(1);
    loop {
        match attempt(uds_path, port, options.handshake_timeout) {
            Ok(connection) => return Ok(connection),
            Err(e) => {
                let Some(deadline) = deadline else {
                    return Err(e);
                };
                let now = Instant::now();
                if !e.is_retryable() || now >= deadline {
                    return Err(e);
                }
                tracing::trace!("vsock connect to port {port} retrying: {e}");
                std::thread::sleep(delay.min(deadline - now));
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}

fn attempt(uds_path: &Path, port: u32, timeout: Duration) -> Result<Connection, ConnectError> {
    let mut stream = UnixStream::connect(uds_path).map_err(|source| ConnectError::Socket {
        path: uds_path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(ConnectError::Io)?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(|e| classify_io(e, port, timeout))?;
    let reply = read_reply_line(&mut stream).map_err(|e| classify_io(e, port, timeout))?;
    let host_port = parse_ok_reply(&reply).ok_or_else(|| ConnectError::BadReply {
        reply: String::from_utf8_lossy(&reply).into_owned(),
    })?;
    stream
        .set_read_timeout(None)
        .and_then(|()| stream.set_write_timeout(None))
        .map_err(ConnectError::Io)?;
    Ok(Connection::from_handshake(stream, host_port))
}

fn classify_io(e: io::Error, port: u32, timeout: Duration) -> ConnectError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ConnectError::Timeout(timeout),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
            ConnectError::NotListening { port }
        }
        _ => ConnectError::Io(e),
    }
}

/// Reads the reply up to and excluding `\n`, one byte at a time so no guest data that follows
/// is consumed.
fn read_reply_line(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(MAX_REPLY);
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Err(io::Error::from(ErrorKind::UnexpectedEof)),
            Ok(_) if byte[0] == b'\n' => return Ok(line),
            Ok(_) if line.len() >= MAX_REPLY => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "handshake reply too long",
                ))
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `OK <host_port>` -> the port.
fn parse_ok_reply(reply: &[u8]) -> Option<u32> {
    std::str::from_utf8(reply)
        .ok()?
        .strip_prefix("OK ")?
        .trim_end_matches('\r')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_replies_parse_and_others_do_not() {
        assert_eq!(parse_ok_reply(b"OK 1073741824"), Some(1_073_741_824));
        assert_eq!(parse_ok_reply(b"OK 5\r"), Some(5));
        assert_eq!(parse_ok_reply(b"OK"), None);
        assert_eq!(parse_ok_reply(b"OK -1"), None);
        assert_eq!(parse_ok_reply(b"ERR 5"), None);
        assert_eq!(parse_ok_reply(b"OK 99999999999"), None);
    }
}
