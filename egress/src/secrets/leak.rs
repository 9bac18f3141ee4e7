//! Why a request head carrying a placeholder was refused: the placeholder was on its way to a
//! host that is not its service's, or it was somewhere other than the one place its service's
//! secret goes (where a service echoing it back would hand the real value to the guest).

use std::fmt;

/// Longest header name kept in a [`PlaceholderPlace::HeaderValue`] (longer ones are cut).
const MAX_SHOWN_HEADER_LEN: usize = 64;

/// A request head was refused because of a placeholder in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderLeak {
    /// A placeholder of a secret was on its way to a host that is not the secret's.
    #[error(
        "a placeholder of the {service} secret was on its way to a host that is not {service}'s"
    )]
    ForeignHost {
        /// The service whose placeholder it is.
        service: String,
    },
    /// A placeholder of the host's own secret was somewhere the secret is never put.
    #[error("a placeholder of the {service} secret is in the {place}, where the secret is never put (only the whole value of {service}'s own header)")]
    Misplaced {
        /// The service whose placeholder it is.
        service: String,
        /// Where it was.
        place: PlaceholderPlace,
    },
}

impl PlaceholderLeak {
    /// The service whose placeholder it is.
    pub fn service(&self) -> &str {
        match self {
            PlaceholderLeak::ForeignHost { service }
            | PlaceholderLeak::Misplaced { service, .. } => service,
        }
    }
}

/// Where in a request head a misplaced placeholder was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceholderPlace {
    /// The request line: method, path, fragment, version, or a query parameter that does not
    /// take the secret (or whose value is more than the placeholder).
    RequestLine,
    /// A header's name.
    HeaderName,
    /// A header that is not the service's, or whose value is not exactly `<placeholder>`,
    /// `Bearer <placeholder>` or `token <placeholder>`.
    HeaderValue {
        /// The header's name (lossy UTF-8, at most 64 characters).
        header: String,
    },
    /// An obsolete folded continuation line, or one that continues the header holding it.
    ContinuationLine,
}

impl PlaceholderPlace {
    /// The place for a header named `name` (shown lossily and cut, as it comes from the guest).
    pub(crate) fn header_value(name: &[u8]) -> Self {
        PlaceholderPlace::HeaderValue {
            header: String::from_utf8_lossy(name)
                .chars()
                .take(MAX_SHOWN_HEADER_LEN)
                .collect(),
        }
    }
}

impl fmt::Display for PlaceholderPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaceholderPlace::RequestLine => f.write_str("request line"),
            PlaceholderPlace::HeaderName => f.write_str("name of a header"),
            PlaceholderPlace::HeaderValue { header } => write!(f, "header {header:?}"),
            PlaceholderPlace::ContinuationLine => f.write_str("a folded header line"),
        }
    }
}
