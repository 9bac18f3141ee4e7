//! End-to-end tests of the proxy: a real Unix socket, real TCP upstreams on loopback (from
//! [`crate::testing`]), real TLS; no internet.

mod connect;
mod credentials;
mod dns_transparent;
mod harness;
mod http_forward;
mod lifecycle;
mod limits;
mod policy_reload;
