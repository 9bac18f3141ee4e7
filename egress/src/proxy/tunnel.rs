//! Tunnels: a `CONNECT host:port` or a captured connection to a name or address. An explicit
//! port rule lets it through as raw TCP without looking (server-speaks-first protocols work);
//! otherwise the first bytes say TLS or HTTP, the policy decides for that kind, and the TLS
//! (`tls_tunnel`) or HTTP (`http_tunnel`) handler takes over.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::policy::{EffectivePolicy, TrafficKind};

use super::answer::{bad_gateway_to, forbidden_to, send_and_close, CONNECT_ESTABLISHED};
use super::classify::{classify, ClassifyError};
use super::http_tunnel::http_tunnel;
use super::relay::{dial_logged, error_chain, splice_logged, Allowed};
use super::route::{route, Route, RouteError, Target};
use super::shared::{DenyReason, Shared};
use super::splice::Prefixed;
use super::tls_tunnel::tls_tunnel;

/// How the guest learns the outcome of the tunnel's setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answers {
    /// `CONNECT`: `200` once allowed, `403`/`502` otherwise.
    Http,
    /// A captured connection: no answer, a refusal just closes.
    Silent,
}

/// Serves one tunnel to `target`; `stream` is positioned at the guest's first tunnel byte.
pub(crate) async fn open_tunnel<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    mut stream: Prefixed<S>,
    target: Target,
    answers: Answers,
) {
    let policy = shared.policy.current();
    let raw = target.check(&policy, TrafficKind::OtherTcp);
    if raw.allowed {
        let allowed = Allowed {
            target,
            decision: raw,
        };
        let Some(route) = routed(shared, &policy, &mut stream, &allowed.target, answers).await
        else {
            return;
        };
        let Some(upstream) = dial_logged(shared, &allowed, &route).await else {
            if answers == Answers::Http {
                send_and_close(&mut stream, &bad_gateway_to(&allowed.target)).await;
            }
            return;
        };
        if answers == Answers::Http && stream.write_all(CONNECT_ESTABLISHED).await.is_err() {
            return;
        }
        splice_logged(shared, &mut stream, upstream, &allowed, 0).await;
        return;
    }
    // Before any byte of the tunnel: the target must be allowed for TLS or HTTP at least.
    let tls = target.check(&policy, TrafficKind::Tls);
    if !tls.allowed && !target.check(&policy, TrafficKind::Http).allowed {
        refuse(
            shared,
            &mut stream,
            &target,
            answers,
            DenyReason::Policy(tls.reason),
            tls.rule,
        )
        .await;
        return;
    }
    let Some(route) = routed(shared, &policy, &mut stream, &target, answers).await else {
        return;
    };
    if answers == Answers::Http && stream.write_all(CONNECT_ESTABLISHED).await.is_err() {
        return;
    }
    let kind = match classify(&mut stream, shared.limits.handshake_timeout).await {
        Ok(kind) => kind,
        Err(ClassifyError::Timeout { .. }) => {
            refuse(
                shared,
                &mut stream,
                &target,
                Answers::Silent,
                DenyReason::Timeout,
                None,
            )
            .await;
            return;
        }
        Err(error) => {
            tracing::debug!(%error, host = %target.host_text(), "tunnel closed before its first bytes");
            return;
        }
    };
    let decision = target.check(&policy, kind);
    if !decision.allowed {
        // Inside the tunnel only HTTP can still be answered in words.
        let inner = if kind == TrafficKind::Http {
            Answers::Http
        } else {
            Answers::Silent
        };
        let reason = DenyReason::Policy(decision.reason);
        refuse(shared, &mut stream, &target, inner, reason, decision.rule).await;
        return;
    }
    let allowed = Allowed { target, decision };
    match kind {
        TrafficKind::Tls => tls_tunnel(shared, stream, &allowed, &route).await,
        TrafficKind::Http => http_tunnel(shared, stream, &allowed, &route).await,
        TrafficKind::OtherTcp => {
            if let Some(upstream) = dial_logged(shared, &allowed, &route).await {
                splice_logged(shared, &mut stream, upstream, &allowed, 0).await;
            }
        }
    }
}

/// The route of `target`, or the refusal logged and answered.
pub(crate) async fn routed<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    policy: &EffectivePolicy,
    stream: &mut S,
    target: &Target,
    answers: Answers,
) -> Option<Route> {
    match route(shared, policy, target).await {
        Ok(route) => Some(route),
        Err(RouteError::Denied(decision)) => {
            refuse(
                shared,
                stream,
                target,
                answers,
                DenyReason::Address,
                decision.rule,
            )
            .await;
            None
        }
        Err(RouteError::Unresolved(error)) => {
            tracing::debug!(error = %error_chain(&error), "egress target does not resolve");
            let host = target.host_text();
            shared.log_denied(
                target.path,
                &host,
                target.port,
                DenyReason::Unresolved,
                None,
            );
            if answers == Answers::Http {
                send_and_close(stream, &bad_gateway_to(target)).await;
            }
            None
        }
    }
}

/// Logs the refusal and, for `Answers::Http`, answers `403`; then closes.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    target: &Target,
    answers: Answers,
    reason: DenyReason,
    rule: Option<String>,
) {
    let host = target.host_text();
    shared.log_denied(target.path, &host, target.port, reason, rule);
    match answers {
        Answers::Http => send_and_close(stream, &forbidden_to(target, reason)).await,
        Answers::Silent => {
            let _ = stream.shutdown().await;
        }
    }
}
