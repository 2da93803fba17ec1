//! The daemon's integration tests, one module per area, in one test binary.

mod common;
mod demo;
mod demo_bundle;
mod disk_full;
mod fault_injection;
mod fuzz_corpus;
mod hostile_input;
mod spool_invariants;
