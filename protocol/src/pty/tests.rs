//! PTY messages: validation of `TERM`, round trips, and hostile or malformed frames.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]

use super::*;
use crate::{
    encode_frame, read_frame, ExecRequest, FrameError, Request, Response, FRAME_HEADER_LEN,
    FRAME_MAGIC, PROTOCOL_VERSION,
};
use std::io::Cursor;

/// `Request` as the wire sees it up to `Exec`, without any validation, to forge frames.
#[derive(Serialize)]
enum RawRequest {
    #[allow(dead_code)]
    Ping {
        nonce: u64,
    },
    Exec(RawExec),
}

#[derive(Serialize)]
struct RawExec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    stdin: bool,
    tty: Option<RawPty>,
}

#[derive(Serialize)]
struct RawPty {
    size: WindowSize,
    term: String,
}

fn forged_exec(term: &str) -> Vec<u8> {
    encode_frame(&RawRequest::Exec(RawExec {
        argv: vec!["sh".into()],
        env: vec![],
        cwd: None,
        stdin: true,
        tty: Some(RawPty {
            size: WindowSize { rows: 24, cols: 80 },
            term: term.into(),
        }),
    }))
    .unwrap()
}

/// A frame with a valid header and checksum around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    f.extend_from_slice(&FRAME_MAGIC);
    f.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn decode_request(bytes: Vec<u8>) -> Result<Request, FrameError> {
    read_frame(&mut Cursor::new(bytes))
}

fn pty_exec(term: &str) -> Request {
    Request::Exec(ExecRequest {
        argv: vec!["bash".into(), "-l".into()],
        env: vec![("LANG".into(), "C.UTF-8".into())],
        cwd: Some("/home/agent".into()),
        stdin: true,
        tty: Some(
            PtyConfig::new(
                WindowSize {
                    rows: 50,
                    cols: 211,
                },
                term,
            )
            .unwrap(),
        ),
    })
}

#[test]
fn usual_term_names_are_accepted() {
    for term in [
        "xterm",
        "xterm-256color",
        "screen.xterm-256color",
        "rxvt-unicode",
        "vt100",
    ] {
        assert_eq!(check_term(term), Ok(()), "{term}");
    }
    assert_eq!(check_term(&"a".repeat(MAX_TERM_LEN)), Ok(()));
}

#[test]
fn bad_term_names_are_refused() {
    assert_eq!(check_term(""), Err(PtyConfigError::EmptyTerm));
    assert_eq!(
        check_term(&"a".repeat(MAX_TERM_LEN + 1)),
        Err(PtyConfigError::TermTooLong(MAX_TERM_LEN + 1))
    );
    for term in [
        "xterm\0",
        "a=b",
        "x term",
        "xterm\n",
        "\u{1b}]0;pwned\u{7}",
        "tërm",
    ] {
        assert_eq!(
            check_term(term),
            Err(PtyConfigError::TermCharacters),
            "{term:?}"
        );
    }
    assert!(PtyConfig::new(WindowSize::FALLBACK, "a b").is_err());
}

#[test]
fn pty_messages_round_trip() {
    let requests = [
        pty_exec("xterm-256color"),
        Request::Resize {
            size: WindowSize {
                rows: u16::MAX,
                cols: 0,
            },
        },
        Request::Detach,
        Request::Attach {
            pid: None,
            size: WindowSize::FALLBACK,
        },
        Request::Attach {
            pid: Some(u32::MAX),
            size: WindowSize { rows: 1, cols: 1 },
        },
    ];
    for request in requests {
        let back = decode_request(encode_frame(&request).unwrap()).unwrap();
        assert_eq!(back, request);
    }
    for response in [
        Response::Detached { pid: 7 },
        Response::Attached { pid: 1 << 22 },
    ] {
        let back: Response =
            read_frame(&mut Cursor::new(encode_frame(&response).unwrap())).unwrap();
        assert_eq!(back, response);
    }
}

#[test]
fn forged_frames_match_the_real_encoding() {
    // Guards the forging helper: a valid TERM forged equals the real message's frame.
    let real = encode_frame(&Request::Exec(ExecRequest {
        argv: vec!["sh".into()],
        stdin: true,
        tty: Some(PtyConfig::new(WindowSize { rows: 24, cols: 80 }, "xterm").unwrap()),
        ..ExecRequest::default()
    }))
    .unwrap();
    assert_eq!(forged_exec("xterm"), real);
}

