//! Response parsing: framing, bounds and malformed input.

use super::*;
use std::io::Cursor;

fn complete(raw: &[u8]) -> HttpResponse {
    parse_response(raw, false)
        .expect("valid")
        .expect("complete")
}

#[test]
fn content_length_bodies_complete_at_their_length() {
    let raw = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK";
    assert_eq!(
        complete(raw),
        HttpResponse {
            status: 200,
            body: b"OK".to_vec()
        }
    );
    // Byte by byte, it is incomplete until the last one.
    for end in 0..raw.len() {
        assert_eq!(parse_response(&raw[..end], false), Ok(None), "at {end}");
    }
    assert_eq!(
        parse_response(&raw[..raw.len() - 1], true),
        Err(ResponseError::Truncated)
    );
}

#[test]
fn chunked_bodies_are_decoded() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"Ve\r\nA;ext=1\r\nrsion\":\"1\"\r\n1\r\n}\r\n0\r\n\r\n";
    assert_eq!(complete(raw).body, b"{\"Version\":\"1\"}");
    for end in 0..raw.len() {
        assert_eq!(parse_response(&raw[..end], false), Ok(None), "at {end}");
    }
    let trailers =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\nX-T: 1\r\n\r\n";
    assert_eq!(complete(trailers).body, b"OK");
}

#[test]
fn a_body_without_length_ends_with_the_stream() {
    let raw = b"HTTP/1.1 200 OK\r\n\r\nOK";
    assert_eq!(parse_response(raw, false), Ok(None));
    assert_eq!(parse_response(raw, true).unwrap().unwrap().body, b"OK");
    let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(complete(no_content).body, b"");
}

#[test]
fn malformed_responses_are_refused() {
    let cases: [(&[u8], ResponseError); 7] = [
        (
            b"SSH-2.0-OpenSSH\r\n\r\n",
            ResponseError::Head(httparse::Error::Version),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            ResponseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            ResponseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nOK",
            ResponseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseError::ContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            ResponseError::TransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOKxx",
            ResponseError::ChunkTerminator,
        ),
    ];
    for (raw, expected) in cases {
        assert_eq!(parse_response(raw, false), Err(expected), "{raw:?}");
    }
    let bad_size = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert!(matches!(
        parse_response(bad_size, false),
        Err(ResponseError::ChunkSize(_))
    ));
}

#[test]
fn oversized_responses_are_refused() {
    let huge_length = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_RESPONSE + 1
    );
    assert_eq!(
        parse_response(huge_length.as_bytes(), false),
        Err(ResponseError::ContentLength)
    );
    // A chunk size beyond any buffer just waits for bytes that the reader's bound refuses.
    let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n";
    assert_eq!(parse_response(huge_chunk, false), Ok(None));
    assert_eq!(
        parse_response(huge_chunk, true),
        Err(ResponseError::Truncated)
    );

    let mut endless = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    endless.resize(MAX_RESPONSE + 1, b'x');
    let err = read_response(&mut Cursor::new(endless)).unwrap_err();
    assert!(
        matches!(err, HttpError::Response(ResponseError::TooLarge)),
        "{err}"
    );
}

#[test]
fn reading_stops_at_a_complete_response() {
    // Bytes after a complete response (a server keeping the connection) are not waited for.
    struct NeverEnds(Cursor<Vec<u8>>);
    impl Read for NeverEnds {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::new(io::ErrorKind::WouldBlock, "would block")),
                n => Ok(n),
            }
        }
    }
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK".to_vec();
    let response = read_response(&mut NeverEnds(Cursor::new(raw))).unwrap();
    assert_eq!(response.body, b"OK");
}

#[test]
fn a_get_reaches_a_real_unix_socket_server() {
    let dir = std::env::temp_dir().join(format!("guest-init-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("api.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let n = stream.read(&mut request).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            .unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    let response = get(&socket, "/_ping", Duration::from_secs(5)).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"OK");
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /_ping HTTP/1.1\r\n"), "{request}");
    assert!(request.ends_with("\r\n\r\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}
