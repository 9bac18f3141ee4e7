//! The echo scanner: a secret in a response is caught however the stream is split, and no byte
//! of it is released; everything else is released, a line break never held back.

use crate::secrets::{Credentials, EchoScanner, SecretEchoed, SecretValue, Service};

const SECRET: &str = "sk-ant-abcabd-SECRET";

fn scanner() -> EchoScanner {
    let credentials = Credentials::from_secrets([
        (
            Service::Anthropic,
            SecretValue::new(SECRET.to_owned()).unwrap(),
        ),
        (
            Service::Openai,
            SecretValue::new("sk-openai-OTHER".to_owned()).unwrap(),
        ),
    ]);
    credentials.echo_scanner("API.anthropic.com.")
}

/// Feeds `chunks`; returns what was released (and at the end) or the refusal.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, Result<(), SecretEchoed>) {
    let mut scanner = scanner();
    let mut released = Vec::new();
    for chunk in chunks {
        if let Err(echoed) = scanner.scan(chunk, &mut released) {
            return (released, Err(echoed));
        }
    }
    scanner.finish(&mut released);
    (released, Ok(()))
}

#[test]
fn a_secret_split_anywhere_is_caught_before_any_of_it_is_released() {
    let stream =
        format!("HTTP/1.1 400 Bad\r\n\r\n{{\"error\":\"invalid key sk-ant-abcab{SECRET}\"}}");
    let bytes = stream.as_bytes();
    let secret_start = stream.rfind(SECRET).unwrap();
    for split in 0..=bytes.len() {
        for second_split in split..=bytes.len() {
            let (released, result) = run(&[
                &bytes[..split],
                &bytes[split..second_split],
                &bytes[second_split..],
            ]);
            assert_eq!(
                result,
                Err(SecretEchoed {
                    service: "anthropic".to_owned()
                }),
                "split at {split}, {second_split}"
            );
            assert!(
                released.len() <= secret_start,
                "split at {split}, {second_split}: released {}",
                String::from_utf8_lossy(&released)
            );
            assert_eq!(&released[..], &bytes[..released.len()]);
        }
    }
    // One byte at a time.
    let single: Vec<&[u8]> = bytes.chunks(1).collect();
    let (released, result) = run(&single);
    assert!(result.is_err());
    assert_eq!(released, &bytes[..secret_start]);
}

#[test]
fn other_streams_pass_whole_and_events_are_not_held() {
    // Near misses of the secret (its prefixes, repeated) and another host's secret.
    let stream =
        b"data: sk-ant-abcabcabd sk-ant-abcabd-SECRE sk-openai-OTHER\n\ndata: two\n\nsk-ant-";
    let (released, result) = run(&[&stream[..7], &stream[7..30], &stream[30..]]);
    result.unwrap();
    assert_eq!(released, stream);

    let mut scanner = scanner();
    let mut released = Vec::new();
    scanner
        .scan(b"event: x\ndata: sk-ant-abc", &mut released)
        .unwrap();
    assert_eq!(released, b"event: x\ndata: ");
    assert_eq!(scanner.held_len(), "sk-ant-abc".len());
    scanner.scan(b"\n\n", &mut released).unwrap();
    assert_eq!(released, b"event: x\ndata: sk-ant-abc\n\n");
    assert_eq!(scanner.held_len(), 0, "a finished event is never held");
    assert!(format!("{scanner:?}").contains("anthropic"));
    assert!(!format!("{scanner:?}").contains(SECRET));
}

#[test]
fn a_host_without_secrets_scans_for_nothing() {
    let credentials = Credentials::from_secrets([(
        Service::Anthropic,
        SecretValue::new(SECRET.to_owned()).unwrap(),
    )]);
    let mut scanner = credentials.echo_scanner("example.com");
    let mut released = Vec::new();
    scanner.scan(SECRET.as_bytes(), &mut released).unwrap();
    assert_eq!(released, SECRET.as_bytes());
}
