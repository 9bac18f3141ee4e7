//! What one egress proxy process is told: the sandbox, its socket, its policy files, its log,
//! the shared stable-name map, the credentials it adds, and its limits.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::mitm::SandboxCa;
use crate::secrets::Credentials;

/// Bounds on what guests can make the proxy hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections handled at once; one more is closed at once (and logged once per burst).
    pub max_connections: usize,
    /// Time allowed for each thing the guest must send before the proxy acts: the hello line,
    /// a request head, the first bytes of a tunnel, a ClientHello.
    pub handshake_timeout: Duration,
    /// Time allowed for name resolution, and for each TCP connect to the upstream.
    pub connect_timeout: Duration,
    /// How often [`ProxyConfig::exit_when_pid_gone`] is checked.
    pub pid_poll_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            pid_poll_interval: Duration::from_secs(2),
        }
    }
}

/// The configuration of one sandbox's egress proxy.
pub struct ProxyConfig {
    /// The sandbox's name (written into every log line).
    pub sandbox: String,
    /// The Unix socket to listen on: the sandbox's `<vsock.sock>_1080`. Created 0600 and removed
    /// on exit; a live socket there is an error, a stale one is replaced.
    pub listen: PathBuf,
    /// The socket at `listen`, bound and listening already by the process that started this
    /// one ([`crate::proxy::bind_listening`]); `listen` is bound here when there is none.
    pub listener: Option<std::os::unix::net::UnixListener>,
    /// The global policy file (`<state>/egress/policy.json`; may be missing).
    pub global_policy: PathBuf,
    /// The sandbox's policy file (`<sandbox>/policy.json`), if it has one (may be missing).
    pub sandbox_policy: Option<PathBuf>,
    /// The JSON-lines decision log, appended to.
    pub log: PathBuf,
    /// The stable-address map shared by every sandbox's proxy.
    pub names: PathBuf,
    /// Name → address pairs used instead of DNS (tests; like `curl --resolve`). The addresses
    /// are still checked against the policy and the deny set. A name given twice has both.
    pub resolve_overrides: Vec<(String, IpAddr)>,
    /// PEM files of extra roots trusted for upstreams of intercepted connections (tests).
    pub extra_roots: Vec<PathBuf>,
    /// The secrets added on their services' hosts.
    pub credentials: Credentials,
    /// The sandbox's CA, which terminates TLS to hosts with a secret. Without it such hosts
    /// pass through untouched (and receive only the placeholder).
    pub ca: Option<SandboxCa>,
    /// Bounds and timeouts.
    pub limits: Limits,
    /// Exit once this process (the sandbox's VMM) is gone.
    pub exit_when_pid_gone: Option<u32>,
    /// Called once everything is open and every thread the proxy will ever have is running,
    /// before the first guest connection is accepted: where a process confines itself (a
    /// seccomp filter on all its threads). An error ends the proxy.
    pub confine: Option<Confine>,
}

/// A process's way of confining itself (see [`ProxyConfig::confine`]).
pub type Confine = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

impl ProxyConfig {
    /// A configuration with no overrides, extra roots, credentials or CA, default limits, and
    /// no process to watch.
    pub fn new(
        sandbox: impl Into<String>,
        listen: impl Into<PathBuf>,
        global_policy: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
        names: impl Into<PathBuf>,
    ) -> Self {
        ProxyConfig {
            sandbox: sandbox.into(),
            listen: listen.into(),
            listener: None,
            global_policy: global_policy.into(),
            sandbox_policy: None,
            log: log.into(),
            names: names.into(),
            resolve_overrides: Vec::new(),
            extra_roots: Vec::new(),
            credentials: Credentials::empty(),
            ca: None,
            limits: Limits::default(),
            exit_when_pid_gone: None,
            confine: None,
        }
    }
}

impl fmt::Debug for ProxyConfig {
    /// No secret: the credentials show services and hosts, the CA only whether there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("sandbox", &self.sandbox)
            .field("listen", &self.listen)
            .field("inherited_listener", &self.listener.is_some())
            .field("global_policy", &self.global_policy)
            .field("sandbox_policy", &self.sandbox_policy)
            .field("log", &self.log)
            .field("names", &self.names)
            .field("resolve_overrides", &self.resolve_overrides)
            .field("extra_roots", &self.extra_roots)
            .field("credentials", &self.credentials)
            .field("has_ca", &self.ca.is_some())
            .field("limits", &self.limits)
            .field("exit_when_pid_gone", &self.exit_when_pid_gone)
            .field("confined", &self.confine.is_some())
            .finish()
    }
}
