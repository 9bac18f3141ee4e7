//! Snapshots: the state file format, crash-safe snapshot directories and sparse memory files.

pub mod format;
pub mod memory_file;
pub mod state;
pub mod store;
