//! Copies bytes both ways between a guest program's connection and its host connection until
//! both directions have ended: one poll() loop, non-blocking sockets, a bounded buffer per
//! direction. Half-close aware: the end of one direction (EOF) is passed on as a
//! `shutdown(SHUT_WR)` of the other socket while the opposite direction keeps flowing.

use rustix::event::{PollFd, PollFlags};
use rustix::net::Shutdown;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsFd;

/// Bytes buffered per direction.
const CHUNK: usize = 16 * 1024;

/// One end of a spliced connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The guest program's connection.
    Program,
    /// The connection to the host's egress proxy.
    Host,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Program => "program",
            Side::Host => "host",
        })
    }
}

/// Why splicing stopped before both directions ended.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    #[error("cannot make the {side} socket non-blocking: {source}")]
    NonBlocking { side: Side, source: io::Error },
    #[error("poll: {0}")]
    Poll(#[source] io::Error),
    #[error("reading from the {side}: {source}")]
    Read { side: Side, source: io::Error },
    #[error("writing to the {side}: {source}")]
    Write { side: Side, source: io::Error },
}

/// Bytes carried each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    pub to_host: u64,
    pub to_program: u64,
}

/// One direction: reads from `from`, writes to the other side.
struct Direction {
    from: Side,
    to: Side,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    source_open: bool,
    sink_shut: bool,
    moved: u64,
}

impl Direction {
    fn new(from: Side, to: Side) -> Self {
        Self {
            from,
            to,
            buf: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            source_open: true,
            sink_shut: false,
            moved: 0,
        }
    }

    fn wants_read(&self) -> bool {
        self.source_open && self.start == self.end
    }

    fn wants_write(&self) -> bool {
        self.start < self.end
    }

    fn finished(&self) -> bool {
        self.sink_shut
    }

    /// Reads what is there (the buffer is empty); EOF closes the source.
    fn fill(&mut self, source: &mut impl Read) -> Result<(), SpliceError> {
        match source.read(&mut self.buf) {
            Ok(0) => self.source_open = false,
            Ok(n) => {
                self.start = 0;
                self.end = n.min(self.buf.len());
            }
            Err(e) if is_retry(&e) => {}
            Err(source) => {
                return Err(SpliceError::Read {
                    side: self.from,
                    source,
                })
            }
        }
        Ok(())
    }

    /// Writes as much of the buffer as the sink takes now.
    fn drain(&mut self, sink: &mut impl Write) -> Result<(), SpliceError> {
        while self.start < self.end {
            let pending = self.buf.get(self.start..self.end).unwrap_or_default();
            match sink.write(pending) {
                Ok(0) => {
                    return Err(SpliceError::Write {
                        side: self.to,
                        source: ErrorKind::WriteZero.into(),
                    })
                }
                Ok(n) => {
                    let n = n.min(self.end - self.start);
                    self.start += n;
                    self.moved += n as u64;
                }
                Err(e) if is_retry(&e) => return Ok(()),
                Err(source) => {
                    return Err(SpliceError::Write {
                        side: self.to,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Passes the source's EOF on once everything before it was written.
    fn shut_sink_when_done(&mut self, sink: &impl AsFd) {
        if !self.source_open && !self.wants_write() && !self.sink_shut {
            // The peer may already be gone (ENOTCONN); the direction is over either way.
            let _ = rustix::net::shutdown(sink, Shutdown::Write);
            self.sink_shut = true;
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

fn interest(read: bool, write: bool) -> PollFlags {
    let mut flags = PollFlags::empty();
    if read {
        flags |= PollFlags::IN;
    }
    if write {
        flags |= PollFlags::OUT;
    }
    flags
}

/// Splices `program` and `host` (connected sockets, made non-blocking here) until both
/// directions have ended or one fails.
pub fn splice<P, H>(program: &mut P, host: &mut H) -> Result<Spliced, SpliceError>
where
    P: Read + Write + AsFd,
    H: Read + Write + AsFd,
{
    for (side, fd) in [(Side::Program, program.as_fd()), (Side::Host, host.as_fd())] {
        rustix::io::ioctl_fionbio(fd, true).map_err(|e| SpliceError::NonBlocking {
            side,
            source: e.into(),
        })?;
    }
    let mut up = Direction::new(Side::Program, Side::Host);
    let mut down = Direction::new(Side::Host, Side::Program);
    while !(up.finished() && down.finished()) {
        let program_interest = interest(up.wants_read(), down.wants_write());
        let host_interest = interest(down.wants_read(), up.wants_write());
        let (program_ready, host_ready) = wait(program, program_interest, host, host_interest)?;
        if program_ready && up.wants_read() {
            up.fill(program)?;
        }
        if host_ready && down.wants_read() {
            down.fill(host)?;
        }
        // Non-blocking writes: trying one that is not ready costs an EAGAIN, no more.
        up.drain(host)?;
        down.drain(program)?;
        up.shut_sink_when_done(host);
        down.shut_sink_when_done(program);
    }
    Ok(Spliced {
        to_host: up.moved,
        to_program: down.moved,
    })
}

/// Polls the sockets that have an interest; which of them are ready (an error or hang-up
/// counts: the next read or write reports it).
fn wait(
    program: &impl AsFd,
    program_interest: PollFlags,
    host: &impl AsFd,
    host_interest: PollFlags,
) -> Result<(bool, bool), SpliceError> {
    let mut sides = Vec::with_capacity(2);
    let mut fds = Vec::with_capacity(2);
    if !program_interest.is_empty() {
        sides.push(Side::Program);
        fds.push(PollFd::new(program, program_interest));
    }
    if !host_interest.is_empty() {
        sides.push(Side::Host);
        fds.push(PollFd::new(host, host_interest));
    }
    if fds.is_empty() {
        // Every unfinished direction has an interest; nothing to wait for means nothing left.
        return Ok((false, false));
    }
    loop {
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SpliceError::Poll(e.into())),
        }
    }
    let ready = |side: Side| {
        sides
            .iter()
            .zip(&fds)
            .any(|(s, fd)| *s == side && !fd.revents().is_empty())
    };
    Ok((ready(Side::Program), ready(Side::Host)))
}

#[cfg(test)]
mod tests;
