//! Tests of DNS query parsing and answers: hand-built packets, round trips, random input.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::*;
use std::net::Ipv4Addr;

/// A query for `Example.COM` type A, class IN, RD set, ID 0x1234, built byte by byte.
fn hand_built_query() -> Vec<u8> {
    let mut packet = vec![
        0x12, 0x34, // ID
        0x01, 0x00, // RD
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // QD=1, AN=NS=AR=0
    ];
    packet.extend_from_slice(b"\x07Example\x03COM\x00");
    packet.extend_from_slice(&[0x00, 0x01, 0x00, 0x01]);
    packet
}

fn with_header_field(mut packet: Vec<u8>, offset: usize, value: u16) -> Vec<u8> {
    packet[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
    packet
}

#[test]
fn hand_built_query_is_parsed() {
    let query = parse_query(&hand_built_query()).unwrap();
    assert_eq!(query.id(), 0x1234);
    assert!(query.recursion_desired());
    assert_eq!(query.name(), "example.com");
    assert_eq!(query.record_type(), TYPE_A);
}

#[test]
fn a_answer_matches_the_wire_format_byte_for_byte() {
    let query = parse_query(&hand_built_query()).unwrap();
    let answer = answer_a(&query, Ipv4Addr::new(198, 18, 0, 7), 60);
    let mut expected = vec![
        0x12, 0x34, // same ID
        0x81, 0x80, // QR, RD echoed, RA, NOERROR
        0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // QD=1, AN=1
    ];
    expected.extend_from_slice(b"\x07Example\x03COM\x00\x00\x01\x00\x01"); // case kept (0x20)
    expected.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question name
    expected.extend_from_slice(&[0x00, 0x01, 0x00, 0x01]); // A, IN
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x3c]); // TTL 60
    expected.extend_from_slice(&[0x00, 0x04, 198, 18, 0, 7]);
    assert_eq!(answer, expected);
    assert!(answer.len() <= MAX_UDP_MESSAGE);
}

