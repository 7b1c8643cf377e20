//! ctid-replay: read a recording written by `ctid --record-inputs` (or `record-inputs` in
//! ctid.toml), build a fresh engine from its header, feed it every recorded input with its
//! recorded time, and compare each output's JSON text with the recorded one, in order. A missing
//! or an extra output is a difference too. docs/operations.md, "Recording and replay".
//!
//! The file is JSON lines: a header `{"ctid_recording":1,"ctid_version":…,"config":…}`, then for
//! every `engine.handle` call one input line `{"t":[mono_ms,unix_micros],"in":NAME,…}` followed by
//! one line per output it produced (`{"out":…}`). A last line cut short (ctid crashed while
//! writing it) is ignored with a note, and the input before it may then lack outputs at the end.
//!
//! No tokio, no sockets: the engine is sans-IO, so a replay is a loop.
#![deny(unsafe_code)]

use std::fmt;
use std::io::BufRead;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ctid_engine::{Engine, EngineConfig, Input, Now, Output};
use serde_json::Value;

/// The recording format this replayer reads (`"ctid_recording":1`).
pub const FORMAT: u64 = 1;

/// The recording's first line.
#[derive(Debug, Clone)]
pub struct Header {
    /// The version of ctid that wrote it.
    pub ctid_version: String,
    /// The engine's configuration at start (later changes are `Reconfigure` inputs).
    pub config: EngineConfig,
}

/// A recording that cannot be read: the replay stops (exit code 2).
#[derive(Debug)]
pub enum ReadError {
    /// The file cannot be opened or read.
    Io { what: String, error: std::io::Error },
    /// The first line is not a recording header.
    Header(String),
    /// Line `line` (from 1) is not a recording line.
    Line { line: usize, message: String },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { what, error } => write!(f, "{what}: {error}"),
            ReadError::Header(m) => write!(f, "line 1: not a ctid recording header: {m}"),
            ReadError::Line { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// How to replay.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this input (numbered from 1).
    pub until: Option<u64>,
    /// Keep the details of at most this many differences (all are counted).
    pub keep: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            until: None,
            keep: 10,
        }
    }
}

/// One output that is not as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The input that produced it (from 1).
    pub input: u64,
    /// The input's line in the file.
    pub line: usize,
    /// The input's line as recorded.
    pub input_text: String,
    /// Its place among the input's outputs (from 1): the recorded one's, or the replayed one's
    /// for an extra output.
    pub output: usize,
    /// The recorded output (`None`: the replay produced one more).
    pub expected: Option<String>,
    /// The replayed output (`None`: the replay produced one fewer).
    pub got: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "input {} (line {}), output {}: {}",
            self.input,
            self.line,
            self.output,
            match (&self.expected, &self.got) {
                (Some(_), Some(_)) => "differs",
                (Some(_), None) => "missing in the replay",
                (None, Some(_)) => "extra in the replay",
                (None, None) => "",
            }
        )?;
        writeln!(f, "  input:    {}", clip(&self.input_text, 400))?;
        let none = "(no output)".to_string();
        let e = self.expected.as_ref().unwrap_or(&none);
        let g = self.got.as_ref().unwrap_or(&none);
        writeln!(f, "  expected: {e}")?;
        write!(f, "  got:      {g}")?;
        if let (Some(e), Some(g)) = (&self.expected, &self.got) {
            let at = e
                .char_indices()
                .zip(g.chars())
                .find(|((_, a), b)| a != b)
                .map(|((i, _), _)| i)
                .unwrap_or(e.len().min(g.len()));
            let from = floor_char(e, at.saturating_sub(40));
            write!(
                f,
                "\n  first difference at character {at}:\n    expected …{}\n    got      …{}",
                clip(&e[from..], 80 + at - from),
                clip(&g[floor_char(g, from)..], 80 + at - from)
            )?;
        }
        Ok(())
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        format!("{}…", &s[..floor_char(s, n)])
    }
}

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs fed to the engine.
    pub inputs: u64,
    /// Outputs the engine produced.
    pub outputs: u64,
    /// Outputs in the recording (for the inputs fed).
    pub recorded_outputs: u64,
    /// Outputs that differ, are missing or are extra.
    pub differences: u64,
    /// The first differences, in order (at most [`Options::keep`]).
    pub shown: Vec<Difference>,
    /// Things worth saying that are not differences (a cut-short last line, …).
    pub notes: Vec<String>,
}

