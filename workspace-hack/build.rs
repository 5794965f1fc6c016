//! Empty: a build script makes Cargo resolve this crate's build-dependencies (see Cargo.toml).
fn main() {}
