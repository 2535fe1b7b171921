//! Fuzz harnesses for batpak; the `cargo fuzz` targets in `fuzz_targets/`
//! call them.
pub mod harness;
