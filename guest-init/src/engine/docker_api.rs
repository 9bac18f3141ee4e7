//! The two questions guest-init asks dockerd: does it answer (`GET /_ping`), and which version
//! is it (`GET /version`).

use super::http::{self, HttpError, HttpResponse};
use paddock_protocol::MAX_ENGINE_VERSION;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// dockerd's API socket (`--host`).
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Why dockerd's answer is not the expected one.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("answered HTTP status {0}")]
    Status(u16),
    #[error("/_ping answered something other than OK")]
    NotOk,
    #[error("/version is not the expected JSON: {0}")]
    VersionJson(#[from] serde_json::Error),
    #[error("/version reports an empty or over-long version")]
    VersionLength,
}

/// The part of `/version` guest-init reads.
#[derive(Deserialize)]
struct VersionBody {
    #[serde(rename = "Version")]
    version: String,
}

/// Whether dockerd answers `/_ping` with 200 `OK`.
pub fn ping(socket: &Path, timeout: Duration) -> Result<(), ApiError> {
    check_ping(&http::get(socket, "/_ping", timeout)?)
}

/// dockerd's server version.
pub fn server_version(socket: &Path, timeout: Duration) -> Result<String, ApiError> {
    parse_version(&http::get(socket, "/version", timeout)?)
}

/// Checks a `/_ping` response.
pub fn check_ping(response: &HttpResponse) -> Result<(), ApiError> {
    if response.status != 200 {
        return Err(ApiError::Status(response.status));
    }
    if response.body.trim_ascii() != b"OK" {
        return Err(ApiError::NotOk);
    }
    Ok(())
}

/// Reads the server version from a `/version` response.
pub fn parse_version(response: &HttpResponse) -> Result<String, ApiError> {
    if response.status != 200 {
        return Err(ApiError::Status(response.status));
    }
    let body: VersionBody = serde_json::from_slice(&response.body)?;
    if body.version.is_empty() || body.version.len() > MAX_ENGINE_VERSION {
        return Err(ApiError::VersionLength);
    }
    Ok(body.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn ping_needs_200_ok() {
        assert!(check_ping(&response(200, "OK")).is_ok());
        assert!(matches!(
            check_ping(&response(500, "OK")),
            Err(ApiError::Status(500))
        ));
        assert!(matches!(
            check_ping(&response(200, "NOPE")),
            Err(ApiError::NotOk)
        ));
    }

    #[test]
    fn the_server_version_is_read_from_the_json() {
        let body = r#"{"Platform":{"Name":""},"Components":[{"Name":"Engine","Version":"20.10.24+dfsg1"}],"Version":"20.10.24+dfsg1","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}"#;
        assert_eq!(
            parse_version(&response(200, body)).unwrap(),
            "20.10.24+dfsg1"
        );
    }

    #[test]
    fn bad_versions_are_refused() {
        assert!(matches!(
            parse_version(&response(200, "{\"ApiVersion\":\"1.41\"}")),
            Err(ApiError::VersionJson(_))
        ));
        assert!(matches!(
            parse_version(&response(200, "not json")),
            Err(ApiError::VersionJson(_))
        ));
        assert!(matches!(
            parse_version(&response(404, "{}")),
            Err(ApiError::Status(404))
        ));
        let long = format!("{{\"Version\":\"{}\"}}", "9".repeat(MAX_ENGINE_VERSION + 1));
        assert!(matches!(
            parse_version(&response(200, &long)),
            Err(ApiError::VersionLength)
        ));
        assert!(matches!(
            parse_version(&response(200, "{\"Version\":\"\"}")),
            Err(ApiError::VersionLength)
        ));
    }
}
