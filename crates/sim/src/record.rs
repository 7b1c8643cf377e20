//! Record mode (`--record FILE`): every frame in both directions, one JSON object per line,
//! with a wall-clock timestamp, so a session can be replayed in a test:
//!
//! ```json
//! {"t":1764005000.123456,"conn":1,"dir":"in","invoke":"0001","xml":"<?xml …"}
//! {"t":1764005000.124001,"conn":1,"dir":"out","invoke":"9999","xml":"<?xml …"}
//! ```
//! A frame whose header is not a valid 8-byte CSTA header (e.g. an injected malformed frame)
//! is written with `"raw"` = the whole frame in hex instead of `invoke` / `xml`.
//! [`read_recording`] reads such a file back.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Direction of a recorded frame, seen from the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Client → simulator.
    In,
    /// Simulator → client.
    Out,
}

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// Seconds since the Unix epoch.
    pub t: f64,
    /// Connection number (1, 2, … in accept order).
    pub conn: u64,
    pub dir: Dir,
    /// The 4-digit invoke ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke: Option<String>,
    /// The XML document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<String>,
    /// A frame that is not a valid CSTA frame, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl Recorded {
    /// The frame's bytes as they travelled (header included).
    pub fn frame_bytes(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return (0..raw.len() / 2)
                .filter_map(|i| u8::from_str_radix(&raw[2 * i..2 * i + 2], 16).ok())
                .collect();
        }
        let xml = self.xml.as_deref().unwrap_or("").as_bytes();
        let mut v = Vec::with_capacity(8 + xml.len());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&((8 + xml.len()) as u16).to_be_bytes());
        v.extend_from_slice(self.invoke.as_deref().unwrap_or("0000").as_bytes());
        v.extend_from_slice(xml);
        v
    }
}

/// Read a recording written by `--record`.
pub fn read_recording(path: &Path) -> anyhow::Result<Vec<Recorded>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// A handle that queues frames for the recording file's writer task.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Recorded>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Recorder {
    /// Create (truncate) `path` and start its writer task.
    pub fn start(path: &Path) -> anyhow::Result<Recorder> {
        let file = std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("--record {}: {e}", path.display()))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Recorded>();
        std::thread::Builder::new()
            .name("csta-sim-record".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::new(file);
                while let Some(r) = rx.blocking_recv() {
                    if let Ok(line) = serde_json::to_string(&r) {
                        let _ = writeln!(w, "{line}");
                    }
                    if rx.is_empty() {
                        let _ = w.flush();
                    }
                }
                let _ = w.flush();
            })?;
        Ok(Recorder { tx })
    }

    /// Record a whole frame (header + XML).
    pub fn frame(&self, conn: u64, dir: Dir, frame: &Bytes) {
        let valid = frame.len() >= 8
            && frame[0] == 0
            && frame[1] == 0
            && usize::from(u16::from_be_bytes([frame[2], frame[3]])) == frame.len()
            && frame[4..8].iter().all(u8::is_ascii_digit);
        let r = if valid {
            match std::str::from_utf8(&frame[8..]) {
                Ok(xml) => Recorded {
                    t: now(),
                    conn,
                    dir,
                    invoke: Some(String::from_utf8_lossy(&frame[4..8]).into_owned()),
                    xml: Some(xml.to_string()),
                    raw: None,
                },
                Err(_) => self.raw(conn, dir, frame),
            }
        } else {
            self.raw(conn, dir, frame)
        };
        let _ = self.tx.send(r);
    }

    fn raw(&self, conn: u64, dir: Dir, frame: &[u8]) -> Recorded {
        Recorded {
            t: now(),
            conn,
            dir,
            invoke: None,
            xml: None,
            raw: Some(hex(frame)),
        }
    }

    /// Record a decoded frame's invoke ID and XML.
    pub fn xml(&self, conn: u64, dir: Dir, invoke: &str, xml: &[u8]) {
        let r = match std::str::from_utf8(xml) {
            Ok(s) => Recorded {
                t: now(),
                conn,
                dir,
                invoke: Some(invoke.to_string()),
                xml: Some(s.to_string()),
                raw: None,
            },
            Err(_) => {
                let mut f = Vec::with_capacity(8 + xml.len());
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&((8 + xml.len()) as u16).to_be_bytes());
                f.extend_from_slice(invoke.as_bytes());
                f.extend_from_slice(xml);
                self.raw(conn, dir, &f)
            }
        };
        let _ = self.tx.send(r);
    }
}
