//! `ctid-load`: end-to-end figures for ctid at contact-centre scale.
//!
//! It starts csta-sim in this process with N extensions, starts `ctid` as a separate process
//! (so its CPU time and memory are its own) with those N DNs configured `register = true`,
//! connects M WebSocket clients that register the DNs (each DN watched by K clients), then drives
//! calls through the simulator's phone API at a target switch-event rate for a duration, and
//! prints: switch events/s, client events/s, ctid CPU µs per switch event (from
//! /proc/PID/stat), switch-to-client latency percentiles, start-up time to monitor N DNs, and
//! ctid's peak RSS (VmHWM). `--json` adds one JSON object on the last line.
//!
//! Latency: for each action the driver takes at the simulated phone (dial, answer, hold,
//! retrieve, hang up) it notes the time just before the action and the T-Library events that
//! action must produce on each DN (keyed by CallID, event name and ThisDN); each client notes when
//! it receives each event. The difference includes the simulator's own processing, so it slightly
//! over-states ctid's share.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ctid_sim::{DeviceConfig, Sim, SimConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as Ws;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ctid-load",
    about = "Load and latency figures for ctid against csta-sim"
)]
struct Args {
    /// DNs (extensions) configured and monitored.
    #[arg(long, default_value_t = 1000)]
    dns: usize,
    /// Client WebSocket connections.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Clients registered on each DN (a desktop, a router, a reporting client).
    #[arg(long, default_value_t = 3)]
    watchers_per_dn: usize,
    /// Target switch events per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 50)]
    duration: u64,
    /// Seconds between the steps of a call.
    #[arg(long, default_value_t = 0.2)]
    step: f64,
    /// Established calls set up before the measurement and kept (memory figure).
    #[arg(long, default_value_t = 0)]
    active_calls: usize,
    /// Clients that register every DN and never read (slow-client test).
    #[arg(long, default_value_t = 0)]
    stuck_clients: usize,
    /// ctid's `client-queue` (events queued per client before it is dropped as too slow).
    #[arg(long, default_value_t = 1_000_000)]
    client_queue: usize,
    /// ctid's `client-queue-bytes` (bytes queued per client before it is dropped as too slow).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    client_queue_bytes: usize,
    /// First DN number.
    #[arg(long, default_value_t = 100000)]
    first: u32,
    /// The ctid binary (default: next to this one).
    #[arg(long)]
    ctid: Option<PathBuf>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn key(call: &str, event: &str, dn: &str) -> u64 {
    let mut h = DefaultHasher::new();
    call.hash(&mut h);
    event.hash(&mut h);
    dn.hash(&mut h);
    h.finish()
}

/// The value of `"name":"..."` in a compact JSON text (no escapes in these values).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!("\"{name}\":\"");
    let i = text.find(&pat)? + pat.len();
    let j = text[i..].find('"')?;
    Some(&text[i..i + j])
}

struct Proc {
    pid: u32,
}

impl Proc {
    /// utime + stime in microseconds.
    fn cpu_us(&self) -> u64 {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return 0;
        };
        let after = s.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // fields after ')' start at 3 (state); utime = 14, stime = 15 (1-based) → idx 11, 12
        let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
        ticks * 10_000 // CLK_TCK = 100 on Linux
    }
    fn peak_rss_mib(&self) -> f64 {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return 0.0;
        };
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Receipts of one client: (key, when).
type Receipts = Vec<(u64, Instant)>;

