//! The phantom generator's tests, in one test binary.

mod study;
mod training;
