//! Replays the fuzz corpus (crates/csta/fuzz/corpus/<target>/) through the same entry functions
//! the fuzz targets call, so CI checks every input the fuzzer kept, on stable, without a fuzzer.
//! Files named `finding-*` are inputs that once failed (see crates/csta/fuzz/README.md).

#[path = "../fuzz/src/entry.rs"]
mod entry;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

fn replay(target: &str, f: fn(&[u8])) {
    let files = corpus(target);
    assert!(files.len() >= 40, "{target} corpus went missing");
    let mut failed = Vec::new();
    for (name, data) in &files {
        if std::panic::catch_unwind(|| f(data)).is_err() {
            failed.push(name.clone());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs {failed:?}");
}

#[test]
fn xml_corpus() {
    replay("xml", entry::xml);
}

#[test]
fn frame_corpus() {
    replay("frame", entry::frame);
}

#[test]
fn fixtures_pass_the_entry_functions() {
    // the corpus was seeded with the fixtures; one added later is checked here too
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        entry::xml(&data);
        let mut framed = vec![7u8];
        let mut b = bytes::BytesMut::new();
        ctid_csta::frame::encode_frame(ctid_csta::InvokeId::EVENT, &data, &mut b).unwrap();
        framed.extend_from_slice(&b);
        framed.extend_from_slice(&b);
        entry::frame(&framed);
    }
}

#[test]
fn the_entry_functions_can_fail() {
    // a replay that cannot fail is no test: a frame whose XML round-trips differently must panic
    let bad = std::panic::catch_unwind(|| {
        entry::check_round_trip(&ctid_csta::Message::MonitorStop(ctid_csta::MonitorStop {
            monitor_cross_ref_id: " padded ".into(),
            extensions: None,
        }))
    });
    assert!(bad.is_err());
}

#[test]
fn findings_decode_to_the_right_values() {
    // Character references are data, and only whitespace around the whole value is trimmed:
    // `a&#32;` is "a" (it used to keep the space and change on re-encoding), and text split by a
    // comment, CDATA or child keeps its inner spaces (each piece used to be trimmed on its own).
    let xref = |doc: &str| match ctid_csta::decode(doc.as_bytes()).unwrap() {
        ctid_csta::Message::MonitorStop(m) => m.monitor_cross_ref_id,
        other => panic!("{other:?}"),
    };
    let doc = |inner: &str| {
        format!("<MonitorStop><monitorCrossRefID>{inner}</monitorCrossRefID></MonitorStop>")
    };
    assert_eq!(xref(&doc("a&#32;")), "a");
    assert_eq!(xref(&doc("&#x9; a b &#10;")), "a b");
    assert_eq!(xref(&doc("a<!-- x --> b")), "a b");
    assert_eq!(xref(&doc("a <![CDATA[<&>]]> b")), "a <&> b");
    assert_eq!(
        xref(&doc("\u{a0}a\u{a0}")),
        "\u{a0}a\u{a0}",
        "NBSP is not XML whitespace"
    );
    let Ok(ctid_csta::Message::DeliveredEvent(d)) = ctid_csta::decode(
        b"<DeliveredEvent><monitorCrossRefID>1</monitorCrossRefID><connection/>\
          <callingDevice>\n  4001&#32;\n</callingDevice></DeliveredEvent>",
    ) else {
        panic!()
    };
    assert_eq!(d.calling_device, Some(ctid_csta::DeviceRef::id("4001")));
}
