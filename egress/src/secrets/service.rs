//! The services a secret can belong to: which hosts receive it, in which header it is expected,
//! and which placeholder and environment variable the guest sees instead of it.

use std::fmt;
use std::str::FromStr;

use paddock_protocol::egress::normalize_name;
use serde::{Deserialize, Serialize};

/// Every placeholder starts with this; the rest is the service's name.
pub const PLACEHOLDER_PREFIX: &str = "paddock-placeholder-";
/// Longest name of a custom service.
pub const MAX_CUSTOM_NAME_LEN: usize = 40;
/// Most hosts a custom service may name.
pub const MAX_CUSTOM_HOSTS: usize = 16;
/// Longest header name of a custom service.
pub const MAX_HEADER_NAME_LEN: usize = 64;

/// Names a custom service may not take: the named services and their aliases.
const RESERVED_NAMES: &[&str] = &[
    "anthropic",
    "openai",
    "google",
    "gemini",
    "github",
    "gh",
    "custom",
];

/// A service whose secret the proxy adds on the service's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "service", rename_all = "lowercase")]
pub enum Service {
    /// `api.anthropic.com`, header `x-api-key` (or `authorization: Bearer`).
    Anthropic,
    /// `api.openai.com`, header `authorization: Bearer`.
    Openai,
    /// `generativelanguage.googleapis.com`, header `x-goog-api-key` or `?key=`.
    Google,
    /// `api.github.com`, `github.com`, `uploads.github.com`, header `authorization`.
    Github,
    /// A service the user describes: its name, hosts and header.
    Custom {
        /// Lower-case letters, digits and `-`; not one of the named services.
        name: String,
        /// DNS names (lower case, no trailing dot) that receive the secret.
        hosts: Vec<String>,
        /// The header the secret is expected in (lower case).
        header: String,
    },
}

/// A name that is not one of the named services.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service {name:?} (known: anthropic, openai, google, github)")]
pub struct UnknownServiceError {
    /// The name given.
    pub name: String,
}

/// Why a custom service description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidServiceError {
    /// The name is empty, too long, or has characters other than `a-z`, `0-9`, `-`.
    #[error("custom service name {name:?} must be 1-{MAX_CUSTOM_NAME_LEN} of a-z, 0-9 and '-', starting with a letter or digit")]
    BadName {
        /// The name given.
        name: String,
    },
    /// The name is one of the named services.
    #[error("custom service name {name:?} is reserved for a named service")]
    ReservedName {
        /// The name given.
        name: String,
    },
    /// No hosts, or more than [`MAX_CUSTOM_HOSTS`].
    #[error("a custom service needs 1-{MAX_CUSTOM_HOSTS} hosts, got {count}")]
    HostCount {
        /// How many were given.
        count: usize,
    },
    /// A host is not a DNS name.
    #[error("{host:?} is not a DNS name")]
    BadHost {
        /// The host given.
        host: String,
        /// What was wrong with it.
        #[source]
        source: paddock_protocol::EgressLineError,
    },
    /// The header name is not an HTTP token.
    #[error("{header:?} is not an HTTP header name (1-{MAX_HEADER_NAME_LEN} token characters)")]
    BadHeader {
        /// The header given.
        header: String,
    },
}

