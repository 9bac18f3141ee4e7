//! The errors of the secret store: opening it, writing it, and setting a secret.

use std::io;
use std::path::PathBuf;

use super::service::InvalidServiceError;
use super::store::{MAX_SECRETS, MAX_STORE_FILE_LEN, STORE_VERSION};
use super::value::InvalidSecretError;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// Opening or reading the file failed.
    #[error("cannot read the secret store {}", path.display())]
    Read {
        /// The store file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The file allows access to its group or others.
    #[error("the secret store {} has mode {mode:o}, readable by others; fix with `chmod 600 {}`", path.display(), path.display())]
    InsecurePermissions {
        /// The store file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is not a regular file.
    #[error("the secret store {} is not a regular file", path.display())]
    NotAFile {
        /// The store file.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_STORE_FILE_LEN`].
    #[error("the secret store {} is larger than {MAX_STORE_FILE_LEN} bytes", path.display())]
    TooLarge {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not the expected JSON.
    #[error("the secret store {} is not valid", path.display())]
    Parse {
        /// The store file.
        path: PathBuf,
        /// What the parser said (never a secret: values are checked without echoing them).
        #[source]
        source: serde_json::Error,
    },
    /// The file has another format version.
    #[error("the secret store {} has version {version}, this paddock reads version {STORE_VERSION}", path.display())]
    UnsupportedVersion {
        /// The store file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// A custom service in the file is invalid.
    #[error("the secret store {} has an invalid service", path.display())]
    InvalidService {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: InvalidServiceError,
    },
    /// Two secrets of the file have the same service name, or there are too many.
    #[error("the secret store {} has a duplicate service {name:?} or more than {MAX_SECRETS} secrets", path.display())]
    Inconsistent {
        /// The store file.
        path: PathBuf,
        /// The duplicate name (empty if the count is the problem).
        name: String,
    },
}

/// Why writing the store failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveStoreError {
    /// Creating the directory failed.
    #[error("cannot create the secret store directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Encoding the contents failed.
    #[error("cannot encode the secret store")]
    Serialize(#[source] serde_json::Error),
    /// Writing the temporary file or renaming it into place failed.
    #[error("cannot write the secret store {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Why `set` failed.
#[derive(Debug, thiserror::Error)]
pub enum SetSecretError {
    /// The service is an invalid custom service.
    #[error(transparent)]
    InvalidService(#[from] InvalidServiceError),
    /// The value is not acceptable.
    #[error(transparent)]
    InvalidValue(#[from] InvalidSecretError),
    /// The store already holds [`MAX_SECRETS`] secrets.
    #[error("the secret store already holds {MAX_SECRETS} secrets")]
    Full,
    /// Writing the store failed.
    #[error(transparent)]
    Save(#[from] SaveStoreError),
}
