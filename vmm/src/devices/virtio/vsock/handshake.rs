//! The host side's opening line: a host process connects to the vsock Unix socket and writes
//! `CONNECT <port>\n` to reach guest port `<port>` (Firecracker's convention).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

/// Longest accepted line, newline included ("CONNECT 4294967295\n" is 19 bytes).
pub const MAX_LINE: usize = 32;

/// Where a handshake stands after reading what the host sent so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The line is incomplete; wait for more bytes.
    Pending,
    /// A well-formed request for this guest port.
    Connect(u32),
    /// Garbage, an overlong line, EOF or an I/O error: close the stream.
    Failed,
}

/// A host connection that has not finished its `CONNECT` line.
#[derive(Debug)]
pub struct HostHandshake {
    stream: UnixStream,
    line: Vec<u8>,
}

impl HostHandshake {
    /// Starts reading the line from a nonblocking stream.
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            line: Vec::with_capacity(MAX_LINE),
        }
    }

    /// Gives the stream back once the handshake succeeded.
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Reads what is available. Bytes are read one at a time so nothing after the newline (the
    /// start of the payload) is consumed here.
    pub fn advance(&mut self) -> Step {
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return Step::Failed,
                Ok(_) if byte[0] == b'\n' => {
                    return parse_connect(&self.line).map_or(Step::Failed, Step::Connect)
                }
                Ok(_) => {
                    self.line.push(byte[0]);
                    if self.line.len() >= MAX_LINE {
                        return Step::Failed;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Failed,
            }
        }
    }
}

/// Parses `CONNECT <decimal u32>` (surrounding ASCII whitespace tolerated).
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let digits = line
        .trim_ascii()
        .strip_prefix(b"CONNECT ")?
        .trim_ascii_start();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_only_well_formed_lines() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Some(1024));
        assert_eq!(parse_connect(b"CONNECT 4294967295\r"), Some(u32::MAX));
        for bad in [
            &b"CONNECT 4294967296"[..],
            b"CONNECT",
            b"CONNECT ",
            b"CONNECT -1",
            b"CONNECT 1x",
            b"connect 1",
            b"OK 1",
        ] {
            assert_eq!(
                parse_connect(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn reads_line_without_consuming_payload() {
        let (mut host, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut hs = HostHandshake::new(ours);
        assert_eq!(hs.advance(), Step::Pending);
        host.write_all(b"CONNECT 10").unwrap();
        assert_eq!(hs.advance(), Step::Pending);
        host.write_all(b"24\npayload").unwrap();
        assert_eq!(hs.advance(), Step::Connect(1024));
        let mut rest = [0u8; 7];
        hs.into_stream().read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"payload");
    }

    #[test]
    fn rejects_overlong_lines_and_eof() {
        let (mut host, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut hs = HostHandshake::new(ours);
        host.write_all(&[b'A'; MAX_LINE + 5]).unwrap();
        assert_eq!(hs.advance(), Step::Failed);

        let (host, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut hs = HostHandshake::new(ours);
        drop(host);
        assert_eq!(hs.advance(), Step::Failed);
    }
}
