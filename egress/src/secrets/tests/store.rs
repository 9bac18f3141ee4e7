//! The secret store: permissions, round trip, refusal of readable files, redaction.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::secrets::{
    Credentials, SecretStore, SecretStoreError, SecretValue, Service, SetSecretError,
};

const SECRET: &str = "sk-ant-api03-very-secret-value";

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_round_trips_with_private_permissions() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("state/secrets");
    let path = dir.join("secrets.json");

    let mut store = SecretStore::open(&path).unwrap();
    assert!(store.list().is_empty());
    assert!(!path.exists(), "opening creates nothing");
    store.set(Service::Anthropic, SECRET.to_owned()).unwrap();
    let custom = Service::custom("corp", &["corp.example".to_owned()], "x-key").unwrap();
    store.set(custom.clone(), "corp-token".to_owned()).unwrap();
    store
        .set(Service::Anthropic, format!("{SECRET}-2"))
        .unwrap();

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["secrets.json"], "no temporary file is left");

    let text = fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["secrets"].as_array().unwrap().len(), 2);

    let reopened = SecretStore::open(&path).unwrap();
    let summaries = reopened.list();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0].name, "anthropic");
    assert_eq!(summaries[0].env_var, Some("ANTHROPIC_API_KEY"));
    assert_eq!(summaries[0].placeholder, "paddock-placeholder-anthropic");
    assert_eq!(summaries[0].hosts, ["api.anthropic.com"]);
    assert_eq!(summaries[1].name, "corp");
    assert_eq!(summaries[1].header, "x-key");

    let credentials = Credentials::from_store(&reopened);
    let head = b"GET / HTTP/1.1\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n";
    let rewritten = credentials.rewrite_head("api.anthropic.com", head).unwrap();
    assert!(String::from_utf8(rewritten)
        .unwrap()
        .contains(&format!("{SECRET}-2")));

    let mut store = reopened;
    assert!(store.remove("corp").unwrap());
    assert!(!store.remove("corp").unwrap());
    assert_eq!(SecretStore::open(&path).unwrap().list().len(), 1);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn store_readable_by_others_is_refused_with_the_fix() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("secrets.json");
    SecretStore::open(&path)
        .unwrap()
        .set(Service::Openai, "sk-openai".to_owned())
        .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let error = SecretStore::open(&path).unwrap_err();
    assert!(matches!(
        error,
        SecretStoreError::InsecurePermissions { mode: 0o644, .. }
    ));
    let message = error.to_string();
    assert!(
        message.contains(&format!("chmod 600 {}", path.display())),
        "{message}"
    );
}

#[test]
fn store_with_bad_contents_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("secrets.json");
    let write = |text: &str| {
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(r#"{"version": 2, "secrets": []}"#);
    assert!(matches!(
        SecretStore::open(&path),
        Err(SecretStoreError::UnsupportedVersion { version: 2, .. })
    ));
    write(
        r#"{"version": 1, "secrets": [{"service": "openai", "value": "a"}, {"service": "openai", "value": "b"}]}"#,
    );
    assert!(matches!(
        SecretStore::open(&path),
        Err(SecretStoreError::Inconsistent { .. })
    ));
    write(r#"{"version": 1, "secrets": [{"service": "openai", "value": "has space"}]}"#);
    let error = SecretStore::open(&path).unwrap_err();
    assert!(matches!(error, SecretStoreError::Parse { .. }));
    assert!(
        !format!("{error:?} {error}").contains("has space"),
        "the error shows no value"
    );
    write(
        r#"{"version": 1, "secrets": [{"service": "custom", "name": "openai", "hosts": ["x.example"], "header": "x", "value": "v"}]}"#,
    );
    assert!(matches!(
        SecretStore::open(&path),
        Err(SecretStoreError::InvalidService { .. })
    ));
}

#[test]
fn bad_values_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let mut store = SecretStore::open(&temp.path().join("s.json")).unwrap();
    for value in [
        "",
        "two words",
        "line\r\nx-injected: 1",
        "paddock-placeholder-openai",
    ] {
        assert!(
            matches!(
                store.set(Service::Openai, value.to_owned()),
                Err(SetSecretError::InvalidValue(_))
            ),
            "{value:?}"
        );
    }
    assert!(store.list().is_empty());
}

#[test]
fn debug_output_never_shows_a_value() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("secrets.json");
    let mut store = SecretStore::open(&path).unwrap();
    store.set(Service::Anthropic, SECRET.to_owned()).unwrap();
    let credentials = Credentials::from_store(&store);
    let value = SecretValue::new(SECRET.to_owned()).unwrap();
    for shown in [
        format!("{store:?}"),
        format!("{store:#?}"),
        format!("{credentials:?}"),
        format!("{credentials:#?}"),
        format!("{value:?}"),
        format!("{:?}", store.list()),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }
    assert!(format!("{credentials:?}").contains("anthropic"));
    assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
}
