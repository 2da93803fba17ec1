//! cargo-fuzz target: firstlook::fuzzing::panel_request (see daemon/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    firstlook::fuzzing::panel_request(data);
});
