//! The host <-> guest frame decoder, both directions: what guest-init sends the host
//! (`Response`) and what the host sends guest-init (`Request`), from any bytes. Input: a flags
//! byte (bit 0: fix the CRC so the payload reaches bincode; bit 1: decode as `Request`), then the
//! stream. Several frames are read in a row, as a connection would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_protocol::{read_frame, FrameError, Request, Response, FRAME_HEADER_LEN};

/// Frames read from one input at most.
const MAX_FRAMES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let mut stream = stream.to_vec();
    if flags & 1 == 1 && stream.len() >= FRAME_HEADER_LEN {
        let len = u32::from_le_bytes([stream[6], stream[7], stream[8], stream[9]]) as usize;
        let end = FRAME_HEADER_LEN.saturating_add(len).min(stream.len());
        let crc = crc32fast::hash(&stream[FRAME_HEADER_LEN..end]);
        stream[10..14].copy_from_slice(&crc.to_le_bytes());
    }
    let mut reader = &stream[..];
    for _ in 0..MAX_FRAMES {
        let outcome = if flags & 2 == 2 {
            read_frame::<_, Request>(&mut reader).map(|_| ())
        } else {
            read_frame::<_, Response>(&mut reader).map(|_| ())
        };
        match outcome {
            Ok(()) => {}
            Err(FrameError::Closed) => break,
            Err(_) => break,
        }
    }
});
