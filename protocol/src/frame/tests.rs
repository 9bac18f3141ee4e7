//! Unit tests of the frame codec: header validation, bounds, truncation and streams.

use super::*;
use crate::{Request, Response};
use std::io::Cursor;

/// A reader that hands out at most `step` bytes per call, interrupted before every read,
/// and records how many bytes were consumed.
struct TrickleReader {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    interrupt_next: bool,
}

impl TrickleReader {
    fn new(data: Vec<u8>, step: usize) -> Self {
        Self {
            data,
            pos: 0,
            step,
            interrupt_next: true,
        }
    }
}

impl Read for TrickleReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupt_next {
            self.interrupt_next = false;
            return Err(io::Error::from(ErrorKind::Interrupted));
        }
        self.interrupt_next = true;
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn header(magic: [u8; 4], version: u16, len: u32, crc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(FRAME_HEADER_LEN);
    h.extend_from_slice(&magic);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn frame_with_payload(payload: &[u8]) -> Vec<u8> {
    let mut f = header(
        FRAME_MAGIC,
        PROTOCOL_VERSION,
        u32::try_from(payload.len()).unwrap(),
        crc32fast::hash(payload),
    );
    f.extend_from_slice(payload);
    f
}

#[test]
fn header_layout_is_as_documented() {
    let frame = encode_frame(&Request::Ping { nonce: 7 }).unwrap();
    assert_eq!(&frame[0..4], b"PDKF");
    assert_eq!(u16::from_le_bytes([frame[4], frame[5]]), PROTOCOL_VERSION);
    let len = u32::from_le_bytes(frame[6..10].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - FRAME_HEADER_LEN);
    let crc = u32::from_le_bytes(frame[10..14].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(&frame[FRAME_HEADER_LEN..]));
}

#[test]
fn oversized_length_is_rejected_after_reading_only_the_header() {
    for len in [MAX_FRAME_PAYLOAD + 1, u32::MAX] {
        let mut data = header(FRAME_MAGIC, PROTOCOL_VERSION, len, 0);
        data.extend_from_slice(&[0xAA; 64]);
        let mut reader = TrickleReader::new(data, 1000);
        let err = read_frame::<_, Request>(&mut reader).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: l } if l == u64::from(len)),
            "{err}"
        );
        assert_eq!(reader.pos, FRAME_HEADER_LEN, "payload must not be touched");
    }
}

#[test]
fn largest_allowed_payload_is_accepted_and_larger_one_refused_on_encode() {
    // Leaves room for the variant tag and the length prefix.
    let fits = Response::Stdout {
        data: vec![1; MAX_FRAME_PAYLOAD as usize - 16],
    };
    let frame = encode_frame(&fits).unwrap();
    assert_eq!(
        read_frame::<_, Response>(&mut Cursor::new(frame)).unwrap(),
        fits
    );

    let too_big = Response::Stdout {
        data: vec![1; MAX_FRAME_PAYLOAD as usize + 1],
    };
    let err = encode_frame(&too_big).unwrap_err();
    assert!(
        matches!(err, FrameError::TooLarge { len } if len > u64::from(MAX_FRAME_PAYLOAD)),
        "{err}"
    );
}

#[test]
fn hostile_length_prefix_inside_payload_is_refused() {
    // Variant 2 (`Stdin`) followed by a u64 varint length of ~2^40 bytes.
    let payload = [2u8, 253, 0, 0, 0, 0, 0, 1, 0, 0];
    let err = read_frame::<_, Request>(&mut Cursor::new(frame_with_payload(&payload))).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Decode(bincode::error::DecodeError::LimitExceeded)
        ),
        "{err}"
    );
}

#[test]
fn empty_stream_is_closed_not_truncated() {
    let err = read_frame::<_, Request>(&mut Cursor::new(Vec::new())).unwrap_err();
    assert!(matches!(err, FrameError::Closed));
}

#[test]
fn truncated_header_and_payload_are_reported() {
    let frame = encode_frame(&Request::Ping { nonce: u64::MAX }).unwrap();
    for cut in [1, FRAME_HEADER_LEN - 1] {
        let err = read_frame::<_, Request>(&mut Cursor::new(frame[..cut].to_vec())).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { expected, got } if expected == FRAME_HEADER_LEN && got == cut),
            "{err}"
        );
    }
    let cut = frame.len() - 1;
    let err = read_frame::<_, Request>(&mut Cursor::new(frame[..cut].to_vec())).unwrap_err();
    assert!(
        matches!(err, FrameError::Truncated { expected, got } if expected == frame.len() && got == cut),
        "{err}"
    );
}

#[test]
fn bad_magic_version_and_checksum_are_rejected() {
    let good = encode_frame(&Request::Ping { nonce: 1 }).unwrap();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let err = read_frame::<_, Request>(&mut Cursor::new(bad_magic)).unwrap_err();
    assert!(
        matches!(err, FrameError::BadMagic(m) if &m == b"XDKF"),
        "{err}"
    );

    let mut bad_version = good.clone();
    bad_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    let err = read_frame::<_, Request>(&mut Cursor::new(bad_version)).unwrap_err();
    assert!(
        matches!(err, FrameError::UnsupportedVersion(v) if v == PROTOCOL_VERSION + 1),
        "{err}"
    );

    let mut corrupted = good.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x40;
    let err = read_frame::<_, Request>(&mut Cursor::new(corrupted)).unwrap_err();
    assert!(matches!(err, FrameError::Checksum { .. }), "{err}");
}

#[test]
fn trailing_bytes_in_payload_are_rejected() {
    let frame = encode_frame(&Request::StdinClose).unwrap();
    let mut payload = frame[FRAME_HEADER_LEN..].to_vec();
    payload.push(0);
    let err = read_frame::<_, Request>(&mut Cursor::new(frame_with_payload(&payload))).unwrap_err();
    assert!(
        matches!(err, FrameError::TrailingBytes { extra: 1 }),
        "{err}"
    );
}

#[test]
fn garbage_payload_with_valid_checksum_is_a_decode_error() {
    let err =
        read_frame::<_, Request>(&mut Cursor::new(frame_with_payload(&[0xEE; 5]))).unwrap_err();
    assert!(matches!(err, FrameError::Decode(_)), "{err}");
}

#[test]
fn a_stream_of_frames_reads_back_in_order_through_short_interrupted_reads() {
    let messages = vec![
        Response::Started { pid: 42 },
        Response::Stdout {
            data: b"hello".to_vec(),
        },
        Response::Stderr {
            data: vec![0; 70_000],
        },
        Response::Exited {
            status: crate::ExitStatus::Code(3),
        },
    ];
    let mut stream = Vec::new();
    for m in &messages {
        write_frame(&mut stream, m).unwrap();
    }
    let mut reader = TrickleReader::new(stream, 3);
    for m in &messages {
        assert_eq!(&read_frame::<_, Response>(&mut reader).unwrap(), m);
    }
    assert!(matches!(
        read_frame::<_, Response>(&mut reader),
        Err(FrameError::Closed)
    ));
}
