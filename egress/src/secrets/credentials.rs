//! What the proxy holds of the secrets: for each, its hosts, where it goes, placeholder and
//! value; and the questions it asks of guest bytes (may they go to this host, what do they
//! become there) and of the host's answers (do they carry a secret back).

use std::fmt;

use super::echo_scan::EchoScanner;
use super::head_rewrite::place_secrets;
use super::leak::PlaceholderLeak;
use super::service::{Service, PLACEHOLDER_PREFIX};
use super::store::SecretStore;
use super::value::SecretValue;

/// One secret as the proxy uses it.
#[derive(Clone)]
pub(crate) struct Credential {
    pub(crate) service_name: String,
    pub(crate) hosts: Vec<String>,
    /// The header whose whole value may be the placeholder (lower case).
    pub(crate) header: String,
    /// Whether `authorization: Bearer <placeholder>` is taken too.
    pub(crate) bearer_authorization: bool,
    /// The query parameter whose whole value may be the placeholder.
    pub(crate) query_parameter: Option<&'static str>,
    pub(crate) placeholder: String,
    pub(crate) value: SecretValue,
}

/// The secrets a proxy adds, keyed by host. `Debug` shows services and hosts, never values.
#[derive(Clone, Default)]
pub struct Credentials {
    credentials: Vec<Credential>,
}

/// A placeholder found at the start of some bytes.
struct PlaceholderMatch<'a> {
    /// Whose placeholder it is.
    credential: &'a Credential,
    /// Its length in bytes.
    len: usize,
}

impl Credentials {
    /// The store's secrets.
    pub fn from_store(store: &SecretStore) -> Self {
        Self::from_secrets(
            store
                .secrets()
                .iter()
                .map(|stored| (stored.service.clone(), stored.value.clone())),
        )
    }

    /// The given secrets (a service given twice: the first wins).
    pub fn from_secrets(secrets: impl IntoIterator<Item = (Service, SecretValue)>) -> Self {
        let mut credentials: Vec<Credential> = Vec::new();
        for (service, value) in secrets {
            if credentials
                .iter()
                .any(|known| known.service_name == service.name())
            {
                continue;
            }
            credentials.push(Credential {
                service_name: service.name().to_owned(),
                hosts: service.hosts(),
                header: service.header().to_owned(),
                bearer_authorization: service.accepts_authorization_bearer(),
                query_parameter: service.query_parameter(),
                placeholder: service.placeholder(),
                value,
            });
        }
        Credentials { credentials }
    }

    /// No secrets: every host passes through untouched.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    /// Whether some secret is for `host` (so its connections are intercepted).
    pub fn for_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.credentials
            .iter()
            .any(|credential| serves(credential, &host))
    }

    /// Rewrites one HTTP/1.x request head bound for `host`, a host with a secret whose TLS the
    /// proxy terminates. A placeholder of this host's secret is replaced by the value only
    /// where its service takes it: the whole value of the service's header (`<placeholder>`,
    /// `Bearer <placeholder>` or `token <placeholder>`, scheme in any case), also
    /// `authorization: Bearer <placeholder>` for Anthropic, and the `key` query parameter
    /// (percent-encoded) for Google. Anywhere else it is [`PlaceholderLeak::Misplaced`]; a
    /// placeholder of a secret NOT for this host anywhere in the head is
    /// [`PlaceholderLeak::ForeignHost`]. On a host with a secret, any `Accept-Encoding` becomes
    /// `accept-encoding: identity` (so that responses can be scanned for an echoed secret, see
    /// [`Credentials::echo_scanner`]). Everything else is kept byte for byte.
    pub fn rewrite_head(&self, host: &str, head: &[u8]) -> Result<Vec<u8>, PlaceholderLeak> {
        let host = normalize_host(host);
        if let Some(service) = self.foreign_placeholder(&host, head) {
            return Err(PlaceholderLeak::ForeignHost { service });
        }
        let own = self.serving(&host);
        if own.is_empty() {
            return Ok(head.to_vec());
        }
        place_secrets(head, &own)
    }

    /// A scanner for the secrets sent to `host`, to cut a response that carries one back.
    pub fn echo_scanner(&self, host: &str) -> EchoScanner {
        let own = self.serving(&normalize_host(host));
        EchoScanner::new(own.into_iter().map(|credential| {
            (
                credential.service_name.as_str(),
                credential.value.expose().as_bytes(),
            )
        }))
    }

    /// The credentials for `normal_host`.
    fn serving(&self, normal_host: &str) -> Vec<&Credential> {
        self.credentials
            .iter()
            .filter(|credential| serves(credential, normal_host))
            .collect()
    }

    /// The service of the first placeholder in `bytes` whose secret is not for `host`.
    pub fn contains_foreign_placeholder(&self, host: &str, bytes: &[u8]) -> Option<String> {
        self.foreign_placeholder(&normalize_host(host), bytes)
    }

    fn foreign_placeholder(&self, normal_host: &str, bytes: &[u8]) -> Option<String> {
        let mut offset = 0;
        while let Some(rest) = bytes.get(offset..) {
            let start = offset + find(rest, PLACEHOLDER_PREFIX.as_bytes())?;
            match bytes
                .get(start..)
                .and_then(|tail| self.find_placeholder(tail))
            {
                Some(found) if !serves(found.credential, normal_host) => {
                    return Some(found.credential.service_name.clone())
                }
                Some(found) => offset = start + found.len,
                None => offset = start + PLACEHOLDER_PREFIX.len(),
            }
        }
        None
    }

    /// The credential whose placeholder `bytes` starts with (the longest, so that a
    /// placeholder that extends another is matched whole).
    fn find_placeholder(&self, bytes: &[u8]) -> Option<PlaceholderMatch<'_>> {
        self.credentials
            .iter()
            .filter(|credential| bytes.starts_with(credential.placeholder.as_bytes()))
            .max_by_key(|credential| credential.placeholder.len())
            .map(|credential| PlaceholderMatch {
                credential,
                len: credential.placeholder.len(),
            })
    }
}

/// Whether `credential` is for `normal_host`.
pub(crate) fn serves(credential: &Credential, normal_host: &str) -> bool {
    credential.hosts.iter().any(|host| host == normal_host)
}

/// A host as the credentials compare it: lower case, no trailing dot.
fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The first position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.credentials.iter().map(|credential| {
                (
                    &credential.service_name,
                    (&credential.hosts, &credential.header),
                )
            }))
            .finish()
    }
}
