//! `ctid`: the CTI server. `ctid --config ctid.toml`, `ctid --check-config FILE`, `ctid --demo`.
//!
//! Logs: `RUST_LOG` picks levels per module (default `info`; `info,ctid::csta=debug` adds every
//! CSTA frame); `--log-format json` writes one JSON object per line. SIGHUP re-reads the
//! configuration file; `CTID_ADMIN_TOKEN` enables `POST /admin/reload`. See docs/operations.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "ctid",
    version,
    about = "CTI server for CSTA switches (T-Server for CSTA Connector)"
)]
struct Args {
    /// Configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Validate a configuration file and exit (0 = valid).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Run with an embedded CSTA simulator and the demo configuration.
    #[arg(long)]
    demo: bool,
    /// Client port (overrides `listen`; with --demo defaults to 127.0.0.1:7000).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_parser = ["human", "json"], default_value = "human")]
    log_format: String,
    /// Record every engine input and output to FILE, as JSON lines, for `ctid-replay`
    /// (overrides `record-inputs`; also with --demo). The file is replaced.
    #[arg(long, value_name = "FILE")]
    record_inputs: Option<PathBuf>,
    /// Worker threads of the runtime (default: one per core; tokio's TOKIO_WORKER_THREADS is
    /// honoured too). Fewer threads mean fewer wake-ups across threads per event
    /// (docs/operations.md, "Sizing the runtime"; docs/performance.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    /// Publish every event to NATS JetStream at URL with the defaults of `[export.nats]`
    /// (overrides its `url`; also with --demo). See docs/operations.md, "Event export".
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
}

/// `--nats URL` applied to a configuration: the export on, at that URL.
fn apply_nats(cfg: &mut ctid_server::Config, url: Option<&str>) -> anyhow::Result<()> {
    let Some(u) = url else { return Ok(()) };
    let u = ctid_server::config::check_nats_url(u).map_err(|e| anyhow::anyhow!("--nats: {e}"))?;
    match &mut cfg.export {
        Some(n) => n.urls = vec![u],
        None => cfg.export = Some(ctid_server::export::NatsConfig::with_urls(vec![u])),
    }
    Ok(())
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal (not in files or the journal).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.worker_threads {
        rt.worker_threads(usize::from(n));
    }
    rt.build()
        .context("cannot start the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.check_config {
        match ctid_server::Config::load(path) {
            Ok(c) => {
                println!(
                    "{}: valid ({} link(s), {} DN(s), {} agent login(s), auth = {}, {} client token(s), {}{}{})",
                    path.display(),
                    c.links.len(),
                    c.engine.dns.len(),
                    c.engine.agent_logins.len(),
                    match c.auth.mode {
                        ctid_server::auth::AuthMode::None => "none",
                        ctid_server::auth::AuthMode::Token => "token",
                    },
                    c.auth.tokens.len(),
                    if c.tls.is_some() { "TLS" } else { "no TLS" },
                    c.record_inputs
                        .as_ref()
                        .map(|p| format!(", recording to {}", p.display()))
                        .unwrap_or_default(),
                    c.export
                        .as_ref()
                        .map(|n| format!(
                            ", events exported to NATS {} (stream {}, subjects {})",
                            n.urls.join(","),
                            n.stream,
                            n.stream_subject()
                        ))
                        .unwrap_or_default(),
                );
                return Ok(());
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    init_logs(&args.log_format);
    if args.demo {
        return run_demo(&args).await;
    }
    let path = args
        .config
        .context("give --config FILE (or --demo); see docs/configuration.md")?;
    let mut cfg = match ctid_server::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(r) = args.record_inputs {
        cfg.record_inputs = Some(r);
    }
    apply_nats(&mut cfg, args.nats.as_deref())?;
    let admin_token = std::env::var("CTID_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if admin_token.is_none() {
        tracing::info!(
            "CTID_ADMIN_TOKEN not set: POST /admin/reload takes only admin = true client tokens, if any (SIGHUP still reloads)"
        );
    }
    let running = ctid_server::start_with(
        cfg,
        ctid_server::StartOptions {
            config_path: Some(path),
            admin_token,
        },
    )
    .await?;
    wait_for_shutdown(&running).await?;
    // Graceful: no new clients, every session closed with a reason, then the link; bounded.
    running
        .shutdown(std::time::Duration::from_millis(500))
        .await;
    Ok(())
}

/// `ctid --demo`: the embedded simulator and the demo configuration.
#[cfg(feature = "demo")]
async fn run_demo(args: &Args) -> anyhow::Result<()> {
    let listen = args
        .listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 7000)));
    let record = args.record_inputs.clone();
    let nats = args.nats.clone();
    if let Some(u) = &nats {
        ctid_server::config::check_nats_url(u).map_err(|e| anyhow::anyhow!("--nats: {e}"))?;
    }
    let demo = ctid_server::demo::start_demo_with(listen, |cfg| {
        cfg.record_inputs = record;
        // Checked above: cannot fail.
        let _ = apply_nats(cfg, nats.as_deref());
    })
    .await?;
    let url = demo.ctid.ws_url();
    println!("ctid demo: clients connect to {url}");
    if let Some(r) = &args.record_inputs {
        println!("  recording engine inputs to {}", r.display());
    }
    if let Some(u) = &args.nats {
        println!("  every event published to NATS JetStream at {u} (stream CTID, subjects ctid.events.>)");
    }
    println!("  embedded csta-sim: CSTA on {}", demo.sim.csta_addr());
    if let Some(c) = demo.sim.control_addr() {
        println!("  csta-sim control API: http://{c}/  (see docs/csta-sim.md)");
    }
    let server = if listen.port() == 7000 && listen.ip().is_loopback() {
        String::new()
    } else {
        format!(" --server {url}")
    };
    println!("try, in another terminal:");
    println!("  cargo run --bin ctictl --{server} register 2010                        # HOST_DN=1010: associated before start-up");
    println!("  cargo run --bin ctictl --{server} hotdesk initiate --guest 2001 --host 1001");
    println!("  cargo run --bin ctictl --{server} hotdesk cancel --guest 2001");
    println!("  cargo run --bin ctictl --{server} watch 2001 1001                     # see events as they happen");
    println!("  web monitor: http://{}/", demo.ctid.addr);
    wait_for_shutdown(&demo.ctid).await?;
    demo.ctid
        .shutdown(std::time::Duration::from_millis(300))
        .await;
    Ok(())
}

/// Built without the simulator: say so and exit 2 (a usage error), before anything starts.
#[cfg(not(feature = "demo"))]
async fn run_demo(_args: &Args) -> anyhow::Result<()> {
    eprintln!("ctid: --demo: {}", ctid_server::demo::NO_DEMO);
    std::process::exit(2)
}

/// Wait for Ctrl-C or SIGTERM; reload the configuration on SIGHUP meanwhile.
#[cfg(unix)]
async fn wait_for_shutdown(running: &ctid_server::Running) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: re-reading the configuration");
                match running.reload().await {
                    Ok(summary) => tracing::info!("{summary}"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: reload rejected"),
                }
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                return Ok(());
            }
            r = tokio::signal::ctrl_c() => {
                r?;
                tracing::info!("interrupted: stopping");
                return Ok(());
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_shutdown(_running: &ctid_server::Running) -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
