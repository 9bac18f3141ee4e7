//! Brings the engine up, in order: cgroup delegation, containerd (until its socket accepts),
//! dockerd (until `/_ping` answers `OK` and `/version` names it), all within one deadline.
//! Then the engine's state is settled in the [`EngineMonitor`]; on failure the end of the
//! failing daemon's log is copied to the console.

use super::cgroups;
use super::docker_api::{self, DOCKER_SOCKET};
use super::log_sink::{self, LogSink, LOG_LIMIT};
use super::monitor::{EngineMonitor, WatchedDaemons};
use super::supervisor::{
    DaemonExit, DaemonSpec, DaemonStatus, RestartPolicy, Supervised, ENGINE_RESTART_POLICY,
};
use crate::reaper::Reaper;
use paddock_protocol::{EngineStage, EngineState};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// containerd's API socket.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// First pause between checks whether a daemon answers; doubled up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_millis(500);
/// How long one API request may take while waiting for dockerd (the lab is slow).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One daemon of the engine: what to run and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSetup {
    pub spec: DaemonSpec,
    pub log: PathBuf,
    /// The daemon is up once this socket answers.
    pub socket: PathBuf,
}

/// Everything the start-up needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// The whole start-up must be done within this.
    pub timeout: Duration,
    pub cgroup_root: PathBuf,
    pub containerd: DaemonSetup,
    pub dockerd: DaemonSetup,
    pub policy: RestartPolicy,
}

impl EngineConfig {
    /// Docker from the agent root image: containerd, then dockerd on `/var/run/docker.sock`.
    pub fn docker(timeout: Duration) -> Self {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect();
        Self {
            timeout,
            cgroup_root: PathBuf::from(cgroups::CGROUP_ROOT),
            containerd: DaemonSetup {
                spec: DaemonSpec {
                    name: "containerd",
                    program: "containerd",
                    args: args(&["--address", CONTAINERD_SOCKET]),
                    env: &[],
                },
                log: PathBuf::from("/var/log/containerd.log"),
                socket: PathBuf::from(CONTAINERD_SOCKET),
            },
            dockerd: DaemonSetup {
                spec: DaemonSpec {
                    name: "dockerd",
                    program: "dockerd",
                    args: args(&[
                        "--containerd=/run/containerd/containerd.sock",
                        "--host=unix:///var/run/docker.sock",
                        "--group=docker",
                        "--data-root=/var/lib/docker",
                        "--storage-driver=overlay2",
                        "--iptables=true",
                        // The guest kernel has no IPv6.
                        "--ip6tables=false",
                    ]),
                    // Image pulls go through the guest's egress proxy.
                    env: &crate::egress::DOCKERD_PROXY_ENV,
                },
                log: PathBuf::from("/var/log/docker.log"),
                socket: PathBuf::from(DOCKER_SOCKET),
            },
            policy: ENGINE_RESTART_POLICY,
        }
    }
}

/// Starts the engine on its own thread; `monitor` is settled when it is up or has failed.
pub fn start_engine(
    config: EngineConfig,
    reaper: Arc<Reaper>,
    monitor: Arc<EngineMonitor>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let started = Instant::now();
            let (state, daemons) = match bring_up(&config, &reaper) {
                Ok(RunningEngine { version, daemons }) => {
                    crate::console_log!(
                        "docker engine {version} is up after {:.1?}",
                        started.elapsed()
                    );
                    (EngineState::up(&version), daemons)
                }
                Err(failure) => {
                    report(&failure);
                    (
                        EngineState::failed(failure.stage, &failure.detail),
                        Vec::new(),
                    )
                }
            };
            monitor.settle(state, daemons);
        })
        .map(drop)
}

/// Why the start-up failed, and which log tells more.
#[derive(Debug)]
pub struct StartFailure {
    pub stage: EngineStage,
    pub detail: String,
    pub log: Option<PathBuf>,
}

fn failure(stage: EngineStage, detail: String, log: Option<&Path>) -> StartFailure {
    StartFailure {
        stage,
        detail,
        log: log.map(Path::to_path_buf),
    }
}

/// An engine that answered.
#[derive(Debug)]
pub struct RunningEngine {
    /// dockerd's server version.
    pub version: String,
    pub daemons: WatchedDaemons,
}

