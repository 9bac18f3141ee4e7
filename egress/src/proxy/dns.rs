//! `RESOLVE name` questions from the guest's DNS stub: a name the policy lets the guest use that
//! resolves gets its stable address; anything else is NXDOMAIN. Each answer is logged.

use paddock_protocol::egress::ResolveAnswer;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::log::{EgressLogEntry, EgressPath, Verdict};
use super::relay::error_chain;
use super::shared::{DenyReason, Shared};

/// Answers one question about `name` (already normalized by the hello parser) and closes.
pub(crate) async fn answer_resolve<S: AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    name: &str,
) {
    let answer = decide(shared, name).await;
    let _ = stream.write_all(&answer.encode()).await;
    let _ = stream.shutdown().await;
}

async fn decide(shared: &Shared, name: &str) -> ResolveAnswer {
    let decision = shared.policy.current().check_resolve(name);
    if !decision.allowed {
        let reason = DenyReason::Policy(decision.reason);
        shared.log_denied(EgressPath::Dns, name, 0, reason, decision.rule);
        return ResolveAnswer::NxDomain;
    }
    if let Err(error) = shared.resolver.resolve(name, 0).await {
        tracing::debug!(error = %error_chain(&error), "name does not resolve");
        shared.log_denied(
            EgressPath::Dns,
            name,
            0,
            DenyReason::Unresolved,
            decision.rule,
        );
        return ResolveAnswer::NxDomain;
    }
    match shared.stable_address(name).await {
        Ok(address) => {
            let mut entry =
                EgressLogEntry::new(&shared.sandbox, EgressPath::Dns, name, 0, Verdict::Allow);
            entry.rule = decision.rule;
            entry.reason = Some(decision.reason.as_str().to_string());
            entry.address = Some(address.to_string());
            shared.log.record(&entry);
            ResolveAnswer::Address(address)
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "no stable address for an allowed name");
            ResolveAnswer::NxDomain
        }
    }
}
