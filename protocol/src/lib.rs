//! The host <-> guest-init wire protocol (shared by `vmm` and `guest-init`).
