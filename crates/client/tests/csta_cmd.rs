//! `ctictl csta decode|encode`, end to end through the built binary: every fixture of the codec
//! goes decode → JSON → encode (each edition) → decode and gives the same JSON; every malformed
//! document is exit 1 with one line on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ctictl(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctictl"));
    cmd.arg("csta").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("ctictl runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn csta_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../csta/tests")
        .join(name)
}

fn files(name: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(csta_dir(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The one JSON line of a successful decode.
fn json_line(out: &Output, what: &str) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 1, "{what}: not one line: {s}");
    serde_json::from_str(s.trim_end()).unwrap_or_else(|e| panic!("{what}: {e}: {s}"))
}

#[test]
fn every_fixture_round_trips_through_ctictl() {
    let fixtures = files("fixtures");
    assert!(fixtures.len() > 100, "fixtures went missing");
    let dir = std::env::temp_dir().join(format!("ctictl-csta-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let editions = ["ed3", "ed4", "ed5", "ed6"];
    for (i, path) in fixtures.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let json = json_line(&ctictl(&["decode", path.to_str().unwrap()], None), &name);
        let root = json["message"]
            .as_str()
            .expect("a message name")
            .to_string();
        // one edition per fixture (all four across the corpus), through a file or stdin
        let ed = editions[i % editions.len()];
        let json_text = json.to_string();
        let encoded = if i % 2 == 0 {
            let f = dir.join(format!("{i}.json"));
            std::fs::write(&f, &json_text).unwrap();
            ctictl(&["encode", f.to_str().unwrap(), "--edition", ed], None)
        } else {
            ctictl(
                &["encode", "-", "--edition", ed],
                Some(json_text.as_bytes()),
            )
        };
        assert_eq!(
            encoded.status.code(),
            Some(0),
            "{name}: {}",
            text(&encoded.stderr)
        );
        let xml = encoded.stdout;
        assert!(xml.starts_with(b"<?xml"), "{name}: {}", text(&xml));
        let again = json_line(&ctictl(&["decode", "-"], Some(&xml)), &name);
        if json["unknown"] == true {
            // an unknown root travels verbatim (the re-encoded copy has no declaration)
            assert_eq!(again["message"], root, "{name}");
            assert_eq!(again["unknown"], true, "{name}");
        } else {
            assert_eq!(again, json, "{name} via {ed}");
            if !root.contains("ApplicationSession") {
                let ns = format!("csta/{ed}\"");
                assert!(text(&xml).contains(&ns), "{name}: {ns} missing");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn malformed_documents_fail_with_one_line() {
    let malformed = files("malformed");
    assert!(malformed.len() >= 5);
    for path in malformed {
        let out = ctictl(&["decode", path.to_str().unwrap()], None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        assert!(out.stdout.is_empty(), "{}", path.display());
        assert_eq!(err.lines().count(), 1, "{}: {err:?}", path.display());
        assert!(err.starts_with("ctictl csta decode: "), "{err}");
    }
}

#[test]
fn bad_json_fails_with_one_line() {
    for bad in [
        &b"{not json"[..],
        b"[1, 2]",
        b"{\"message\": 7}",
        b"{\"monitorCrossRefID\": \"1\"}",
        b"{\"message\": \"MonitorStop\"}",
        b"{\"message\": \"NoSuchRoot\"}",
        b"{\"message\": \"DeliveredEvent\", \"monitorCrossRefID\": \"1\", \"connection\": 5}",
    ] {
        let out = ctictl(&["encode", "-"], Some(bad));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", text(bad));
        assert!(out.stdout.is_empty());
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.starts_with("ctictl csta encode: -: "), "{err}");
    }
}

#[test]
fn encode_frame_prints_the_header_and_document_as_hex() {
    // csta-xml.md §1.2: SystemStatusResponse answering invoke ID 7 is 140 bytes framed
    let out = ctictl(
        &["encode", "-", "--frame", "--invoke-id", "7"],
        Some(br#"{"message":"SystemStatusResponse"}"#),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hex = text(&out.stdout);
    let hex = hex.trim_end();
    assert!(hex.starts_with("0000008c30303037"), "{hex}");
    assert_eq!(hex.len(), 140 * 2);
    // events default to 9999
    let out = ctictl(
        &["encode", "-", "--frame", "--edition=ed5"],
        Some(br#"{"message":"MonitorStopResponse"}"#),
    );
    assert!(text(&out.stdout).starts_with("0000"));
    let out = ctictl(
        &["encode", "-", "--frame"],
        Some(br#"{"message":"CallClearedEvent","monitorCrossRefID":"1","clearedCall":{"callID":"C1"}}"#),
    );
    assert_eq!(&text(&out.stdout)[8..16], "39393939");
}

#[test]
fn usage_errors_exit_2() {
    // No command: clap's help for `ctictl csta`.
    let out = ctictl(&[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("Usage: ctictl csta"),
        "{}",
        text(&out.stderr)
    );
    for (args, says) in [
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (&["decode"], "<FILE.xml>"),
        (&["decode", "a", "b"], "unexpected argument 'b'"),
        (&["encode"], "<FILE.json>"),
        (
            &["encode", "x.json", "--edition", "ed7"],
            "[possible values: ed3, ed4, ed5, ed6]",
        ),
        (&["encode", "x.json", "--invoke-id", "3"], "--frame"),
        (
            &["encode", "x.json", "--frame", "--invoke-id", "10000"],
            "expected 0 to 9999",
        ),
    ] {
        let out = ctictl(args, None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = ctictl(&["decode", "/nonexistent/file.xml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn help_exits_0() {
    for args in [&["--help"][..], &["help"], &["encode", "--help"]] {
        let out = ctictl(args, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        assert!(help.contains("Usage: ctictl csta"), "{args:?}: {help}");
    }
    let help = text(&ctictl(&["encode", "--help"], None).stdout);
    for flag in [
        "--edition",
        "--frame",
        "--invoke-id <N>",
        "ed3, ed4, ed5, ed6",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}
