//! Every recording in `tests/recordings/*.jsonl` replays with no difference: each is a session
//! whose engine outputs must not change (a field bug, a demo session). To add one, copy a file
//! written by `ctid --record-inputs FILE` here (docs/operations.md, "Recording and replay").

use std::path::PathBuf;

#[test]
fn every_recording_replays_without_differences() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/recordings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no recording in {}", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let report = ctid_replay::replay_file(f, &ctid_replay::Options::default(), |_| {})
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(report.inputs > 0, "{}: no input", f.display());
        eprintln!("{}: {}", f.display(), report.summary());
        if report.differences > 0 {
            let shown: Vec<String> = report.shown.iter().map(|d| d.to_string()).collect();
            failed.push(format!(
                "{}: {}\n{}",
                f.display(),
                report.summary(),
                shown.join("\n")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
