//! cargo-fuzz target: firstlook::fuzzing::dataset (see daemon/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    firstlook::fuzzing::dataset(data);
});
