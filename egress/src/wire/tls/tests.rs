//! Tests of ClientHello parsing: real rustls hellos, fragments, hostile and random input.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::*;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The first flight of a real rustls client connecting to `server_name`.
fn rustls_client_hello(server_name: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let config = client_config(rustls::RootCertStore::empty(), alpn);
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut connection = rustls::ClientConnection::new(config, name).unwrap();
    let mut wire = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut wire).unwrap();
    }
    wire
}

/// Re-cuts the handshake bytes of `wire` (one record) into records of `piece` bytes each.
fn refragment(wire: &[u8], piece: usize) -> Vec<u8> {
    let length = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    assert_eq!(wire.len(), 5 + length, "one record expected");
    let mut out = Vec::new();
    for chunk in wire[5..].chunks(piece) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn push_all(bytes: &[u8]) -> Result<HelloStatus, TlsHelloError> {
    ClientHelloParser::new().push(bytes)
}

fn done(bytes: &[u8]) -> ClientHelloInfo {
    match push_all(bytes) {
        Ok(HelloStatus::Done(info)) => info,
        other => panic!("expected a complete ClientHello, got {other:?}"),
    }
}

fn with_u16_len(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn sni_extension(names: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for (name_type, name) in names {
        list.push(*name_type);
        list.extend_from_slice(&with_u16_len(name));
    }
    (0, with_u16_len(&list))
}

/// A ClientHello body built by hand: TLS 1.2, one cipher suite, null compression, and the
/// given extensions (`None`: no extension block at all).
fn hello_body(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]);
    if let Some(extensions) = extensions {
        let mut block = Vec::new();
        for (kind, data) in extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&with_u16_len(data));
        }
        body.extend_from_slice(&with_u16_len(&block));
    }
    body
}

/// One handshake record carrying a ClientHello with `body`.
fn hello_record(body: &[u8]) -> Vec<u8> {
    let mut message = vec![0x01];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&with_u16_len(&message));
    record
}

