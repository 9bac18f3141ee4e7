//! `PROXY` connections: a program used the guest's HTTP proxy. `CONNECT host:port` opens a
//! tunnel; an absolute-form `http://` request is checked and forwarded in origin form; anything
//! else (origin form, `https://` URIs, malformed or oversized heads) is answered `400`.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::policy::TrafficKind;
use crate::wire::{read_head, HttpHeadError, RequestHead, RequestTarget, Scheme, MAX_HEAD};

use super::answer::{bad_request, send_and_close};
use super::http_forward::forward_http;
use super::log::EgressPath;
use super::relay::{error_chain, Allowed};
use super::route::Target;
use super::shared::{DenyReason, Shared};
use super::splice::Prefixed;
use super::tunnel::{open_tunnel, refuse, routed, Answers};

/// Serves one proxied request; `stream` is positioned at its request head.
pub(crate) async fn serve_proxied<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    mut stream: Prefixed<S>,
) {
    let timeout = shared.limits.handshake_timeout;
    let (head, received) = match read_head(&mut stream, MAX_HEAD, timeout).await {
        Ok(read) => read,
        Err(HttpHeadError::Closed { .. }) => return,
        Err(error) => {
            tracing::debug!(error = %error_chain(&error), "refused a proxied request head");
            let reason = match error {
                HttpHeadError::Timeout { .. } => DenyReason::Timeout,
                _ => DenyReason::BadRequest,
            };
            shared.log_denied(EgressPath::Http, "", 0, reason, None);
            send_and_close(
                &mut stream,
                &bad_request("malformed or oversized request head"),
            )
            .await;
            return;
        }
    };
    match head.target.clone() {
        RequestTarget::Authority { host, port } => {
            stream.unread(received.get(head.head_len..).unwrap_or_default());
            let target = Target {
                path: EgressPath::Connect,
                host,
                port,
            };
            open_tunnel(shared, stream, target, Answers::Http).await;
        }
        RequestTarget::Absolute {
            scheme: Scheme::Http,
            host,
            port,
            ..
        } => {
            let target = Target {
                path: EgressPath::Http,
                host,
                port,
            };
            serve_absolute(shared, stream, target, &head, &received).await;
        }
        RequestTarget::Absolute {
            scheme: Scheme::Https,
            host,
            port,
            ..
        } => {
            let target = Target {
                path: EgressPath::Http,
                host,
                port,
            };
            shared.log_denied(
                EgressPath::Http,
                &target.host_text(),
                port,
                DenyReason::BadRequest,
                None,
            );
            send_and_close(
                &mut stream,
                &bad_request("https:// URLs go through CONNECT"),
            )
            .await;
        }
        RequestTarget::Origin(_) => {
            shared.log_denied(EgressPath::Http, "", 0, DenyReason::BadRequest, None);
            send_and_close(
                &mut stream,
                &bad_request("a proxy needs an absolute URL or CONNECT"),
            )
            .await;
        }
    }
}

/// An absolute-form `http://` request: checked as HTTP to its host, then forwarded.
async fn serve_absolute<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: Prefixed<S>,
    target: Target,
    head: &RequestHead,
    received: &[u8],
) {
    let policy = shared.policy.current();
    let decision = target.check(&policy, TrafficKind::Http);
    if !decision.allowed {
        let reason = DenyReason::Policy(decision.reason);
        refuse(
            shared,
            &mut stream,
            &target,
            Answers::Http,
            reason,
            decision.rule,
        )
        .await;
        return;
    }
    let Some(route) = routed(shared, &policy, &mut stream, &target, Answers::Http).await else {
        return;
    };
    let allowed = Allowed { target, decision };
    forward_http(shared, &mut stream, &allowed, &route, head, received).await;
}
