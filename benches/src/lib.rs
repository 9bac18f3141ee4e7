//! Shared helpers for the paddock benchmarks.
