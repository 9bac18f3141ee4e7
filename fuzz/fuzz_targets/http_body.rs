//! HTTP body framing as the egress proxy copies bodies (Content-Length, chunked with trailers,
//! until close), over a stream cut into any pieces: never more than the body is written, and
//! the trailer check sees every trailer section. Input: framing selector, length, piece sizes,
//! then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_egress::wire::http::{BodyFraming, FramedReader};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// A stream that delivers its bytes in the given piece sizes.
struct Pieces {
    data: Vec<u8>,
    sizes: Vec<u8>,
    at: usize,
    turn: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let size = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .map_or(usize::MAX, |&s| usize::from(s) + 1);
        let end = self
            .data
            .len()
            .min(self.at.saturating_add(size))
            .min(self.at + buf.remaining());
        let start = self.at;
        buf.put_slice(&self.data[start..end]);
        self.at = end;
        self.turn += 1;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let framing = match data[0] % 3 {
        0 => BodyFraming::Length(u64::from(u32::from_le_bytes([
            data[1], data[2], data[3], 0,
        ]))),
        1 => BodyFraming::Chunked,
        _ => BodyFraming::UntilClose,
    };
    let sizes = data[4..6].to_vec();
    let stream = Pieces {
        data: data[6..].to_vec(),
        sizes,
        at: 0,
        turn: 0,
    };
    let total = data.len() - 6;
    let mut reader = FramedReader::new(stream, Vec::new());
    let mut out = Vec::new();
    let mut count = 0u64;
    let result = futures_executor::block_on(reader.copy_body_checked(
        framing,
        &mut out,
        &mut count,
        |trailers| trailers.len() <= total,
    ));
    assert!(out.len() <= total, "wrote more than was read");
    if let (Ok(()), BodyFraming::Length(length)) = (result, framing) {
        assert_eq!(out.len() as u64, length);
    }
});
