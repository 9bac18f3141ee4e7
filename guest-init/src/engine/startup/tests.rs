//! The start-up sequence with real processes in place of the daemons. The API socket in the
//! last tests is served by the test itself, answering as dockerd 20.10 does; everything else
//! (supervision, probing, deadlines, the state reported) is the real code.

use super::*;
use crate::reaper::ReapMode;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

const QUICK_POLICY: RestartPolicy = RestartPolicy {
    max_restarts: 2,
    first_backoff: Duration::from_millis(200),
    max_backoff: Duration::from_millis(200),
    stable_after: Duration::from_secs(60),
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("guest-init-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cgroup")).unwrap();
        std::fs::write(dir.join("cgroup/cgroup.controllers"), "").unwrap();
        Self(dir)
    }

    fn config(&self, containerd: &str, dockerd: &str, timeout: Duration) -> EngineConfig {
        let daemon = |name: &'static str, script: &str| DaemonSetup {
            spec: DaemonSpec {
                name,
                program: "sh",
                args: vec!["-c".into(), script.into()],
                env: &[],
            },
            log: self.0.join(format!("{name}.log")),
            socket: self.0.join(format!("{name}.sock")),
        };
        EngineConfig {
            timeout,
            cgroup_root: self.0.join("cgroup"),
            containerd: daemon("containerd", containerd),
            dockerd: daemon("dockerd", dockerd),
            policy: QUICK_POLICY,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn failure_of(config: &EngineConfig) -> StartFailure {
    match bring_up(config, &Reaper::new(ReapMode::PerChild)) {
        Ok(engine) => panic!("came up as {}", engine.version),
        Err(failure) => failure,
    }
}

#[test]
fn a_cgroup_hierarchy_that_cannot_be_read_fails_at_cgroups() {
    let scratch = Scratch::new("cgroups");
    let mut config = scratch.config("sleep 30", "sleep 30", Duration::from_secs(5));
    config.cgroup_root = scratch.0.join("missing");
    let failure = failure_of(&config);
    assert_eq!(failure.stage, EngineStage::Cgroups);
    assert!(
        failure.detail.contains("cgroup.controllers"),
        "{}",
        failure.detail
    );
}

#[test]
fn containerd_dying_early_fails_at_containerd_with_its_log() {
    let scratch = Scratch::new("containerd");
    let config = scratch.config(
        "echo 'no config'; exit 7",
        "sleep 30",
        Duration::from_secs(10),
    );
    let failure = failure_of(&config);
    assert_eq!(failure.stage, EngineStage::Containerd);
    assert!(
        failure.detail.contains("exited with code 7"),
        "{}",
        failure.detail
    );
    assert_eq!(
        failure.log.as_deref(),
        Some(config.containerd.log.as_path())
    );
}

#[test]
fn a_socket_that_never_appears_times_out() {
    let scratch = Scratch::new("timeout");
    let config = scratch.config("sleep 30", "sleep 30", Duration::from_millis(300));
    let started = Instant::now();
    let failure = failure_of(&config);
    assert_eq!(failure.stage, EngineStage::Timeout);
    assert!(failure.detail.contains("containerd"), "{}", failure.detail);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Serves dockerd's API answers on `socket` until the test ends.
fn serve_api(socket: &Path) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 1024];
            let n = stream.read(&mut request).unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]);
            let answer = if request.starts_with("GET /_ping ") {
                "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK".to_string()
            } else {
                let body = r#"{"Version":"20.10.24+dfsg1","ApiVersion":"1.41"}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                )
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
}

#[test]
fn dockerd_dying_before_it_answers_fails_at_dockerd() {
    let scratch = Scratch::new("dockerd");
    let config = scratch.config(
        "sleep 30",
        "echo 'bad flag' >&2; exit 1",
        Duration::from_secs(10),
    );
    serve_api(&config.containerd.socket);
    let failure = failure_of(&config);
    assert_eq!(failure.stage, EngineStage::Dockerd);
    assert!(
        failure.detail.contains("exited with code 1"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.log.as_deref(), Some(config.dockerd.log.as_path()));
    let log = std::fs::read_to_string(&config.dockerd.log).unwrap();
    assert!(log.contains("bad flag"), "{log}");
}

#[test]
fn the_engine_comes_up_and_a_dead_daemon_shows_in_the_state() {
    let scratch = Scratch::new("up");
    let config = scratch.config("sleep 30", "sleep 0.5; exit 3", Duration::from_secs(10));
    serve_api(&config.containerd.socket);
    serve_api(&config.dockerd.socket);
    let monitor = EngineMonitor::starting();
    start_engine(
        config,
        Reaper::new(ReapMode::PerChild),
        Arc::clone(&monitor),
    )
    .unwrap();
    assert_eq!(monitor.wait_settled(), EngineState::up("20.10.24+dfsg1"));
    // "dockerd" exits after half a second: restarted, and reported while it is not running.
    let start = Instant::now();
    let reported = loop {
        let state = monitor.current();
        if state != EngineState::up("20.10.24+dfsg1") {
            break state;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    };
    let EngineState::Failed { stage, detail } = reported else {
        panic!("{reported:?}");
    };
    assert_eq!(stage, EngineStage::Dockerd);
    assert!(detail.contains("dockerd exited with code 3"), "{detail}");
}
