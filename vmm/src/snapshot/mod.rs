//! Snapshots: the state file format, crash-safe snapshot directories, sparse memory files and
//! the `Persist` contract devices follow.

pub mod format;
pub mod memory_file;
pub mod persist;
pub mod state;
pub mod store;
pub mod working_set;
