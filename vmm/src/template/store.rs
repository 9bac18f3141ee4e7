//! Templates on disk: `<cache>/templates/<key>/` holds a snapshot (`state.bin`, its memory
//! file) and `template.json`. A template is built in a staging directory and renamed into place
//! in one step, so a directory named by a key is always complete; builds of one key are
//! serialised by a lock file, so concurrent first starts build it once.

use super::key::{ArtifactDigests, TemplateKey, TemplateSpec};
use crate::snapshot::store::STATE_FILE;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a template directory.
pub const MANIFEST_FILE: &str = "template.json";
/// Bumped when the manifest's shape changes.
const MANIFEST_FORMAT: u32 = 1;
const STAGING_PREFIX: &str = ".build-";

/// What `template.json` records.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TemplateManifest {
    /// The manifest format.
    pub format: u32,
    /// The key (also the directory's name).
    pub key: TemplateKey,
    /// What it was built from.
    pub spec: TemplateSpec,
    /// The content of those files.
    pub digests: ArtifactDigests,
    /// When it was built (seconds since the Unix epoch).
    pub created_unix_secs: u64,
    /// Milliseconds from the VMM's start to guest-init ready (engine up), when it was built.
    pub boot_ms: f64,
    /// The guest's report at readiness (kernel, guest-init, engine), for `template ls`.
    pub guest: String,
}

/// A template ready to restore.
#[derive(Clone, Debug)]
pub struct Template {
    /// Its directory (a snapshot directory).
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: TemplateManifest,
}

