//! Credentials: the secret goes only in its service's own slot (exact value of its header,
//! Anthropic's `authorization: Bearer`, Google's `key=`); a placeholder anywhere else, or of
//! another host's secret, refuses the head; `Accept-Encoding` becomes `identity`.

use crate::secrets::{Credentials, PlaceholderLeak, PlaceholderPlace, SecretValue, Service};

/// What every rewritten head carries before its empty line.
const IDENTITY: &str = "accept-encoding: identity";

fn credentials() -> Credentials {
    let custom = Service::custom(
        "corp",
        &["corp.example".to_owned(), "files.corp.example".to_owned()],
        "x-corp-token",
    )
    .unwrap();
    let custom_longer =
        Service::custom("corp-2", &["two.corp.example".to_owned()], "x-token").unwrap();
    Credentials::from_secrets(
        [
            (Service::Anthropic, "sk-ant-SECRET"),
            (Service::Openai, "sk-openai-SECRET"),
            (Service::Google, "AIza+SECRET/="),
            (Service::Github, "ghp_SECRET"),
            (custom, "corp-SECRET"),
            (custom_longer, "corp2-SECRET"),
        ]
        .map(|(service, value)| (service, SecretValue::new(value.to_owned()).unwrap())),
    )
}

fn rewrite(host: &str, head: &str) -> Result<String, PlaceholderLeak> {
    credentials()
        .rewrite_head(host, head.as_bytes())
        .map(|bytes| String::from_utf8(bytes).unwrap())
}

/// The place a refused head names, asserting it was refused as misplaced for `service`.
fn misplaced(host: &str, head: &str, service: &str) -> PlaceholderPlace {
    match rewrite(host, head) {
        Err(PlaceholderLeak::Misplaced {
            service: found,
            place,
        }) if found == service => place,
        other => panic!("{head:?} to {host} gave {other:?}"),
    }
}

fn header_place(name: &str) -> PlaceholderPlace {
    PlaceholderPlace::HeaderValue {
        header: name.to_owned(),
    }
}

#[test]
fn anthropic_x_api_key_and_bearer_are_replaced() {
    let head = "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: paddock-placeholder-anthropic\r\nAuthorization: Bearer paddock-placeholder-anthropic\r\ncontent-length: 2\r\n\r\n";
    assert_eq!(
        rewrite("api.anthropic.com", head).unwrap(),
        format!("POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: sk-ant-SECRET\r\nAuthorization: Bearer sk-ant-SECRET\r\ncontent-length: 2\r\n{IDENTITY}\r\n\r\n")
    );
    // Upper-case host with a trailing dot is the same host.
    assert!(rewrite("API.Anthropic.com.", head)
        .unwrap()
        .contains("sk-ant-SECRET"));
    // The scheme in any case, the value with surrounding whitespace kept as it was.
    let head = "GET / HTTP/1.1\r\nauthorization:\tbEaReR   paddock-placeholder-anthropic \r\n\r\n";
    assert_eq!(
        rewrite("api.anthropic.com", head).unwrap(),
        format!("GET / HTTP/1.1\r\nauthorization:\tbEaReR   sk-ant-SECRET \r\n{IDENTITY}\r\n\r\n")
    );
}

#[test]
fn openai_bearer_is_replaced() {
    let head = "GET /v1/models HTTP/1.1\r\nauthorization:Bearer paddock-placeholder-openai\r\n\r\n";
    assert_eq!(
        rewrite("api.openai.com", head).unwrap(),
        format!("GET /v1/models HTTP/1.1\r\nauthorization:Bearer sk-openai-SECRET\r\n{IDENTITY}\r\n\r\n")
    );
}

#[test]
fn google_header_and_query_key_are_replaced_query_percent_encoded() {
    let head = "POST /v1beta/models/gemini:generateContent?alt=sse&key=paddock-placeholder-google#frag HTTP/1.1\r\nx-goog-api-key: paddock-placeholder-google\r\n\r\n";
    assert_eq!(
        rewrite("generativelanguage.googleapis.com", head).unwrap(),
        format!("POST /v1beta/models/gemini:generateContent?alt=sse&key=AIza%2BSECRET%2F%3D#frag HTTP/1.1\r\nx-goog-api-key: AIza+SECRET/=\r\n{IDENTITY}\r\n\r\n")
    );
}

#[test]
fn github_token_forms_are_replaced_on_all_its_hosts() {
    for host in ["api.github.com", "github.com", "uploads.github.com"] {
        let head = "GET /user HTTP/1.1\nAuthorization: token paddock-placeholder-github\n\n";
        assert_eq!(
            rewrite(host, head).unwrap(),
            format!("GET /user HTTP/1.1\nAuthorization: token ghp_SECRET\n{IDENTITY}\n\n")
        );
    }
}

