//! One virtio-blk request, parsed from descriptors already copied out of the ring: the 16-byte
//! header is read once into a local copy, and every buffer's direction, length, sector range and
//! guest address is checked before any I/O starts.
//!
//! Layout (the one Linux uses): a device-readable header descriptor of at least 16 bytes, the
//! data descriptors, and a device-writable 1-byte status descriptor last.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, GuestMemoryError, Permissions};

use super::SECTOR_SIZE;
use crate::devices::virtio::GuestMemory;

/// Size of `struct virtio_blk_outhdr` (type, reserved/ioprio, sector).
pub(super) const HEADER_SIZE: u32 = 16;

/// The status byte the device writes last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
// Bounded: the virtio-blk status codes are 0, 1 and 2.
#[allow(clippy::cast_possible_truncation)]
pub(super) enum Status {
    Ok = VIRTIO_BLK_S_OK as u8,
    IoErr = VIRTIO_BLK_S_IOERR as u8,
    Unsupported = VIRTIO_BLK_S_UNSUPP as u8,
}

/// A validated request; `data` are the data descriptors, in chain order.
#[derive(Debug)]
pub(super) enum Request<'d> {
    /// Read `data`'s total length from the disk at byte `offset` into the guest.
    Read { offset: u64, data: &'d [Descriptor] },
    /// Write the guest's `data` to the disk at byte `offset`.
    Write { offset: u64, data: &'d [Descriptor] },
    /// Make earlier writes durable.
    Flush,
    /// Write the device ID into `data` (up to 20 bytes).
    GetId { data: &'d [Descriptor] },
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    /// Header and status need a descriptor each.
    #[error("a chain of {0} descriptor(s) cannot hold a header and a status")]
    TooShort(usize),
    /// More descriptors than `seg_max` data buffers plus header and status.
    #[error("a chain of {0} descriptors exceeds the limit")]
    TooLong(usize),
    #[error("the header descriptor is device-writable")]
    HeaderWritable,
    #[error("the header descriptor has {0} bytes, fewer than {HEADER_SIZE}")]
    HeaderTooShort(u32),
    #[error("the header is not in guest memory: {0}")]
    HeaderUnreadable(GuestMemoryError),
    #[error("the status descriptor has {0} bytes, not 1")]
    StatusLength(u32),
    #[error("request type {0} without data")]
    NoData(u32),
    #[error("request type {0} has a data buffer in the wrong direction")]
    DataDirection(u32),
    #[error("data length {0} is not a whole number of sectors")]
    UnalignedLength(u64),
    #[error("sector {sector} + {len} bytes is beyond the disk's {exposed_len} bytes")]
    OutOfRange {
        sector: u64,
        len: u64,
        exposed_len: u64,
    },
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("data buffer at {addr:#x} (+{len}) is not in guest memory")]
    DataOutsideMemory { addr: u64, len: u32 },
    #[error("flush with data buffers")]
    UnexpectedData,
    #[error("unsupported request type {0}")]
    Unsupported(u32),
}

impl RequestError {
    /// What the guest is told.
    pub(super) fn status(&self) -> Status {
        match self {
            Self::Unsupported(_) => Status::Unsupported,
            _ => Status::IoErr,
        }
    }
}

/// What a request may touch.
#[derive(Clone, Copy, Debug)]
pub(super) struct DiskLimits {
    pub exposed_len: u64,
    pub read_only: bool,
    /// Most descriptors a chain may have (header and status included).
    pub max_descriptors: usize,
}

/// The guest address of a chain's status byte, when its last descriptor can hold one: it must
/// be device-writable, non-empty and in guest memory. The status is the last byte of the
/// device-writable area (virtio 1.x §5.2.6).
pub(super) fn status_byte(mem: &GuestMemory, last: &Descriptor) -> Option<GuestAddress> {
    if !last.is_write_only() || last.len() == 0 {
        return None;
    }
    let addr = last.addr().checked_add(u64::from(last.len()) - 1)?;
    mem.check_range(addr, 1, Permissions::Write).then_some(addr)
}

/// Parses the whole chain `descs` (header first, status last).
pub(super) fn parse<'d>(
    mem: &GuestMemory,
    descs: &'d [Descriptor],
    limits: DiskLimits,
) -> Result<Request<'d>, RequestError> {
    if descs.len() > limits.max_descriptors {
        return Err(RequestError::TooLong(descs.len()));
    }
    let [header, data @ .., status] = descs else {
        return Err(RequestError::TooShort(descs.len()));
    };
    let (type_, sector) = read_header(mem, header)?;
    if status.len() != 1 {
        return Err(RequestError::StatusLength(status.len()));
    }
    match type_ {
        VIRTIO_BLK_T_IN => {
            let len = check_data(mem, type_, data, Permissions::Write)?;
            let offset = check_range(sector, len, limits)?;
            Ok(Request::Read { offset, data })
        }
        VIRTIO_BLK_T_OUT => {
            if limits.read_only {
                // virtio 1.x §5.2.6.2: IOERR, and no data written.
                return Err(RequestError::ReadOnly);
            }
            let len = check_data(mem, type_, data, Permissions::Read)?;
            let offset = check_range(sector, len, limits)?;
            Ok(Request::Write { offset, data })
        }
        VIRTIO_BLK_T_FLUSH if data.is_empty() => Ok(Request::Flush),
        VIRTIO_BLK_T_FLUSH => Err(RequestError::UnexpectedData),
        VIRTIO_BLK_T_GET_ID => {
            check_data(mem, type_, data, Permissions::Write)?;
            Ok(Request::GetId { data })
        }
        other => Err(RequestError::Unsupported(other)),
    }
}

