//! Entry points of the fuzz targets, shared with `crates/engine/tests/fuzz_corpus.rs` (which
//! includes `entry.rs` by path, so CI replays the corpus on stable without a fuzzer).
pub mod entry;
