//! Replay one engine fuzz input and see what it does:
//! `CTID_FUZZ_TRACE=1 cargo run -p ctid-engine --example fuzz_replay -- FILE`
//! (a debugging tool, not a test; CI replays the whole corpus in tests/fuzz_corpus.rs).

#[path = "../fuzz/src/entry.rs"]
mod entry;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: fuzz_replay FILE (set CTID_FUZZ_TRACE=1 to print inputs and outputs)");
        std::process::exit(2);
    };
    match std::fs::read(&path) {
        Ok(data) => entry::sequence(&data),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    }
}
