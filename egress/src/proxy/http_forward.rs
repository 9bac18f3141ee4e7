//! One plain-HTTP request to an allowed target: the head in origin form with `Connection: close`
//! (so each request on a connection is seen and checked by the proxy), refused if it carries
//! another host's placeholder, then exactly its body and the answer (`http_exchange`).

use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::http::wants_websocket;
use crate::wire::{rewrite_absolute_to_origin, RequestHead};

use super::answer::{bad_gateway_to, bad_request, forbidden_to, send_and_close};
use super::http_exchange::{exchange_once, exchange_upgrade, Request};
use super::relay::{dial_logged, error_chain, log_allowed, Allowed};
use super::route::Route;
use super::shared::{DenyReason, Shared};

/// Sends `head` and its body (starting with the body bytes that came with it in `received`) to
/// the allowed target and relays the answer; nothing the guest sends after the body goes out.
pub(crate) async fn forward_http<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    guest: &mut S,
    allowed: &Allowed,
    route: &Route,
    head: &RequestHead,
    received: &[u8],
) {
    let target = &allowed.target;
    let host = target.host_text();
    let origin_head = match rewrite_absolute_to_origin(head) {
        Ok(origin_head) => origin_head,
        Err(error) => {
            tracing::debug!(error = %error_chain(&error), %host, "request head not forwardable");
            shared.log_denied(
                target.path,
                &host,
                target.port,
                DenyReason::BadRequest,
                None,
            );
            send_and_close(guest, &bad_request("request head cannot be forwarded")).await;
            return;
        }
    };
    // Secrets are added only on TLS connections the proxy terminates, never in cleartext: a
    // plain-HTTP head goes out as the guest wrote it, and one carrying another host's
    // placeholder does not go out at all.
    let outgoing_head = match shared
        .credentials
        .contains_foreign_placeholder(&host, &origin_head)
    {
        None => origin_head,
        Some(service) => {
            tracing::warn!(%host, %service, "blocked a placeholder on its way to another host");
            shared.log_denied(
                target.path,
                &host,
                target.port,
                DenyReason::PlaceholderLeak,
                allowed.decision.rule.clone(),
            );
            send_and_close(guest, &forbidden_to(target, DenyReason::PlaceholderLeak)).await;
            return;
        }
    };
    let Some(mut upstream) = dial_logged(shared, allowed, route).await else {
        send_and_close(guest, &bad_gateway_to(target)).await;
        return;
    };
    let request = Request {
        head: &outgoing_head,
        body_start: received.get(head.head_len..).unwrap_or_default().to_vec(),
        framing: head.body_framing(),
    };
    let (bytes, error) = if wants_websocket(head) {
        exchange_upgrade(guest, &mut upstream.stream, request).await
    } else {
        exchange_once(guest, &mut upstream.stream, request).await
    };
    if let Some(error) = error {
        tracing::debug!(error = %error_chain(&error), %host, "plain-HTTP exchange ended early");
    }
    log_allowed(shared, allowed, Some(upstream.address), bytes, None);
}
