#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctid_protocol_fuzz::entry::request(data));
