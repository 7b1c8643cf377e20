//! `ctictl csta decode|encode`: the CSTA XML codec on the command line (owned by the codec
//! engineer).
//!
//! * `decode FILE` — one CSTA XML document (no frame header; `-` = stdin) → one JSON line
//!   (`ctid_csta::json::to_json`: `"message"` is the root's local name). Exit 1 with a one-line
//!   error on stderr if the document does not decode.
//! * `encode FILE.json [--edition ed3|ed4|ed5|ed6] [--frame [--invoke-id N]]` — the JSON form
//!   back to an XML document (default ed3), or with `--frame` the whole 8-byte-header frame as
//!   one line of hex (invoke ID default: 9999 for events, 0001 otherwise). Exit 1 with a
//!   one-line error if the JSON does not describe a message.
//!
//! Usage errors exit 2.

use std::io::{Read, Write};

use anyhow::Context;
use ctid_csta::frame::encode_frame;
use ctid_csta::{decode, encode, json, Edition, InvokeId, MessageKind};

const USAGE: &str = "usage: ctictl csta decode FILE.xml | ctictl csta encode FILE.json [--edition ed3|ed4|ed5|ed6] [--frame [--invoke-id N]]   (FILE '-' = stdin)";

/// Run `ctictl csta ARGS…`; returns the exit status.
pub fn run(args: &[String]) -> anyhow::Result<i32> {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(2);
    };
    match cmd.as_str() {
        "decode" => decode_cmd(rest),
        "encode" => encode_cmd(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => {
            eprintln!("ctictl csta: unknown command {other:?}; {USAGE}");
            Ok(2)
        }
    }
}

/// Print a one-line error for `what` and give exit status 1.
fn fail(what: &str, file: &str, e: impl std::fmt::Display) -> i32 {
    let msg = e.to_string().replace(['\n', '\r'], " ");
    eprintln!("ctictl csta {what}: {file}: {msg}");
    1
}

fn read_input(file: &str) -> anyhow::Result<Vec<u8>> {
    if file == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading stdin")?;
        Ok(v)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {file}"))
    }
}

fn decode_cmd(args: &[String]) -> anyhow::Result<i32> {
    let [file] = args else {
        eprintln!("ctictl csta decode: expected one FILE; {USAGE}");
        return Ok(2);
    };
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(e) => return Ok(fail("decode", file, format!("{e:#}"))),
    };
    match decode(&bytes) {
        Ok(msg) => {
            let line = json::to_json(&msg).to_string();
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            Ok(0)
        }
        Err(e) => Ok(fail("decode", file, e)),
    }
}

struct EncodeArgs {
    file: String,
    edition: Edition,
    frame: bool,
    invoke_id: Option<InvokeId>,
}

fn parse_encode_args(args: &[String]) -> Result<EncodeArgs, String> {
    let mut file = None;
    let mut edition = Edition::Ed3;
    let mut frame = false;
    let mut invoke_id = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match key {
            "--edition" => {
                let v = value("--edition")?;
                edition = Edition::parse(&v)
                    .ok_or_else(|| format!("--edition {v:?}: expected ed3, ed4, ed5 or ed6"))?;
            }
            "--frame" => frame = true,
            "--invoke-id" => {
                let v = value("--invoke-id")?;
                let id = v
                    .parse::<u16>()
                    .ok()
                    .and_then(InvokeId::new)
                    .ok_or_else(|| format!("--invoke-id {v:?}: expected 0 to 9999"))?;
                invoke_id = Some(id);
            }
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            _ if file.is_none() => file = Some(a.clone()),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if invoke_id.is_some() && !frame {
        return Err("--invoke-id goes with --frame".into());
    }
    Ok(EncodeArgs {
        file: file.ok_or("expected FILE.json")?,
        edition,
        frame,
        invoke_id,
    })
}

fn encode_cmd(args: &[String]) -> anyhow::Result<i32> {
    let a = match parse_encode_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ctictl csta encode: {e}; {USAGE}");
            return Ok(2);
        }
    };
    let bytes = match read_input(&a.file) {
        Ok(b) => b,
        Err(e) => return Ok(fail("encode", &a.file, format!("{e:#}"))),
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return Ok(fail("encode", &a.file, format!("invalid JSON: {e}"))),
    };
    let msg = match json::from_json(&value) {
        Ok(m) => m,
        Err(e) => return Ok(fail("encode", &a.file, e)),
    };
    let xml = match encode(&msg, a.edition) {
        Ok(x) => x,
        Err(e) => return Ok(fail("encode", &a.file, e)),
    };
    let mut out = std::io::stdout().lock();
    if a.frame {
        let id = a.invoke_id.unwrap_or(match msg.kind() {
            MessageKind::Event => InvokeId::EVENT,
            _ => InvokeId::new(1).expect("1 is an invoke ID"),
        });
        // (a bytes::BytesMut, by inference: ctid-client does not depend on bytes itself)
        let mut buf = Default::default();
        if let Err(e) = encode_frame(id, &xml, &mut buf) {
            return Ok(fail("encode", &a.file, e));
        }
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{hex}")?;
    } else {
        out.write_all(&xml)?;
        writeln!(out)?;
    }
    Ok(0)
}
