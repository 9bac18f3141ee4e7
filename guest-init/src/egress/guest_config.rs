//! Points the guest's programs at the egress path, in files written at boot (the root is a
//! writable layer in guest memory in both profiles):
//! - `/etc/resolv.conf`: the DNS stub on 127.0.0.1;
//! - `/etc/environment` (PAM sessions) and `/etc/profile.d/paddock-proxy.sh` (login shells):
//!   the HTTP proxy on 127.0.0.1:3128;
//! - with docker: `/etc/docker/daemon.json` gives containers the stub as DNS server, and the
//!   docker client configurations of root and the agent user give containers and build steps
//!   the proxy, both at [`CAPTURE_ADDRESS`] (the guest's own, reachable from every container
//!   network). dockerd itself gets the proxy in its environment ([`DOCKERD_PROXY_ENV`]): the
//!   `proxies` key of `daemon.json` needs docker 23, the image has 20.10, which refuses to
//!   start on keys it does not know.
//!
//! Existing JSON files are merged into (other keys kept); every file is replaced by a rename.

use super::capture::CAPTURE_ADDRESS;
use super::forwarder::PROXY_PORT;
use serde_json::{json, Map, Value};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The proxy as the guest's own programs reach it.
pub const LOCAL_PROXY_URL: &str = "http://127.0.0.1:3128";
/// Hosts that never go through the proxy, for the guest's programs.
pub const LOCAL_NO_PROXY: &str = "localhost,127.0.0.1,::1";
/// dockerd's environment additions: image pulls go through the proxy.
pub const DOCKERD_PROXY_ENV: [(&str, &str); 3] = [
    ("HTTP_PROXY", LOCAL_PROXY_URL),
    ("HTTPS_PROXY", LOCAL_PROXY_URL),
    ("NO_PROXY", "localhost,127.0.0.0/8,::1"),
];
/// The login shell script's path, relative to the root.
pub const PROFILE_SCRIPT: &str = "etc/profile.d/paddock-proxy.sh";
/// root's home, relative to the root.
pub const ROOT_HOME: &str = "root";
/// The agent user's home, relative to the root.
pub const AGENT_HOME: &str = "home/agent";
/// Largest existing file merged into; a longer one is replaced.
const MAX_EXISTING: u64 = 256 * 1024;

/// Why one file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct ConfigWriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The environment variables naming the proxy, as `(name, value)`.
pub fn proxy_variables() -> [(&'static str, &'static str); 6] {
    [
        ("http_proxy", LOCAL_PROXY_URL),
        ("https_proxy", LOCAL_PROXY_URL),
        ("HTTP_PROXY", LOCAL_PROXY_URL),
        ("HTTPS_PROXY", LOCAL_PROXY_URL),
        ("no_proxy", LOCAL_NO_PROXY),
        ("NO_PROXY", LOCAL_NO_PROXY),
    ]
}

/// `/etc/resolv.conf`.
pub fn resolv_conf() -> String {
    "# Written by paddock's guest-init: the DNS stub asks the host.\nnameserver 127.0.0.1\n"
        .to_string()
}