impl Template {
    /// Bytes the template occupies on disk (its memory file is sparse: allocated blocks count).
    pub fn disk_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.blocks() * 512)
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Why the template store failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateStoreError {
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A manifest is unreadable.
    #[error("template manifest {path} is unreadable: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// No template matches.
    #[error("no template matches {0:?} (see `paddock template ls`)")]
    NoMatch(String),
    /// More than one template matches a short key.
    #[error("{0:?} matches more than one template; give more of the key")]
    Ambiguous(String),
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl Fn(std::io::Error) -> TemplateStoreError + 'a {
    move |source| TemplateStoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The templates under one directory.
#[derive(Clone, Debug)]
pub struct TemplateStore {
    dir: PathBuf,
}

/// Held while one key is built; released (and the lock file left for reuse) on drop.
#[derive(Debug)]
pub struct BuildLock {
    _file: File,
}

impl TemplateStore {
    /// Templates under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `$PADDOCK_TEMPLATE_DIR`, else `<paddock cache>/templates`.
    pub fn default_location() -> Self {
        Self::new(
            std::env::var_os("PADDOCK_TEMPLATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate::config::cache_dir().join("templates")),
        )
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The template of `key`, if it has been built.
    pub fn find(&self, key: &TemplateKey) -> Result<Option<Template>, TemplateStoreError> {
        let dir = self.dir.join(key.as_str());
        if !dir.join(STATE_FILE).is_file() {
            return Ok(None);
        }
        let manifest = read_manifest(&dir)?;
        Ok(Some(Template { dir, manifest }))
    }

    /// Every complete template, newest first. Unreadable ones are skipped.
    pub fn list(&self) -> Vec<Template> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Template> = entries
            .flatten()
            .filter_map(|e| TemplateKey::from_dir_name(&e.file_name().to_string_lossy()))
            .filter_map(|key| self.find(&key).ok().flatten())
            .collect();
        out.sort_by(|a, b| {
            b.manifest
                .created_unix_secs
                .cmp(&a.manifest.created_unix_secs)
        });
        out
    }

    /// The one template whose key starts with `prefix` (at least 4 hex digits).
    pub fn resolve(&self, prefix: &str) -> Result<Template, TemplateStoreError> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 4 {
            return Err(TemplateStoreError::NoMatch(prefix));
        }
        let mut matches = self
            .list()
            .into_iter()
            .filter(|t| t.manifest.key.as_str().starts_with(&prefix));
        match (matches.next(), matches.next()) {
            (Some(t), None) => Ok(t),
            (Some(_), Some(_)) => Err(TemplateStoreError::Ambiguous(prefix)),
            (None, _) => Err(TemplateStoreError::NoMatch(prefix)),
        }
    }

    /// Removes a template. Sandboxes restored from it keep running: their memory mapping holds
    /// the file's content until they end.
    pub fn remove(&self, template: &Template) -> Result<(), TemplateStoreError> {
        // Renamed away first, so no restore can find a half-removed template.
        let doomed = self.dir.join(format!(
            "{STAGING_PREFIX}rm-{}-{}",
            template.manifest.key.short(),
            std::process::id()
        ));
        std::fs::rename(&template.dir, &doomed).map_err(io_err("removing", &template.dir))?;
        std::fs::remove_dir_all(&doomed).map_err(io_err("removing", &doomed))
    }

    /// Waits for, then holds, the build lock of `key`.
    pub fn lock(&self, key: &TemplateKey) -> Result<BuildLock, TemplateStoreError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let path = self.dir.join(format!(".{}.lock", key.as_str()));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(BuildLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("locking", &path)(err));
            }
        }
    }

    /// A fresh, empty staging directory for building `key` (stale ones of dead builders are
    /// removed first).
    pub fn staging_dir(&self, key: &TemplateKey) -> Result<PathBuf, TemplateStoreError> {
        self.remove_stale_staging();
        let dir = self.dir.join(format!(
            "{STAGING_PREFIX}{}-{}",
            key.short(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(dir)
    }

    /// Writes the manifest into `staging` (which holds the snapshot) and moves it into place as
    /// the template of `manifest.key`.
    pub fn commit(
        &self,
        staging: &Path,
        manifest: TemplateManifest,
    ) -> Result<Template, TemplateStoreError> {
        let path = staging.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|source| {
            TemplateStoreError::Manifest {
                path: path.clone(),
                source,
            }
        })?;
        std::fs::write(&path, json).map_err(io_err("writing", &path))?;
        let dir = self.dir.join(manifest.key.as_str());
        if dir.exists() {
            // Built meanwhile by a process that did not honour the lock: keep the first.
            let _ = std::fs::remove_dir_all(staging);
        } else {
            std::fs::rename(staging, &dir).map_err(io_err("moving into place", staging))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", &self.dir))?;
        Ok(Template {
            manifest: read_manifest(&dir)?,
            dir,
        })
    }

    fn remove_stale_staging(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(STAGING_PREFIX)
                .and_then(|rest| rest.rsplit('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if pid.is_some_and(|pid| !crate::sandbox::process_alive(pid)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Builds a manifest for `key`.
pub fn new_manifest(
    key: TemplateKey,
    spec: TemplateSpec,
    digests: ArtifactDigests,
    boot_ms: f64,
    guest: String,
) -> TemplateManifest {
    TemplateManifest {
        format: MANIFEST_FORMAT,
        key,
        spec,
        digests,
        created_unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        boot_ms,
        guest,
    }
}

fn read_manifest(dir: &Path) -> Result<TemplateManifest, TemplateStoreError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(io_err("reading", &path))?;
    serde_json::from_slice(&bytes).map_err(|source| TemplateStoreError::Manifest { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{Artifacts, ContentDigest, Profile};

    fn manifest(key: &TemplateKey) -> TemplateManifest {
        new_manifest(
            key.clone(),
            TemplateSpec {
                profile: Profile::Minimal,
                artifacts: Artifacts {
                    kernel: "/k".into(),
                    initrd: "/i".into(),
                    image: None,
                },
                vcpus: 1,
                memory_mib: 256,
                kernel_args: None,
            },
            ArtifactDigests {
                kernel: ContentDigest([1; 32]),
                initrd: ContentDigest([2; 32]),
                image: None,
            },
            12.5,
            "guest".into(),
        )
    }

    fn key(fill: char) -> TemplateKey {
        TemplateKey::from_dir_name(&fill.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn staged_templates_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = TemplateStore::new(dir.path().join("templates"));
        let k = key('a');
        assert!(store.find(&k).unwrap().is_none());
        let _lock = store.lock(&k).unwrap();
        let staging = store.staging_dir(&k).unwrap();
        std::fs::write(staging.join(STATE_FILE), b"state").unwrap();
        assert!(store.find(&k).unwrap().is_none(), "staging is invisible");
        assert!(store.list().is_empty());
        let t = store.commit(&staging, manifest(&k)).unwrap();
        assert!(!staging.exists());
        assert_eq!(store.find(&k).unwrap().unwrap().manifest, t.manifest);
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.resolve("aaaa").unwrap().dir, t.dir);
        assert!(matches!(
            store.resolve("bbbb"),
            Err(TemplateStoreError::NoMatch(_))
        ));
        assert!(t.disk_bytes() > 0);
        store.remove(&t).unwrap();
        assert!(store.find(&k).unwrap().is_none());
        assert!(store.list().is_empty());
    }

    #[test]
    fn short_prefixes_must_be_long_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = TemplateStore::new(dir.path().to_path_buf());
        for fill in ['1', '2'] {
            let k = TemplateKey::from_dir_name(&format!("abcd{}", fill.to_string().repeat(60)))
                .unwrap();
            let staging = store.staging_dir(&k).unwrap();
            std::fs::write(staging.join(STATE_FILE), b"s").unwrap();
            store.commit(&staging, manifest(&k)).unwrap();
        }
        assert!(store
            .resolve("abcd1")
            .unwrap()
            .manifest
            .key
            .as_str()
            .starts_with("abcd1"));
        assert!(matches!(
            store.resolve("abcd"),
            Err(TemplateStoreError::Ambiguous(_))
        ));
        assert!(matches!(
            store.resolve("abc"),
            Err(TemplateStoreError::NoMatch(_))
        ));
    }

    #[test]
    fn a_damaged_manifest_is_an_error_not_a_template() {
        let dir = tempfile::tempdir().unwrap();
        let store = TemplateStore::new(dir.path().to_path_buf());
        let k = key('c');
        let d = dir.path().join(k.as_str());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(STATE_FILE), b"s").unwrap();
        std::fs::write(d.join(MANIFEST_FILE), b"{not json").unwrap();
        assert!(matches!(
            store.find(&k),
            Err(TemplateStoreError::Manifest { .. })
        ));
        assert!(store.list().is_empty());
    }
}
