//! Tests of the credentials module.

mod credentials;
mod echo_scan;
mod service;
mod store;
