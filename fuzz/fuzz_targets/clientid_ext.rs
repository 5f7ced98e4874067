// What this target runs: iotsafe_dane::fuzzing::clientid_ext (shared with tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iotsafe_dane::fuzzing::clientid_ext(data));
