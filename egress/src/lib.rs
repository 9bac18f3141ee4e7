//! paddock's egress proxy: one host process per sandbox, reached only over the sandbox's vsock
//! (the guest has no network card), that checks every outbound connection against the policy,
//! resolves and dials names itself, and adds credentials on the hosts that have one so the guest
//! only ever holds placeholders. It holds no guest memory; the VMM holds no secret.

pub mod mitm;
pub mod policy;
pub mod proxy;
pub mod secrets;
pub mod testing;
pub mod wire;