#[test]
fn negative_answers_carry_their_codes_and_echo_rd() {
    let query = parse_query(&hand_built_query()).unwrap();
    let flags = |packet: &[u8]| u16::from_be_bytes([packet[2], packet[3]]);
    let counts = |packet: &[u8]| packet[4..12].to_vec();
    for (answer, expected_flags) in [
        (answer_nxdomain(&query), 0x8183),
        (answer_empty(&query), 0x8180),
        (answer_servfail(&query), 0x8182),
        (answer_refused(&query), 0x8185),
    ] {
        assert_eq!(flags(&answer), expected_flags);
        assert_eq!(counts(&answer), [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&answer[12..], &hand_built_query()[12..]);
    }
    let no_recursion = parse_query(&with_header_field(hand_built_query(), 2, 0x0000)).unwrap();
    assert!(!no_recursion.recursion_desired());
    assert_eq!(flags(&answer_nxdomain(&no_recursion)), 0x8083);
}

#[test]
fn edns_opt_record_in_additional_section_is_accepted() {
    let mut packet = with_header_field(hand_built_query(), 10, 1);
    // OPT: root name, type 41, UDP size 1232, extended rcode/flags 0, no data.
    packet.extend_from_slice(&[0x00, 0x00, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0x00, 0x00]);
    let query = parse_query(&packet).unwrap();
    assert_eq!(query.name(), "example.com");
    let response = parse_response(&answer_a(&query, Ipv4Addr::LOCALHOST, 1)).unwrap();
    assert_eq!(response.addresses, [Ipv4Addr::LOCALHOST]);
}

#[test]
fn bad_queries_are_refused_with_their_reason() {
    let name_at = |name: &[u8]| {
        let mut packet = hand_built_query()[..12].to_vec();
        packet.extend_from_slice(name);
        packet.extend_from_slice(&[0, 1, 0, 1]);
        packet
    };
    let cases: Vec<(Vec<u8>, DnsError)> = vec![
        (vec![0; 11], DnsError::TooShort { len: 11 }),
        (vec![0; 65536], DnsError::TooLong { len: 65536 }),
        (
            with_header_field(hand_built_query(), 2, 0x8100),
            DnsError::NotAQuery,
        ),
        (
            with_header_field(hand_built_query(), 2, 0x1100),
            DnsError::UnsupportedOpcode { opcode: 2 },
        ),
        (
            with_header_field(hand_built_query(), 4, 0),
            DnsError::QuestionCount { count: 0 },
        ),
        (
            with_header_field(hand_built_query(), 4, 2),
            DnsError::QuestionCount { count: 2 },
        ),
        (
            with_header_field(hand_built_query(), 6, 1),
            DnsError::UnexpectedRecords,
        ),
        (
            with_header_field(hand_built_query(), 8, 1),
            DnsError::UnexpectedRecords,
        ),
        (name_at(b"\xc0\x0c"), DnsError::CompressedName),
        (name_at(b"\x03abc\xc0\x0c"), DnsError::CompressedName),
        (
            name_at(b"\x41abc\x00"),
            DnsError::ReservedLabelType { byte: 0x41 },
        ),
        (
            name_at(b"\x80\x00"),
            DnsError::ReservedLabelType { byte: 0x80 },
        ),
        (name_at(b"\x03a.b\x03com\x00"), DnsError::UnprintableLabel),
        (
            name_at(b"\x03a\xffb\x03com\x00"),
            DnsError::UnprintableLabel,
        ),
        (
            name_at(b"\x00"),
            DnsError::BadName(crate::egress::EgressLineError::BadName),
        ),
        (
            name_at(b"\x03a b\x03com\x00"),
            DnsError::BadName(crate::egress::EgressLineError::BadName),
        ),
        (hand_built_query()[..20].to_vec(), DnsError::Truncated),
        (hand_built_query()[..27].to_vec(), DnsError::Truncated),
        (
            with_header_field(hand_built_query(), 27, 3),
            DnsError::UnsupportedClass { class: 3 },
        ),
    ];
    for (packet, expected) in cases {
        assert_eq!(parse_query(&packet), Err(expected), "packet {packet:02x?}");
    }
    // Five 63-byte labels: 5 * 64 + 1 = 321 bytes on the wire, above 255.
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    assert_eq!(parse_query(&name_at(&long)), Err(DnsError::NameTooLong));
}

#[test]
fn invalid_messages_get_header_only_replies_or_none() {
    let compressed = {
        let mut packet = hand_built_query()[..12].to_vec();
        packet.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        packet
    };
    let error = parse_query(&compressed).unwrap_err();
    let reply = reply_to_invalid(&compressed, &error).unwrap();
    let response = parse_response(&reply).unwrap();
    assert_eq!((response.id, response.rcode), (0x1234, Rcode::FormErr));
    assert_eq!(response.question, None);

    let notify = with_header_field(hand_built_query(), 2, 0x2100);
    let error = parse_query(&notify).unwrap_err();
    let reply = reply_to_invalid(&notify, &error).unwrap();
    assert_eq!(parse_response(&reply).unwrap().rcode, Rcode::NotImp);
    assert_eq!(reply[2] & 0x78, 0x20, "opcode echoed");

    let chaos = with_header_field(hand_built_query(), 27, 3);
    let error = parse_query(&chaos).unwrap_err();
    assert_eq!(
        parse_response(&reply_to_invalid(&chaos, &error).unwrap())
            .unwrap()
            .rcode,
        Rcode::Refused
    );

    let response = with_header_field(hand_built_query(), 2, 0x8100);
    assert_eq!(reply_to_invalid(&response, &DnsError::NotAQuery), None);
    assert_eq!(
        reply_to_invalid(&[0; 5], &DnsError::TooShort { len: 5 }),
        None
    );
}

#[test]
fn queries_round_trip_through_every_answer() {
    for (name, record_type) in [
        ("api.anthropic.com", TYPE_A),
        ("x_y.z", TYPE_AAAA),
        ("a", 16),
    ] {
        let packet = encode_query(0xbeef, name, record_type).unwrap();
        let query = parse_query(&packet).unwrap();
        assert_eq!(
            (query.id(), query.name(), query.record_type()),
            (0xbeef, name, record_type)
        );
        let address = Ipv4Addr::new(198, 19, 255, 254);
        for (answer, rcode, addresses) in [
            (answer_a(&query, address, 30), Rcode::NoError, vec![address]),
            (answer_empty(&query), Rcode::NoError, vec![]),
            (answer_nxdomain(&query), Rcode::NxDomain, vec![]),
            (answer_servfail(&query), Rcode::ServFail, vec![]),
            (answer_refused(&query), Rcode::Refused, vec![]),
        ] {
            let response = parse_response(&answer).unwrap();
            assert_eq!(response.id, 0xbeef);
            assert_eq!(response.rcode, rcode);
            assert!(response.recursion_desired && response.recursion_available);
            assert_eq!(response.question, Some((name.to_owned(), record_type)));
            assert_eq!(response.answer_count as usize, addresses.len());
            assert_eq!(response.addresses, addresses);
            assert_eq!(parse_query(&answer), Err(DnsError::NotAQuery));
        }
    }
    assert!(encode_query(1, "bad name", TYPE_A).is_err());
    assert!(encode_query(1, &"a".repeat(64), TYPE_A).is_err());
    assert_eq!(
        parse_response(&encode_query(1, "a.b", 1).unwrap()),
        Err(DnsError::NotAResponse)
    );
}

#[test]
fn longest_name_fits_and_answer_stays_within_udp_limit() {
    let name = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(name.len(), 253);
    let query = parse_query(&encode_query(7, &name, TYPE_A).unwrap()).unwrap();
    assert_eq!(query.name(), name);
    assert!(answer_a(&query, Ipv4Addr::BROADCAST, u32::MAX).len() <= MAX_UDP_MESSAGE);
}

#[test]
fn tcp_framing_round_trips_and_waits_for_whole_messages() {
    let first = encode_query(1, "one.test", TYPE_A).unwrap();
    let second = encode_query(2, "two.test", TYPE_AAAA).unwrap();
    let mut stream = tcp_frame(&first).unwrap();
    stream.extend_from_slice(&tcp_frame(&second).unwrap());
    for cut in 0..first.len() + 2 {
        assert_eq!(tcp_message(&stream[..cut]), Ok(None), "cut at {cut}");
    }
    let (message, used) = tcp_message(&stream).unwrap().unwrap();
    assert_eq!((message, used), (first.as_slice(), first.len() + 2));
    let (message, used2) = tcp_message(&stream[used..]).unwrap().unwrap();
    assert_eq!(parse_query(message).unwrap().id(), 2);
    assert_eq!(used + used2, stream.len());
    assert_eq!(
        tcp_message(&[0, 3, 1, 2, 3]),
        Err(DnsError::TooShort { len: 3 })
    );
    assert_eq!(
        tcp_frame(&vec![0; MAX_TCP_MESSAGE + 1]),
        Err(DnsError::TooLong {
            len: MAX_TCP_MESSAGE + 1
        })
    );
    assert_eq!(
        tcp_frame(&vec![0; MAX_TCP_MESSAGE]).unwrap().len(),
        MAX_TCP_MESSAGE + 2
    );
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Everything a stub would do with an untrusted packet; must never panic.
fn exercise(packet: &[u8]) -> bool {
    let _ = parse_response(packet);
    let _ = tcp_message(packet);
    match parse_query(packet) {
        Ok(query) => {
            for answer in [
                answer_a(&query, Ipv4Addr::new(198, 18, 1, 2), 60),
                answer_empty(&query),
                answer_nxdomain(&query),
                answer_servfail(&query),
                answer_refused(&query),
            ] {
                let response = parse_response(&answer).expect("own answers parse");
                assert_eq!(response.id, query.id());
                assert!(answer.len() <= MAX_UDP_MESSAGE);
            }
            true
        }
        Err(error) => {
            if let Some(reply) = reply_to_invalid(packet, &error) {
                assert_eq!(reply.len(), HEADER_LEN);
                assert!(parse_response(&reply).is_ok());
            }
            false
        }
    }
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = [
        hand_built_query(),
        encode_query(9, "registry.npmjs.org", TYPE_AAAA).unwrap(),
        answer_a(
            &parse_query(&hand_built_query()).unwrap(),
            Ipv4Addr::new(1, 2, 3, 4),
            5,
        ),
    ];
    let mut accepted = 0;
    for round in 0..100_000 {
        let packet: Vec<u8> = match round % 3 {
            // Pure noise, biased towards a plausible header so the parser gets past it.
            0 => {
                let len = rng.below(600);
                let mut packet: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len >= 12 && rng.below(2) == 0 {
                    packet[2] = 0x01;
                    packet[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
                }
                packet
            }
            // A valid packet with a few bytes flipped.
            1 => {
                let mut packet = valid[rng.below(valid.len())].clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(packet.len());
                    packet[at] = rng.next() as u8;
                }
                packet
            }
            // A valid packet cut short or extended with noise.
            _ => {
                let mut packet = valid[rng.below(valid.len())].clone();
                if rng.below(2) == 0 {
                    packet.truncate(rng.below(packet.len() + 1));
                } else {
                    packet.extend((0..rng.below(40)).map(|_| rng.next() as u8));
                }
                packet
            }
        };
        if exercise(&packet) {
            accepted += 1;
        }
    }
    // The mutations keep some packets valid: the answer-building path was exercised too.
    assert!(accepted > 1000, "only {accepted} packets parsed");
}
