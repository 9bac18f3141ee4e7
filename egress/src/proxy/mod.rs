//! The proxy core: listens on the sandbox's vsock egress socket, reads each connection's hello,
//! and answers `RESOLVE` questions, `PROXY` requests and `TRANSPARENT` connections after the
//! policy, resolution and address checks, logging one line per decision.
//!
//! | file | does |
//! |---|---|
//! | `serve` | accept loop, connection limit, shutdown, [`run`] |
//! | `fd_limit` | the open-file limit raised, the connection limit fitted to it |
//! | `listener` | the 0600 Unix socket, live/stale handling |
//! | `connection`, `hello` | the hello line and the dispatch |
//! | `dns` | `RESOLVE`: stable address or NXDOMAIN |
//! | `proxied` | `PROXY`: CONNECT and absolute-form HTTP |
//! | `transparent` | `TRANSPARENT`: stable address back to its name |
//! | `tunnel`, `classify`, `tls_tunnel`, `http_tunnel` | raw, TLS (SNI) or HTTP (Host) in a tunnel |
//! | `route`, `resolve` | policy checks, resolution, address checks, dial |
//! | `http_forward`, `http_exchange` | one plain-HTTP request, its body as framed, its answer |
//! | `relay`, `splice` | dialing, interception, byte counting |
//! | `names` | the shared stable-address map |
//! | `log`, `denial_limit` | one JSON line per decision, denials rate-limited |
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod answer;
mod classify;
mod config;
mod connection;
mod denial_limit;
mod dns;
mod fd_limit;
mod hello;
mod http_exchange;
mod http_forward;
mod http_tunnel;
mod listener;
mod log;
mod names;
mod pid_watch;
mod proxied;
mod relay;
mod resolve;
mod route;
mod serve;
mod shared;
mod splice;
mod tls_tunnel;
mod transparent;
mod tunnel;

#[cfg(test)]
mod tests;

pub use config::{Confine, Limits, ProxyConfig};
pub use hello::{read_hello, HelloError, ReadHello};
pub use listener::{bind_listening, BoundSocket, ListenError};
pub use log::{
    egress_log_line, rfc3339_utc, rotated_log, EgressLog, EgressLogEntry, EgressPath, LogOpenError,
    Verdict, LOG_ROTATE_BYTES,
};
pub use names::{is_stable, NamesError, StableNames, MAX_STABLE_NAMES, STABLE_RANGE};
pub use pid_watch::{process_alive, process_gone, PidWatch};
pub use resolve::{ResolveError, Resolver, MAX_ADDRESSES};
pub use serve::{run, serve, ServeError};
pub use splice::{splice, Prefixed, Spliced};
