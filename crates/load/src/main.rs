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
//! `--nats URL` measures the event export's cost: two runs back to back with the same arguments,
//! the first with the export off, the second with `[export.nats]` on URL (a stream and subject
//! prefix of this run's own, deleted afterwards when the server allows it). It prints both
//! reports, the export's counters from ctid's `/metrics` (after waiting, at most 30 s, for
//! `ctid_export_lag` to reach 0) and the ratio on/off of ctid CPU per switch event; `--json`
//! gives `export_off`, `export_on` and `cpu_ratio_export`.
//!
//! `--ha` measures hot standby's cost the same way: a run with one ctid, then one with a pair —
//! the primary and one backup, both with `[ha]` (a cluster of this run's own, replicas 1) on a
//! nats-server this tool starts (or the one `--nats URL` names), the clients on the primary, the
//! load starting once the backup has applied the stream to its end. It prints both reports, the
//! primary's appends to the input stream (`ctid_ha_append_seconds` over the window: count, mean,
//! bucket bounds of p50 and p99), the backup's CPU per switch event (read once it has applied
//! everything the primary appended, waiting at most 30 s) and its lag then, and the ratios on/off
//! of the p99 latency and of the primary's CPU per switch event; `--json` gives `ha_off`,
//! `ha_on`, `p99_ratio_ha` and `cpu_ratio_ha` (`--nats` alone gives `p99_ratio_export` too).
//! `--snapshot-every N` sets the pair's `[ha] snapshot-every` (a large value keeps the primary's
//! engine snapshot out of the window).
//!
//! `--slow-ms MS` lists on stderr each 100 ms of the window in which a switch action took longer
//! than MS to reach a client, to find stalls.
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

mod floor;

use anyhow::{bail, Context};
use clap::Parser;
use ctid_protocol::{EventName, Request};
use ctid_sim::{DeviceConfig, Sim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// Measure the event export: a run with it off, then one with `[export.nats]` on this NATS
    /// server (nats://host:4222), and the ratio of ctid CPU per switch event. With `--ha`: the
    /// NATS server of the pair (default: a nats-server this tool starts).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Measure hot standby: a run with one ctid, then one with a pair (a primary and a backup
    /// with `[ha]`; the clients on the primary), and the ratios of latency and CPU.
    #[arg(long)]
    ha: bool,
    /// With `--ha`: `[ha] snapshot-every` of the pair (default: ctid's, 10,000 stream messages);
    /// a large value keeps the engine snapshot out of the window.
    #[arg(long, value_name = "N")]
    snapshot_every: Option<u64>,
    /// Measure the floor instead of ctid: a minimal relay (this binary, as its own process) that
    /// reads the CSTA link, decodes each event, finds the clients by monitor and writes one
    /// frame per delivery with ctid's WebSocket stack and write strategy (docs/performance.md,
    /// "The tools").
    #[arg(long)]
    floor: bool,
    /// A run against ctid, then one against the floor with the same arguments: ctid's CPU per
    /// switch event as a ratio to the floor's (`ratio_to_floor`).
    #[arg(long)]
    vs_floor: bool,
    /// Worker threads of the server's tokio runtime (ctid's and the floor relay's, through
    /// TOKIO_WORKER_THREADS; default: tokio's, one per core). This tool's own runtime keeps its
    /// default.
    #[arg(long)]
    server_threads: Option<usize>,
    /// Run as the floor relay, monitoring at this csta-sim address (used by --floor).
    #[arg(long, hide = true)]
    relay: Option<SocketAddr>,
    /// The floor relay's client port (with --relay).
    #[arg(long, hide = true, default_value_t = 0)]
    relay_port: u16,
    /// List on stderr each 100 ms of the window in which switch-to-client latency passed this
    /// many ms (to find stalls).
    #[arg(long, value_name = "MS")]
    slow_ms: Option<f64>,
}

fn key(call: &str, event: &str, dn: &str) -> u64 {
    let mut h = DefaultHasher::new();
    call.hash(&mut h);
    event.hash(&mut h);
    dn.hash(&mut h);
    h.finish()
}

struct Proc {
    pid: u32,
}

/// What [`Proc::io_counts`] reads.
#[derive(Debug, Default, Clone, Copy)]
struct IoCounts {
    ctx_switches: u64,
}