impl Report {
    /// The closing line: `replayed N inputs, M outputs, D differences`.
    pub fn summary(&self) -> String {
        format!(
            "replayed {} inputs, {} outputs, {} differences",
            self.inputs, self.outputs, self.differences
        )
    }
}

/// One input as replayed (for `--print`).
#[derive(Debug)]
pub struct Step<'a> {
    /// From 1.
    pub number: u64,
    /// Its line in the file.
    pub line: usize,
    /// The input's line as recorded.
    pub input_text: &'a str,
    /// The outputs the engine produced, as JSON text.
    pub got: &'a [String],
}

/// Parse a header line.
pub fn parse_header(text: &str) -> Result<Header, ReadError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| ReadError::Header(format!("not JSON ({e})")))?;
    let format = v
        .get("ctid_recording")
        .ok_or_else(|| ReadError::Header("no \"ctid_recording\" key".into()))?;
    match format.as_u64() {
        Some(FORMAT) => {}
        Some(n) if n > FORMAT => {
            return Err(ReadError::Header(format!(
                "format {n} is newer than this ctid-replay reads ({FORMAT})"
            )))
        }
        _ => {
            return Err(ReadError::Header(format!(
                "\"ctid_recording\" is {format}, expected {FORMAT}"
            )))
        }
    }
    let config = EngineConfig::from_json(
        v.get("config")
            .ok_or_else(|| ReadError::Header("no \"config\" key".into()))?,
    )
    .map_err(|e| ReadError::Header(e.to_string()))?;
    Ok(Header {
        ctid_version: v
            .get("ctid_version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
        config,
    })
}

/// The JSON text an output is compared by: [`Output::to_json`] written as the recorder writes
/// it, `{"out":NAME,` then the other keys (sorted, compact).
pub fn output_text(o: &Output) -> String {
    output_line(o.to_json())
}

/// An output's JSON object as a line of text: `"out"` first, then the other keys.
pub fn output_line(v: Value) -> String {
    let Value::Object(mut m) = v else {
        return v.to_string();
    };
    let Some(name) = m.remove("out") else {
        return Value::Object(m).to_string();
    };
    let rest = Value::Object(m).to_string();
    if rest == "{}" {
        format!("{{\"out\":{name}}}")
    } else {
        format!("{{\"out\":{name},{}", &rest[1..])
    }
}

/// Replay the recording in `path`.
pub fn replay_file(
    path: &Path,
    opts: &Options,
    on_step: impl FnMut(&Step),
) -> Result<Report, ReadError> {
    let f = std::fs::File::open(path).map_err(|error| ReadError::Io {
        what: path.display().to_string(),
        error,
    })?;
    replay(std::io::BufReader::new(f), opts, on_step)
}

/// An input read, waiting for its outputs.
struct Pending {
    number: u64,
    line: usize,
    now: Now,
    input: Input,
    text: String,
    expected: Vec<String>,
}

