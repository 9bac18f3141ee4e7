//! Services: names, hosts, placeholders, environment variables, custom validation, serde.

use crate::secrets::{InvalidServiceError, Service};

#[test]
fn named_services_have_their_hosts_env_vars_and_placeholders() {
    let anthropic: Service = "anthropic".parse().unwrap();
    assert_eq!(anthropic, Service::Anthropic);
    assert_eq!(anthropic.env_var(), Some("ANTHROPIC_API_KEY"));
    assert_eq!(anthropic.placeholder(), "paddock-placeholder-anthropic");
    assert_eq!(anthropic.hosts(), ["api.anthropic.com"]);
    assert_eq!(anthropic.header(), "x-api-key");

    assert_eq!(Service::Openai.env_var(), Some("OPENAI_API_KEY"));
    assert_eq!(Service::Openai.hosts(), ["api.openai.com"]);
    assert_eq!(Service::Google.env_var(), Some("GEMINI_API_KEY"));
    assert_eq!(
        Service::Google.hosts(),
        ["generativelanguage.googleapis.com"]
    );
    assert_eq!(Service::Google.header(), "x-goog-api-key");
    assert_eq!(Service::Github.env_var(), Some("GH_TOKEN"));
    assert_eq!(
        Service::Github.hosts(),
        ["api.github.com", "github.com", "uploads.github.com"]
    );
    assert!(Service::Anthropic.accepts_authorization_bearer());
    assert!(!Service::Openai.accepts_authorization_bearer());
    assert_eq!(Service::Google.query_parameter(), Some("key"));
    assert_eq!(Service::Anthropic.query_parameter(), None);
    assert_eq!("GitHub".parse::<Service>().unwrap(), Service::Github);
    assert_eq!("gemini".parse::<Service>().unwrap(), Service::Google);
    assert!("gitlab".parse::<Service>().is_err());
}

#[test]
fn custom_services_are_normalised_and_checked() {
    let service = Service::custom(
        "my-registry",
        &["Registry.Example.COM.".to_owned()],
        "X-Token",
    )
    .unwrap();
    assert_eq!(service.hosts(), ["registry.example.com"]);
    assert_eq!(service.header(), "x-token");
    assert_eq!(service.env_var(), None);
    assert_eq!(service.placeholder(), "paddock-placeholder-my-registry");

    let host = ["example.com".to_owned()];
    assert!(matches!(
        Service::custom("openai", &host, "x"),
        Err(InvalidServiceError::ReservedName { .. })
    ));
    assert!(matches!(
        Service::custom("Bad Name", &host, "x"),
        Err(InvalidServiceError::BadName { .. })
    ));
    assert!(matches!(
        Service::custom("ok", &[], "x"),
        Err(InvalidServiceError::HostCount { count: 0 })
    ));
    assert!(matches!(
        Service::custom("ok", &["not a host".to_owned()], "x"),
        Err(InvalidServiceError::BadHost { .. })
    ));
    assert!(matches!(
        Service::custom("ok", &host, "bad header"),
        Err(InvalidServiceError::BadHeader { .. })
    ));
}

#[test]
fn services_serialise_with_a_tag() {
    let json = serde_json::to_string(&Service::Anthropic).unwrap();
    assert_eq!(json, r#"{"service":"anthropic"}"#);
    let custom = Service::custom("corp", &["corp.example".to_owned()], "x-key").unwrap();
    let json = serde_json::to_string(&custom).unwrap();
    assert_eq!(
        json,
        r#"{"service":"custom","name":"corp","hosts":["corp.example"],"header":"x-key"}"#
    );
    assert_eq!(serde_json::from_str::<Service>(&json).unwrap(), custom);
}
