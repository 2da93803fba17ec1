//! cargo-fuzz target: firstlook::fuzzing::pdu (see daemon/src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    firstlook::fuzzing::pdu(data);
});
