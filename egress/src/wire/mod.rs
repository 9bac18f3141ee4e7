//! Parsers for what the guest sends, all of it hostile: HTTP/1.x request heads, TLS ClientHellos
//! (for the SNI) and first-byte sniffing. Every parser is bounded in bytes and time and returns
//! a typed error instead of panicking on any input.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod host;
pub mod http;
pub mod sniff;
pub mod tls;

pub use host::{parse_authority, parse_port, Host, HostError};
pub use http::{
    parse_request_head, parse_request_head_within, read_head, rewrite_absolute_to_origin,
    HeadStatus, HttpHeadError, HttpVersion, MalformedHead, RequestHead, RequestTarget,
    RewriteError, Scheme, MAX_HEAD, MAX_HEADERS,
};
pub use sniff::{looks_like_http, looks_like_tls};
pub use tls::{
    peek_client_hello, ClientHelloInfo, ClientHelloParser, HelloField, HelloStatus, MalformedHello,
    SniError, TlsHelloError, TlsVersion,
};
