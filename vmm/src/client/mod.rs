//! Host-side client of guest-init: connects over the vsock Unix socket and runs commands.
