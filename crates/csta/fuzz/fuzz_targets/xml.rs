#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctid_csta_fuzz::entry::xml(data));