#[test]
fn custom_service_is_replaced_and_the_longest_placeholder_wins() {
    let head = "GET / HTTP/1.1\r\nx-corp-token: paddock-placeholder-corp\r\n\r\n";
    assert!(rewrite("files.corp.example", head)
        .unwrap()
        .contains("x-corp-token: corp-SECRET\r\n"));
    let longer = "GET / HTTP/1.1\r\nx-token: paddock-placeholder-corp-2\r\n\r\n";
    assert!(rewrite("two.corp.example", longer)
        .unwrap()
        .contains("x-token: corp2-SECRET\r\n"));
    // corp-2's placeholder going to corp's host is corp-2's leak, not corp's value plus "-2".
    assert_eq!(
        rewrite("corp.example", longer),
        Err(PlaceholderLeak::ForeignHost {
            service: "corp-2".to_owned()
        })
    );
    // An unknown name extending corp's placeholder is not corp's placeholder alone.
    let extended = "GET / HTTP/1.1\r\nx-corp-token: paddock-placeholder-corpX\r\n\r\n";
    assert_eq!(
        misplaced("corp.example", extended, "corp"),
        header_place("x-corp-token")
    );
}

#[test]
fn own_placeholder_in_echoable_headers_is_refused_never_replaced() {
    let host = "api.anthropic.com";
    for name in [
        "Origin",
        "Referer",
        "Host",
        "x-custom",
        "user-agent",
        "cookie",
    ] {
        for value in [
            "paddock-placeholder-anthropic",
            "https://paddock-placeholder-anthropic.example/",
            "Bearer paddock-placeholder-anthropic",
        ] {
            let head = format!("GET / HTTP/1.1\r\n{name}: {value}\r\n\r\n");
            assert_eq!(misplaced(host, &head, "anthropic"), header_place(name));
        }
    }
    // Even next to a correct use, and even in the header name.
    let head = "GET / HTTP/1.1\r\nx-api-key: paddock-placeholder-anthropic\r\nx-echo: paddock-placeholder-anthropic\r\n\r\n";
    assert_eq!(misplaced(host, head, "anthropic"), header_place("x-echo"));
    let head = "GET / HTTP/1.1\r\nx-paddock-placeholder-anthropic: 1\r\n\r\n";
    assert_eq!(
        misplaced(host, head, "anthropic"),
        PlaceholderPlace::HeaderName
    );
    // A folded continuation holding it, or continuing the header that holds it.
    let head = "GET / HTTP/1.1\r\nx-a: b\r\n paddock-placeholder-anthropic\r\n\r\n";
    assert_eq!(
        misplaced(host, head, "anthropic"),
        PlaceholderPlace::ContinuationLine
    );
    let head = "GET / HTTP/1.1\r\nx-api-key: paddock-placeholder-anthropic\r\n more\r\n\r\n";
    assert_eq!(
        misplaced(host, head, "anthropic"),
        PlaceholderPlace::ContinuationLine
    );
    // Nothing in the refusal carries the value.
    let refusal = rewrite(
        host,
        "GET / HTTP/1.1\r\nOrigin: paddock-placeholder-anthropic\r\n\r\n",
    )
    .unwrap_err();
    assert!(!format!("{refusal} {refusal:?}").contains("SECRET"));
}

#[test]
fn own_placeholder_in_its_header_but_not_exactly_is_refused() {
    let host = "api.anthropic.com";
    for value in [
        "xpaddock-placeholder-anthropic",
        "paddock-placeholder-anthropic,paddock-placeholder-anthropic",
        "paddock-placeholder-anthropic paddock-placeholder-anthropic",
        "Basic paddock-placeholder-anthropic",
        "Bearer\tpaddock-placeholder-anthropic",
        "Bearer paddock-placeholder-anthropic trailing",
        "Bearer token paddock-placeholder-anthropic",
    ] {
        let head = format!("GET / HTTP/1.1\r\nx-api-key: {value}\r\n\r\n");
        assert_eq!(
            misplaced(host, &head, "anthropic"),
            header_place("x-api-key"),
            "{value}"
        );
    }
    // `authorization` takes Anthropic's secret with Bearer only; OpenAI's header is
    // `authorization` and nothing else.
    let head = "GET / HTTP/1.1\r\nauthorization: token paddock-placeholder-anthropic\r\n\r\n";
    assert_eq!(
        misplaced(host, head, "anthropic"),
        header_place("authorization")
    );
    let head = "GET / HTTP/1.1\r\nx-api-key: Bearer paddock-placeholder-openai\r\n\r\n";
    assert_eq!(
        misplaced("api.openai.com", head, "openai"),
        header_place("x-api-key")
    );
    // A GitHub placeholder in a header of its own making (git sends Basic auth, which the
    // guest encodes itself) is refused too.
    let head = "GET /o/r.git/info/refs HTTP/1.1\r\nx-gh: a paddock-placeholder-github\r\n\r\n";
    assert_eq!(
        misplaced("github.com", head, "github"),
        header_place("x-gh")
    );
}

