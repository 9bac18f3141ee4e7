//! Credentials: the host's secret store, the services secrets belong to, and what the proxy
//! does with them — the guest only ever holds placeholders (`paddock-placeholder-<service>`),
//! which the proxy replaces by the real value in requests to the service's own hosts, only in
//! the one place the service takes it, and refuses to send anywhere else; responses carrying a
//! secret back are cut.

mod credentials;
mod echo_scan;
mod head_rewrite;
mod leak;
mod service;
mod store;
mod store_error;
mod value;

pub use credentials::Credentials;
pub use echo_scan::{EchoScanner, SecretEchoed};
pub use leak::{PlaceholderLeak, PlaceholderPlace};
pub use service::{
    InvalidServiceError, Service, UnknownServiceError, MAX_CUSTOM_HOSTS, MAX_CUSTOM_NAME_LEN,
    MAX_HEADER_NAME_LEN, PLACEHOLDER_PREFIX,
};
pub use store::{SecretStore, SecretSummary, MAX_SECRETS, MAX_STORE_FILE_LEN, STORE_VERSION};
pub use store_error::{SaveStoreError, SecretStoreError, SetSecretError};
pub use value::{InvalidSecretError, SecretValue, MAX_SECRET_LEN};

#[cfg(test)]
mod tests;