/// Replay a recording read from `reader`; `on_step` sees every input with the outputs the engine
/// produced for it.
pub fn replay<R: BufRead>(
    mut reader: R,
    opts: &Options,
    mut on_step: impl FnMut(&Step),
) -> Result<Report, ReadError> {
    let mut raw = String::new();
    let mut line_no = 0usize;
    let mut read_line = |raw: &mut String, line_no: &mut usize| -> Result<bool, ReadError> {
        raw.clear();
        *line_no += 1;
        match reader.read_line(raw) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(ReadError::Line {
                line: *line_no,
                message: format!("cannot read: {e}"),
            }),
        }
    };
    if !read_line(&mut raw, &mut line_no)? {
        return Err(ReadError::Header("the file is empty".into()));
    }
    let header = parse_header(raw.trim_end())?;
    let mut engine = Engine::new(header.config);
    let mut report = Report::default();
    let mut pending: Option<Pending> = None;
    let mut cut_short = false;
    let mut number = 0u64;
    let mut stopped = false;
    while read_line(&mut raw, &mut line_no)? {
        let complete = raw.ends_with('\n');
        let text = raw.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) if !complete => {
                report.notes.push(format!(
                    "line {line_no} is cut short (the recording ended in the middle of it: ctid \
                     stopped while writing); it is ignored, and the outputs of input {number} are \
                     compared only as far as they were recorded"
                ));
                cut_short = true;
                break;
            }
            Err(e) => {
                return Err(ReadError::Line {
                    line: line_no,
                    message: format!("not JSON ({e})"),
                })
            }
        };
        if v.get("in").is_some() {
            if let Some(p) = pending.take() {
                run(&mut engine, p, false, opts, &mut report, &mut on_step);
                if report_stopped(&report) {
                    stopped = true;
                    break;
                }
            }
            if opts.until.is_some_and(|u| number >= u) {
                stopped = true;
                break;
            }
            let bad = |message: String| ReadError::Line {
                line: line_no,
                message,
            };
            let now = Now::from_json(
                v.get("t")
                    .ok_or_else(|| bad("an input without its time \"t\"".into()))?,
            )
            .map_err(|e| bad(format!("\"t\": {e}")))?;
            let input = Input::from_json(&v).map_err(|e| bad(e.to_string()))?;
            number += 1;
            pending = Some(Pending {
                number,
                line: line_no,
                now,
                input,
                text: text.to_string(),
                expected: Vec::new(),
            });
        } else if v.get("out").is_some() {
            let Some(p) = pending.as_mut() else {
                return Err(ReadError::Line {
                    line: line_no,
                    message: "an output before any input".into(),
                });
            };
            p.expected.push(output_line(v));
        } else if v.get("ctid_recording").is_some() {
            return Err(ReadError::Line {
                line: line_no,
                message: "a second header (two recordings in one file?)".into(),
            });
        } else {
            return Err(ReadError::Line {
                line: line_no,
                message: "neither an input (\"in\") nor an output (\"out\")".into(),
            });
        }
    }
    if let Some(p) = pending.take() {
        if !stopped {
            run(&mut engine, p, cut_short, opts, &mut report, &mut on_step);
        }
    }
    Ok(report)
}

const PANIC: &str = "the engine panicked: ";

fn report_stopped(r: &Report) -> bool {
    r.shown
        .last()
        .and_then(|d| d.got.as_deref())
        .is_some_and(|g| g.starts_with(PANIC))
}

/// Feed one input and compare.
fn run(
    engine: &mut Engine,
    p: Pending,
    cut_short: bool,
    opts: &Options,
    report: &mut Report,
    on_step: &mut impl FnMut(&Step),
) {
    let mut out = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        engine.handle(p.now, p.input, &mut out);
    }));
    let got: Vec<String> = out.iter().map(output_text).collect();
    report.inputs += 1;
    report.outputs += got.len() as u64;
    report.recorded_outputs += p.expected.len() as u64;
    on_step(&Step {
        number: p.number,
        line: p.line,
        input_text: &p.text,
        got: &got,
    });
    let mut add = |output: usize, expected: Option<&String>, got: Option<&String>| {
        report.differences += 1;
        if report.shown.len() < opts.keep {
            report.shown.push(Difference {
                input: p.number,
                line: p.line,
                input_text: p.text.clone(),
                output,
                expected: expected.cloned(),
                got: got.cloned(),
            });
        }
    };
    if let Err(panic) = result {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let text = format!("{PANIC}{msg}");
        report.differences += 1;
        // Always kept: it ends the replay.
        report.shown.push(Difference {
            input: p.number,
            line: p.line,
            input_text: p.text.clone(),
            output: got.len() + 1,
            expected: p.expected.get(got.len()).cloned(),
            got: Some(text),
        });
        return;
    }
    let got_cmp: &[String] = if cut_short && got.len() > p.expected.len() {
        // The recording ended while this input's outputs were written: compare what is there.
        &got[..p.expected.len()]
    } else {
        &got
    };
    for op in align(&p.expected, got_cmp) {
        match op {
            Op::Same => {}
            Op::Changed(i, j) => add(i + 1, Some(&p.expected[i]), Some(&got_cmp[j])),
            Op::Missing(i) => add(i + 1, Some(&p.expected[i]), None),
            Op::Extra(j) => add(j + 1, None, Some(&got_cmp[j])),
        }
    }
}