#[test]
fn own_placeholder_in_the_request_line_is_refused_except_googles_key() {
    let google = "generativelanguage.googleapis.com";
    for head in [
        "GET /paddock-placeholder-google?x=1 HTTP/1.1\r\n\r\n",
        "GET /v1?q=paddock-placeholder-google HTTP/1.1\r\n\r\n",
        "GET /v1?key=paddock-placeholder-googlex HTTP/1.1\r\n\r\n",
        "GET /v1?key=xpaddock-placeholder-google HTTP/1.1\r\n\r\n",
        "GET /v1?KEY=paddock-placeholder-google HTTP/1.1\r\n\r\n",
        "GET /v1?key=1#paddock-placeholder-google HTTP/1.1\r\n\r\n",
        "GET /v1?key=paddock-placeholder-google&echo=paddock-placeholder-google HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            misplaced(google, head, "google"),
            PlaceholderPlace::RequestLine,
            "{head}"
        );
    }
    // Only Google takes a query parameter.
    let head = "GET /v1/messages?key=paddock-placeholder-anthropic HTTP/1.1\r\n\r\n";
    assert_eq!(
        misplaced("api.anthropic.com", head, "anthropic"),
        PlaceholderPlace::RequestLine
    );
}

#[test]
fn foreign_placeholder_is_a_leak() {
    let credentials = credentials();
    let head = b"GET / HTTP/1.1\r\nx-api-key: paddock-placeholder-anthropic\r\n\r\n";
    let anthropic_leak = Err(PlaceholderLeak::ForeignHost {
        service: "anthropic".to_owned(),
    });
    assert_eq!(
        credentials.rewrite_head("api.openai.com", head),
        anthropic_leak
    );
    assert_eq!(
        credentials.rewrite_head("evil.example", head),
        anthropic_leak
    );
    // Anywhere in the head: path, header name, folded line.
    let in_path = b"GET /steal/paddock-placeholder-openai HTTP/1.1\r\n\r\n";
    assert!(matches!(
        credentials.rewrite_head("api.anthropic.com", in_path),
        Err(PlaceholderLeak::ForeignHost { .. })
    ));
    assert_eq!(
        credentials
            .contains_foreign_placeholder("evil.example", b"body paddock-placeholder-github"),
        Some("github".to_owned())
    );
    assert_eq!(
        credentials
            .contains_foreign_placeholder("api.github.com", b"body paddock-placeholder-github"),
        None
    );
    assert_eq!(
        credentials.contains_foreign_placeholder("evil.example", b"paddock-placeholder-unknown"),
        None
    );
}

#[test]
fn accept_encoding_becomes_identity_on_hosts_with_a_secret_only() {
    let credentials = credentials();
    let head = b"GET /x?y=1 HTTP/1.1\r\nHost: api.openai.com\r\nAccept-Encoding: gzip, br\r\n  , zstd\r\nx-a: 1\r\naccept-encoding: deflate\r\n\r\n";
    assert_eq!(
        String::from_utf8(credentials.rewrite_head("api.openai.com", head).unwrap()).unwrap(),
        format!("GET /x?y=1 HTTP/1.1\r\nHost: api.openai.com\r\nx-a: 1\r\n{IDENTITY}\r\n\r\n")
    );
    // Bytes after the head (none in practice) are kept.
    let with_body = b"GET / HTTP/1.1\n\nbody";
    assert_eq!(
        credentials
            .rewrite_head("api.openai.com", with_body)
            .unwrap(),
        format!("GET / HTTP/1.1\n{IDENTITY}\n\nbody").as_bytes()
    );
    // Hosts without a secret: untouched.
    let head = b"GET /x?y=1 HTTP/1.1\r\nHost: example.com\r\nAccept-Encoding: gzip\r\n\r\n";
    assert_eq!(credentials.rewrite_head("example.com", head).unwrap(), head);
    assert!(credentials.for_host("api.openai.com"));
    assert!(credentials.for_host("GitHub.com."));
    assert!(!credentials.for_host("example.com"));
    assert!(!Credentials::empty().for_host("api.openai.com"));
}
