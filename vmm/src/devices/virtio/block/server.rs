//! Serving one descriptor chain: copy its descriptors out of the ring once, parse and check the
//! request, do the I/O, and write the status byte. Never panics on guest input; every chain that
//! has a status byte gets a status.

use std::fmt::Display;
use std::time::{Duration, Instant};

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::Bytes;

use super::backing::{Backing, DiskIoError};
use super::identity::DiskSerial;
use super::request::{parse, status_byte, DiskLimits, Request, Status};
use crate::devices::virtio::GuestMemory;

/// Minimum time between two warnings about failed disk I/O.
const IO_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Executes requests against the backing file.
#[derive(Debug)]
pub(super) struct RequestServer {
    backing: Backing,
    serial: DiskSerial,
    max_descriptors: usize,
    /// The current chain's descriptors; allocated once, reused for every request.
    descriptors: Vec<Descriptor>,
    /// The driver did not negotiate FLUSH: every write must be durable before it completes.
    write_through: bool,
    io_warnings: WarnLimiter,
}

impl RequestServer {
    /// A server for chains of at most `max_descriptors` descriptors (header and status
    /// included); longer ones are refused.
    pub(super) fn new(backing: Backing, serial: DiskSerial, max_descriptors: usize) -> Self {
        Self {
            backing,
            serial,
            max_descriptors,
            descriptors: Vec::with_capacity(max_descriptors + 1),
            write_through: true,
            io_warnings: WarnLimiter::new(IO_WARN_INTERVAL),
        }
    }

    pub(super) fn backing(&self) -> &Backing {
        &self.backing
    }

    pub(super) fn serial(&self) -> &DiskSerial {
        &self.serial
    }

    /// Whether writes are made durable before completing (FLUSH not negotiated).
    pub(super) fn set_write_through(&mut self, write_through: bool) {
        self.write_through = write_through;
    }

    /// Serves one request; returns the number of bytes written to the chain's device-writable
    /// buffers (the used length), 0 for a chain without a usable status byte.
    pub(super) fn serve(&mut self, mem: &GuestMemory, chain: DescriptorChain<&GuestMemory>) -> u32 {
        // virtio-queue ends a chain that loops, points past the table or has a bad indirect
        // table; keep one descriptor beyond the limit so an overlong chain is recognised.
        self.descriptors.clear();
        let mut last = None;
        for desc in chain {
            if self.descriptors.len() <= self.max_descriptors {
                self.descriptors.push(desc);
            }
            last = Some(desc);
        }
        let Some(last) = last else {
            tracing::debug!("virtio-blk: empty descriptor chain");
            return 0;
        };
        if last.has_next() {
            tracing::debug!("virtio-blk: descriptor chain does not terminate; no status written");
            return 0;
        }
        let Some(status_addr) = status_byte(mem, &last) else {
            tracing::debug!("virtio-blk: chain has no writable status byte; no status written");
            return 0;
        };
        let limits = DiskLimits {
            exposed_len: self.backing.exposed_len(),
            read_only: self.backing.read_only(),
            max_descriptors: self.max_descriptors,
        };
        let (status, written) = match parse(mem, &self.descriptors, limits) {
            Ok(request) => match execute(
                mem,
                &self.backing,
                &self.serial,
                self.write_through,
                &request,
            ) {
                Ok(written) => (Status::Ok, written),
                Err(e) => {
                    self.io_warnings.warn(&e);
                    (Status::IoErr, 0)
                }
            },
            Err(e) => {
                tracing::debug!("virtio-blk: refused request: {e}");
                (e.status(), 0)
            }
        };
        if let Err(e) = mem.write_obj(status as u8, status_addr) {
            tracing::debug!("virtio-blk: cannot write the status byte: {e}");
            return 0;
        }
        written.saturating_add(1)
    }
}

/// Runs a validated request; returns how many bytes went into the guest's buffers.
fn execute(
    mem: &GuestMemory,
    backing: &Backing,
    serial: &DiskSerial,
    write_through: bool,
    request: &Request<'_>,
) -> Result<u32, DiskIoError> {
    match *request {
        Request::Read { mut offset, data } => {
            let mut written = 0u32;
            for d in data {
                backing.read_to_guest(mem, d.addr(), d.len(), offset)?;
                offset = offset.saturating_add(u64::from(d.len()));
                written = written.saturating_add(d.len());
            }
            Ok(written)
        }
        Request::Write { mut offset, data } => {
            for d in data {
                backing.write_from_guest(mem, d.addr(), d.len(), offset)?;
                offset = offset.saturating_add(u64::from(d.len()));
            }
            if write_through {
                backing.flush()?;
            }
            Ok(0)
        }
        Request::Flush => {
            if !backing.read_only() {
                backing.flush()?;
            }
            Ok(0)
        }
        Request::GetId { data } => {
            let mut id = &serial.as_bytes()[..];
            let mut written = 0u32;
            for d in data {
                if id.is_empty() {
                    break;
                }
                let n = id.len().min(d.len() as usize);
                let (now, rest) = id.split_at(n);
                mem.write_slice(now, d.addr())
                    .map_err(|source| DiskIoError::GuestMemory {
                        addr: d.addr().0,
                        len: d.len(),
                        source,
                    })?;
                id = rest;
                written = written.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            }
            Ok(written)
        }
    }
}

/// Logs at warn at most once per interval, counting what it held back.
#[derive(Debug)]
struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, error: &impl Display) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            self.suppressed += 1;
            tracing::debug!("virtio-blk: request failed: {error}");
            return;
        }
        tracing::warn!(
            suppressed = self.suppressed,
            "virtio-blk: request failed: {error}"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}