/// Copies the header out of guest memory once; returns (type, sector).
fn read_header(mem: &GuestMemory, header: &Descriptor) -> Result<(u32, u64), RequestError> {
    if header.is_write_only() {
        return Err(RequestError::HeaderWritable);
    }
    if header.len() < HEADER_SIZE {
        return Err(RequestError::HeaderTooShort(header.len()));
    }
    let mut raw = [0u8; HEADER_SIZE as usize];
    mem.read_slice(&mut raw, header.addr())
        .map_err(RequestError::HeaderUnreadable)?;
    let [t0, t1, t2, t3, _, _, _, _, s @ ..] = raw;
    Ok((u32::from_le_bytes([t0, t1, t2, t3]), u64::from_le_bytes(s)))
}

/// Checks every data buffer's direction and guest range; returns their total length.
fn check_data(
    mem: &GuestMemory,
    type_: u32,
    data: &[Descriptor],
    access: Permissions,
) -> Result<u64, RequestError> {
    let device_writes = access == Permissions::Write;
    let mut total = 0u64;
    for d in data {
        if d.is_write_only() != device_writes {
            return Err(RequestError::DataDirection(type_));
        }
        if !mem.check_range(d.addr(), d.len() as usize, access) {
            return Err(RequestError::DataOutsideMemory {
                addr: d.addr().0,
                len: d.len(),
            });
        }
        // At most `max_descriptors` lengths below 2^32 each: cannot overflow, but stay checked.
        total = total.saturating_add(u64::from(d.len()));
    }
    if total == 0 {
        return Err(RequestError::NoData(type_));
    }
    Ok(total)
}

/// Checks that `len` bytes at `sector` are whole sectors inside the disk; returns the offset.
fn check_range(sector: u64, len: u64, limits: DiskLimits) -> Result<u64, RequestError> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(RequestError::UnalignedLength(len));
    }
    let span = sector
        .checked_mul(SECTOR_SIZE)
        .and_then(|offset| Some((offset, offset.checked_add(len)?)));
    match span {
        Some((offset, end)) if end <= limits.exposed_len => Ok(offset),
        _ => Err(RequestError::OutOfRange {
            sector,
            len,
            exposed_len: limits.exposed_len,
        }),
    }
}
