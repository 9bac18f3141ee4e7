//! paddock guest-init: PID 1 of the sandbox guest.
fn main() {}