#[test]
fn a_hostile_term_is_refused_on_decode() {
    for term in [
        "a".repeat(MAX_TERM_LEN + 1),
        "a".repeat(100_000),
        "xterm\u{1b}[2J".to_string(),
        String::new(),
    ] {
        let err = decode_request(forged_exec(&term)).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
    }
}

#[test]
fn an_invalid_term_is_refused_on_encode() {
    let mut request = pty_exec("xterm");
    if let Request::Exec(exec) = &mut request {
        exec.tty.as_mut().unwrap().term = "x".repeat(MAX_TERM_LEN + 1);
    }
    assert!(matches!(encode_frame(&request), Err(FrameError::Encode(_))));
}

#[test]
fn a_hostile_term_length_prefix_is_refused_without_allocating() {
    // Exec, argv ["sh"], no env, no cwd, stdin true, tty Some, 24x80, then TERM's length as a
    // u64 varint of 2^40.
    let payload = [
        1, 1, 2, b's', b'h', 0, 0, 1, 1, 24, 80, 253, 0, 0, 0, 0, 0, 1, 0, 0,
    ];
    let err = decode_request(frame(&payload)).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Decode(bincode::error::DecodeError::LimitExceeded)
        ),
        "{err}"
    );
}

#[test]
fn an_out_of_range_window_size_is_a_decode_error() {
    let resize = encode_frame(&Request::Resize {
        size: WindowSize { rows: 1, cols: 2 },
    })
    .unwrap();
    let tag = resize[FRAME_HEADER_LEN];
    // rows as a u32 varint (marker 252) of 65536: too large for a u16.
    let err = decode_request(frame(&[tag, 252, 0, 0, 1, 0, 2])).unwrap_err();
    assert!(matches!(err, FrameError::Decode(_)), "{err}");
    // A size cut short.
    let err = decode_request(frame(&[tag, 5])).unwrap_err();
    assert!(matches!(err, FrameError::Decode(_)), "{err}");
    // Bytes after the size.
    let err = decode_request(frame(&[tag, 1, 2, 3])).unwrap_err();
    assert!(
        matches!(err, FrameError::TrailingBytes { extra: 1 }),
        "{err}"
    );
}

#[test]
fn every_truncation_of_pty_frames_is_an_error() {
    let frames = [
        encode_frame(&pty_exec("xterm-256color")).unwrap(),
        encode_frame(&Request::Attach {
            pid: Some(42),
            size: WindowSize::FALLBACK,
        })
        .unwrap(),
    ];
    for full in frames {
        let payload = &full[FRAME_HEADER_LEN..];
        for cut in 0..payload.len() {
            // A correct header for the shorter payload: only the message itself is cut.
            assert!(decode_request(frame(&payload[..cut])).is_err(), "cut {cut}");
            // The stream itself ends early.
            assert!(decode_request(full[..FRAME_HEADER_LEN + cut].to_vec()).is_err());
        }
    }
}

#[test]
fn random_payloads_never_panic_and_valid_terms_only_come_out() {
    // A small deterministic generator (xorshift); every payload starts with a PTY-related tag.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let tags: Vec<u8> = [
        pty_exec("xterm"),
        Request::Resize {
            size: WindowSize::FALLBACK,
        },
        Request::Detach,
        Request::Attach {
            pid: None,
            size: WindowSize::FALLBACK,
        },
    ]
    .iter()
    .map(|r| encode_frame(r).unwrap()[FRAME_HEADER_LEN])
    .collect();
    for round in 0..20_000 {
        let len = (next() % 48) as usize;
        let mut payload = vec![tags[round % tags.len()]];
        payload.extend((0..len).map(|_| next() as u8));
        if let Ok(Request::Exec(ExecRequest { tty: Some(pty), .. })) =
            decode_request(frame(&payload))
        {
            assert_eq!(check_term(&pty.term), Ok(()));
        }
        let _ = read_frame::<_, Response>(&mut Cursor::new(frame(&payload)));
    }
}
