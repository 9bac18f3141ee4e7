//! The save / restore / reset-in-place contract every device with snapshot state follows.
//!
//! Modelled on Firecracker's `Persist`: a device saves itself into a serializable `State`, is
//! rebuilt from one by a constructor that validates everything it is given, and can be put back
//! to one in place. Host resources a snapshot cannot hold (eventfds, sockets, the console, guest
//! memory) come in as `ConstructorArgs` on restore and are kept across a reset.

/// A device whose guest-visible state can be saved, restored and reset to.
pub trait Persist: Sized {
    /// What a snapshot holds of the device.
    type State;
    /// The host resources a restored device is built around.
    type ConstructorArgs;
    /// Why a state was refused (by `restore` or `reset_to`).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Captures the device. Call with the vCPUs and the device event loop paused.
    fn save(&self) -> Self::State;

    /// Builds a device in `state` around `args`, refusing any state it could not honour.
    /// Guest memory already holds the snapshot's contents. Must not interrupt the guest: the
    /// vCPUs and their LAPICs are restored only afterwards.
    fn restore(args: Self::ConstructorArgs, state: &Self::State) -> Result<Self, Self::Error>;

    /// Puts this device back to `state` in place, keeping its host resources (interrupt line,
    /// notification eventfds, host sockets, console). Called with the VM paused.
    fn reset_to(&mut self, state: &Self::State) -> Result<(), Self::Error>;
}
