//! Interoperability with a third-party CSTA implementation: pyssimist (PyPI `pyssimist`,
//! GPL-3.0 — used only as data, installed into a throwaway venv under target/, never copied
//! into this repository). Every message template of its pool must decode with our codec, as
//! written (with its `{placeholders}`) and filled with values; filled, it must survive
//! encode → decode; and its request templates, sent to csta-sim, must be answered positively.
//!
//! Skipped (with a message) when python3 or PyPI is not available.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ctid_csta::*;

fn fill(xml: &str) -> String {
    let values = [
        ("CSTA_CREATE_MONITOR_CROSS_REF_ID", "1"),
        ("CSTA_USE_MONITOR_CROSS_REF_ID", "1"),
        ("alertingDevice", "1002"),
        ("answeringDevice", "1002"),
        ("calledDevice", "1002"),
        ("calledDirectoryNumber", "1002"),
        ("callingDevice", "1001"),
        ("cause", "newCall"),
        ("deviceID", "1001"),
        ("deviceIdentifier", "1002"),
        ("initiatingDevice", "1001"),
        ("localConnectionInfo", "connected"),
        ("networkCalledDevice", "1002"),
        ("networkCallingDevice", "1001"),
        ("numberDialed", "1002"),
        ("reason", "normal"),
        ("releasingDevice", "1001"),
        ("sysStatRegisterID", "ctid"),
        ("systemStatus", "normal"),
        ("user", "1001"),
    ];
    let mut out = xml.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    assert!(
        !out.contains('{'),
        "a placeholder this test does not know: {out}"
    );
    out
}

/// Install pyssimist into target/…/pyssimist-venv; the directory of its template pool.
fn pool() -> Result<PathBuf, String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyssimist-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        let st = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !st.is_ok_and(|s| s.success()) {
            return Err(format!("cannot create a venv with {python}"));
        }
    }
    let site = Command::new(&py)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let site = PathBuf::from(String::from_utf8_lossy(&site.stdout).trim());
    let pool = site.join("csta/CstaPool");
    if !pool.exists() {
        let out = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "--timeout",
                "30",
                "pyssimist",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "pip install pyssimist failed (is PyPI reachable?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if !pool.exists() {
        return Err(format!(
            "pyssimist installed but {} is missing",
            pool.display()
        ));
    }
    Ok(pool)
}

#[tokio::test]
async fn pyssimist_templates_decode_and_are_answered() {
    let pool = match pool() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED pyssimist interop: {e}");
            return;
        }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&pool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "only {} templates in {}",
        files.len(),
        pool.display()
    );
    let mut requests = Vec::new();
    for f in &files {
        let raw = std::fs::read_to_string(f).unwrap();
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let root = stem.split('_').next().unwrap().to_string();
        // as written, placeholders and all
        let m = decode(raw.as_bytes()).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(m.name(), root, "{stem}");
        assert!(!matches!(m, Message::Unknown(_)), "{stem}");
        // filled with values: typed, and stable through encode → decode
        let filled = fill(&raw);
        let d = decode_with(filled.as_bytes(), &CodecOptions::default())
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(
            d.edition,
            if root == "SystemRegisterResponse" {
                None
            } else {
                Some(Edition::Ed4)
            },
            "{stem}"
        );
        for ed in [Edition::Ed3, Edition::Ed4, Edition::Ed6] {
            let again = decode(&encode(&d.message, ed).unwrap()).unwrap();
            assert_eq!(again, d.message, "{stem} via {ed}");
        }
        if d.message.kind() == MessageKind::Request {
            requests.push((stem, d.message));
        }
    }
    // the request templates, as pyssimist's client would send them, against csta-sim
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let order = [
        "SystemRegister",
        "MonitorStart",
        "MakeCall",
        "SnapshotDevice",
        "ClearConnection",
        "SystemStatus",
        "SystemStatus_RegisterID",
    ];
    let names: Vec<&str> = requests.iter().map(|(s, _)| s.as_str()).collect();
    for o in order {
        assert!(
            names.contains(&o),
            "pyssimist has no {o} template (has {names:?})"
        );
    }
    for o in order {
        let msg = requests.iter().find(|(s, _)| s == o).unwrap().1.clone();
        let r = c.request(msg).await;
        assert!(
            !matches!(r, Message::CstaErrorCode(_)),
            "{o}: {}",
            summary(&r)
        );
        assert_eq!(
            r.name(),
            format!("{}Response", o.split('_').next().unwrap()),
            "{o}"
        );
    }
    sim.shutdown().await;
}
