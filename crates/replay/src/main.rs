//! `ctid-replay FILE`: replay a recording of `ctid --record-inputs` against this build's engine
//! and report every output that differs. Exit 0: no difference; 1: differences; 2: the file
//! cannot be read (missing, bad header, unreadable line). docs/operations.md, "Recording and
//! replay".

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ctid-replay",
    version,
    about = "Replay a ctid recording (record-inputs) and compare every engine output with the recorded one"
)]
struct Args {
    /// The recording (JSON lines, from `ctid --record-inputs FILE`).
    file: PathBuf,
    /// Print each input and the outputs the engine produced for it, as it goes.
    #[arg(long)]
    print: bool,
    /// Stop after input N (inputs are numbered from 1).
    #[arg(long, value_name = "N")]
    until: Option<u64>,
    /// Show the details of at most this many differences (all are counted).
    #[arg(long, value_name = "N", default_value_t = 10)]
    show: usize,
    /// Write a new recording to OUT: the same header and inputs, with the outputs this engine
    /// produced (to accept intended changes of behaviour after reviewing the differences).
    #[arg(long, value_name = "OUT")]
    write: Option<PathBuf>,
}

/// A new recording at `to`, starting with the header line of `from`.
fn start_write(
    from: &std::path::Path,
    to: &std::path::Path,
) -> Result<std::io::BufWriter<std::fs::File>, String> {
    use std::io::BufRead;
    let mut header = String::new();
    std::fs::File::open(from)
        .and_then(|f| std::io::BufReader::new(f).read_line(&mut header))
        .map_err(|e| format!("{}: {e}", from.display()))?;
    let mut w = std::fs::File::create(to)
        .map(std::io::BufWriter::new)
        .map_err(|e| format!("{}: {e}", to.display()))?;
    w.write_all(header.trim_end().as_bytes())
        .and_then(|()| w.write_all(b"\n"))
        .map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(w)
}

fn main() {
    let args = Args::parse();
    let opts = ctid_replay::Options {
        until: args.until,
        keep: args.show,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write = args
        .write
        .as_ref()
        .map(|p| match start_write(&args.file, p) {
            Ok(w) => (p, w),
            Err(e) => {
                eprintln!("ctid-replay: {}: {e}", p.display());
                std::process::exit(2);
            }
        });
    let mut write_error = None;
    let result = ctid_replay::replay_file(&args.file, &opts, |step| {
        if args.print {
            let _ = writeln!(out, "in  #{} {}", step.number, step.input_text);
            for o in step.got {
                let _ = writeln!(out, "out #{} {o}", step.number);
            }
        }
        if let Some((_, w)) = &mut write {
            let r = writeln!(w, "{}", step.input_text)
                .and_then(|()| step.got.iter().try_for_each(|o| writeln!(w, "{o}")));
            if let Err(e) = r {
                write_error.get_or_insert(e);
            }
        }
    });
    if let Some((p, mut w)) = write {
        if let Some(e) = write_error.or_else(|| w.flush().err()) {
            eprintln!("ctid-replay: {}: {e}", p.display());
            std::process::exit(2);
        }
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = out.flush();
            match e {
                ctid_replay::ReadError::Io { .. } => eprintln!("ctid-replay: {e}"),
                _ => eprintln!("ctid-replay: {}: {e}", args.file.display()),
            }
            std::process::exit(2);
        }
    };
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for d in &report.shown {
        let _ = writeln!(out, "{d}");
    }
    if report.differences > report.shown.len() as u64 {
        let _ = writeln!(
            out,
            "… and {} more difference(s) (--show N for more)",
            report.differences - report.shown.len() as u64
        );
    }
    if report.differences > 0 && report.outputs != report.recorded_outputs {
        let _ = writeln!(
            out,
            "the recording holds {} outputs for these inputs",
            report.recorded_outputs
        );
    }
    let _ = writeln!(out, "{}", report.summary());
    let _ = out.flush();
    std::process::exit(if report.differences == 0 { 0 } else { 1 });
}
