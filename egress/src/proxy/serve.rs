//! The proxy's accept loop: opens what the configuration names, binds the socket, and serves
//! each guest connection in a task of its own, at most `max_connections` at once (one more is
//! closed at once, logged once per burst), until told to stop or the VMM is gone. The soft
//! open-file limit is raised first, and the connection limit lowered if it still cannot hold it.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::mitm::{upstream_client_config, CaError, SandboxCa};
use crate::policy::{PolicyFileError, PolicyWatcher};

use super::config::ProxyConfig;
use super::connection::serve_connection;
use super::fd_limit::effective_max_connections;
use super::listener::{BoundSocket, ListenError};
use super::log::{EgressLog, EgressPath, LogOpenError};
use super::names::{NamesError, StableNames};
use super::pid_watch::PidWatch;
use super::resolve::Resolver;
use super::shared::{DenyReason, Shared};

/// Pause after a failed accept (out of file descriptors, …) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Worker threads of the runtime [`run`] builds.
const WORKER_THREADS: usize = 2;
/// Threads for blocking work (name resolution), all started at once and kept: lookups beyond
/// this many at once wait for one to finish.
const BLOCKING_THREADS: usize = 8;
/// How long an idle blocking thread is kept: for the proxy's life.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// How long [`run`] waits for blocking tasks (resolutions) when it stops.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// Why the proxy could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The log file could not be opened.
    #[error("egress log")]
    Log(#[source] LogOpenError),
    /// A policy file could not be read or parsed (the proxy does not start without a policy).
    #[error("egress policy")]
    Policy(#[source] PolicyFileError),
    /// The stable-name map could not be read.
    #[error("stable-name map")]
    Names(#[source] NamesError),
    /// The roots for upstream TLS could not be loaded.
    #[error("upstream TLS roots")]
    UpstreamRoots(#[source] CaError),
    /// The socket could not be set up.
    #[error("egress socket")]
    Listen(#[source] ListenError),
    /// The runtime of [`run`] could not be built.
    #[error("building the proxy's runtime")]
    Runtime(#[source] io::Error),
    /// The signal handlers of [`run`] could not be installed.
    #[error("installing signal handlers")]
    Signals(#[source] io::Error),
    /// [`ProxyConfig::confine`] failed.
    #[error("confining the proxy")]
    Confine(#[source] io::Error),
}

/// Serves `config` until `shutdown` completes or the process named by
/// [`ProxyConfig::exit_when_pid_gone`] is gone; the socket is removed on return. Connections
/// still open then are dropped.
pub async fn serve(mut config: ProxyConfig, shutdown: impl Future) -> Result<(), ServeError> {
    let ca = config.ca.take();
    let shared = Arc::new(shared_state(&config, ca)?);
    let socket = match config.listener.take() {
        Some(listener) => BoundSocket::adopt(listener, &config.listen),
        None => BoundSocket::bind(&config.listen),
    }
    .map_err(ServeError::Listen)?;
    let vmm_watch = PidWatch::new(config.exit_when_pid_gone, config.limits.pid_poll_interval);
    if let Some(confine) = config.confine.take() {
        confine().map_err(ServeError::Confine)?;
    }
    tracing::info!(sandbox = %config.sandbox, socket = %socket.path().display(), "egress proxy serving");
    let limit =
        effective_max_connections(config.limits.max_connections).min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(limit));
    let mut connections = JoinSet::new();
    let mut refusing = false;
    let mut shutdown = std::pin::pin!(shutdown);
    let vmm_gone = vmm_watch.gone();
    let mut vmm_gone = std::pin::pin!(vmm_gone);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            () = &mut vmm_gone => {
                tracing::info!(pid = ?config.exit_when_pid_gone, "the sandbox's VMM is gone; egress proxy stopping");
                break;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = socket.listener().accept() => match accepted {
                Ok((stream, _)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        refusing = false;
                        connections.spawn(connection_task(Arc::clone(&shared), stream, permit));
                    }
                    Err(_) => {
                        drop(stream);
                        if !refusing {
                            refusing = true;
                            tracing::warn!(limit, "egress connection limit reached; refusing connections");
                            shared.log_denied(EgressPath::Accept, "", 0, DenyReason::ConnectionLimit, None);
                        }
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "accepting an egress connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
    connections.shutdown().await;
    drop(socket);
    Ok(())
}

/// Serves `config` on a runtime of its own (two workers) until SIGTERM or SIGINT, or until the
/// VMM is gone.
pub fn run(config: ProxyConfig) -> Result<(), ServeError> {
    run_until(config, termination_signals)
}

/// [`run`], stopping when the future `stop` makes (inside the runtime) completes.
pub(crate) fn run_until<F, Stop>(config: ProxyConfig, stop: F) -> Result<(), ServeError>
where
    F: FnOnce() -> Result<Stop, ServeError>,
    Stop: Future,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .thread_name("paddock-egress")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    start_blocking_threads(&runtime);
    let served = runtime.block_on(async {
        let stop = stop()?;
        serve(config, stop).await
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    served
}

/// Starts every thread of the runtime's blocking pool now (name resolution runs there), and
/// keeps them: a proxy that confines itself (see [`ProxyConfig::confine`]) can then be denied
/// starting threads.
fn start_blocking_threads(runtime: &tokio::runtime::Runtime) {
    let all_running = Arc::new(std::sync::Barrier::new(BLOCKING_THREADS));
    runtime.block_on(async {
        let mut started = JoinSet::new();
        for _ in 0..BLOCKING_THREADS {
            let all_running = Arc::clone(&all_running);
            started.spawn_blocking(move || {
                all_running.wait();
            });
        }
        while started.join_next().await.is_some() {}
    });
}

/// Completes on the first SIGTERM or SIGINT (the handlers are installed at once).
fn termination_signals() -> Result<impl Future<Output = ()>, ServeError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Opens the log, the policy, the name map and the upstream roots.
fn shared_state(config: &ProxyConfig, ca: Option<SandboxCa>) -> Result<Shared, ServeError> {
    let log = EgressLog::open(&config.log).map_err(ServeError::Log)?;
    let policy = PolicyWatcher::new(&config.global_policy, config.sandbox_policy.clone())
        .map_err(ServeError::Policy)?;
    let names = StableNames::open(&config.names).map_err(ServeError::Names)?;
    let upstream_tls =
        upstream_client_config(&config.extra_roots).map_err(ServeError::UpstreamRoots)?;
    Ok(Shared {
        sandbox: config.sandbox.clone(),
        policy,
        names: Arc::new(names),
        log,
        resolver: Resolver::new(
            config.resolve_overrides.clone(),
            config.limits.connect_timeout,
        ),
        credentials: config.credentials.clone(),
        ca,
        upstream_tls,
        limits: config.limits,
    })
}

/// One connection's task; the permit is returned when it ends.
async fn connection_task(shared: Arc<Shared>, stream: UnixStream, permit: OwnedSemaphorePermit) {
    serve_connection(&shared, stream).await;
    drop(permit);
}