#[test]
fn a_real_rustls_client_hello_yields_sni_alpn_and_version() {
    let wire = rustls_client_hello("Allowed.Test", &[b"h2", b"http/1.1"]);
    let info = done(&wire);
    assert_eq!(info.sni.as_deref(), Some("allowed.test"));
    assert_eq!(info.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(info.tls_version, TlsVersion::Tls13);
}

#[test]
fn a_client_hello_fed_byte_by_byte_completes_at_its_last_byte() {
    let wire = rustls_client_hello("allowed.test", &[]);
    let mut parser = ClientHelloParser::new();
    let (last, rest) = wire.split_last().unwrap();
    for byte in rest {
        assert_eq!(parser.push(&[*byte]).unwrap(), HelloStatus::NeedMore);
    }
    let HelloStatus::Done(info) = parser.push(&[*last]).unwrap() else {
        panic!("not done after the last byte");
    };
    assert_eq!(info.sni.as_deref(), Some("allowed.test"));
    assert!(info.alpn.is_empty());
    // Later pushes (application data after the hello) change nothing.
    assert_eq!(
        parser.push(b"\x17\x03\x03").unwrap(),
        HelloStatus::Done(info)
    );
}

#[test]
fn a_client_hello_fragmented_over_records_is_reassembled() {
    let wire = rustls_client_hello("allowed.test", &[b"http/1.1"]);
    let half = (wire.len() - 5) / 2 + 1;
    for piece in [half, 100, 7, 1] {
        let fragmented = refragment(&wire, piece);
        let info = done(&fragmented);
        assert_eq!(
            info.sni.as_deref(),
            Some("allowed.test"),
            "pieces of {piece}"
        );
        // And byte by byte across those records.
        let mut parser = ClientHelloParser::new();
        let statuses: Vec<_> = fragmented
            .iter()
            .map(|b| parser.push(&[*b]).unwrap())
            .collect();
        assert!(statuses[..statuses.len() - 1]
            .iter()
            .all(|s| *s == HelloStatus::NeedMore));
        assert_eq!(statuses.last(), Some(&HelloStatus::Done(info)));
    }
}

#[test]
fn a_missing_sni_is_reported_as_none() {
    // rustls sends no SNI for an IP address.
    let info = done(&rustls_client_hello("192.0.2.1", &[]));
    assert_eq!(info.sni, None);
    let info = done(&hello_record(&hello_body(None)));
    assert_eq!((info.sni, info.tls_version), (None, TlsVersion::Tls12));
    let info = done(&hello_record(&hello_body(Some(&[]))));
    assert_eq!(info.sni, None);
}

#[test]
fn unacceptable_server_names_are_errors() {
    let sni = |names: &[(u8, &[u8])]| {
        push_all(&hello_record(&hello_body(Some(&[sni_extension(names)])))).unwrap_err()
    };
    assert!(matches!(
        sni(&[(0, b"10.0.0.1")]),
        TlsHelloError::Sni(SniError::IpAddress(_))
    ));
    assert!(matches!(
        sni(&[(0, b"::1")]),
        TlsHelloError::Sni(SniError::IpAddress(_))
    ));
    assert!(matches!(
        sni(&[(0, b"a..b")]),
        TlsHelloError::Sni(SniError::BadName(_))
    ));
    assert!(matches!(
        sni(&[(0, b"exa mple.com")]),
        TlsHelloError::Sni(SniError::BadName(_))
    ));
    assert!(matches!(
        sni(&[(0, b"")]),
        TlsHelloError::Sni(SniError::BadName(_))
    ));
    assert!(matches!(
        sni(&[(0, "é.com".as_bytes())]),
        TlsHelloError::Sni(SniError::NotAscii)
    ));
    assert!(matches!(
        sni(&[(0, b"a.test"), (0, b"b.test")]),
        TlsHelloError::Sni(SniError::MoreThanOneName)
    ));
    assert!(matches!(
        sni(&[(7, b"a.test")]),
        TlsHelloError::Sni(SniError::NoHostName)
    ));
    assert!(matches!(sni(&[]), TlsHelloError::Sni(SniError::NoHostName)));
    // Another name type next to the host name is skipped.
    let info = done(&hello_record(&hello_body(Some(&[sni_extension(&[
        (7, b"opaque"),
        (0, b"A.Test."),
    ])]))));
    assert_eq!(info.sni.as_deref(), Some("a.test"));
}

#[test]
fn record_layer_garbage_is_refused_at_once() {
    assert!(matches!(
        push_all(b"G"),
        Err(TlsHelloError::NotHandshake { content_type: b'G' })
    ));
    assert!(matches!(
        push_all(&[0x17]),
        Err(TlsHelloError::NotHandshake { content_type: 0x17 })
    ));
    assert!(matches!(
        push_all(&[0x16, 0x02]),
        Err(TlsHelloError::RecordVersion { version: 0x0200 })
    ));
    assert!(matches!(
        push_all(&[0x16, 0x03, 0x01, 0x00, 0x00]),
        Err(TlsHelloError::RecordLength { length: 0 })
    ));
    assert!(matches!(
        push_all(&[0x16, 0x03, 0x01, 0x40, 0x01]),
        Err(TlsHelloError::RecordLength { length: 0x4001 })
    ));
    assert!(matches!(
        push_all(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
        Err(TlsHelloError::NotClientHello { message_type: 2 })
    ));
    // A second record of another type in the middle of a fragmented hello.
    let wire = refragment(&rustls_client_hello("a.test", &[]), 50);
    let mut spliced = wire[..55].to_vec();
    spliced.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
    assert!(matches!(
        push_all(&spliced),
        Err(TlsHelloError::NotHandshake { content_type: 0x15 })
    ));
    // The parser stays failed.
    let mut parser = ClientHelloParser::new();
    assert!(parser.push(b"\x00").is_err());
    assert!(matches!(
        parser.push(&wire),
        Err(TlsHelloError::AlreadyFailed)
    ));
}

#[test]
fn absurd_lengths_are_refused() {
    // A handshake message claiming 16 MiB.
    assert!(matches!(
        push_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff]),
        Err(TlsHelloError::TooLarge {
            limit: MAX_CLIENT_HELLO
        })
    ));
    // Just within the message bound but dribbled in one-byte records: the wire bound stops it.
    let mut parser = ClientHelloParser::new();
    let mut status = parser.push(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x3f, 0xf0]);
    let mut records = 0;
    while let Ok(HelloStatus::NeedMore) = status {
        status = parser.push(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x00]);
        records += 1;
        assert!(records < 10_000, "wire bound never reached");
    }
    assert!(matches!(
        status,
        Err(TlsHelloError::TooLarge {
            limit: MAX_CLIENT_HELLO_WIRE
        })
    ));

    let malformed = |body: &[u8]| match push_all(&hello_record(body)) {
        Err(TlsHelloError::Malformed(reason)) => reason,
        other => panic!("expected malformed, got {other:?}"),
    };
    let good = hello_body(Some(&[sni_extension(&[(0, b"a.test")])]));
    let without_extensions = hello_body(None).len();
    for cut in (0..good.len()).filter(|&cut| cut != without_extensions) {
        // Every truncation of the body (with the message length saying so) is malformed, but
        // for the one that ends with the compression methods: a valid hello without extensions.
        let reason = malformed(&good[..cut]);
        assert!(
            matches!(
                reason,
                MalformedHello::Truncated { .. } | MalformedHello::Invalid { .. }
            ),
            "cut at {cut}: {reason:?}"
        );
    }
    let mut long_session = good.clone();
    long_session[34] = 33;
    long_session.splice(35..35, [0u8; 33]);
    assert_eq!(
        malformed(&long_session),
        MalformedHello::Invalid {
            field: HelloField::SessionId
        }
    );
    let mut odd_suites = hello_body(None);
    odd_suites.splice(35..39, [0x00, 0x03, 0xc0, 0x2f, 0x00]);
    assert_eq!(
        malformed(&odd_suites),
        MalformedHello::Invalid {
            field: HelloField::CipherSuites
        }
    );
    let mut no_compression = hello_body(None);
    no_compression.splice(39..41, [0x00]);
    assert_eq!(
        malformed(&no_compression),
        MalformedHello::Invalid {
            field: HelloField::CompressionMethods
        }
    );
    let mut huge_extensions = hello_body(Some(&[]));
    let at = huge_extensions.len() - 2;
    huge_extensions[at..].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(
        malformed(&huge_extensions),
        MalformedHello::Truncated {
            field: HelloField::Extensions
        }
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        malformed(&trailing),
        MalformedHello::TrailingBytes {
            field: HelloField::Extensions
        }
    );
    let twice = hello_body(Some(&[
        sni_extension(&[(0, b"a.test")]),
        sni_extension(&[(0, b"b.test")]),
    ]));
    assert_eq!(
        malformed(&twice),
        MalformedHello::DuplicateExtension { extension_type: 0 }
    );
    let bad_alpn = hello_body(Some(&[(16, with_u16_len(&[0x00]))]));
    assert_eq!(
        malformed(&bad_alpn),
        MalformedHello::Invalid {
            field: HelloField::Alpn
        }
    );
    let bad_versions = hello_body(Some(&[(43, vec![0x03, 0x03, 0x04, 0x03])]));
    assert_eq!(
        malformed(&bad_versions),
        MalformedHello::Invalid {
            field: HelloField::SupportedVersions
        }
    );
    let sni_overrun = hello_body(Some(&[(0, vec![0x00, 0x09, 0x00, 0x00, 0x05, b'a'])]));
    assert_eq!(
        malformed(&sni_overrun),
        MalformedHello::Truncated {
            field: HelloField::ServerName
        }
    );
}

