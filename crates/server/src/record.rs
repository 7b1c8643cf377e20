//! `record-inputs`: the engine's inputs and outputs written to a file as JSON lines, so that
//! `ctid-replay` can feed the same inputs, at the same times, to a fresh engine and compare what
//! comes out (a field bug becomes a test; an engine rewrite proves its outputs unchanged).
//!
//! The file (docs/operations.md, "Recording and replay"):
//!
//! ```text
//! {"ctid_recording":1,"ctid_version":"0.1.0","config":{…EngineConfig::to_json()}}
//! {"t":[mono_ms,unix_micros],"in":"ClientRequest","client":3,"request":{…}}
//! {"out":"CstaRequest","invoke_id":12,"message":{…}}
//! {"out":"Event","to":[3],"event":{…}}
//! {"t":[…],"in":"CstaAnswer",…}
//! ```
//!
//! One line per `engine.handle` call (its time and input), written before the engine sees the
//! input, then one line per output that call appended, written when it returns. Each line reaches
//! the file with one `write` (no user-space buffer), so a crash loses at most the line being
//! written, and an input that crashes the engine is the last line of the file. A write error is
//! logged once and counted (`ctid_record_errors_total`); recording stops, serving goes on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ctid_engine::{EngineConfig, Input, Now, Output};
use tracing::{error, info};

use crate::metrics::Metrics;

/// The recording format written in the header (`"ctid_recording":1`).
pub const FORMAT: u64 = 1;

/// Writes a recording; see the module documentation.
pub struct Recorder {
    path: PathBuf,
    /// `None` once a write failed: recording stopped.
    file: Option<File>,
    /// The line being built (reused).
    buf: Vec<u8>,
    metrics: Metrics,
}

