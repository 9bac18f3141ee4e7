//! Which host a request inside an intercepted connection is for. It must have exactly one
//! `Host` header naming the connection's host (any case, a trailing dot and a port allowed),
//! and a request-target in origin form (`/…`), `*`, or naming that same host; so a front end
//! that routes by `Host` or by absolute URI cannot hand a request carrying the secret to
//! another of its tenants.

use super::error::HeadError;

/// Longest guest text kept in an error.
const MAX_SHOWN_LEN: usize = 256;

/// Checks `target` and the `Host` headers among `headers` against `expected` (the
/// connection's host).
pub(super) fn check_request_host(
    expected: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
) -> Result<(), HeadError> {
    let mut hosts = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("host"));
    let host = hosts.next().ok_or(HeadError::MissingHost)?;
    let more = hosts.count();
    if more > 0 {
        return Err(HeadError::RepeatedHost { count: more + 1 });
    }
    if !authority_is(expected, trim_ows(host.value)) {
        return Err(HeadError::HostMismatch {
            expected: expected.to_owned(),
            found: shown(host.value),
        });
    }
    if !target_is_on(expected, target) {
        return Err(HeadError::TargetMismatch {
            expected: expected.to_owned(),
            found: shown(target.as_bytes()),
        });
    }
    Ok(())
}

/// Whether a request-target is for `expected`: origin form, `*`, an `http`/`https` absolute
/// URI on it, or an authority (CONNECT) of it.
fn target_is_on(expected: &str, target: &str) -> bool {
    if target.starts_with('/') || target == "*" {
        return true;
    }
    match target.split_once("://") {
        Some((scheme, rest)) => {
            let web = scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http");
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = rest.get(..authority_end).unwrap_or_default();
            web && authority_is(expected, authority.as_bytes())
        }
        None => authority_is(expected, target.as_bytes()),
    }
}

/// Whether `authority` (`host` or `host:port`, no user information) names `expected`,
/// compared without case or trailing dot.
fn authority_is(expected: &str, authority: &[u8]) -> bool {
    let host = match authority.iter().rposition(|&byte| byte == b':') {
        Some(colon) => {
            let port = authority.get(colon + 1..).unwrap_or_default();
            let port_ok = !port.is_empty()
                && port.len() <= 5
                && port.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(port).is_ok_and(|port| port.parse::<u16>().is_ok());
            if !port_ok {
                return false;
            }
            authority.get(..colon).unwrap_or_default()
        }
        None => authority,
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    let expected = expected.strip_suffix('.').unwrap_or(expected);
    !host.is_empty() && host.eq_ignore_ascii_case(expected.as_bytes())
}

/// `value` without surrounding spaces and tabs.
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&byte| byte != b' ' && byte != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&byte| byte != b' ' && byte != b'\t')
        .map_or(start, |last| last + 1);
    value.get(start..end).unwrap_or_default()
}

/// Guest bytes as they are shown in an error: lossy UTF-8, cut.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_SHOWN_LEN)
        .collect()
}
