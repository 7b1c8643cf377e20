//! Replays the fuzz corpus (crates/protocol/fuzz/corpus/request/) through the same entry function
//! the fuzz target calls, so CI checks every input the fuzzer kept, on stable, without a fuzzer.
//! Files named `finding-*` are inputs that once failed (see crates/protocol/fuzz/README.md).

#[path = "../fuzz/src/entry.rs"]
mod entry;

use std::path::PathBuf;

#[test]
fn request_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 100, "the request corpus went missing");
    let mut failed = Vec::new();
    for p in &files {
        let data = std::fs::read(p).unwrap();
        if std::panic::catch_unwind(|| entry::request(&data)).is_err() {
            failed.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(failed.is_empty(), "failing inputs {failed:?}");
}

#[test]
fn the_entry_function_can_fail() {
    // A replay that cannot fail is no test: a request the decoder could never have accepted
    // (no ReferenceID) must fail the check.
    let bad = std::panic::catch_unwind(|| {
        entry::check_request(&ctid_protocol::Request::new(
            ctid_protocol::RequestName::RequestQueryServer,
        ))
    });
    assert!(bad.is_err());
}