/// The start-up itself.
pub fn bring_up(
    config: &EngineConfig,
    reaper: &Arc<Reaper>,
) -> Result<RunningEngine, StartFailure> {
    let deadline = Instant::now() + config.timeout;
    match cgroups::delegate_controllers(&config.cgroup_root) {
        Ok(delegation) => crate::console_log!(
            "cgroups: enabled {:?} for children ({} processes moved to /{})",
            delegation.enabled,
            delegation.moved,
            cgroups::INIT_GROUP
        ),
        Err(e) => return Err(failure(EngineStage::Cgroups, e.to_string(), None)),
    }

    let containerd = start_daemon(&config.containerd, reaper, config.policy)
        .map_err(|e| failure(EngineStage::Containerd, e, None))?;
    let log = Some(config.containerd.log.as_path());
    match wait_for(deadline, &containerd, || {
        UnixStream::connect(&config.containerd.socket).map(drop)
    }) {
        Waited::Answered(()) => {}
        Waited::Died(exit) => {
            let detail = format!("containerd {exit} before its socket accepted connections");
            return Err(failure(EngineStage::Containerd, detail, log));
        }
        Waited::TimedOut(last) => {
            let detail = format!(
                "containerd's socket {} did not accept connections within {:?} (last: {last})",
                config.containerd.socket.display(),
                config.timeout
            );
            return Err(failure(EngineStage::Timeout, detail, log));
        }
    }

    let dockerd = start_dockerd(config, reaper)?;
    let log = Some(config.dockerd.log.as_path());
    let socket = &config.dockerd.socket;
    let version = match wait_for(deadline, &dockerd, || {
        docker_api::ping(socket, REQUEST_TIMEOUT)
            .and_then(|()| docker_api::server_version(socket, REQUEST_TIMEOUT))
    }) {
        Waited::Answered(version) => version,
        Waited::Died(exit) => {
            let detail = format!("dockerd {exit} before it answered /_ping");
            return Err(failure(EngineStage::Dockerd, detail, log));
        }
        Waited::TimedOut(last) => {
            let detail = format!(
                "dockerd did not answer on {} within {:?} (last: {last})",
                socket.display(),
                config.timeout
            );
            return Err(failure(EngineStage::Timeout, detail, log));
        }
    };
    containerd.allow_restarts();
    dockerd.allow_restarts();
    Ok(RunningEngine {
        version,
        daemons: vec![
            (EngineStage::Containerd, containerd),
            (EngineStage::Dockerd, dockerd),
        ],
    })
}

fn start_dockerd(
    config: &EngineConfig,
    reaper: &Arc<Reaper>,
) -> Result<Arc<Supervised>, StartFailure> {
    start_daemon(&config.dockerd, reaper, config.policy)
        .map_err(|e| failure(EngineStage::Dockerd, e, None))
}

fn start_daemon(
    setup: &DaemonSetup,
    reaper: &Arc<Reaper>,
    policy: RestartPolicy,
) -> Result<Arc<Supervised>, String> {
    let name = setup.spec.name;
    let sink = LogSink::start(&setup.log, LOG_LIMIT)
        .map_err(|e| format!("cannot open {} for {name}: {e}", setup.log.display()))?;
    Supervised::start(setup.spec.clone(), sink, Arc::clone(reaper), policy)
        .map_err(|e| format!("cannot supervise {name}: {e}"))
}

/// How waiting for a daemon to answer ended.
#[derive(Debug)]
pub enum Waited<T> {
    Answered(T),
    /// The daemon ended (or could not start) first.
    Died(DaemonExit),
    /// The deadline passed; the last probe's error, for humans.
    TimedOut(String),
}

/// Probes until it answers, the daemon dies or `deadline` passes, pausing with backoff.
pub fn wait_for<T, E: std::fmt::Display>(
    deadline: Instant,
    daemon: &Supervised,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Waited<T> {
    let mut pause = FIRST_POLL;
    let mut last = String::from("not probed yet");
    loop {
        match daemon.status() {
            DaemonStatus::Stopped(exit) | DaemonStatus::GaveUp { last: exit, .. } => {
                return Waited::Died(exit)
            }
            DaemonStatus::Running { .. } => match probe() {
                Ok(answer) => return Waited::Answered(answer),
                Err(e) => last = e.to_string(),
            },
            DaemonStatus::Starting | DaemonStatus::Restarting { .. } => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Waited::TimedOut(last);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Says on the console why the engine failed, with the end of the daemon's log.
fn report(failure: &StartFailure) {
    crate::console_log!(
        "docker engine failed ({:?}): {}",
        failure.stage,
        failure.detail
    );
    if let Some(log) = &failure.log {
        log_sink::copy_tail_to_console(log);
    }
}

#[cfg(test)]
mod tests;
