// What this target runs: iotsafe_registry::fuzzing::tsig_key_file (shared with tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iotsafe_registry::fuzzing::tsig_key_file(data));
