//! Exit statuses of `paddock run` / `paddock exec` beyond the command's own (0-255, 128+N
//! for a command killed by signal N).

/// The guest shut down or rebooted before the command reported a status (e.g. `reboot`).
pub const GUEST_ENDED: i32 = 123;
/// `--timeout` expired; the command was killed.
pub const TIMEOUT: i32 = 124;
/// paddock itself failed: no usable KVM, bad artifacts, boot failure, VMM error.
pub const PADDOCK_ERROR: i32 = 125;
/// The command exists but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found in the guest.
pub const NOT_FOUND: i32 = 127;
