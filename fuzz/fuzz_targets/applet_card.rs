// What this target runs: iotsafe_dane::fuzzing::applet_card (shared with tests/fuzz_regressions.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iotsafe_dane::fuzzing::applet_card(data));
