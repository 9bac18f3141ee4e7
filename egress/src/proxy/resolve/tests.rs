//! Tests of `resolve`.
use super::*;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn overrides_answer_first_in_order() {
    let resolver = Resolver::new(
        vec![
            ("Allowed.Test.".into(), "127.0.0.1".parse().unwrap()),
            ("allowed.test".into(), "::1".parse().unwrap()),
            ("allowed.test".into(), "127.0.0.1".parse().unwrap()),
            ("other.test".into(), "10.0.0.1".parse().unwrap()),
        ],
        WAIT,
    );
    let addresses = resolver.resolve("allowed.test", 443).await.unwrap();
    assert_eq!(
        addresses,
        vec![
            "127.0.0.1:443".parse::<SocketAddr>().unwrap(),
            "[::1]:443".parse().unwrap()
        ]
    );
}

#[tokio::test]
async fn other_names_go_to_the_host_resolver() {
    let resolver = Resolver::new(vec![("x.test".into(), "10.0.0.1".parse().unwrap())], WAIT);
    let addresses = resolver.resolve("localhost", 80).await.unwrap();
    assert!(!addresses.is_empty());
    assert!(addresses.len() <= MAX_ADDRESSES);
    assert!(addresses
        .iter()
        .all(|a| a.ip().is_loopback() && a.port() == 80));
}

#[tokio::test]
async fn unknown_names_fail() {
    let resolver = Resolver::new(Vec::new(), WAIT);
    // `.invalid` never resolves (RFC 2606).
    assert!(resolver.resolve("nothing.invalid", 80).await.is_err());
}
