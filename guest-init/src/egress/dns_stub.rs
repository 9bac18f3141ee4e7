//! The guest's DNS stub: every name a guest program or container looks up is a question to the
//! host. A allowed name of type A gets the stable address the host handed out (TTL
//! [`ANSWER_TTL`]); AAAA and other types of an allowed name get an empty answer (NODATA); a
//! denied name gets NXDOMAIN; no answer from the host gets SERVFAIL. Malformed messages get
//! FORMERR (or nothing, when even the header is unreadable). No DNS packet leaves the guest.

use super::dns_resolver::HostResolver;
use super::upstream::Upstream;
use paddock_protocol::dns::{
    answer_a, answer_empty, answer_nxdomain, answer_servfail, parse_query, reply_to_invalid, TYPE_A,
};
use paddock_protocol::ResolveAnswer;

/// TTL of the A records the stub gives out.
pub const ANSWER_TTL: u32 = 60;

/// Answers DNS queries by asking the host.
#[derive(Debug)]
pub struct DnsStub<U> {
    resolver: HostResolver<U>,
}

impl<U: Upstream> DnsStub<U> {
    pub fn new(resolver: HostResolver<U>) -> Self {
        Self { resolver }
    }

    /// The reply to one query message; `None` when nothing should be sent back.
    pub fn reply(&self, message: &[u8]) -> Option<Vec<u8>> {
        let query = match parse_query(message) {
            Ok(query) => query,
            Err(error) => return reply_to_invalid(message, &error),
        };
        Some(match self.resolver.resolve(query.name()) {
            Ok(ResolveAnswer::Address(address)) if query.record_type() == TYPE_A => {
                answer_a(&query, address, ANSWER_TTL)
            }
            Ok(ResolveAnswer::Address(_)) => answer_empty(&query),
            Ok(ResolveAnswer::NxDomain) => answer_nxdomain(&query),
            // The host link logs its own failures, once.
            Err(_) => answer_servfail(&query),
        })
    }
}

#[cfg(test)]
mod tests;
