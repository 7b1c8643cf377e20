//! `csta-sim`: run the CSTA Connector simulator (the demo switch unless `--config`), with its
//! control API, optional recording, and the load mode.
#![deny(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ctid_csta::Edition;
use ctid_sim::load::{LoadSpec, Step};
use ctid_sim::{SessionMode, Sim, SimConfig};

/// A CSTA Connector simulator in front of a BroadWorks-like switch.
#[derive(Debug, Parser)]
#[command(name = "csta-sim", version)]
struct Args {
    /// CSTA listen address (8-byte framed CSTA XML).
    #[arg(long, default_value = "127.0.0.1:1040")]
    listen: SocketAddr,
    /// Control API listen address (HTTP + JSON); none when absent.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Switch configuration (sim.toml); the built-in demo switch when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Session start: ecma354, system-register or none (overrides the config).
    #[arg(long, value_parser = parse_session)]
    session: Option<SessionMode>,
    /// CSTA edition written: ed3, ed4, ed5 or ed6 (overrides the config).
    #[arg(long, value_parser = parse_edition)]
    edition: Option<Edition>,
    /// Write every frame in both directions to FILE (JSON lines with timestamps).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Load mode: place calls at --rate between --devices extensions for --duration.
    #[arg(long)]
    load: bool,
    /// Load: number of extensions used.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Load: first extension number (missing ones are created).
    #[arg(long, default_value_t = 7000)]
    first: u32,
    /// Load: new calls per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Load: the call pattern, comma-separated steps.
    #[arg(
        long,
        default_value = "call,ring,answer,hold,retrieve,transfer,release"
    )]
    pattern: String,
    /// Load: seconds during which new calls start.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Load: milliseconds between the steps of one call.
    #[arg(long, default_value_t = 200)]
    step_ms: u64,
    /// Load: seconds to wait before starting (time for ctid to connect and monitor).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
}

fn parse_session(s: &str) -> Result<SessionMode, String> {
    SessionMode::parse(s).ok_or_else(|| format!("{s:?}: expected ecma354, system-register or none"))
}

fn parse_edition(s: &str) -> Result<Edition, String> {
    Edition::parse(s).ok_or_else(|| format!("{s:?}: expected ed3, ed4, ed5 or ed6"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cfg = match &args.config {
        Some(p) => SimConfig::load(p)?,
        None => SimConfig::demo(),
    };
    if let Some(s) = args.session {
        cfg.session = s;
    }
    if let Some(e) = args.edition {
        cfg.edition = e;
    }
    if args.record.is_some() {
        cfg.record = args.record.clone();
    }
    let pattern = if args.load {
        Step::parse_pattern(&args.pattern).map_err(|e| anyhow::anyhow!("--pattern: {e}"))?
    } else {
        Vec::new()
    };
    let sim = Sim::start(cfg, args.listen, args.control).await?;
    eprintln!("csta-sim: CSTA on {}", sim.csta_addr());
    if let Some(c) = sim.control_addr() {
        eprintln!("csta-sim: control API on http://{c}");
    }
    if !args.load {
        tokio::signal::ctrl_c().await?;
        sim.shutdown().await;
        return Ok(());
    }
    let spec = LoadSpec {
        devices: args.devices,
        first: args.first,
        rate: args.rate,
        pattern,
        duration: Duration::from_secs(args.duration),
        step: Duration::from_millis(args.step_ms),
    };
    ctid_sim::load::prepare(&sim, &spec).await;
    if args.warmup > 0 {
        eprintln!("csta-sim: load starts in {}s", args.warmup);
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    }
    println!(
        "load: {} devices from {}, {} calls/s, pattern {}, {}s",
        spec.devices, spec.first, spec.rate, args.pattern, args.duration
    );
    let report = tokio::select! {
        r = ctid_sim::load::run(&sim, &spec, |t| {
            println!(
                "t={:>4}s events/s={:>7} calls/s={:>5} active={:>5}",
                t.second, t.events, t.calls, t.active
            )
        }) => r,
        _ = tokio::signal::ctrl_c() => {
            sim.shutdown().await;
            return Ok(());
        }
    };
    println!(
        "load done: {} calls started, {} completed, {} refused, {} skipped (no idle devices); {} events in {:.1}s = {:.0} events/s",
        report.calls_started,
        report.calls_completed,
        report.calls_failed,
        report.skipped,
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second()
    );
    sim.shutdown().await;
    Ok(())
}
