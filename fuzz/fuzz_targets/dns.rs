//! The DNS messages guest programs send the guest's DNS stub (queries over UDP and TCP) and the
//! answers built from them: any bytes parse to a query or an error, an answer to a parsed query
//! parses back as a response to it, and the TCP framing never reads past its buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_protocol::dns::{
    answer_a, answer_empty, answer_nxdomain, answer_refused, answer_servfail, parse_query,
    parse_response, reply_to_invalid, tcp_message,
};
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    match parse_query(data) {
        Ok(query) => {
            for answer in [
                answer_a(&query, Ipv4Addr::new(198, 18, 0, 7), 60),
                answer_nxdomain(&query),
                answer_empty(&query),
                answer_servfail(&query),
                answer_refused(&query),
            ] {
                let response = parse_response(&answer);
                assert!(
                    response.is_ok(),
                    "our own answer does not parse: {response:?}"
                );
            }
        }
        Err(error) => {
            let _ = reply_to_invalid(data, &error);
        }
    }
    let _ = parse_response(data);
    let mut buffer = data;
    while let Ok(Some((message, used))) = tcp_message(buffer) {
        assert!(used <= buffer.len() && message.len() < used);
        let _ = parse_query(message);
        buffer = &buffer[used..];
    }
});
