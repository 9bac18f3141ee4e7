//! The guest side of egress (docs/EGRESS.md). The guest has no network card; everything that
//! leaves goes over vsock to the host's egress proxy, one vsock connection per guest
//! connection or DNS question, each opened with its hello line:
//! - the HTTP proxy port [`PROXY_PORT`] (programs honouring `HTTP_PROXY`) → `PROXY`;
//! - the capture port [`CAPTURE_PORT`] (TCP redirected by the [capture] rules) →
//!   `TRANSPARENT ip:port`;
//! - the DNS stub on port 53 → `RESOLVE name`.
//!
//! [`start`] runs early in PID 1's start-up, before the engine and before the template
//! snapshot: the listeners hold no host-specific state, so restore, reset and fork need
//! nothing special. Each listener runs on its own thread and is bound again with backoff if it
//! breaks.

// Guest input reaches most of this module: nothing in it may panic (PID 1 would reboot).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod capture;
pub mod dns_cache;
pub mod dns_resolver;
pub mod dns_server;
pub mod dns_stub;
pub mod forwarder;
pub mod guest_config;
pub mod limit;
pub mod listener;
pub mod netlink;
pub mod splice;
pub mod tool;
pub mod transparent;
pub mod upstream;

pub use capture::{CaptureOutcome, CaptureSetup, CAPTURE_ADDRESS, CAPTURE_INTERFACE};
pub use dns_server::DNS_PORT;
pub use forwarder::{Forwarder, HelloSource, PROXY_PORT};
pub use guest_config::DOCKERD_PROXY_ENV;
pub use transparent::CAPTURE_PORT;
pub use upstream::{host_proxy, HostLink, Upstream};

use crate::reaper::Reaper;
use dns_cache::AnswerCache;
use dns_resolver::{HostResolver, ANSWER_TIMEOUT};
use dns_stub::DnsStub;
use listener::{spawn_supervised, ListenerFailure};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// Where the listeners listen: every guest address (the guest has no outside interface, so
/// this reaches only the guest itself and its containers).
fn any(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

/// `duration` as a poll(2) timeout (saturating; the waits here are seconds long).
fn poll_timeout(duration: std::time::Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

/// Sets the guest's egress up: the configuration files, the capture (where iptables exists),
/// then the listeners. `docker`: the agent root, where docker's files are written too.
pub fn start(reaper: &Arc<Reaper>, docker: bool) {
    for failure in guest_config::write_guest_config(Path::new("/"), docker) {
        crate::console_log!("egress: {failure}");
    }
    let captured = match CaptureSetup::guest().install(reaper) {
        Ok(CaptureOutcome::Installed) => true,
        Ok(CaptureOutcome::NoIptables) => false,
        Err(e) => {
            crate::console_log!("egress: {e}");
            false
        }
    };
    let link = Arc::new(HostLink::default());
    let started = start_listeners(host_proxy, &link, captured);
    let capture = if captured {
        format!("capture on :{CAPTURE_PORT} via {CAPTURE_INTERFACE}")
    } else {
        "no capture".to_string()
    };
    if started.is_empty() {
        crate::console_log!("egress: proxy on :{PROXY_PORT}, DNS stub on :{DNS_PORT}, {capture}");
    }
    for (name, e) in started {
        crate::console_log!("egress: cannot start the {name} thread: {e}");
    }
}

/// One listener's run: binds and serves until broken.
type ServeFn = Box<dyn FnMut() -> ListenerFailure + Send>;

/// Starts the supervised listener threads; returns the ones that could not be started.
pub fn start_listeners<U: Upstream + Clone>(
    upstream: U,
    link: &Arc<HostLink>,
    capture: bool,
) -> Vec<(&'static str, std::io::Error)> {
    let proxy = Forwarder::new(
        "egress-proxy",
        upstream.clone(),
        HelloSource::Proxy,
        Arc::clone(link),
        forwarder::MAX_CONNECTIONS,
    );
    let resolver = HostResolver::new(
        upstream.clone(),
        Arc::clone(link),
        ANSWER_TIMEOUT,
        AnswerCache::default(),
    );
    let stub = Arc::new(DnsStub::new(resolver));
    let udp_stub = Arc::clone(&stub);
    let mut listeners: Vec<(&'static str, ServeFn)> = vec![
        (
            "egress-proxy",
            Box::new(move || proxy.bind_and_serve(any(PROXY_PORT))),
        ),
        (
            "egress-dns-udp",
            Box::new(move || dns_server::serve_udp(&udp_stub, any(DNS_PORT))),
        ),
        (
            "egress-dns-tcp",
            Box::new(move || dns_server::serve_tcp(&stub, any(DNS_PORT))),
        ),
    ];
    if capture {
        let captured = Forwarder::new(
            "egress-capture",
            upstream,
            transparent::CAPTURED,
            Arc::clone(link),
            forwarder::MAX_CONNECTIONS,
        );
        listeners.push((
            "egress-capture",
            Box::new(move || captured.bind_and_serve(any(CAPTURE_PORT))),
        ));
    }
    listeners
        .into_iter()
        .filter_map(|(name, serve)| spawn_supervised(name, serve).err().map(|e| (name, e)))
        .collect()
}

#[cfg(test)]
mod test_host;
#[cfg(test)]
mod test_netns;
#[cfg(test)]
mod tests;
