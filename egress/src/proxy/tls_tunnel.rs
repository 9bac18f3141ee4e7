//! TLS inside a tunnel: the ClientHello's SNI must be the target's name (no SNI for a literal
//! address); TLS to a host with a secret goes to the interception, any other is spliced as it is.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::{peek_client_hello, Host, TlsHelloError};

use super::relay::{dial_logged, error_chain, intercept_logged, splice_logged, Allowed};
use super::route::Route;
use super::shared::{DenyReason, Shared};
use super::splice::Prefixed;
use super::tunnel::{refuse, Answers};

/// TLS: the ClientHello's SNI must be the target's name (none for a literal address); a host
/// with a secret is intercepted, any other spliced as it is.
pub(crate) async fn tls_tunnel<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Shared,
    mut stream: Prefixed<S>,
    allowed: &Allowed,
    route: &Route,
) {
    let target = &allowed.target;
    let timeout = shared.limits.handshake_timeout;
    let hello = match peek_client_hello(&mut stream, timeout).await {
        Ok((hello, consumed)) => {
            stream.unread(&consumed);
            hello
        }
        Err(error) => {
            let reason = match error {
                TlsHelloError::Timeout { .. } => DenyReason::Timeout,
                _ => DenyReason::BadRequest,
            };
            tracing::debug!(error = %error_chain(&error), host = %target.host_text(), "no usable ClientHello");
            refuse(shared, &mut stream, target, Answers::Silent, reason, None).await;
            return;
        }
    };
    let sni_matches = match &target.host {
        Host::Name(name) => hello.sni.as_deref() == Some(name.as_str()),
        Host::Ip(_) => hello.sni.is_none(),
    };
    if !sni_matches {
        tracing::debug!(sni = ?hello.sni, host = %target.host_text(), "SNI differs from the target");
        let rule = allowed.decision.rule.clone();
        refuse(
            shared,
            &mut stream,
            target,
            Answers::Silent,
            DenyReason::SniMismatch,
            rule,
        )
        .await;
        return;
    }
    let Some(upstream) = dial_logged(shared, allowed, route).await else {
        return;
    };
    let interception = match (&target.host, &shared.ca) {
        (Host::Name(name), Some(ca)) if shared.credentials.for_host(name) => Some((name, ca)),
        _ => None,
    };
    match interception {
        Some((name, ca)) => intercept_logged(shared, ca, stream, name, upstream, allowed).await,
        None => splice_logged(shared, &mut stream, upstream, allowed, 0).await,
    }
}
