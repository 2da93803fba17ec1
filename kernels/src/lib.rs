//! Everything that touches pixels and tensors: preprocessing (shared with the
//! training recipe through `firstlook-phantom`) and, with the `tract`
//! feature, the CPU inference engine.
#![forbid(unsafe_code)]

pub mod engine;
pub mod npy;
pub mod preprocess;
