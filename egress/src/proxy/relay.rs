//! The last steps of an allowed connection: dial the route, relay the bytes (raw, or through the
//! TLS interception for a host with a secret), and log the connection with its byte counts when
//! it ends.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::mitm::{intercept, InterceptError, SandboxCa};
use crate::policy::Decision;

use super::log::{EgressLogEntry, Verdict};
use super::route::{dial, Route, Target};
use super::shared::{DenyReason, Shared};
use super::splice::{splice, Spliced};

/// A target the policy allowed, with the decision (its rule and reason go into the log).
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    pub(crate) target: Target,
    pub(crate) decision: Decision,
}

/// A connected upstream and the address it was dialed at.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) stream: TcpStream,
    pub(crate) address: SocketAddr,
}

/// What the log says about an allowed connection that went wrong after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No address of the route accepted the connection.
    Unreachable,
    /// The interception failed (TLS with guest or upstream, a malformed request, I/O).
    Intercept,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Intercept => "intercept-failed",
        }
    }
}

/// Logs an allowed connection to `target` that has ended.
pub(crate) fn log_allowed(
    shared: &Shared,
    allowed: &Allowed,
    address: Option<SocketAddr>,
    bytes: Spliced,
    failure: Option<Failure>,
) {
    let Allowed { target, decision } = allowed;
    let mut entry = EgressLogEntry::new(
        &shared.sandbox,
        target.path,
        &target.host_text(),
        target.port,
        Verdict::Allow,
    );
    entry.rule = decision.rule.clone();
    entry.reason = Some(
        failure
            .map(Failure::as_str)
            .unwrap_or(decision.reason.as_str())
            .to_string(),
    );
    entry.address = address.map(|address| address.to_string());
    entry.bytes_up = bytes.bytes_up;
    entry.bytes_down = bytes.bytes_down;
    shared.log.record(&entry);
}

/// Dials the route; a failure is logged (the caller answers the guest).
pub(crate) async fn dial_logged(
    shared: &Shared,
    allowed: &Allowed,
    route: &Route,
) -> Option<Dialed> {
    match dial(route, shared.limits.connect_timeout).await {
        Ok((stream, address)) => Some(Dialed { stream, address }),
        Err(error) => {
            tracing::debug!(
                error = %error_chain(&error),
                host = %allowed.target.host_text(),
                "egress dial failed"
            );
            log_allowed(
                shared,
                allowed,
                None,
                Spliced::default(),
                Some(Failure::Unreachable),
            );
            None
        }
    }
}

/// Relays raw bytes between guest and upstream until both ends close, then logs.
/// `already_up` counts bytes the caller sent upstream before (a rewritten request head).
pub(crate) async fn splice_logged<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    guest: &mut S,
    mut upstream: Dialed,
    allowed: &Allowed,
    already_up: u64,
) {
    let (mut bytes, error) = splice(guest, &mut upstream.stream).await;
    if let Some(error) = error {
        tracing::debug!(
            %error,
            host = %allowed.target.host_text(),
            "egress relay ended with an error"
        );
    }
    bytes.bytes_up += already_up;
    log_allowed(shared, allowed, Some(upstream.address), bytes, None);
}

/// Hands the guest's TLS (positioned at its ClientHello) to the interception for `name`, then
/// logs: a placeholder leak as a denial, anything else as the allowed connection it was.
pub(crate) async fn intercept_logged<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    ca: &SandboxCa,
    guest: S,
    name: &str,
    upstream: Dialed,
    allowed: &Allowed,
) {
    let address = upstream.address;
    let outcome = intercept(
        guest,
        name,
        upstream.stream,
        ca,
        &shared.credentials,
        shared.upstream_tls.clone(),
    )
    .await;
    let deny = |reason| {
        shared.log_denied(
            allowed.target.path,
            &allowed.target.host_text(),
            allowed.target.port,
            reason,
            allowed.decision.rule.clone(),
        )
    };
    match outcome {
        Ok(transfer) => {
            let bytes = Spliced {
                bytes_up: transfer.bytes_up,
                bytes_down: transfer.bytes_down,
            };
            log_allowed(shared, allowed, Some(address), bytes, None);
        }
        Err(InterceptError::Leak { service }) => {
            tracing::warn!(host = name, %service, "blocked a placeholder on its way to another host");
            deny(DenyReason::PlaceholderLeak);
        }
        Err(InterceptError::Head(error)) if error.is_wrong_host() => {
            tracing::warn!(host = name, error = %error_chain(&error), "refused a request for another host inside a terminated connection");
            deny(DenyReason::HostMismatch);
        }
        Err(InterceptError::SecretEchoed { service }) => {
            tracing::warn!(host = name, %service, "cut a connection whose response carried the secret");
            deny(DenyReason::PlaceholderLeak);
        }
        Err(error) => {
            tracing::debug!(error = %error_chain(&error), host = name, "interception ended");
            log_allowed(
                shared,
                allowed,
                Some(address),
                Spliced::default(),
                Some(Failure::Intercept),
            );
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
