//! The `paddock` command-line interface.
fn main() {}