impl IoCounts {
    fn since(self, before: IoCounts) -> IoCounts {
        IoCounts {
            ctx_switches: self.ctx_switches.saturating_sub(before.ctx_switches),
        }
    }
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
    /// Context switches (voluntary + involuntary) of the threads alive now (a thread switched
    /// out to wait is a wake-up; socket system calls are not counted here: `strace -c -f`,
    /// docs/performance.md).
    fn io_counts(&self) -> IoCounts {
        let mut c = IoCounts::default();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for t in tasks.flatten() {
                let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
                    continue;
                };
                for l in s.lines() {
                    if let Some(v) = l
                        .strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                    {
                        c.ctx_switches += v.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
        c
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

/// GET `path` of the server at `addr`: the status and the body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http = HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    });
    let r = http.get(format!("http://{addr}{path}")).send().await?;
    let code = r.status().as_u16();
    Ok((code, r.text().await?))
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
    // The workspace's client library and protocol types (docs/protocol.md).
    let mut c = ctid_client::Client::connect(&url)
        .await
        .context("connect")?;
    for dn in &dns {
        c.send(&mut Request::register_address(dn.as_str())).await?;
    }
    let mut registered = 0;
    let mut receipts = Receipts::with_capacity(1 << 16);
    while !*stop.borrow() {
        let Some(r) = c.next_received(Duration::from_millis(100)).await? else {
            continue;
        };
        let now = Instant::now();
        let ev = &r.event;
        match ev.name {
            EventName::EventRegistered => {
                registered += 1;
                if registered == dns.len() {
                    let _ = ready.send(()).await;
                }
                continue;
            }
            EventName::EventError => {
                eprintln!("client: {}", r.raw);
                continue;
            }
            // The session's first frame (ctid tells a new connection its SessionID).
            EventName::EventServerInfo | EventName::EventSessionResumed => continue,
            _ => {}
        }
        count.fetch_add(1, Ordering::Relaxed);
        if let (Some(call), Some(dn)) = (&ev.call_id, &ev.this_dn) {
            receipts.push((key(call, ev.name.as_str(), dn), now));
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
    let Some((a, b)) = lock(&d).idle.pop_front() else {
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
    let mut g = lock(&d);
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
                n.saturating_sub(
                    before
                        .iter()
                        .find(|(l, _)| l == le)
                        .map(|x| x.1)
                        .unwrap_or(0),
                ),
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

/// `[export.nats]` of the run with the export on.
struct Export {
    url: String,
    stream: String,
    prefix: String,
}

/// The export's counters scraped from ctid's `/metrics` at the end of a run with the export on.
struct ExportFigures {
    published: Option<u64>,
    acked: Option<u64>,
    dropped: Option<u64>,
    lag: Option<u64>,
    /// Seconds from the end of the measured window (0.5 s after the last call) until
    /// `ctid_export_lag` was 0; `None`: it was not within [`LAG_WAIT`].
    lag_zero_after: Option<f64>,
}

/// How long a run with the export on waits for `ctid_export_lag` to reach 0 before stopping ctid,
/// and a run with hot standby on for the backup to apply the whole input stream.
const LAG_WAIT: Duration = Duration::from_secs(30);

/// `[ha]` of the run with hot standby on: a cluster of this run's own on the NATS at `url`.
struct HaPair {
    url: String,
    cluster: String,
    /// nats-server's pid when this tool started it (its CPU is reported too).
    nats_pid: Option<u32>,
    /// `snapshot-every` (`None`: ctid's default).
    snapshot_every: Option<u64>,
}

impl HaPair {
    /// The JetStream streams the pair creates: the input stream, the KV bucket of the lease
    /// (`KV_<bucket>`) and the object store of the engine snapshots (`OBJ_<bucket>`).
    fn streams(&self) -> [String; 3] {
        let c = &self.cluster;
        [
            format!("CTID_HA_{c}"),
            format!("KV_ctid-ha-{c}"),
            format!("OBJ_ctid-ha-{c}-snap"),
        ]
    }
}

/// What a measured run adds to today's single ctid.
enum Extra {
    None,
    /// The floor relay in ctid's place (`--floor`).
    Floor,
    /// `[export.nats]`.
    Export(Export),
    /// A hot-standby pair: this ctid is the primary, a second one its backup.
    Ha(HaPair),
}

impl Extra {
    fn export(&self) -> Option<&Export> {
        match self {
            Extra::Export(x) => Some(x),
            _ => None,
        }
    }
    fn ha(&self) -> Option<&HaPair> {
        match self {
            Extra::Ha(h) => Some(h),
            _ => None,
        }
    }
    /// The NATS URL it uses.
    fn nats_url(&self) -> Option<&str> {
        match self {
            Extra::None | Extra::Floor => None,
            Extra::Export(x) => Some(&x.url),
            Extra::Ha(h) => Some(&h.url),
        }
    }
    /// The TOML section it adds to ctid's configuration for node `node` (`[ha]`).
    fn toml(&self, node: &str) -> String {
        // A JSON string is a TOML basic string.
        let url = |u: &str| serde_json::Value::from(u).to_string();
        match self {
            Extra::None | Extra::Floor => String::new(),
            Extra::Export(x) => format!(
                "\n[export.nats]\nurl = {}\nstream = \"{}\"\nsubject-prefix = \"{}\"\n",
                url(&x.url),
                x.stream,
                x.prefix
            ),
            Extra::Ha(h) => {
                let mut t = format!(
                    "\n[ha]\ncluster = \"{}\"\nnode = \"{node}\"\nurl = {}\nreplicas = 1\n",
                    h.cluster,
                    url(&h.url)
                );
                if let Some(n) = h.snapshot_every {
                    t.push_str(&format!("snapshot-every = {n}\n"));
                }
                t
            }
        }
    }
    /// What it is, for the report's heading.
    fn describe(&self) -> String {
        match self {
            Extra::None => "one ctid".into(),
            Extra::Floor => "the floor relay in ctid's place".into(),
            Extra::Export(x) => format!(
                "NATS {}, stream {}, subjects {}.events.>",
                x.url, x.stream, x.prefix
            ),
            Extra::Ha(h) => format!(
                "a primary and a backup, NATS {}, cluster {}, replicas 1, snapshot-every {}",
                h.url,
                h.cluster,
                h.snapshot_every
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "10000 (ctid's default)".into())
            ),
        }
    }
    /// Delete from NATS what the run created, when the server allows it.
    async fn cleanup(&self) {
        let streams: Vec<String> = match self {
            Extra::None | Extra::Floor => return,
            Extra::Export(x) => vec![x.stream.clone()],
            // A server this tool started goes with its store; nothing to delete.
            Extra::Ha(h) if h.nats_pid.is_some() => return,
            Extra::Ha(h) => h.streams().to_vec(),
        };
        let url = self.nats_url().unwrap_or_default();
        for stream in streams {
            match delete_stream(url, &stream).await {
                Ok(true) => eprintln!("deleted the stream {stream} from NATS"),
                Ok(false) => {}
                Err(e) => eprintln!(
                    "the stream {stream} stays on NATS ({e:#}); delete it: nats stream rm {stream}"
                ),
            }
        }
    }
}

/// The hot-standby figures of the run with a pair.
struct HaFigures {
    /// The backup's CPU from the start of the window until it had applied the whole stream.
    backup_cpu_us: u64,
    backup_cpu_per: f64,
    /// nats-server's CPU over the same time, when this tool started it.
    nats_cpu_per: Option<f64>,
    /// `ctid_ha_append_seconds` on the primary over the window: count, mean, bucket bounds.
    appends: u64,
    append_mean_ms: Option<f64>,
    append_p50: Option<f64>,
    append_p99: Option<f64>,
    append_errors: Option<u64>,
    snapshots: Option<u64>,
    stepdowns: Option<u64>,
    /// The last stream sequence the primary appended, and what the backup had applied when it
    /// was last asked.
    primary_seq: u64,
    backup_seq: u64,
    /// The backup's `lag` when it was last asked.
    backup_lag: u64,
    /// Seconds from the end of the measured window until the backup had applied everything the
    /// primary appended (`lag` 0); `None`: not within [`LAG_WAIT`].
    caught_up_after: Option<f64>,
    /// Roles at the end (`primary`, `backup` unless something went wrong).
    primary_role: String,
    backup_role: String,
}

/// The figures of one run.
struct Figures {
    n_clients: usize,
    elapsed: f64,
    calls: u64,
    failed: u64,
    sw_rate: f64,
    cl_rate: f64,
    cpu_us: u64,
    cpu_per: f64,
    /// Context switches over the window.
    io: IoCounts,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    samples: usize,
    ip50: Option<f64>,
    ip99: Option<f64>,
    ip999: Option<f64>,
    startup: f64,
    rss: f64,
    dropped_slow: u64,
    export: Option<ExportFigures>,
    ha: Option<HaFigures>,
}

/// The value of the sample `name` (without labels) in a Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(' ')?.trim();
        v.parse::<u64>()
            .ok()
            .or_else(|| v.parse::<f64>().ok().map(|f| f.max(0.0) as u64))
    })
}

/// The value of the sample `name` (without labels) in a Prometheus text, as a float.
fn metric_f64(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
    })
}

/// `host:port` of a NATS URL (`nats://[user:pass@]host[:port]`, `tls://…`, `host:port`).
fn nats_addr(url: &str) -> String {
    let rest = url
        .trim()
        .split_once("://")
        .map(|x| x.1)
        .unwrap_or(url.trim());
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host = host.split('/').next().unwrap_or(host);
    let has_port = match host.rfind(']') {
        Some(b) => host[b..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host.to_string()
    } else {
        format!("{host}:4222")
    }
}

/// Deletes the JetStream stream a run created, over NATS's text protocol (a plain connection
/// without authentication; otherwise it says so and the stream stays). `false`: there was none.
async fn delete_stream(url: &str, stream: &str) -> anyhow::Result<bool> {
    use tokio::io::AsyncBufReadExt;
    let u = url.trim();
    if u.starts_with("tls://") || u.contains('@') {
        bail!("not a plain nats:// URL without credentials");
    }
    let addr = nats_addr(u);
    let io = async {
        let s = tokio::net::TcpStream::connect(&addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let (r, mut w) = s.into_split();
        let mut r = tokio::io::BufReader::new(r);
        let mut line = String::new();
        r.read_line(&mut line).await?;
        if !line.starts_with("INFO ") {
            bail!("not a NATS server: {}", line.trim());
        }
        if line.contains("\"auth_required\":true") || line.contains("\"tls_required\":true") {
            bail!("the server wants authentication or TLS");
        }
        let inbox = format!("_INBOX.ctidload.{}", std::process::id());
        w.write_all(
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {inbox} 1\r\nPUB $JS.API.STREAM.DELETE.{stream} {inbox} 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            if line.starts_with("PING") {
                w.write_all(b"PONG\r\n").await?;
            } else if line.starts_with("-ERR") {
                bail!("{}", line.trim());
            } else if line.starts_with("MSG ") {
                let n: usize = line
                    .split_whitespace()
                    .last()
                    .and_then(|n| n.parse().ok())
                    .context("bad MSG line")?;
                let mut body = vec![0; n.min(1 << 20) + 2];
                r.read_exact(&mut body).await?;
                let body = String::from_utf8_lossy(&body);
                if body.contains("\"success\":true") {
                    return Ok(true);
                }
                if body.contains("\"err_code\":10059") {
                    return Ok(false); // stream not found
                }
                bail!("{}", body.trim());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .context("no answer within 5 s")?
}

/// A ctid process of a run: its pid (for its CPU) and its HTTP address.
struct Node {
    child: tokio::process::Child,
    proc_: Proc,
    http: SocketAddr,
    port: u16,
}

/// Start `ctid --config cfg` listening on `port`; its log lines (stdout and stderr) go to this
/// tool's stderr prefixed with `[name]`, so that the report on stdout stays clean.
fn spawn_ctid(args: &Args, cfg: &std::path::Path, port: u16, name: &str) -> anyhow::Result<Node> {
    let bin = match &args.ctid {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .context("where is this binary")?
            .with_file_name("ctid"),
    };
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("--config").arg(cfg);
    server_threads(&mut cmd, args);
    spawn_node(cmd, &bin, port, name)
}

/// Start this binary as the floor relay (`--relay`) for the DNs of `args`, on `port`.
fn spawn_relay(args: &Args, csta: SocketAddr, port: u16) -> anyhow::Result<Node> {
    let bin = std::env::current_exe().context("where is this binary")?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("--relay")
        .arg(csta.to_string())
        .arg("--relay-port")
        .arg(port.to_string())
        .arg("--dns")
        .arg(args.dns.to_string())
        .arg("--first")
        .arg(args.first.to_string());
    server_threads(&mut cmd, args);
    spawn_node(cmd, &bin, port, "floor")
}

/// `--server-threads`: the worker threads of the server process's runtime.
fn server_threads(cmd: &mut tokio::process::Command, args: &Args) {
    match args.server_threads {
        Some(n) => cmd.env("TOKIO_WORKER_THREADS", n.to_string()),
        None => cmd.env_remove("TOKIO_WORKER_THREADS"),
    };
}

fn spawn_node(
    mut cmd: tokio::process::Command,
    bin: &std::path::Path,
    port: u16,
    name: &str,
) -> anyhow::Result<Node> {
    use std::process::Stdio;
    let mut child = cmd
        .env(
            "RUST_LOG",
            std::env::var("CTID_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it: cargo build --release --bin ctid)",
                bin.display()
            )
        })?;
    fn relay(r: impl tokio::io::AsyncRead + Unpin + Send + 'static, name: String) {
        use tokio::io::AsyncBufReadExt;
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{name}] {l}");
            }
        });
    }
    if let Some(o) = child.stdout.take() {
        relay(o, name.to_string());
    }
    if let Some(e) = child.stderr.take() {
        relay(e, name.to_string());
    }
    let pid = child.id().context("ctid pid")?;
    Ok(Node {
        child,
        proc_: Proc { pid },
        http: SocketAddr::from(([127, 0, 0, 1], port)),
        port,
    })
}

/// Ask `/path` of `node` until `ok` says yes to the answer (status, body); a clear error when
/// `within` passes first or the process exits.
async fn wait_until(
    node: &mut Node,
    name: &str,
    path: &str,
    within: Duration,
    what: &str,
    mut ok: impl FnMut(u16, &str) -> bool,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut last = String::new();
    loop {
        if let Ok((code, body)) = http_get(node.http, path).await {
            if ok(code, &body) {
                return Ok(t.elapsed());
            }
            last = format!("{code} {}", body.trim());
        }
        if let Ok(Some(st)) = node.child.try_wait() {
            bail!("{name} exited ({st}) before {what}");
        }
        if t.elapsed() > within {
            bail!(
                "{name}: not {what} after {} s (last {path}: {last})",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/api/ha` of a node, parsed.
async fn api_ha(node: &Node) -> Option<serde_json::Value> {
    let (code, text) = http_get(node.http, "/api/ha").await.ok()?;
    if code != 200 {
        return None;
    }
    serde_json::from_str(&text).ok()
}

/// One measurement: csta-sim in this process, ctid as its own process with the generated
/// configuration (and `[export.nats]`, or `[ha]` and a second ctid as its backup, as `extra`
/// says), the clients, the calls, the figures.
async fn measure(args: &Args, numbers: &[String], extra: &Extra) -> anyhow::Result<Figures> {
    // The simulator, in this process.
    let mut sc = SimConfig::demo();
    sc.devices = numbers.iter().map(|n| DeviceConfig::extension(n)).collect();
    sc.associations.clear();
    sc.out_queue = sc.out_queue.max(1_000_000);
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let sim = Sim::start(sc, any, None)
        .await
        .context("cannot start csta-sim")?;
    // ctid, as its own process (and its backup, as another).
    let dir = std::env::temp_dir().join(format!("ctid-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = RemoveOnDrop(dir);
    let last = numbers.last().map(String::as_str).unwrap_or_default();
    let config = |node: &str| -> anyhow::Result<(PathBuf, u16)> {
        let port = free_port().context("no free port for ctid")?;
        let mut toml = format!(
            "listen = \"127.0.0.1:{port}\"\nclient-queue = {}\nclient-queue-bytes = {}\n\n[[link]]\nname = \"csta-sim\"\nhost = \"127.0.0.1\"\nport = {}\nsession = \"ecma354\"\nmax-outstanding = 1000\nresync-timeout = 120\nrequest-timeout = 30\nkpl-interval = 10\n\n[[dn]]\nrange = \"{}-{last}\"\ntype = \"Extension\"\nregister = true\n",
            args.client_queue,
            args.client_queue_bytes,
            sim.csta_addr().port(),
            args.first
        );
        toml.push_str(&extra.toml(node));
        let cfg = dir.0.join(format!("ctid-{node}.toml"));
        std::fs::write(&cfg, toml).with_context(|| format!("cannot write {}", cfg.display()))?;
        Ok((cfg, port))
    };
    let name = if extra.ha().is_some() {
        "ctid a"
    } else if matches!(extra, Extra::Floor) {
        "floor"
    } else {
        "ctid"
    };
    let (mut node, port) = if matches!(extra, Extra::Floor) {
        let port = free_port().context("no free port for the floor relay")?;
        (spawn_relay(args, sim.csta_addr(), port)?, port)
    } else {
        let (cfg, port) = config("a")?;
        (spawn_ctid(args, &cfg, port, name)?, port)
    };
    // Ready: the link is up and every DN monitored (with [ha]: and this node is the primary).
    let startup = wait_until(
        &mut node,
        name,
        "/readyz",
        Duration::from_secs(300),
        "ready",
        |code, _| code == 200,
    )
    .await?;
    let proc_ = Proc {
        pid: node.proc_.pid,
    };
    let http = node.http;
    eprintln!(
        "{name} ready: {} DNs monitored in {:.2} s",
        args.dns,
        startup.as_secs_f64()
    );
    // The backup: ready when it has applied the primary's stream to its end.
    let mut backup = None;
    if extra.ha().is_some() {
        let (cfg, port) = config("b")?;
        let mut b = spawn_ctid(args, &cfg, port, "ctid b")?;
        let t = wait_until(
            &mut b,
            "ctid b",
            "/api/ha",
            Duration::from_secs(120),
            "a ready backup",
            |code, body| {
                code == 200
                    && serde_json::from_str::<serde_json::Value>(body)
                        .is_ok_and(|v| v["role"] == "backup" && v["ready"] == true && v["lag"] == 0)
            },
        )
        .await?;
        eprintln!(
            "ctid b is a ready backup after {:.2} s (on port {})",
            t.as_secs_f64(),
            b.port
        );
        backup = Some(b);
    }
    if let Some(x) = extra.export() {
        // Measure the export publishing, not the export holding events for a NATS it cannot reach.
        let t = Instant::now();
        loop {
            let text = http_get(http, "/metrics")
                .await
                .map(|r| r.1)
                .unwrap_or_default();
            if metric(&text, "ctid_export_connected") == Some(1) {
                break;
            }
            if t.elapsed() > Duration::from_secs(15) {
                let ready = http_get(http, "/readyz")
                    .await
                    .map(|r| r.1)
                    .unwrap_or_default();
                let body = ready.trim();
                bail!(
                    "ctid did not connect to NATS at {} within 15 s (/readyz: {body})",
                    x.url
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "ctid exports to NATS {} (stream {}, subjects {}.events.>)",
            x.url, x.stream, x.prefix
        );
    }

    // Clients.
    let url = format!("ws://127.0.0.1:{port}/ws");
    // Client i gets the DNs of slots i, i + clients, …; there are dns × watchers slots.
    let slots = args.dns.saturating_mul(args.watchers_per_dn);
    let mut per_client: Vec<Vec<String>> = vec![Vec::new(); args.clients.min(slots)];
    if args.clients > 0 {
        for (n, dn) in numbers.iter().enumerate() {
            for j in 0..args.watchers_per_dn {
                per_client[(n * args.watchers_per_dn + j) % args.clients].push(dn.clone());
            }
        }
    }
    let count = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(per_client.len().max(1));
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
        let mut c = ctid_client::Client::connect(&url)
            .await
            .context("connect")?;
        for dn in numbers {
            c.send(&mut Request::register_address(dn.as_str())).await?;
        }
        stuck.push(c);
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
        let mut d = lock(&driver);
        for p in numbers.chunks(2).filter(|p| p.len() == 2) {
            d.idle.push_back((p[0].clone(), p[1].clone()));
        }
    }
    let step = Duration::from_secs_f64(args.step);
    // Long-lived established calls for the memory figure.
    for _ in 0..args.active_calls {
        let pair = lock(&driver).idle.pop_back();
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
    const APPEND: &str = "ctid_ha_append_seconds";
    let m0 = http_get(http, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    let h0 = histogram(&m0, HIST);
    let nats_proc = extra.ha().and_then(|h| h.nats_pid).map(|pid| Proc { pid });
    let cpu0 = proc_.cpu_us();
    let io0 = proc_.io_counts();
    let backup_cpu0 = backup.as_ref().map(|b| b.proc_.cpu_us()).unwrap_or(0);
    let nats_cpu0 = nats_proc.as_ref().map(Proc::cpu_us).unwrap_or(0);
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / calls_per_s).max(Duration::from_micros(1));
    let mut tick = tokio::time::interval(period);
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
    let switch_events = stats.events_out.load(Ordering::Relaxed) - ev0;
    let client_events = count.load(Ordering::Relaxed) - cl0;
    // With the export on, the CPU is read once NATS has acknowledged every event (or after
    // LAG_WAIT), so it holds the whole cost of exporting the window's events.
    let export_figures = if extra.export().is_some() {
        let t = Instant::now();
        let (text, lag_zero_after) = loop {
            let text = http_get(http, "/metrics")
                .await
                .map(|r| r.1)
                .unwrap_or_default();
            if metric(&text, "ctid_export_lag") == Some(0) {
                break (text, Some(t.elapsed().as_secs_f64()));
            }
            if t.elapsed() >= LAG_WAIT {
                break (text, None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Some(ExportFigures {
            published: metric(&text, "ctid_export_published_total"),
            acked: metric(&text, "ctid_export_acked_total"),
            dropped: metric(&text, "ctid_export_dropped_total"),
            lag: metric(&text, "ctid_export_lag"),
            lag_zero_after,
        })
    } else {
        None
    };
    let cpu = proc_.cpu_us().saturating_sub(cpu0);
    let io = proc_.io_counts().since(io0);
    let rss = proc_.peak_rss_mib();
    let metrics_text = http_get(http, "/metrics")
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    // With a pair, the backup's CPU is read once it has applied everything the primary appended
    // (or after LAG_WAIT), so it holds the whole cost of following the window's inputs.
    let ha_figures = match &backup {
        Some(b) => {
            let primary = api_ha(&node).await.unwrap_or_default();
            let primary_seq = primary["applied_seq"].as_u64().unwrap_or(0);
            let t = Instant::now();
            let (seen, caught_up_after) = loop {
                let v = api_ha(b).await.unwrap_or_default();
                if v["lag"] == 0 && v["applied_seq"].as_u64().unwrap_or(0) >= primary_seq {
                    break (v, Some(t.elapsed().as_secs_f64()));
                }
                if t.elapsed() >= LAG_WAIT {
                    break (v, None);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let backup_cpu = b.proc_.cpu_us().saturating_sub(backup_cpu0);
            let nats_cpu = nats_proc
                .as_ref()
                .map(|p| p.cpu_us().saturating_sub(nats_cpu0));
            let per = |us: u64| {
                if switch_events > 0 {
                    us as f64 / switch_events as f64
                } else {
                    0.0
                }
            };
            let m = &metrics_text;
            let count = |t: &str| metric(t, &format!("{APPEND}_count")).unwrap_or(0);
            let sum = |t: &str| metric_f64(t, &format!("{APPEND}_sum")).unwrap_or(0.0);
            let appends = count(m).saturating_sub(count(&m0));
            let (a0, a1) = (histogram(&m0, APPEND), histogram(m, APPEND));
            let role = |v: &serde_json::Value| v["role"].as_str().unwrap_or("?").to_string();
            Some(HaFigures {
                backup_cpu_us: backup_cpu,
                backup_cpu_per: per(backup_cpu),
                nats_cpu_per: nats_cpu.map(per),
                appends,
                append_mean_ms: (appends > 0)
                    .then(|| (sum(m) - sum(&m0)) * 1000.0 / appends as f64),
                append_p50: hist_pct(&a0, &a1, 0.5),
                append_p99: hist_pct(&a0, &a1, 0.99),
                append_errors: metric(m, "ctid_ha_append_errors_total"),
                snapshots: metric(m, "ctid_ha_snapshots_total"),
                stepdowns: metric(m, "ctid_ha_stepdowns_total"),
                primary_seq,
                backup_seq: seen["applied_seq"].as_u64().unwrap_or(0),
                backup_lag: seen["lag"].as_u64().unwrap_or(u64::MAX),
                caught_up_after,
                primary_role: role(&primary),
                backup_role: role(&seen),
            })
        }
        None => None,
    };
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
    let _ = stop_tx.send(true);
    let mut received: Vec<(u64, Instant)> = Vec::new();
    for h in handles {
        if let Ok(Ok(r)) = h.await {
            received.extend(r);
        }
    }
    let (sent, calls, failed) = {
        let d = lock(&driver);
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
    if let Some(slow) = args.slow_ms {
        slow_slots(&received, &sent, t0, slow);
    }
    lat.sort_by(f64::total_cmp);
    let (p50, p99, p999, max) = (
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().copied().unwrap_or(0.0),
    );
    let cpu_per = if switch_events > 0 {
        cpu as f64 / switch_events as f64
    } else {
        0.0
    };
    if let Some(mut b) = backup {
        let _ = b.child.kill().await;
    }
    let _ = node.child.kill().await;
    drop(dir);
    sim.shutdown().await;
    Ok(Figures {
        n_clients,
        elapsed,
        calls,
        failed,
        sw_rate: switch_events as f64 / elapsed,
        cl_rate: client_events as f64 / elapsed,
        cpu_us: cpu,
        cpu_per,
        io,
        p50,
        p99,
        p999,
        max,
        samples: lat.len(),
        ip50,
        ip99,
        ip999,
        startup: startup.as_secs_f64(),
        rss,
        dropped_slow,
        export: export_figures,
        ha: ha_figures,
    })
}

/// `--slow-ms`: on stderr, each 100 ms of the window in which some switch actions took longer
/// than `slow` ms to reach a client (by the time of the action): how many receipts, the longest.
fn slow_slots(received: &[(u64, Instant)], sent: &HashMap<u64, Instant>, t0: Instant, slow: f64) {
    let mut slots: std::collections::BTreeMap<u128, (usize, f64)> = Default::default();
    for (k, t) in received {
        let Some(s) = sent.get(k) else { continue };
        let ms = t.saturating_duration_since(*s).as_secs_f64() * 1000.0;
        if ms > slow {
            let e = slots
                .entry(s.saturating_duration_since(t0).as_millis() / 100)
                .or_default();
            e.0 += 1;
            e.1 = e.1.max(ms);
        }
    }
    let wall = std::time::SystemTime::now() - t0.elapsed();
    let wall = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    eprintln!(
        "receipts slower than {slow} ms, by the time of the action (window start: Unix time {wall:.3}):"
    );
    for (slot, (n, max)) in slots {
        eprintln!(
            "  t={:>5.1} s  {n:>6} receipts, longest {max:.1} ms",
            slot as f64 / 10.0
        );
    }
}

/// The pid of a child process of this one whose name (`comm`) is `name`.
fn child_named(name: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let ppid = rest.split_whitespace().nth(1)?;
        (comm == name && ppid == me).then_some(pid)
    })
}

/// A directory removed when a run ends, also on an error.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The driver's state, even if a call task panicked while holding it.
fn lock(d: &Mutex<Driver>) -> std::sync::MutexGuard<'_, Driver> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// The report of one run, as text; `server`: what was measured ("ctid" or "floor").
fn print_report(args: &Args, f: &Figures, server: &str) {
    let show = |x: Option<f64>| x.map(|v| format!("<={v}")).unwrap_or_else(|| "-".into());
    println!(
        "ctid-load: {} DNs, {} clients, {} watchers/DN, target {:.0} switch events/s, {:.0} s",
        args.dns, f.n_clients, args.watchers_per_dn, args.rate, f.elapsed
    );
    println!(
        "  calls completed          {} ({} with a refused step)",
        f.calls, f.failed
    );
    println!("  switch events/s          {:.0}", f.sw_rate);
    println!("  client events/s          {:.0}", f.cl_rate);
    println!(
        "  {server} CPU per switch event {:.1} µs  ({server} CPU {:.2} s)",
        f.cpu_per,
        f.cpu_us as f64 / 1e6
    );
    println!(
        "  context switches         {:.2} per switch event",
        f.per_switch_event(f.io.ctx_switches)
    );
    println!(
        "  latency ms p50/p99/p99.9/max  {:.2} / {:.2} / {:.2} / {:.2}  ({} samples)",
        f.p50, f.p99, f.p999, f.max, f.samples
    );
    println!(
        "  ctid internal ms p50/p99/p99.9 (CSTA in -> WebSocket written, bucket bounds)  {} / {} / {}",
        show(f.ip50),
        show(f.ip99),
        show(f.ip999)
    );
    println!("  start-up (N DNs monitored) {:.2} s", f.startup);
    println!("  {server} peak RSS            {:.1} MiB", f.rss);
    if args.stuck_clients > 0 {
        println!(
            "  stuck clients            {} (ctid dropped {} as too slow)",
            args.stuck_clients, f.dropped_slow
        );
    }
    if let Some(x) = &f.export {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "  export published/acked/dropped  {} / {} / {}",
            n(x.published),
            n(x.acked),
            n(x.dropped)
        );
        match x.lag_zero_after {
            Some(s) => println!("  export lag               0 ({s:.2} s after the window)"),
            None => println!(
                "  export lag               {} — NOT 0 after {} s",
                n(x.lag),
                LAG_WAIT.as_secs()
            ),
        }
    }
    if let Some(h) = &f.ha {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "  backup CPU per switch event {:.1} µs  (backup CPU {:.2} s, until it had caught up)",
            h.backup_cpu_per,
            h.backup_cpu_us as f64 / 1e6
        );
        if let Some(c) = h.nats_cpu_per {
            println!("  nats-server CPU per switch event {c:.1} µs");
        }
        println!(
            "  appends (primary)        {} ({:.2} per switch event), ms mean {} p50 {} p99 {} (bucket bounds); errors {}, snapshots {}, step-downs {}",
            h.appends,
            if f.sw_rate > 0.0 {
                h.appends as f64 / (f.sw_rate * f.elapsed)
            } else {
                0.0
            },
            ms(h.append_mean_ms),
            show(h.append_p50),
            show(h.append_p99),
            n(h.append_errors),
            n(h.snapshots),
            n(h.stepdowns)
        );
        match h.caught_up_after {
            Some(s) => println!(
                "  backup lag               0 ({s:.2} s after the window; applied {} of the primary's {})",
                h.backup_seq, h.primary_seq
            ),
            None => println!(
                "  backup lag               {} — NOT 0 after {} s (applied {} of the primary's {})",
                h.backup_lag,
                LAG_WAIT.as_secs(),
                h.backup_seq,
                h.primary_seq
            ),
        }
        println!(
            "  roles at the end         {} / {}",
            h.primary_role, h.backup_role
        );
    }
}

/// The figures of one run as the JSON object of `--json`.
fn report_json(args: &Args, f: &Figures) -> serde_json::Value {
    let mut j = serde_json::json!({
        "dns": args.dns,
        "clients": f.n_clients,
        "watchers_per_dn": args.watchers_per_dn,
        "active_calls": args.active_calls,
        "duration_s": f.elapsed,
        "switch_events_per_s": f.sw_rate,
        "client_events_per_s": f.cl_rate,
        "cpu_us_per_switch_event": f.cpu_per,
        "ctx_switches_per_switch_event": f.per_switch_event(f.io.ctx_switches),
        "latency_ms_p50": f.p50,
        "latency_ms_p99": f.p99,
        "latency_ms_p999": f.p999,
        "latency_ms_max": f.max,
        "latency_samples": f.samples,
        "ctid_internal_ms_p50": f.ip50,
        "ctid_internal_ms_p99": f.ip99,
        "ctid_internal_ms_p999": f.ip999,
        "startup_s": f.startup,
        "rss_mib": f.rss,
        "server_threads": args.server_threads,
        "calls": f.calls,
        "calls_failed": f.failed,
        "stuck_clients": args.stuck_clients,
        "clients_dropped_slow": f.dropped_slow,
    });
    if let Some(x) = &f.export {
        j["export_published"] = x.published.into();
        j["export_acked"] = x.acked.into();
        j["export_dropped"] = x.dropped.into();
        j["export_lag"] = x.lag.into();
        j["export_lag_zero"] = x.lag_zero_after.is_some().into();
        j["export_lag_zero_after_s"] = x.lag_zero_after.into();
    }
    if let Some(h) = &f.ha {
        j["backup_cpu_us_per_switch_event"] = h.backup_cpu_per.into();
        j["pair_cpu_us_per_switch_event"] = (f.cpu_per + h.backup_cpu_per).into();
        j["nats_cpu_us_per_switch_event"] = h.nats_cpu_per.into();
        j["ha_appends"] = h.appends.into();
        j["ha_append_ms_mean"] = h.append_mean_ms.into();
        j["ha_append_ms_p50"] = h.append_p50.into();
        j["ha_append_ms_p99"] = h.append_p99.into();
        j["ha_append_errors"] = h.append_errors.into();
        j["ha_snapshots"] = h.snapshots.into();
        j["ha_stepdowns"] = h.stepdowns.into();
        j["ha_primary_seq"] = h.primary_seq.into();
        j["ha_backup_seq"] = h.backup_seq.into();
        j["ha_backup_lag"] = h.backup_lag.into();
        j["ha_backup_lag_zero"] = h.caught_up_after.is_some().into();
        j["ha_backup_lag_zero_after_s"] = h.caught_up_after.into();
        j["ha_roles"] = serde_json::json!([h.primary_role, h.backup_role]);
        j["ha_snapshot_every"] = args.snapshot_every.into();
    }
    j
}

impl Figures {
    /// `n` per switch event of the window.
    fn per_switch_event(&self, n: u64) -> f64 {
        let events = self.sw_rate * self.elapsed;
        if events > 0.0 {
            n as f64 / events
        } else {
            0.0
        }
    }
}

/// Arguments that would make a run fail half-way or measure nothing.
fn check(args: &Args) -> anyhow::Result<()> {
    if args.dns < 2 {
        bail!("--dns must be at least 2");
    }
    let dns = u32::try_from(args.dns).context("--dns is too large")?;
    if args.first.checked_add(dns - 1).is_none() {
        bail!(
            "--first {} + --dns {} is beyond {}",
            args.first,
            args.dns,
            u32::MAX
        );
    }
    if args.server_threads == Some(0) {
        bail!("--server-threads must be at least 1");
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!("--rate must be a number of switch events per second, 0 or more");
    }
    if !args.step.is_finite() || !(0.0..=3600.0).contains(&args.step) {
        bail!("--step must be between 0 and 3600 seconds");
    }
    match args.snapshot_every {
        Some(_) if !args.ha => bail!("--snapshot-every goes with --ha"),
        Some(n) if !(10..=i64::MAX as u64).contains(&n) => {
            bail!("--snapshot-every {n}: at least 10 (ctid's limit)")
        }
        _ => {}
    }
    if let Some(u) = &args.nats {
        let u = u.trim();
        let host = u.split_once("://").map(|x| x.1).unwrap_or(u);
        if !matches!(u.split_once("://"), None | Some(("nats" | "tls", _)))
            || host.is_empty()
            || host.contains(|c: char| c == '/' || c == ',' || c.is_whitespace())
        {
            bail!("--nats {u:?}: give one NATS server URL (nats://host:4222 or tls://host:4222)");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check(&args)?;
    let numbers: Vec<String> = (0..args.dns as u32)
        .map(|i| (args.first + i).to_string())
        .collect();
    if let Some(csta) = args.relay {
        return floor::run(csta, args.relay_port, numbers).await;
    }
    if !args.ha && args.nats.is_none() {
        let target = if args.floor {
            Extra::Floor
        } else {
            Extra::None
        };
        let f = measure(&args, &numbers, &target).await?;
        if !args.vs_floor {
            print_report(&args, &f, if args.floor { "floor" } else { "ctid" });
            if args.json {
                println!("{}", report_json(&args, &f));
            }
            return Ok(());
        }
        println!("ctid:");
        print_report(&args, &f, "ctid");
        eprintln!("run 2 of 2: the floor relay in ctid's place");
        let floor = measure(&args, &numbers, &Extra::Floor)
            .await
            .context("the run against the floor")?;
        println!("floor (a minimal relay in ctid's place; docs/performance.md, \"The tools\"):");
        print_report(&args, &floor, "floor");
        let ratio = (floor.cpu_per > 0.0).then(|| f.cpu_per / floor.cpu_per);
        println!(
            "CPU per switch event, ctid against the floor: {:.1} µs / {:.1} µs = {}",
            f.cpu_per,
            floor.cpu_per,
            ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into())
        );
        if args.json {
            let mut j = report_json(&args, &f);
            j["floor_cpu_us_per_switch_event"] = floor.cpu_per.into();
            j["floor_client_events_per_s"] = floor.cl_rate.into();
            j["floor_switch_events_per_s"] = floor.sw_rate.into();
            j["floor_latency_ms_p50"] = floor.p50.into();
            j["floor_latency_ms_p99"] = floor.p99.into();
            j["floor_ctx_switches_per_switch_event"] =
                floor.per_switch_event(floor.io.ctx_switches).into();
            j["ratio_to_floor"] = ratio.into();
            println!("{j}");
        }
        return Ok(());
    }
    if args.floor || args.vs_floor {
        bail!("--floor and --vs-floor measure one ctid: not with --ha or --nats");
    }
    let tag = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    // With --ha and no --nats: a nats-server of this run's own, with its store in a temporary
    // directory (declared first: removed after the server has stopped).
    let mut _store = None;
    let mut own_nats = None;
    let nats = match &args.nats {
        Some(u) => u.trim().to_string(),
        None => {
            let store = std::env::temp_dir().join(format!("ctid-load-nats-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&store);
            _store = Some(RemoveOnDrop(store.clone()));
            let port = free_port().context("no free port for nats-server")?;
            let n = tokio::task::spawn_blocking(move || {
                ctid_sim::nats::NatsServer::start(port, &store)
            })
            .await
            .context("starting nats-server")?
            .map_err(|e| anyhow::anyhow!("cannot start nats-server: {e}"))?;
            let url = n.url();
            eprintln!("nats-server started at {url}");
            own_nats = Some(n);
            url
        }
    };
    let addr = nats_addr(&nats);
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| format!("cannot reach NATS at {nats} ({addr})"))?;
    let (name, on) = if args.ha {
        let nats_pid = own_nats.as_ref().and_then(|_| child_named("nats-server"));
        (
            "ha",
            Extra::Ha(HaPair {
                url: nats,
                cluster: format!("ctidload_{tag}"),
                nats_pid,
                snapshot_every: args.snapshot_every,
            }),
        )
    } else {
        // Export off, then on; a stream and subjects of this run's own.
        (
            "export",
            Extra::Export(Export {
                url: nats,
                stream: format!("CTIDLOAD_{tag}"),
                prefix: format!("ctidload_{tag}"),
            }),
        )
    };
    let r = compare(&args, &numbers, name, &on).await;
    drop(own_nats);
    r
}

/// Two runs with the same arguments, `name` off (one ctid) then on (`on`): both reports, the
/// ratios on/off of ctid CPU per switch event and of the p99 latency; `--json`: `<name>_off`,
/// `<name>_on`, `cpu_ratio_<name>` and `p99_ratio_<name>` on the last line.
async fn compare(args: &Args, numbers: &[String], name: &str, on: &Extra) -> anyhow::Result<()> {
    eprintln!("run 1 of 2: {name} off");
    let off = measure(args, numbers, &Extra::None)
        .await
        .with_context(|| format!("the run with {name} off"))?;
    println!("{name} off:");
    print_report(args, &off, "ctid");
    eprintln!("run 2 of 2: {name} on");
    let on_f = measure(args, numbers, on).await;
    on.cleanup().await;
    let on_f = on_f.with_context(|| format!("the run with {name} on"))?;
    println!("{name} on ({}):", on.describe());
    print_report(args, &on_f, "ctid");
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let show = |r: Option<f64>| r.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into());
    let cpu_ratio = ratio(on_f.cpu_per, off.cpu_per);
    let p99_ratio = ratio(on_f.p99, off.p99);
    println!(
        "ctid CPU per switch event, {name} on against off: {:.1} µs / {:.1} µs = {}",
        on_f.cpu_per,
        off.cpu_per,
        show(cpu_ratio)
    );
    println!(
        "latency p99, {name} on against off: {:.2} ms / {:.2} ms = {}",
        on_f.p99,
        off.p99,
        show(p99_ratio)
    );
    if on_f
        .export
        .as_ref()
        .is_some_and(|x| x.lag_zero_after.is_none())
    {
        eprintln!(
            "ctid_export_lag did not reach 0 within {} s: NATS had not acknowledged every event when ctid was stopped",
            LAG_WAIT.as_secs()
        );
    }
    if on_f
        .ha
        .as_ref()
        .is_some_and(|h| h.caught_up_after.is_none())
    {
        eprintln!(
            "the backup had not applied the whole input stream within {} s of the end of the load",
            LAG_WAIT.as_secs()
        );
    }
    if args.json {
        let mut j = serde_json::json!({ "nats": on.nats_url() });
        j[format!("{name}_off")] = report_json(args, &off);
        j[format!("{name}_on")] = report_json(args, &on_f);
        j[format!("cpu_ratio_{name}")] = cpu_ratio.into();
        j[format!("p99_ratio_{name}")] = p99_ratio.into();
        println!("{j}");
    }
    Ok(())
}