/// How the recorded outputs of one input line up with the replayed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    /// Recorded `i` became replayed `j`.
    Changed(usize, usize),
    /// Recorded `i` was not produced.
    Missing(usize),
    /// Replayed `j` was not recorded.
    Extra(usize),
}

/// Line up two output lists: equal outputs are matched in order (longest common subsequence,
/// so one missing output is one difference, not a shift of all that follow); between matches,
/// outputs are paired as changed, the rest are missing or extra.
fn align(exp: &[String], got: &[String]) -> Vec<Op> {
    let pre = exp.iter().zip(got).take_while(|(a, b)| a == b).count();
    let (e, g) = (&exp[pre..], &got[pre..]);
    let suf = e
        .iter()
        .rev()
        .zip(g.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (e, g) = (&e[..e.len() - suf], &g[..g.len() - suf]);
    let mut ops = vec![Op::Same; pre];
    // Matched pairs in the middle, in order.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    if !e.is_empty() && !g.is_empty() && e.len().saturating_mul(g.len()) <= 4_000_000 {
        let (n, m) = (e.len(), g.len());
        // lcs[i][j]: LCS length of e[i..], g[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if e[i] == g[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if e[i] == g[j] {
                pairs.push((i, j));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    pairs.push((e.len(), g.len()));
    let (mut i, mut j) = (0, 0);
    for (pi, pj) in pairs {
        let (a, b) = (pi - i, pj - j);
        for k in 0..a.min(b) {
            ops.push(Op::Changed(pre + i + k, pre + j + k));
        }
        for k in a.min(b)..a {
            ops.push(Op::Missing(pre + i + k));
        }
        for k in a.min(b)..b {
            ops.push(Op::Extra(pre + j + k));
        }
        if pi < e.len() {
            ops.push(Op::Same);
        }
        i = pi + 1;
        j = pj + 1;
    }
    ops.extend(std::iter::repeat_n(Op::Same, suf));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn align_counts_one_difference_per_change() {
        let diffs = |e: &[&str], g: &[&str]| {
            align(&s(e), &s(g))
                .into_iter()
                .filter(|o| *o != Op::Same)
                .collect::<Vec<_>>()
        };
        assert_eq!(diffs(&["a", "b", "c"], &["a", "b", "c"]), vec![]);
        assert_eq!(diffs(&["a", "b", "c"], &["a", "c"]), vec![Op::Missing(1)]);
        assert_eq!(
            diffs(&["a", "b", "c"], &["a", "x", "b", "c"]),
            vec![Op::Extra(1)]
        );
        assert_eq!(
            diffs(&["a", "b", "c"], &["a", "x", "c"]),
            vec![Op::Changed(1, 1)]
        );
        assert_eq!(
            diffs(&["a", "b", "c", "d"], &["b", "a", "d"]),
            vec![Op::Missing(0), Op::Changed(2, 1)]
        );
        assert_eq!(diffs(&[], &["x"]), vec![Op::Extra(0)]);
        assert_eq!(
            diffs(&["x", "y"], &[]),
            vec![Op::Missing(0), Op::Missing(1)]
        );
        assert_eq!(align(&s(&["a", "b"]), &s(&["a", "b"])).len(), 2);
    }
}
