//! The container engine of the agent profile: cgroup delegation, then containerd and dockerd
//! as supervised children of PID 1, and the engine's state as reported to the host.

pub mod cgroups;
pub mod docker_api;
pub mod http;
pub mod log_sink;
pub mod monitor;
pub mod startup;
pub mod supervisor;

pub use monitor::EngineMonitor;
pub use startup::{start_engine, EngineConfig};