/// `existing` (`/etc/environment`) without its lines setting a proxy variable, then ours.
pub fn environment_with_proxy(existing: &str) -> String {
    let ours = proxy_variables();
    let mut out: String = existing
        .lines()
        .filter(|line| {
            let name = line.split('=').next().unwrap_or("").trim();
            let name = name.strip_prefix("export ").unwrap_or(name).trim();
            !ours.iter().any(|(ours, _)| *ours == name)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    for (name, value) in ours {
        out.push_str(&format!("{name}={value}\n"));
    }
    out
}

/// `/etc/profile.d/paddock-proxy.sh`.
pub fn profile_script() -> String {
    let mut out = String::from("# Written by paddock's guest-init: the egress proxy.\n");
    for (name, value) in proxy_variables() {
        out.push_str(&format!("export {name}={value}\n"));
    }
    out
}

/// The proxy URL for containers.
pub fn container_proxy_url() -> String {
    format!("http://{CAPTURE_ADDRESS}:{PROXY_PORT}")
}

/// `daemon.json` with `dns` set to the stub's address for containers.
pub fn daemon_json(existing: Option<&[u8]>) -> Vec<u8> {
    let mut config = json_object(existing);
    config.insert("dns".into(), json!([CAPTURE_ADDRESS.to_string()]));
    to_json_bytes(config)
}

/// A docker client `config.json` with `proxies.default` set for containers and build steps.
pub fn docker_client_config(existing: Option<&[u8]>) -> Vec<u8> {
    let mut config = json_object(existing);
    let url = container_proxy_url();
    let default = json!({
        "httpProxy": url,
        "httpsProxy": url,
        "noProxy": "localhost,127.0.0.0/8",
    });
    let proxies = config
        .entry("proxies")
        .or_insert_with(|| Value::Object(Map::new()));
    if !proxies.is_object() {
        *proxies = Value::Object(Map::new());
    }
    if let Value::Object(proxies) = proxies {
        proxies.insert("default".into(), default);
    }
    to_json_bytes(config)
}

/// The JSON object in `existing`; an empty one if there is none or it is not an object.
fn json_object(existing: Option<&[u8]>) -> Map<String, Value> {
    match existing.map(serde_json::from_slice::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

fn to_json_bytes(config: Map<String, Value>) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(config)).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes every file under `root` (`/` in the guest); `docker` adds docker's files. Returns
/// what could not be written (the rest is written regardless).
pub fn write_guest_config(root: &Path, docker: bool) -> Vec<ConfigWriteError> {
    let mut failures = Vec::new();
    let mut note = |result: Result<(), ConfigWriteError>| {
        if let Err(e) = result {
            failures.push(e);
        }
    };
    note(replace(
        &root.join("etc/resolv.conf"),
        resolv_conf().as_bytes(),
        0o644,
        None,
    ));
    let environment = root.join("etc/environment");
    let existing = read_existing(&environment).unwrap_or_default();
    let merged = environment_with_proxy(&String::from_utf8_lossy(&existing));
    note(replace(&environment, merged.as_bytes(), 0o644, None));
    note(replace(
        &root.join(PROFILE_SCRIPT),
        profile_script().as_bytes(),
        0o644,
        None,
    ));
    if docker {
        let daemon = root.join("etc/docker/daemon.json");
        let existing = read_existing(&daemon);
        note(replace(
            &daemon,
            &daemon_json(existing.as_deref()),
            0o644,
            None,
        ));
        // Each user's configuration is theirs; a home that does not exist is left out.
        for home in [ROOT_HOME, AGENT_HOME] {
            let home = root.join(home);
            if let Ok(meta) = fs::metadata(&home) {
                note(write_client_config(&home, (meta.uid(), meta.gid())));
            }
        }
    }
    failures
}

/// `<home>/.docker/config.json`, owned by `owner` (uid, gid): the home's owner.
fn write_client_config(home: &Path, owner: (u32, u32)) -> Result<(), ConfigWriteError> {
    let dir = home.join(".docker");
    let failed = |path: &Path, source| ConfigWriteError {
        path: path.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {
            let (uid, gid) = owner;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| failed(&dir, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(&dir, e)),
    }
    let path = dir.join("config.json");
    let existing = read_existing(&path);
    replace(
        &path,
        &docker_client_config(existing.as_deref()),
        0o600,
        Some(owner),
    )
}

/// The file's bytes, if it exists as a regular file of at most [`MAX_EXISTING`] bytes.
fn read_existing(path: &Path) -> Option<Vec<u8>> {
    let file = fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_EXISTING + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= MAX_EXISTING).then_some(bytes)
}

/// Replaces `path` (a symlink there is replaced, not followed) with `bytes`.
fn replace(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), ConfigWriteError> {
    let failed = |source| ConfigWriteError {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".paddock-new");
    let temporary = PathBuf::from(temporary);
    let _ = fs::remove_file(&temporary);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut file| io::Write::write_all(&mut file, bytes))
        .and_then(|()| match owner {
            Some((uid, gid)) => std::os::unix::fs::chown(&temporary, Some(uid), Some(gid)),
            None => Ok(()),
        })
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

#[cfg(test)]
mod tests;
