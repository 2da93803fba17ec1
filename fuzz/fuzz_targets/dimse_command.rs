//! cargo-fuzz target: firstlook::fuzzing::dimse_command (see daemon/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    firstlook::fuzzing::dimse_command(data);
});
