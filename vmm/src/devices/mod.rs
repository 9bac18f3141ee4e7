//! Emulated devices: the I/O buses, legacy devices (serial, i8042) and virtio-mmio devices.

pub mod bus;
pub mod console;
pub mod i8042;
pub mod repeats;
pub mod serial;
pub mod virtio;
