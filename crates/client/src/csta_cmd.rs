//! `ctictl csta decode|encode`: the CSTA XML codec on the command line (owned by the codec
//! engineer). Arguments are parsed by clap ([`Csta`], a subcommand of `ctictl`).
//!
//! * `decode FILE` — one CSTA XML document (no frame header; `-` = stdin) → one JSON line
//!   (`ctid_csta::json::to_json`: `"message"` is the root's local name). Exit 1 with a one-line
//!   error on stderr if the document does not decode.
//! * `encode FILE.json [--edition ed3|ed4|ed5|ed6] [--frame [--invoke-id N]]` — the JSON form
//!   back to an XML document (default ed3), or with `--frame` the whole 8-byte-header frame as
//!   one line of hex (invoke ID default: 9999 for events, 0001 otherwise). Exit 1 with a
//!   one-line error if the JSON does not describe a message.
//!
//! Usage errors exit 2 (clap).

use std::io::{Read, Write};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use ctid_csta::frame::encode_frame;
use ctid_csta::{decode, encode, json, Edition, InvokeId, MessageKind};

/// `ctictl csta …`.
#[derive(Subcommand, Debug)]
pub enum Csta {
    /// Decode one CSTA XML document (no frame header) to one line of JSON.
    ///
    /// `"message"` is the root's local name. Exit 1 with a one-line error if the document does
    /// not decode.
    Decode {
        /// The XML document; `-` reads stdin.
        #[arg(value_name = "FILE.xml")]
        file: String,
    },
    /// Encode a message's JSON (as `decode` prints it) to an XML document, or to a frame in hex.
    ///
    /// Exit 1 with a one-line error if the JSON does not describe a message.
    Encode {
        /// The JSON message; `-` reads stdin.
        #[arg(value_name = "FILE.json")]
        file: String,
        /// ECMA-323 edition (namespace) of the document.
        #[arg(long, value_enum, default_value_t = EditionArg::Ed3)]
        edition: EditionArg,
        /// Print the frame (8-byte header and document) as hex instead of the document.
        #[arg(long)]
        frame: bool,
        /// Invoke ID of the frame, 0 to 9999 (default: 9999 for events, 0001 otherwise).
        #[arg(long, value_name = "N", requires = "frame", value_parser = parse_invoke_id)]
        invoke_id: Option<InvokeId>,
    },
}

/// `--edition`: the editions of [`Edition`] by their short names.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EditionArg {
    Ed3,
    Ed4,
    Ed5,
    Ed6,
}

impl From<EditionArg> for Edition {
    fn from(e: EditionArg) -> Edition {
        match e {
            EditionArg::Ed3 => Edition::Ed3,
            EditionArg::Ed4 => Edition::Ed4,
            EditionArg::Ed5 => Edition::Ed5,
            EditionArg::Ed6 => Edition::Ed6,
        }
    }
}

fn parse_invoke_id(v: &str) -> Result<InvokeId, String> {
    v.parse::<u16>()
        .ok()
        .and_then(InvokeId::new)
        .ok_or_else(|| "expected 0 to 9999".to_string())
}

/// Run `ctictl csta …`; returns the exit status.
pub fn run(cmd: &Csta) -> anyhow::Result<i32> {
    match cmd {
        Csta::Decode { file } => decode_cmd(file),
        Csta::Encode {
            file,
            edition,
            frame,
            invoke_id,
        } => encode_cmd(file, (*edition).into(), *frame, *invoke_id),
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

fn decode_cmd(file: &str) -> anyhow::Result<i32> {
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

fn encode_cmd(
    file: &str,
    edition: Edition,
    frame: bool,
    invoke_id: Option<InvokeId>,
) -> anyhow::Result<i32> {
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(e) => return Ok(fail("encode", file, format!("{e:#}"))),
    };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return Ok(fail("encode", file, format!("invalid JSON: {e}"))),
    };
    let msg = match json::from_json(&value) {
        Ok(m) => m,
        Err(e) => return Ok(fail("encode", file, e)),
    };
    let xml = match encode(&msg, edition) {
        Ok(x) => x,
        Err(e) => return Ok(fail("encode", file, e)),
    };
    let mut out = std::io::stdout().lock();
    if frame {
        let id = invoke_id.unwrap_or(match msg.kind() {
            MessageKind::Event => InvokeId::EVENT,
            _ => InvokeId::new(1).expect("1 is an invoke ID"),
        });
        // (a bytes::BytesMut, by inference: ctid-client does not depend on bytes itself)
        let mut buf = Default::default();
        if let Err(e) = encode_frame(id, &xml, &mut buf) {
            return Ok(fail("encode", file, e));
        }
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{hex}")?;
    } else {
        out.write_all(&xml)?;
        writeln!(out)?;
    }
    Ok(0)
}
