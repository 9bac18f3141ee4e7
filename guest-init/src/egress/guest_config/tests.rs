//! The files' contents, and writing them into a scratch root.

use super::*;
use std::path::PathBuf;

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("guest-init-config-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn read(&self, path: &str) -> String {
        fs::read_to_string(self.0.join(path)).unwrap()
    }

    fn json(&self, path: &str) -> Value {
        serde_json::from_str(&self.read(path)).unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_environment_keeps_other_lines_and_sets_each_proxy_variable_once() {
    let existing = "LANG=C.UTF-8\nhttp_proxy=http://old:1\nexport NO_PROXY=old\n# note\n";
    let merged = environment_with_proxy(existing);
    assert!(merged.starts_with("LANG=C.UTF-8\n# note\n"), "{merged}");
    for (name, value) in proxy_variables() {
        let line = format!("{name}={value}");
        assert_eq!(merged.lines().filter(|l| *l == line).count(), 1, "{line}");
        assert_eq!(
            merged
                .lines()
                .filter(|l| l.contains(&format!("{name}=")))
                .count(),
            1,
            "{name} set twice"
        );
    }
    assert_eq!(environment_with_proxy(&merged), merged, "not idempotent");
}

#[test]
fn the_login_script_exports_the_proxy() {
    let script = profile_script();
    assert!(script.contains("export http_proxy=http://127.0.0.1:3128\n"));
    assert!(script.contains("export HTTPS_PROXY=http://127.0.0.1:3128\n"));
    assert!(script.contains("export no_proxy=localhost,127.0.0.1,::1\n"));
}

#[test]
fn docker_files_keep_other_keys_and_point_containers_at_the_guest() {
    let daemon: Value = serde_json::from_slice(&daemon_json(Some(
        br#"{"log-level": "warn", "dns": ["8.8.8.8"]}"#,
    )))
    .unwrap();
    assert_eq!(daemon["dns"], json!(["192.0.0.8"]));
    assert_eq!(daemon["log-level"], "warn");
    // Not an object, or not JSON at all: replaced.
    for broken in [&b"[1]"[..], b"{", b"\xff"] {
        let daemon: Value = serde_json::from_slice(&daemon_json(Some(broken))).unwrap();
        assert_eq!(daemon, json!({"dns": ["192.0.0.8"]}));
    }
    // The docker 20.10 in the image refuses unknown keys: only `dns` is added.
    let fresh: Value = serde_json::from_slice(&daemon_json(None)).unwrap();
    assert_eq!(fresh.as_object().unwrap().len(), 1);

    let client: Value = serde_json::from_slice(&docker_client_config(Some(
        br#"{"auths": {"r.example": {}}, "proxies": {"other": {"httpProxy": "x"}}}"#,
    )))
    .unwrap();
    assert_eq!(client["auths"], json!({"r.example": {}}));
    assert_eq!(client["proxies"]["other"]["httpProxy"], "x");
    assert_eq!(
        client["proxies"]["default"],
        json!({
            "httpProxy": "http://192.0.0.8:3128",
            "httpsProxy": "http://192.0.0.8:3128",
            "noProxy": "localhost,127.0.0.0/8",
        })
    );
    let odd: Value =
        serde_json::from_slice(&docker_client_config(Some(br#"{"proxies": 3}"#))).unwrap();
    assert_eq!(
        odd["proxies"]["default"]["httpProxy"],
        "http://192.0.0.8:3128"
    );
}

#[test]
fn the_minimal_root_gets_dns_and_proxy_settings_only() {
    let root = Root::new("minimal");
    assert!(write_guest_config(&root.0, false).is_empty());
    assert_eq!(
        root.read("etc/resolv.conf").lines().last(),
        Some("nameserver 127.0.0.1")
    );
    assert!(root
        .read("etc/environment")
        .contains("HTTP_PROXY=http://127.0.0.1:3128\n"));
    assert_eq!(root.read(PROFILE_SCRIPT), profile_script());
    assert!(!root.0.join("etc/docker").exists());
    assert!(!root.0.join("root/.docker").exists());
}

#[test]
fn the_agent_root_gets_dockers_files_too_and_the_agent_owns_its_own() {
    let root = Root::new("agent");
    fs::create_dir_all(root.0.join("etc/docker")).unwrap();
    fs::write(root.0.join("etc/docker/daemon.json"), r#"{"debug": true}"#).unwrap();
    // A resolv.conf symlink (as some images ship) is replaced, its target left alone.
    fs::write(root.0.join("stub-resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
    std::os::unix::fs::symlink(
        root.0.join("stub-resolv.conf"),
        root.0.join("etc/resolv.conf"),
    )
    .unwrap();
    fs::create_dir_all(root.0.join(ROOT_HOME)).unwrap();
    let home = root.0.join(AGENT_HOME);
    fs::create_dir_all(&home).unwrap();
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if is_root {
        std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
    }

    let failures = write_guest_config(&root.0, true);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(!fs::symlink_metadata(root.0.join("etc/resolv.conf"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(root.read("stub-resolv.conf"), "nameserver 10.0.0.1\n");
    let daemon = root.json("etc/docker/daemon.json");
    assert_eq!(daemon, json!({"debug": true, "dns": ["192.0.0.8"]}));
    for home in [ROOT_HOME, AGENT_HOME] {
        let config = root.json(&format!("{home}/.docker/config.json"));
        assert_eq!(
            config["proxies"]["default"]["httpsProxy"],
            "http://192.0.0.8:3128"
        );
        let mode = fs::metadata(root.0.join(home).join(".docker/config.json"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    if is_root {
        for path in [".docker", ".docker/config.json"] {
            let meta = fs::metadata(home.join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{path}");
        }
    }
    // Running again (a second boot of the same root) changes nothing.
    let before = root.read("etc/environment");
    assert!(write_guest_config(&root.0, true).is_empty());
    assert_eq!(root.read("etc/environment"), before);
    assert_eq!(root.json("etc/docker/daemon.json"), daemon);
    assert!(!root.0.join("etc/resolv.conf.paddock-new").exists());
}

#[test]
fn a_file_that_cannot_be_written_is_reported_and_the_rest_still_written() {
    let root = Root::new("blocked");
    // `etc/profile.d` is a file: the script cannot go there.
    fs::create_dir_all(root.0.join("etc")).unwrap();
    fs::write(root.0.join("etc/profile.d"), "").unwrap();
    let failures = write_guest_config(&root.0, false);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].path, root.0.join(PROFILE_SCRIPT));
    assert!(root
        .read("etc/resolv.conf")
        .contains("nameserver 127.0.0.1"));
    assert!(root.read("etc/environment").contains("http_proxy="));
}
