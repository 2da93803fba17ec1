//! cargo-fuzz target: firstlook::fuzzing::config (see daemon/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    firstlook::fuzzing::config(data);
});
