//! The host's secret store: a JSON file `{"version": 1, "secrets": [...]}` readable by its
//! owner only (directory 0700, file 0600, written to a temporary file and renamed into place).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::service::Service;
use super::store_error::{SaveStoreError, SecretStoreError, SetSecretError};
use super::value::SecretValue;

/// The file format version this code reads and writes.
pub const STORE_VERSION: u32 = 1;
/// Largest store file read.
pub const MAX_STORE_FILE_LEN: u64 = 1024 * 1024;
/// Most secrets in one store.
pub const MAX_SECRETS: usize = 256;

/// One stored secret: its service and value.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredSecret {
    #[serde(flatten)]
    pub(crate) service: Service,
    pub(crate) value: SecretValue,
}

/// The file's contents, as read.
#[derive(Deserialize)]
struct StoreFile {
    version: u32,
    secrets: Vec<StoredSecret>,
}

/// The file's contents, as written.
#[derive(Serialize)]
struct StoreFileRef<'a> {
    version: u32,
    secrets: &'a [StoredSecret],
}

/// The secrets of this host, as read from (and written back to) their file.
pub struct SecretStore {
    path: PathBuf,
    secrets: Vec<StoredSecret>,
}

/// What `paddock secret list` shows of a secret: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSummary {
    /// The service's name.
    pub name: String,
    /// The hosts that receive it.
    pub hosts: Vec<String>,
    /// The header it is expected in.
    pub header: String,
    /// The guest environment variable holding the placeholder, if any.
    pub env_var: Option<&'static str>,
    /// The placeholder the guest sees.
    pub placeholder: String,
}

impl SecretStore {
    /// Reads the store at `path`; a missing file is an empty store (created on the first `set`).
    pub fn open(path: &Path) -> Result<Self, SecretStoreError> {
        let read_error = |source| SecretStoreError::Read {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(SecretStore {
                    path: path.to_owned(),
                    secrets: Vec::new(),
                })
            }
            Err(error) => return Err(read_error(error)),
        };
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(SecretStoreError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = metadata.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretStoreError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = Vec::new();
        file.take(MAX_STORE_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_STORE_FILE_LEN {
            return Err(SecretStoreError::TooLarge {
                path: path.to_owned(),
            });
        }
        let parsed: StoreFile =
            serde_json::from_slice(&text).map_err(|source| SecretStoreError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if parsed.version != STORE_VERSION {
            return Err(SecretStoreError::UnsupportedVersion {
                path: path.to_owned(),
                version: parsed.version,
            });
        }
        if parsed.secrets.len() > MAX_SECRETS {
            return Err(SecretStoreError::Inconsistent {
                path: path.to_owned(),
                name: String::new(),
            });
        }
        for (index, secret) in parsed.secrets.iter().enumerate() {
            secret
                .service
                .validate()
                .map_err(|source| SecretStoreError::InvalidService {
                    path: path.to_owned(),
                    source,
                })?;
            let name = secret.service.name();
            if parsed
                .secrets
                .iter()
                .take(index)
                .any(|earlier| earlier.service.name() == name)
            {
                return Err(SecretStoreError::Inconsistent {
                    path: path.to_owned(),
                    name: name.to_owned(),
                });
            }
        }
        Ok(SecretStore {
            path: path.to_owned(),
            secrets: parsed.secrets,
        })
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores (or replaces) the secret of `service` and writes the file.
    pub fn set(&mut self, service: Service, value: String) -> Result<(), SetSecretError> {
        service.validate()?;
        let value = SecretValue::new(value)?;
        let secret = StoredSecret { service, value };
        let existing = self
            .secrets
            .iter()
            .position(|stored| stored.service.name() == secret.service.name());
        let full = self.secrets.len() >= MAX_SECRETS;
        match existing.and_then(|index| self.secrets.get_mut(index)) {
            Some(stored) => *stored = secret,
            None if full => return Err(SetSecretError::Full),
            None => self.secrets.push(secret),
        }
        self.save()?;
        Ok(())
    }

    /// Removes the secret of the service called `name`; false if there was none.
    pub fn remove(&mut self, name: &str) -> Result<bool, SaveStoreError> {
        let before = self.secrets.len();
        self.secrets.retain(|stored| stored.service.name() != name);
        if self.secrets.len() == before {
            return Ok(false);
        }
        self.save()?;
        Ok(true)
    }

    /// What the store holds, without the values.
    pub fn list(&self) -> Vec<SecretSummary> {
        self.secrets
            .iter()
            .map(|stored| SecretSummary {
                name: stored.service.name().to_owned(),
                hosts: stored.service.hosts(),
                header: stored.service.header().to_owned(),
                env_var: stored.service.env_var(),
                placeholder: stored.service.placeholder(),
            })
            .collect()
    }

    /// The stored secrets, for [`super::Credentials::from_store`].
    pub(crate) fn secrets(&self) -> &[StoredSecret] {
        &self.secrets
    }

    /// Writes the store: a new 0600 file next to it, synced, renamed over it.
    fn save(&self) -> Result<(), SaveStoreError> {
        let dir = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SaveStoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        let contents = StoreFileRef {
            version: STORE_VERSION,
            secrets: &self.secrets,
        };
        let mut text = serde_json::to_vec_pretty(&contents).map_err(SaveStoreError::Serialize)?;
        text.push(b'\n');
        let file_name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "secrets.json".to_owned());
        let temp_path = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let written = write_new_private_file(&temp_path, &text)
            .and_then(|()| fs::rename(&temp_path, &self.path));
        if let Err(source) = written {
            let _ = fs::remove_file(&temp_path);
            return Err(SaveStoreError::Write {
                path: self.path.clone(),
                source,
            });
        }
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| SaveStoreError::Write {
                path: dir.to_owned(),
                source,
            })
    }
}

/// Creates `path` with mode 0600 (replacing a stale leftover), writes `contents` and syncs.
fn write_new_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match open() {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    file.write_all(contents)?;
    file.sync_all()
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("path", &self.path)
            .field(
                "services",
                &self
                    .secrets
                    .iter()
                    .map(|s| s.service.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
