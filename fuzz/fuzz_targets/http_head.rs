//! HTTP/1.x heads as the egress proxy reads them from the guest (CONNECT, absolute-form and
//! origin-form requests, the Host header, the origin-form rewrite) and from upstreams (response
//! heads), from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_egress::wire::http::response::parse_response_head;
use paddock_egress::wire::{
    parse_authority, parse_request_head, rewrite_absolute_to_origin, HeadStatus,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(HeadStatus::Complete(head)) = parse_request_head(data) {
        assert!(head.head_len <= data.len());
        let _ = head.host_header();
        let _ = head.body_framing();
        let _ = head.target.host_port();
        if let Ok(rewritten) = rewrite_absolute_to_origin(&head) {
            // The rewritten head is a head this parser accepts.
            assert!(
                matches!(parse_request_head(&rewritten), Ok(HeadStatus::Complete(_))),
                "rewritten head refused: {:?}",
                String::from_utf8_lossy(&rewritten)
            );
        }
    }
    if let Ok(Some(head)) = parse_response_head(data) {
        assert!(head.bytes.len() <= data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_authority(text);
    }
});
