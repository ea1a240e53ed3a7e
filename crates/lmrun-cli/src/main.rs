//! The `lmrun` command: a thin layer over the library crates. (Being written.)
fn main() {}
