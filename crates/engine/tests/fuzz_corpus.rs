//! Replays the fuzz corpus (crates/engine/fuzz/corpus/sequence/) through the same entry function
//! the fuzz target calls, so CI checks every input the fuzzer kept, on stable, without a fuzzer.
//! Files named `finding-*` are inputs that once failed (see crates/engine/fuzz/README.md).

#[path = "../fuzz/src/entry.rs"]
mod entry;

use std::path::PathBuf;

#[test]
fn sequence_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sequence");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the sequence corpus went missing");
    let mut failed = Vec::new();
    for p in &files {
        let data = std::fs::read(p).unwrap();
        if std::panic::catch_unwind(|| entry::sequence(&data)).is_err() {
            failed.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(failed.is_empty(), "failing inputs {failed:?}");
}
