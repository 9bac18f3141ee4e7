//! Plain HTTP inside a tunnel: one request whose `Host` header (or absolute URI) names the
//! target, forwarded like a proxied request.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::{read_head, HttpHeadError, RequestTarget, MAX_HEAD};

use super::answer::{bad_request, send_and_close};
use super::http_forward::forward_http;
use super::relay::{error_chain, Allowed};
use super::route::Route;
use super::shared::{DenyReason, Shared};
use super::splice::Prefixed;
use super::tunnel::{refuse, Answers};

/// HTTP: one request whose `Host` (or absolute URI) names the target, forwarded like a proxied
/// one.
pub(crate) async fn http_tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: Prefixed<S>,
    allowed: &Allowed,
    route: &Route,
) {
    let target = &allowed.target;
    let timeout = shared.limits.handshake_timeout;
    let (head, received) = match read_head(&mut stream, MAX_HEAD, timeout).await {
        Ok(read) => read,
        Err(error) => {
            tracing::debug!(error = %error_chain(&error), host = %target.host_text(), "no usable request head in tunnel");
            let reason = match error {
                HttpHeadError::Timeout { .. } => DenyReason::Timeout,
                _ => DenyReason::BadRequest,
            };
            shared.log_denied(target.path, &target.host_text(), target.port, reason, None);
            send_and_close(
                &mut stream,
                &bad_request("malformed or oversized request head"),
            )
            .await;
            return;
        }
    };
    let named = match &head.target {
        RequestTarget::Origin(_) => head.host_header().map(|(host, _)| host),
        RequestTarget::Absolute { host, .. } => Some(host.clone()),
        RequestTarget::Authority { .. } => None,
    };
    if named.as_ref() != Some(&target.host) {
        let rule = allowed.decision.rule.clone();
        refuse(
            shared,
            &mut stream,
            target,
            Answers::Http,
            DenyReason::HostMismatch,
            rule,
        )
        .await;
        return;
    }
    forward_http(shared, &mut stream, allowed, route, &head, &received).await;
}
