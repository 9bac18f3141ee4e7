//! The TLS ClientHello parser the egress proxy reads the SNI with, fed any bytes in any pieces
//! (records fragmented at will): the answer does not depend on how the bytes were cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_egress::wire::{ClientHelloParser, HelloStatus};

fn parse(pieces: &[&[u8]]) -> Option<Result<Option<String>, ()>> {
    let mut parser = ClientHelloParser::new();
    for piece in pieces {
        match parser.push(piece) {
            Ok(HelloStatus::NeedMore) => continue,
            Ok(HelloStatus::Done(info)) => return Some(Ok(info.sni.clone())),
            Err(_) => return Some(Err(())),
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, hello)) = data.split_first() else {
        return;
    };
    let whole = parse(&[hello]);
    let sizes = [cut, cut.rotate_left(3), cut ^ 0x5a];
    let pieces = paddock_fuzz::pieces(hello, &sizes);
    let cut_up = parse(&pieces);
    // A complete answer is the same however the bytes arrived (an error may come earlier).
    if let (Some(Ok(a)), Some(Ok(b))) = (&whole, &cut_up) {
        assert_eq!(a, b);
    }
});
