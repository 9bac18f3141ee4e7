//! HTTP/1.x heads as the egress proxy reads them from the guest (CONNECT, absolute-form and
//! origin-form requests, the Host header, the origin-form rewrite) and from upstreams (response
//! heads), from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_egress::wire::http::response::parse_response_head;
use paddock_egress::wire::{
    parse_authority, parse_request_head, rewrite_absolute_to_origin, HeadStatus, HttpHeadError,
    MAX_HEAD, MAX_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(HeadStatus::Complete(head)) = parse_request_head(data) {
        assert!(head.head_len <= data.len());
        let _ = head.host_header();
        let _ = head.body_framing();
        let _ = head.target.host_port();
        if let Ok(rewritten) = rewrite_absolute_to_origin(&head) {
            // What the origin server reads is the same request: same method, one whole head,
            // the body framed the same way (no smuggling through the rewrite).
            match parse_request_head(&rewritten) {
                Ok(HeadStatus::Complete(again)) => {
                    assert_eq!(again.method, head.method);
                    assert_eq!(
                        again.head_len,
                        rewritten.len(),
                        "the rewrite split the head"
                    );
                    assert_eq!(
                        again.body_framing(),
                        head.body_framing(),
                        "the rewrite changed the body's framing: {:?}",
                        String::from_utf8_lossy(&rewritten)
                    );
                }
                // The rewrite adds Host and Connection: a head at this parser's limits may
                // pass them (the origin server applies its own).
                Err(HttpHeadError::TooManyHeaders) if head.headers.len() + 2 > MAX_HEADERS => {}
                Err(HttpHeadError::TooLarge { .. }) if rewritten.len() > MAX_HEAD => {}
                other => panic!(
                    "rewritten head refused ({other:?}): {:?}",
                    String::from_utf8_lossy(&rewritten)
                ),
            }
        }
    }
    if let Ok(Some(head)) = parse_response_head(data) {
        assert!(head.bytes.len() <= data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_authority(text);
    }
});
