//! A secret's value: checked to be safe inside an HTTP header, and never shown by `Debug`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::service::PLACEHOLDER_PREFIX;

/// Longest secret value in bytes.
pub const MAX_SECRET_LEN: usize = 8 * 1024;

/// A secret value. Its `Debug` is redacted and it has no `Display`; read it with
/// [`SecretValue::expose`] only where it is written to an upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

/// Why a secret value was refused. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecretError {
    /// The value is empty.
    #[error("the secret is empty")]
    Empty,
    /// The value is longer than [`MAX_SECRET_LEN`].
    #[error("the secret is {len} bytes long, more than {MAX_SECRET_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The value has a byte that is not visible ASCII (it would break or inject a header).
    #[error("the secret has a byte at offset {offset} that is not visible ASCII (no spaces, control characters or non-ASCII)")]
    ForbiddenByte {
        /// Where.
        offset: usize,
    },
    /// The value is (or contains) a placeholder.
    #[error("the secret contains a paddock placeholder")]
    ContainsPlaceholder,
}

impl SecretValue {
    /// Checks a value: 1 to [`MAX_SECRET_LEN`] bytes of visible ASCII, not a placeholder.
    pub fn new(value: String) -> Result<SecretValue, InvalidSecretError> {
        if value.is_empty() {
            return Err(InvalidSecretError::Empty);
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(InvalidSecretError::TooLong { len: value.len() });
        }
        if let Some(offset) = value.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(InvalidSecretError::ForbiddenByte { offset });
        }
        if value.contains(PLACEHOLDER_PREFIX) {
            return Err(InvalidSecretError::ContainsPlaceholder);
        }
        Ok(SecretValue(value))
    }

    /// The value itself, for writing it to the service's host.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        SecretValue::new(value).map_err(serde::de::Error::custom)
    }
}
