//! Frame codec: a fixed little-endian header followed by a bincode payload.
//!
//! Header layout (14 bytes): magic `PDKF` (4), protocol version (u16), payload length (u32,
//! at most [`MAX_FRAME_PAYLOAD`]), CRC32 of the payload (u32). The header is validated before
//! anything is allocated, so a hostile peer can never make the reader allocate more than
//! [`MAX_FRAME_PAYLOAD`] bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, ErrorKind, Read, Write};

/// Bytes that open every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"PDKF";
/// Version of this protocol; a peer speaking another version is rejected.
/// 2: the `Ready` announcement stays open as a link that carries requests (`Resume`).
/// 3: `BootInfo` carries the container engine's state (`engine: EngineState`).
/// 4: PTY sessions: `ExecRequest::tty`, `Resize`, `Detach`/`Detached`, `Attach`/`Attached`.
/// 5: `Response::Error` carries an `ErrorKind`.
/// 7: the link a `Ready` opened survives snapshots, restores and resets (the VMM keeps it in its
///    snapshot): `Resume` arrives on it with no new `Ready`; guest-init announces itself again
///    only when the link breaks.
/// 8: a workspace mount a snapshot held is carried across it (`WorkspaceMounted` says whether
///    the mount was carried; the workspace link's hellos are version 2, see `workspace`).
pub const PROTOCOL_VERSION: u16 = 8;
/// Upper bound of a frame payload, enforced on both encode and decode.
pub const MAX_FRAME_PAYLOAD: u32 = 1 << 20;
/// Size of the frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 14;

/// Errors while encoding, sending, receiving or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream cleanly at a frame boundary.
    #[error("connection closed")]
    Closed,
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: stream ended after {got} of {expected} bytes")]
    Truncated { expected: usize, got: usize },
    #[error("bad frame magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    #[error("frame payload of {len} bytes exceeds the {MAX_FRAME_PAYLOAD}-byte limit")]
    TooLarge { len: u64 },
    #[error("frame checksum mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{extra} unexpected bytes after the message in the frame payload")]
    TrailingBytes { extra: usize },
    #[error("frame i/o: {0}")]
    Io(#[from] io::Error),
}

fn bincode_config() -> impl bincode::config::Config {
    // The limit makes bincode refuse length prefixes larger than a frame could hold before it
    // reserves memory for them.
    bincode::config::standard().with_limit::<{ MAX_FRAME_PAYLOAD as usize }>()
}

/// Encodes `msg` into one complete frame (header + payload).
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut frame, bincode_config())?;
    let payload_len = frame.len() - FRAME_HEADER_LEN;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|len| *len <= MAX_FRAME_PAYLOAD)
        .ok_or(FrameError::TooLarge {
            len: payload_len as u64,
        })?;
    let crc = crc32fast::hash(&frame[FRAME_HEADER_LEN..]);
    frame[0..4].copy_from_slice(&FRAME_MAGIC);
    frame[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame[6..10].copy_from_slice(&len.to_le_bytes());
    frame[10..14].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// Encodes `msg` and writes the whole frame with a single `write_all`, then flushes.
///
/// Writers shared between threads must hold their lock around this call so frames never
/// interleave.
pub fn write_frame<W: Write + ?Sized, T: Serialize + ?Sized>(
    writer: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    writer.write_all(&frame)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame and decodes its payload as `T`.
///
/// Returns [`FrameError::Closed`] if the stream ends exactly at a frame boundary.
pub fn read_frame<R: Read + ?Sized, T: DeserializeOwned>(reader: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match read_full(reader, &mut header)? {
        0 => return Err(FrameError::Closed),
        n if n < FRAME_HEADER_LEN => {
            return Err(FrameError::Truncated {
                expected: FRAME_HEADER_LEN,
                got: n,
            })
        }
        _ => {}
    }
    let (len, expected_crc) = parse_header(&header)?;

    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload)?;
    if got < len {
        return Err(FrameError::Truncated {
            expected: FRAME_HEADER_LEN + len,
            got: FRAME_HEADER_LEN + got,
        });
    }
    let actual_crc = crc32fast::hash(&payload);
    if actual_crc != expected_crc {
        return Err(FrameError::Checksum {
            expected: expected_crc,
            actual: actual_crc,
        });
    }
    let (msg, used) = bincode::serde::decode_from_slice(&payload, bincode_config())?;
    if used != len {
        return Err(FrameError::TrailingBytes { extra: len - used });
    }
    Ok(msg)
}

/// Validates a header; returns the payload length and its expected CRC32.
fn parse_header(header: &[u8; FRAME_HEADER_LEN]) -> Result<(usize, u32), FrameError> {
    let [m0, m1, m2, m3, v0, v1, l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let magic = [m0, m1, m2, m3];
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLarge { len: len.into() });
    }
    // MAX_FRAME_PAYLOAD fits in usize on every supported target.
    Ok((len as usize, u32::from_le_bytes([c0, c1, c2, c3])))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