async fn client(
    url: String,
    dns: Vec<String>,
    count: Arc<AtomicU64>,
    ready: tokio::sync::mpsc::Sender<()>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Receipts> {
    // A small read buffer: tungstenite zeroes it up to this size on every read.
    let cfg =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8192);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(cfg), false)
        .await
        .context("connect")?;
    let (mut tx, mut rx) = ws.split();
    for (i, dn) in dns.iter().enumerate() {
        let r = format!(
            r#"{{"request":"RequestRegisterAddress","ReferenceID":{},"ThisDN":"{dn}","RegisterMode":"ModeShare"}}"#,
            i + 1
        );
        tx.feed(Ws::Text(r.into())).await?;
    }
    tx.flush().await?;
    let mut registered = 0;
    let mut receipts = Receipts::with_capacity(1 << 16);
    let mut stop = stop;
    loop {
        tokio::select! {
            m = rx.next() => {
                let Some(m) = m else { break };
                let Ws::Text(t) = m? else { continue };
                let now = Instant::now();
                let t: &str = &t;
                let Some(ev) = field(t, "event") else { continue };
                if ev == "EventRegistered" {
                    registered += 1;
                    if registered == dns.len() {
                        let _ = ready.send(()).await;
                    }
                    continue;
                }
                if ev == "EventError" {
                    eprintln!("client: {t}");
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                if let (Some(c), Some(d)) = (field(t, "CallID"), field(t, "ThisDN")) {
                    receipts.push((key(c, ev, d), now));
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok(receipts)
}

#[derive(Default)]
struct Driver {
    idle: VecDeque<(String, String)>,
    sent: Vec<(u64, Instant)>,
    calls: u64,
    failed: u64,
}

async fn one_call(sim: Sim, d: Arc<Mutex<Driver>>, step: Duration) {
    let Some((a, b)) = d.lock().unwrap().idle.pop_front() else {
        return;
    };
    let mut notes: Vec<(u64, Instant)> = Vec::with_capacity(12);
    let mut ok = true;
    let t = Instant::now();
    match sim.dial(&a, &b).await {
        Ok(c) => {
            notes.push((key(&c, "EventDialing", &a), t));
            notes.push((key(&c, "EventRinging", &b), t));
            let mut act = |what: &'static str| {
                let t = Instant::now();
                let keys: Vec<u64> = match what {
                    "answer" => vec![
                        key(&c, "EventEstablished", &a),
                        key(&c, "EventEstablished", &b),
                    ],
                    "hold" => vec![key(&c, "EventHeld", &a)],
                    "retrieve" => vec![key(&c, "EventRetrieved", &a)],
                    _ => vec![key(&c, "EventReleased", &a), key(&c, "EventReleased", &b)],
                };
                for k in keys {
                    notes.push((k, t));
                }
            };
            tokio::time::sleep(step).await;
            act("answer");
            ok &= sim.answer(&b).await.is_ok();
            tokio::time::sleep(step).await;
            act("hold");
            ok &= sim.hold(&a).await.is_ok();
            tokio::time::sleep(step).await;
            act("retrieve");
            ok &= sim.retrieve(&a).await.is_ok();
            tokio::time::sleep(step).await;
            act("release");
            ok &= sim.hangup(&a).await.is_ok();
        }
        Err(_) => ok = false,
    }
    let mut g = d.lock().unwrap();
    g.sent.extend(notes);
    g.calls += 1;
    if !ok {
        g.failed += 1;
    }
    g.idle.push_back((a, b));
}

/// The cumulative buckets (upper bound in s, count) of a Prometheus histogram in `text`.
fn histogram(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, v) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, v.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound (ms) below which fraction `p` of the observations between two scrapes fall.
fn hist_pct(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> Option<f64> {
    let d: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            (
                *le,
                n - before
                    .iter()
                    .find(|(l, _)| l == le)
                    .map(|x| x.1)
                    .unwrap_or(0),
            )
        })
        .collect();
    let total = d.last()?.1;
    if total == 0 {
        return None;
    }
    let want = (total as f64 * p).ceil() as u64;
    d.iter()
        .find(|(_, n)| *n >= want)
        .map(|(le, _)| le * 1000.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.dns < 2 {
        bail!("--dns must be at least 2");
    }
    let numbers: Vec<String> = (0..args.dns as u32)
        .map(|i| (args.first + i).to_string())
        .collect();
    // The simulator, in this process.
    let mut sc = SimConfig::demo();
    sc.devices = numbers.iter().map(|n| DeviceConfig::extension(n)).collect();
    sc.associations.clear();
    sc.out_queue = sc.out_queue.max(1_000_000);
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let sim = Sim::start(sc, any, None).await?;
    // ctid, as its own process.
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("ctid-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("ctid.toml");
    let last = args.first + args.dns as u32 - 1;
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\nclient-queue = {}\nclient-queue-bytes = {}\n\n[[link]]\nname = \"csta-sim\"\nhost = \"127.0.0.1\"\nport = {}\nsession = \"ecma354\"\nmax-outstanding = 1000\nresync-timeout = 120\nrequest-timeout = 30\nkpl-interval = 10\n\n[[dn]]\nrange = \"{}-{last}\"\ntype = \"Extension\"\nregister = true\n",
            args.client_queue,
            args.client_queue_bytes,
            sim.csta_addr().port(),
            args.first
        ),
    )?;
    let bin = match &args.ctid {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("ctid"),
    };
    let t_spawn = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .env(
            "RUST_LOG",
            std::env::var("CTID_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it: cargo build --release --bin ctid)",
                bin.display()
            )
        })?;
    let proc_ = Proc {
        pid: child.id().context("ctid pid")?,
    };
    let http: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let startup = loop {
        if let Ok((200, _)) = http_get(http, "/readyz").await {
            break t_spawn.elapsed();
        }
        if t_spawn.elapsed() > Duration::from_secs(300) {
            bail!("ctid not ready after 300 s");
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("ctid exited: {st}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "ctid ready: {} DNs monitored in {:.2} s",
        args.dns,
        startup.as_secs_f64()
    );

    // Clients.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut per_client: Vec<Vec<String>> = vec![Vec::new(); args.clients];
    if args.clients > 0 {
        for (n, dn) in numbers.iter().enumerate() {
            for j in 0..args.watchers_per_dn {
                per_client[(n * args.watchers_per_dn + j) % args.clients].push(dn.clone());
            }
        }
    }
    let count = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.clients.max(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    let t_reg = Instant::now();
    for dns in per_client.into_iter().filter(|v| !v.is_empty()) {
        handles.push(tokio::spawn(client(
            url.clone(),
            dns,
            count.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
        )));
    }
    let n_clients = handles.len();
    for _ in 0..n_clients {
        tokio::time::timeout(Duration::from_secs(300), ready_rx.recv())
            .await
            .context("clients did not finish registering")?;
    }
    eprintln!(
        "{n_clients} clients registered in {:.2} s",
        t_reg.elapsed().as_secs_f64()
    );

    // Clients that never read: they register every DN, then sit on a full socket.
    let mut stuck = Vec::new();
    for _ in 0..args.stuck_clients {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .context("connect")?;
        let (mut tx, rx) = ws.split();
        for (i, dn) in numbers.iter().enumerate() {
            let r = format!(
                r#"{{"request":"RequestRegisterAddress","ReferenceID":{},"ThisDN":"{dn}"}}"#,
                i + 1
            );
            tx.feed(Ws::Text(r.into())).await?;
        }
        tx.flush().await?;
        stuck.push((tx, rx));
    }
    if args.stuck_clients > 0 {
        eprintln!(
            "{} clients registered every DN and will never read",
            args.stuck_clients
        );
    }

    // Calls.
    let driver = Arc::new(Mutex::new(Driver::default()));
    {
        let mut d = driver.lock().unwrap();
        for p in numbers.chunks(2).filter(|p| p.len() == 2) {
            d.idle.push_back((p[0].clone(), p[1].clone()));
        }
    }
    let step = Duration::from_secs_f64(args.step);
    // Long-lived established calls for the memory figure.
    for _ in 0..args.active_calls {
        let pair = driver.lock().unwrap().idle.pop_back();
        let Some((a, b)) = pair else { break };
        if sim.dial(&a, &b).await.is_ok() {
            let _ = sim.answer(&b).await;
        }
    }
    if args.active_calls > 0 {
        eprintln!("{} established calls held", args.active_calls);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    const EVENTS_PER_CALL: f64 = 13.0;
    let calls_per_s = (args.rate / EVENTS_PER_CALL).max(0.01);
    let stats = sim.stats();
    let ev0 = stats.events_out.load(Ordering::Relaxed);
    let cl0 = count.load(Ordering::Relaxed);
    const HIST: &str = "ctid_switch_to_client_seconds";
    let h0 = histogram(
        &http_get(http, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default(),
        HIST,
    );
    let cpu0 = proc_.cpu_us();
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / calls_per_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut last_report = Instant::now();
    while t0.elapsed() < Duration::from_secs(args.duration) {
        tick.tick().await;
        tasks.push(tokio::spawn(one_call(sim.clone(), driver.clone(), step)));
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let e = stats.events_out.load(Ordering::Relaxed) - ev0;
            eprintln!(
                "t={:>3}s switch events {:>8} ({:.0}/s)",
                t0.elapsed().as_secs(),
                e,
                e as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = proc_.cpu_us() - cpu0;
    let switch_events = stats.events_out.load(Ordering::Relaxed) - ev0;
    let client_events = count.load(Ordering::Relaxed) - cl0;
    let rss = proc_.peak_rss_mib();
    let metrics_text = http_get(http, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    let dropped_slow: u64 = metrics_text
        .lines()
        .find(|l| l.starts_with("ctid_clients_dropped_total{reason=\"slow\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    drop(stuck);
    let h1 = histogram(
        &http_get(http, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default(),
        HIST,
    );
    let (ip50, ip99, ip999) = (
        hist_pct(&h0, &h1, 0.5),
        hist_pct(&h0, &h1, 0.99),
        hist_pct(&h0, &h1, 0.999),
    );
    let show = |x: Option<f64>| x.map(|v| format!("<={v}")).unwrap_or_else(|| "-".into());
    let _ = stop_tx.send(true);
    let mut received: Vec<(u64, Instant)> = Vec::new();
    for h in handles {
        if let Ok(Ok(r)) = h.await {
            received.extend(r);
        }
    }
    let (sent, calls, failed) = {
        let d = driver.lock().unwrap();
        (d.sent.clone(), d.calls, d.failed)
    };
    let sent: HashMap<u64, Instant> = sent.into_iter().collect();
    let mut lat: Vec<f64> = received
        .iter()
        .filter_map(|(k, t)| {
            sent.get(k)
                .map(|s| t.saturating_duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99, p999, max) = (
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().copied().unwrap_or(0.0),
    );
    let sw_rate = switch_events as f64 / elapsed;
    let cl_rate = client_events as f64 / elapsed;
    let cpu_per = if switch_events > 0 {
        cpu as f64 / switch_events as f64
    } else {
        0.0
    };
    println!(
        "ctid-load: {} DNs, {} clients, {} watchers/DN, target {:.0} switch events/s, {:.0} s",
        args.dns, n_clients, args.watchers_per_dn, args.rate, elapsed
    );
    println!("  calls completed          {calls} ({failed} with a refused step)");
    println!("  switch events/s          {sw_rate:.0}");
    println!("  client events/s          {cl_rate:.0}");
    println!(
        "  ctid CPU per switch event {cpu_per:.1} µs  (ctid CPU {:.2} s)",
        cpu as f64 / 1e6
    );
    println!(
        "  latency ms p50/p99/p99.9/max  {p50:.2} / {p99:.2} / {p999:.2} / {max:.2}  ({} samples)",
        lat.len()
    );
    println!(
        "  ctid internal ms p50/p99/p99.9 (CSTA in -> WebSocket written, bucket bounds)  {} / {} / {}",
        show(ip50),
        show(ip99),
        show(ip999)
    );
    println!(
        "  start-up (N DNs monitored) {:.2} s",
        startup.as_secs_f64()
    );
    println!("  ctid peak RSS            {rss:.1} MiB");
    if args.stuck_clients > 0 {
        println!(
            "  stuck clients            {} (ctid dropped {dropped_slow} as too slow)",
            args.stuck_clients
        );
    }
    if args.json {
        let j = serde_json::json!({
            "dns": args.dns,
            "clients": n_clients,
            "watchers_per_dn": args.watchers_per_dn,
            "active_calls": args.active_calls,
            "duration_s": elapsed,
            "switch_events_per_s": sw_rate,
            "client_events_per_s": cl_rate,
            "cpu_us_per_switch_event": cpu_per,
            "latency_ms_p50": p50,
            "latency_ms_p99": p99,
            "latency_ms_p999": p999,
            "latency_ms_max": max,
            "latency_samples": lat.len(),
            "ctid_internal_ms_p50": ip50,
            "ctid_internal_ms_p99": ip99,
            "ctid_internal_ms_p999": ip999,
            "startup_s": startup.as_secs_f64(),
            "rss_mib": rss,
            "calls": calls,
            "calls_failed": failed,
            "stuck_clients": args.stuck_clients,
            "clients_dropped_slow": dropped_slow,
        });
        println!("{j}");
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
    Ok(())
}
