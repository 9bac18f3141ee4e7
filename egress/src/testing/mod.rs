//! Test upstreams: real servers (real TLS with rustls, real HTTP/1.1) on loopback, for the
//! proxy's unit tests, the lab's end-to-end tests and the benchmarks. Nothing here touches the
//! internet.
//!
//! | server | speaks | answers |
//! |---|---|---|
//! | [`https_hello`] | TLS, HTTP/1.1 | `hello from <SNI>\n`; `GET /bytes/N`: N zero bytes |
//! | [`http_hello`] | HTTP/1.1 | `hello from <Host>\n`; `GET /bytes/N`: N zero bytes |
//! | [`fake_anthropic`] | TLS, HTTP/1.1 | the Messages API (JSON or SSE) with a canned answer; records requests |
//! | [`tcp_echo`] | raw TCP | every byte back |
//!
//! Each server binds `bind:0` (read the port from [`Upstream::addr`]), or a given port ([`Bind`]) and runs on a thread of
//! its own with a current-thread tokio runtime, so it works from sync tests and from any async
//! runtime alike; dropping the [`Upstream`] stops it (the listener closes, so a later connect is
//! refused). The TLS servers present leaf certificates from a [`TestPki`], a throwaway ECDSA
//! P-256 root: clients trust it through [`TestPki::client_config`], or a proxy through the PEM
//! [`TestPki::write_root`] writes.
//!
//! The HTTP servers read request bodies fully (Content-Length or chunked, bounded), keep
//! connections alive unless asked to close, and answer a malformed request with 400 and close.
//!
//! ```no_run
//! use paddock_egress::testing::{https_hello, TestPki};
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! let pki = TestPki::new();
//! let upstream = https_hello(&pki, &["example.test"], IpAddr::V4(Ipv4Addr::LOCALHOST));
//! println!("listening on {}", upstream.addr);
//! ```

mod anthropic;
mod echo;
mod hello;
mod http;
mod pki;
mod server;

#[cfg(test)]
mod tests;

pub use anthropic::{
    fake_anthropic, fake_anthropic_for, RecordedRequest, RequestLog, ANTHROPIC_NAMES, EVENT_PAUSE,
};
pub use echo::tcp_echo;
pub use hello::{http_hello, https_hello, MAX_DOWNLOAD};
pub use http::{MAX_BODY, MAX_HEAD};
pub use pki::TestPki;
pub use server::{Bind, Upstream};