impl Recorder {
    /// Create (or truncate) `path` and write the header with the engine's starting configuration.
    pub fn create(path: &Path, config: &EngineConfig, metrics: Metrics) -> std::io::Result<Self> {
        let mut file = File::create(path)?;
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(b"{\"ctid_recording\":");
        buf.extend_from_slice(FORMAT.to_string().as_bytes());
        buf.extend_from_slice(b",\"ctid_version\":");
        serde_json::to_writer(&mut buf, env!("CARGO_PKG_VERSION"))?;
        buf.extend_from_slice(b",\"config\":");
        serde_json::to_writer(&mut buf, &config.to_json())?;
        buf.extend_from_slice(b"}\n");
        file.write_all(&buf)?;
        buf.clear();
        let r = Recorder {
            path: path.to_path_buf(),
            file: Some(file),
            buf,
            metrics,
        };
        r.metrics.recording.set(1);
        info!(file = %path.display(), "recording engine inputs and outputs (record-inputs)");
        Ok(r)
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Still recording (no write has failed)?
    pub fn is_recording(&self) -> bool {
        self.file.is_some()
    }

    /// Write the line of one `engine.handle(now, input, …)` call, before the engine sees it.
    pub fn input(&mut self, now: Now, input: &Input) {
        if self.file.is_none() {
            return;
        }
        // `{"t":…,` then the input's own object without its `{`: the time leads every line.
        self.buf.clear();
        self.buf.extend_from_slice(b"{\"t\":");
        let _ = serde_json::to_writer(&mut self.buf, &now.to_json());
        self.buf.push(b',');
        let start = self.buf.len();
        let _ = serde_json::to_writer(&mut self.buf, &input.to_json());
        // Input::to_json is an object with at least "in": drop its opening brace.
        self.buf.remove(start);
        self.buf.push(b'\n');
        self.flush_line();
    }

    /// Write the lines of the outputs the call appended (`out[from..]` of the caller's buffer).
    pub fn outputs(&mut self, outputs: &[Output]) {
        if self.file.is_none() || outputs.is_empty() {
            return;
        }
        self.buf.clear();
        for o in outputs {
            // `{"out":NAME,` first, then the other keys: the kind leads every output line.
            let mut v = o.to_json();
            let name = v.as_object_mut().and_then(|m| m.remove("out"));
            self.buf.extend_from_slice(b"{\"out\":");
            let _ = serde_json::to_writer(&mut self.buf, &name);
            let start = self.buf.len();
            let _ = serde_json::to_writer(&mut self.buf, &v);
            // The rest of the object: a comma instead of its `{` (it always has more keys).
            if self.buf.get(start + 1) == Some(&b'}') {
                self.buf.truncate(start);
                self.buf.push(b'}');
            } else {
                self.buf[start] = b',';
            }
            self.buf.push(b'\n');
        }
        self.flush_line();
    }

    fn flush_line(&mut self) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(&self.buf) {
            error!(
                file = %self.path.display(),
                error = %e,
                "cannot write the recording (record-inputs): recording stopped, ctid goes on serving"
            );
            self.metrics.record_errors.inc();
            self.metrics.recording.set(0);
            self.file = None;
        }
        self.buf.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.metrics.recording.set(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_input_and_output_lines() {
        let dir = std::env::temp_dir().join(format!("ctid-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.jsonl");
        let metrics = Metrics::default();
        let cfg = EngineConfig::default();
        let mut r = Recorder::create(&path, &cfg, metrics.clone()).unwrap();
        assert_eq!(metrics.recording.get(), 1);
        let now = Now {
            mono_ms: 5,
            unix_micros: 1_700_000_000_000_000,
        };
        r.input(now, &Input::Tick);
        let answer = Output::CstaAnswer {
            invoke_id: ctid_csta::InvokeId::new(7).unwrap(),
            message: ctid_csta::Message::Unknown(ctid_csta::UnknownMessage {
                name: "X".into(),
                xml: "<X/>".into(),
            }),
        };
        r.outputs(std::slice::from_ref(&answer));
        r.input(
            now,
            &Input::ClientConnected {
                client: 1,
                peer: "127.0.0.1:5".into(),
            },
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let head: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(head["ctid_recording"], 1);
        assert_eq!(
            EngineConfig::from_json(&head["config"]).unwrap(),
            cfg,
            "{text}"
        );
        assert!(lines[0].starts_with("{\"ctid_recording\":1,"), "{text}");
        assert_eq!(lines[1], "{\"t\":[5,1700000000000000],\"in\":\"Tick\"}");
        // The output line: its kind first, the same object as Output::to_json otherwise.
        assert!(
            lines[2].starts_with("{\"out\":\"CstaAnswer\",\"invoke_id\":7,"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(v, answer.to_json(), "{text}");
        assert!(lines[3].starts_with("{\"t\":[5,"), "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
        assert_eq!(Now::from_json(&v["t"]).unwrap(), now);
        assert!(matches!(
            Input::from_json(&v).unwrap(),
            Input::ClientConnected { client: 1, .. }
        ));
        drop(r);
        assert_eq!(metrics.recording.get(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A write error stops recording once, is counted, and never panics.
    #[cfg(target_os = "linux")]
    #[test]
    fn write_error_stops_recording() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let metrics = Metrics::default();
        // /dev/full: opening works, every write fails (ENOSPC). The header cannot be written:
        // start-up reports it.
        assert!(Recorder::create(
            Path::new("/dev/full"),
            &EngineConfig::default(),
            metrics.clone()
        )
        .is_err());
        // Start recording to a good file, then make writes fail by swapping the file.
        let dir = std::env::temp_dir().join(format!("ctid-record-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Recorder::create(
            &dir.join("rec.jsonl"),
            &EngineConfig::default(),
            metrics.clone(),
        )
        .unwrap();
        r.file = Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        );
        r.input(Now::default(), &Input::Tick);
        assert!(!r.is_recording());
        r.input(Now::default(), &Input::Tick);
        r.outputs(&[]);
        assert_eq!(metrics.record_errors.get(), 1);
        assert_eq!(metrics.recording.get(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