#[test]
fn supported_versions_give_the_highest_known_version() {
    let versions = |list: &[u8]| {
        let mut data = vec![list.len() as u8];
        data.extend_from_slice(list);
        done(&hello_record(&hello_body(Some(&[(43, data)])))).tls_version
    };
    assert_eq!(
        versions(&[0x0a, 0x0a, 0x03, 0x04, 0x03, 0x03]),
        TlsVersion::Tls13
    );
    assert_eq!(versions(&[0x03, 0x03, 0x03, 0x02]), TlsVersion::Tls12);
    // Only GREASE: the legacy version stands.
    assert_eq!(versions(&[0x1a, 0x1a]), TlsVersion::Tls12);
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

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let samples = [
        rustls_client_hello("allowed.test", &[b"h2", b"http/1.1"]),
        refragment(&rustls_client_hello("allowed.test", &[]), 13),
        hello_record(&hello_body(Some(&[sni_extension(&[(0, b"x.test")])]))),
    ];
    let mut completed = 0;
    for round in 0..30_000 {
        let mut input = samples[rng.below(samples.len())].clone();
        match round % 3 {
            0 => {
                let len = rng.below(400);
                input = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(first) = input.first_mut() {
                    *first = 0x16;
                }
            }
            1 => {
                for _ in 0..=rng.below(6) {
                    let at = rng.below(input.len());
                    input[at] = rng.next() as u8;
                }
            }
            _ => input.truncate(rng.below(input.len() + 1)),
        }
        // Fed in random pieces.
        let mut parser = ClientHelloParser::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len().min(64)));
            rest = tail;
            match parser.push(piece) {
                Ok(HelloStatus::NeedMore) => {}
                Ok(HelloStatus::Done(_)) => {
                    completed += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert!(
        completed > 100,
        "the mutations never left a valid hello: {completed}"
    );
}

#[tokio::test]
async fn peek_returns_every_byte_read_including_what_follows_the_hello() {
    let wire = rustls_client_hello("allowed.test", &[]);
    let (mut client, mut proxy) = tokio::io::duplex(64 * 1024);
    let mut sent = wire.clone();
    sent.extend_from_slice(b"\x17\x03\x03\x00\x01X");
    let to_send = sent.clone();
    tokio::spawn(async move {
        for piece in to_send.chunks(97) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        // Keep the stream open: the peek must not wait for the end.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let (info, consumed) = peek_client_hello(&mut proxy, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(info.sni.as_deref(), Some("allowed.test"));
    assert!(
        consumed.len() >= wire.len() && sent.starts_with(&consumed),
        "a prefix of the stream"
    );
}

#[tokio::test]
async fn peek_times_out_and_reports_a_close() {
    let wire = rustls_client_hello("allowed.test", &[]);
    let (mut client, mut proxy) = tokio::io::duplex(64 * 1024);
    client.write_all(&wire[..wire.len() / 2]).await.unwrap();
    let error = peek_client_hello(&mut proxy, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(error, TlsHelloError::Timeout { .. }), "{error:?}");
    drop(client);
    let mut half: &[u8] = &wire[..wire.len() / 2];
    let error = peek_client_hello(&mut half, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, TlsHelloError::Closed { received } if received == wire.len() / 2));
    let mut http: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
    let error = peek_client_hello(&mut http, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        TlsHelloError::NotHandshake { content_type: b'G' }
    ));
}

/// The bytes a peek consumed, replayed in front of the rest of the stream, let a real TLS
/// server complete the handshake: nothing is lost or reordered.
#[tokio::test]
async fn replaying_the_peeked_bytes_completes_a_real_handshake() {
    let certified = rcgen::generate_simple_self_signed(vec!["allowed.test".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(roots, &[b"http/1.1"]));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let (client_side, mut proxy_down) = tokio::io::duplex(64 * 1024);
    let (mut proxy_up, server_side) = tokio::io::duplex(64 * 1024);
    let client = tokio::spawn(async move {
        let name = ServerName::try_from("allowed.test").unwrap();
        let mut tls = connector.connect(name, client_side).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        tls.read_exact(&mut answer).await.unwrap();
        answer
    });
    let server = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_side).await.unwrap();
        let sni = tls.get_ref().1.server_name().map(str::to_owned);
        let mut request = [0u8; 4];
        tls.read_exact(&mut request).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.flush().await.unwrap();
        (sni, request)
    });

    let (info, consumed) = peek_client_hello(&mut proxy_down, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(info.sni.as_deref(), Some("allowed.test"));
    assert_eq!(info.alpn, [b"http/1.1".to_vec()]);
    proxy_up.write_all(&consumed).await.unwrap();
    let splice = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut proxy_down, &mut proxy_up).await;
    });
    assert_eq!(&client.await.unwrap(), b"pong");
    let (sni, request) = server.await.unwrap();
    assert_eq!((sni.as_deref(), &request), (Some("allowed.test"), b"ping"));
    splice.abort();
}
