#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctid_engine_fuzz::entry::sequence(data));