impl Service {
    /// Describes a custom service, normalising hosts and header to lower case.
    pub fn custom(
        name: &str,
        hosts: &[String],
        header: &str,
    ) -> Result<Service, InvalidServiceError> {
        let service = Service::Custom {
            name: name.to_owned(),
            hosts: hosts
                .iter()
                .map(|host| {
                    normalize_name(host).map_err(|source| InvalidServiceError::BadHost {
                        host: host.clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?,
            header: header.to_ascii_lowercase(),
        };
        service.validate()?;
        Ok(service)
    }

    /// Checks a service read from a file: a custom one must have a valid name, hosts in
    /// normal form, and a header name.
    pub fn validate(&self) -> Result<(), InvalidServiceError> {
        let Service::Custom {
            name,
            hosts,
            header,
        } = self
        else {
            return Ok(());
        };
        let name_ok = !name.is_empty()
            && name.len() <= MAX_CUSTOM_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !name_ok {
            return Err(InvalidServiceError::BadName { name: name.clone() });
        }
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(InvalidServiceError::ReservedName { name: name.clone() });
        }
        if hosts.is_empty() || hosts.len() > MAX_CUSTOM_HOSTS {
            return Err(InvalidServiceError::HostCount { count: hosts.len() });
        }
        for host in hosts {
            match normalize_name(host) {
                Ok(normal) if normal == *host => {}
                Ok(_) => {
                    return Err(InvalidServiceError::BadHost {
                        host: host.clone(),
                        source: paddock_protocol::EgressLineError::BadName,
                    })
                }
                Err(source) => {
                    return Err(InvalidServiceError::BadHost {
                        host: host.clone(),
                        source,
                    })
                }
            }
        }
        let header_ok = !header.is_empty()
            && header.len() <= MAX_HEADER_NAME_LEN
            && header.bytes().all(is_lower_token_byte);
        if !header_ok {
            return Err(InvalidServiceError::BadHeader {
                header: header.clone(),
            });
        }
        Ok(())
    }

    /// The service's name: `anthropic`, `openai`, `google`, `github`, or the custom name.
    pub fn name(&self) -> &str {
        match self {
            Service::Anthropic => "anthropic",
            Service::Openai => "openai",
            Service::Google => "google",
            Service::Github => "github",
            Service::Custom { name, .. } => name,
        }
    }

    /// The guest environment variable that carries the placeholder (none for custom services).
    pub fn env_var(&self) -> Option<&'static str> {
        match self {
            Service::Anthropic => Some("ANTHROPIC_API_KEY"),
            Service::Openai => Some("OPENAI_API_KEY"),
            Service::Google => Some("GEMINI_API_KEY"),
            Service::Github => Some("GH_TOKEN"),
            Service::Custom { .. } => None,
        }
    }

    /// What the guest holds instead of the secret: `paddock-placeholder-<name>`.
    pub fn placeholder(&self) -> String {
        format!("{PLACEHOLDER_PREFIX}{}", self.name())
    }

    /// The hosts that receive the secret (lower case, no trailing dot).
    pub fn hosts(&self) -> Vec<String> {
        let named: &[&str] = match self {
            Service::Anthropic => &["api.anthropic.com"],
            Service::Openai => &["api.openai.com"],
            Service::Google => &["generativelanguage.googleapis.com"],
            Service::Github => &["api.github.com", "github.com", "uploads.github.com"],
            Service::Custom { hosts, .. } => return hosts.clone(),
        };
        named.iter().map(|host| (*host).to_owned()).collect()
    }

    /// The header the secret goes in (lower case). The proxy replaces the placeholder only
    /// there, and only when the header's whole value is `<placeholder>`, `Bearer <placeholder>`
    /// or `token <placeholder>` (plus the places [`Service::accepts_authorization_bearer`] and
    /// [`Service::query_parameter`] name).
    pub fn header(&self) -> &str {
        match self {
            Service::Anthropic => "x-api-key",
            Service::Openai | Service::Github => "authorization",
            Service::Google => "x-goog-api-key",
            Service::Custom { header, .. } => header,
        }
    }

    /// Whether the secret is also taken as `authorization: Bearer <placeholder>` (Anthropic's
    /// OAuth-style clients send it there).
    pub fn accepts_authorization_bearer(&self) -> bool {
        matches!(self, Service::Anthropic)
    }

    /// The query parameter whose whole value may be the placeholder (`key` for Google).
    pub fn query_parameter(&self) -> Option<&'static str> {
        match self {
            Service::Google => Some("key"),
            _ => None,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = UnknownServiceError;

    /// The named services (case-insensitive), with the aliases `gemini` and `gh`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "anthropic" => Ok(Service::Anthropic),
            "openai" => Ok(Service::Openai),
            "google" | "gemini" => Ok(Service::Google),
            "github" | "gh" => Ok(Service::Github),
            _ => Err(UnknownServiceError {
                name: name.to_owned(),
            }),
        }
    }
}

/// An HTTP token character (RFC 9110 `tchar`), upper case excluded.
fn is_lower_token_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
