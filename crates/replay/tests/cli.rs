//! `ctid-replay` as a program, on the committed demo recording and on copies of it with one thing
//! changed: what it prints and its exit code (0 no difference, 1 differences, 2 unreadable).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn recording() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recordings/demo-hotdesk-calls.jsonl");
    std::fs::read_to_string(p).unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctid-replay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file removed when dropped.
struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

/// A copy of the recording with its lines edited by `edit`, in a file of its own.
fn variant(name: &str, edit: impl FnOnce(&mut Vec<String>)) -> Tmp {
    let mut lines: Vec<String> = recording().lines().map(str::to_string).collect();
    edit(&mut lines);
    let p = std::env::temp_dir().join(format!("ctid-replay-cli-{}-{name}", std::process::id()));
    let mut text = lines.join("\n");
    if !name.contains("cut") {
        text.push('\n');
    }
    std::fs::write(&p, text).unwrap();
    Tmp(p)
}

fn is_output(l: &str) -> bool {
    l.starts_with("{\"out\":")
}

/// The index of the `n`th output line that follows an input line directly (0-based `n`).
fn nth_output(lines: &[String], n: usize) -> usize {
    (1..lines.len())
        .filter(|&i| is_output(&lines[i]))
        .nth(n)
        .unwrap()
}

fn summary(out: &str) -> &str {
    out.lines().last().unwrap_or("")
}

#[test]
fn the_recording_replays_cleanly_and_until_stops_early() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recordings/demo-hotdesk-calls.jsonl");
    let f = file.to_str().unwrap();
    let (rc, out, err) = run(&[f]);
    assert_eq!(rc, 0, "{out}{err}");
    let text = recording();
    let inputs = text.lines().filter(|l| l.starts_with("{\"t\":")).count();
    let outputs = text.lines().filter(|l| is_output(l)).count();
    assert_eq!(
        out,
        format!("replayed {inputs} inputs, {outputs} outputs, 0 differences\n")
    );

    let (rc, out, _) = run(&["--until", "10", f]);
    assert_eq!(rc, 0);
    assert!(summary(&out).starts_with("replayed 10 inputs, "), "{out}");

    let (rc, out, _) = run(&["--print", "--until", "2", f]);
    assert_eq!(rc, 0);
    let first: Vec<&str> = out.lines().take(2).collect();
    assert!(first[0].starts_with("in  #1 {\"t\":"), "{out}");
    assert!(first[1].starts_with("out #1 {\"out\":"), "{out}");
    assert!(out.contains("\nin  #2 "), "{out}");
    assert!(!out.contains("\nin  #3 "), "{out}");
}

#[test]
fn a_changed_missing_or_extra_output_is_one_difference() {
    let changed = variant("changed.jsonl", |ls| {
        let i = nth_output(ls, 5);
        let mut v: Value = serde_json::from_str(&ls[i]).unwrap();
        v["extra_key"] = Value::from(1);
        ls[i] = v.to_string();
    });
    let (rc, out, _) = run(&[changed.to_str().unwrap()]);
    assert_eq!(rc, 1, "{out}");
    assert!(summary(&out).ends_with(" outputs, 1 differences"), "{out}");
    assert!(out.contains("differs\n  input:    {\"t\":"), "{out}");
    assert!(out.contains("\n  expected: {"), "{out}");
    assert!(out.contains("\n  got:      {"), "{out}");
    assert!(out.contains("first difference at character"), "{out}");

    let missing = variant("missing.jsonl", |ls| {
        let i = nth_output(ls, 7);
        ls.remove(i);
    });
    let (rc, out, _) = run(&[missing.to_str().unwrap()]);
    assert_eq!(rc, 1, "{out}");
    assert!(summary(&out).ends_with(" outputs, 1 differences"), "{out}");
    assert!(out.contains("extra in the replay"), "{out}");

    let extra = variant("extra.jsonl", |ls| {
        let i = nth_output(ls, 7);
        let dup = ls[i].clone();
        ls.insert(i, dup);
    });
    let (rc, out, _) = run(&[extra.to_str().unwrap()]);
    assert_eq!(rc, 1, "{out}");
    assert!(summary(&out).ends_with(" outputs, 1 differences"), "{out}");
    assert!(out.contains("missing in the replay"), "{out}");
    assert!(out.contains("\n  got:      (no output)"), "{out}");
}

#[test]
fn a_last_line_cut_short_is_tolerated_with_a_note() {
    let cut = variant("cut.jsonl", |ls| {
        let last = ls.last_mut().unwrap();
        last.truncate(last.len() / 2);
    });
    let (rc, out, err) = run(&[cut.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.starts_with("note: line "), "{out}");
    assert!(out.contains("cut short"), "{out}");
    assert!(summary(&out).ends_with(", 0 differences"), "{out}");
}

#[test]
fn unreadable_files_exit_2_naming_the_line() {
    let (rc, out, err) = run(&["/nonexistent/recording.jsonl"]);
    assert_eq!((rc, out.as_str()), (2, ""));
    assert!(
        err.starts_with("ctid-replay: /nonexistent/recording.jsonl: "),
        "{err}"
    );

    type Edit = Box<dyn FnOnce(&mut Vec<String>)>;
    let cases: [(&str, Edit, &str); 5] = [
        (
            "header.jsonl",
            Box::new(|ls: &mut Vec<String>| ls[0] = "{\"hello\":1}".into()),
            "line 1: not a ctid recording header: no \"ctid_recording\" key",
        ),
        (
            "newer.jsonl",
            Box::new(|ls: &mut Vec<String>| {
                ls[0] = ls[0].replace("\"ctid_recording\":1", "\"ctid_recording\":2")
            }),
            "line 1: not a ctid recording header: format 2 is newer",
        ),
        (
            "garbage.jsonl",
            Box::new(|ls: &mut Vec<String>| ls[4] = "{\"t\":[1,2],\"in\":".into()),
            "line 5: not JSON",
        ),
        (
            "unknown.jsonl",
            Box::new(|ls: &mut Vec<String>| ls[4] = "{\"t\":[1,2],\"in\":\"Teleport\"}".into()),
            "line 5: unknown input \"Teleport\"",
        ),
        (
            "orphan.jsonl",
            Box::new(|ls: &mut Vec<String>| {
                let o = ls[nth_output(ls, 0)].clone();
                ls.insert(1, o);
            }),
            "line 2: an output before any input",
        ),
    ];
    for (name, edit, want) in cases {
        let f = variant(name, edit);
        let (rc, out, err) = run(&[f.to_str().unwrap()]);
        assert_eq!(rc, 2, "{name}: {out}{err}");
        assert!(err.contains(want), "{name}: {err}");
    }
}

/// `--write OUT`: the same header and inputs with this engine's outputs, byte for byte what the
/// recorder writes (so rewriting a changed copy gives back the recording).
#[test]
fn write_makes_a_recording_of_this_engines_outputs() {
    let changed = variant("to-rewrite.jsonl", |ls| {
        let i = nth_output(ls, 3);
        let mut v: Value = serde_json::from_str(&ls[i]).unwrap();
        v["extra_key"] = Value::from(1);
        ls[i] = v.to_string();
    });
    let out_file = Tmp(changed.with_file_name(format!(
        "ctid-replay-cli-{}-rewritten.jsonl",
        std::process::id()
    )));
    let (rc, out, err) = run(&[
        "--write",
        out_file.to_str().unwrap(),
        changed.to_str().unwrap(),
    ]);
    assert_eq!(rc, 1, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&*out_file).unwrap(), recording());
    let (rc, out, _) = run(&[out_file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
}
