//! `ctid-chaos --ha --kills N [--seed S] [--nodes 2|3]`: hot standby under faults
//! (docs/operations.md §13).
//!
//! It runs a three-node NATS cluster (routes on loopback, JetStream replicas 3), csta-sim in this
//! process, and `--nodes` ctid processes of one `[ha]` cluster (with the event export on, which is
//! the record of every event published). Each ctid reaches each NATS node through a TCP proxy of
//! this program, so that it can be cut off from NATS alone. Desk clients ([`ResumingClient`] with
//! the list of nodes) are registered on shares of the DNs while calls, hot desks and agent
//! changes run at the simulated phones. Then, N times, a fault of the primary, in turn and then at
//! random:
//!
//! * `kill`: SIGKILL; the node is started again and joins as a backup;
//! * `stop`: SIGSTOP for longer than the lease, SIGCONT once another node serves (the woken node
//!   must find it lost and follow);
//! * `partition`: the primary's NATS connections cut (its CSTA link stays up) until another node
//!   serves, then healed;
//! * `nats`: one NATS node of three killed and started again three leases later; the longest
//!   time no node answered a request meanwhile is measured (a server that led one of the pair's
//!   streams, or carried the primary's connection, costs the time JetStream and the client take
//!   to find another, and can move the primary).
//!
//! After each, once every node is back (one primary, the others ready backups), the load pauses
//! and the checks of the link chaos run (ctid's model equals the switch's; every client's calls
//! learnt from its events equal ctid's). The switchover time is from the fault to the first
//! request (RequestQueryServer) answered by another node; the time until that node's link is up
//! again is shown beside it. At the end the export stream is read back: an event published for a
//! DN a client registered, after its registration, that the client never got is lost; an event
//! numbered at or below one it already had is duplicated. csta-sim counts requests from a
//! connection that another connection has superseded: two nodes acting at once.
//!
//! The last line: `kills=N mismatches=M lost=L duplicated=D dual_primary=P
//! switchover_ms_p50=X switchover_ms_max=Y`; the exit status is 1 unless M, L, D and P are 0.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ctid_client::{Client, ResumeOptions};
use ctid_protocol::{EventName, Request, RequestName};
use ctid_sim::nats::{free_port, NatsCluster};
use ctid_sim::{DeviceConfig, Sim, SimConfig};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{
    all_dns, config_text, print_differences, start_clients, start_load, verify, Args, Gate, Rng,
    Watcher,
};

/// A TCP proxy from a ctid node to one NATS node; `cut` severs it (both ways, at once) and
/// refuses new connections until healed.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    kick: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: u16) -> anyhow::Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let (kick, _) = watch::channel(0u64);
        let (c, k) = (cut.clone(), kick.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut a, _)) = l.accept().await else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let mut cut_now = k.subscribe();
                tokio::spawn(async move {
                    let Ok(mut b) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = cut_now.changed() => {}
                    }
                });
            }
        });
        Ok(Proxy { port, cut, kick })
    }

    fn set_cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
        if on {
            self.kick.send_modify(|g| *g += 1);
        }
    }
}

/// One ctid process of the cluster.
struct Node {
    name: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    proxies: Vec<Proxy>,
}

impl Node {
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    fn spawn(&mut self, bin: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// `GET path` on a node: (status, JSON body), or `None` (no answer within `timeout`).
async fn get(port: u16, path: &str, timeout: Duration) -> Option<(u16, Value)> {
    let ask = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten()
}

/// Wait until exactly one running node is primary with its link up (`/readyz` 200) and every
/// other running node is a ready backup; the primary's index.
async fn steady(nodes: &[Node], within: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + within;
    loop {
        let mut primary = None;
        let mut ok = true;
        let mut seen = Vec::new();
        for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.running()) {
            let Some((_, v)) = get(n.port, "/api/ha", Duration::from_millis(500)).await else {
                ok = false;
                seen.push(format!("{}: no answer", n.name));
                continue;
            };
            let role = v["role"].as_str().unwrap_or("?").to_string();
            let ready = v["ready"].as_bool().unwrap_or(false);
            seen.push(format!("{}: {role} ready={ready} lag={}", n.name, v["lag"]));
            match role.as_str() {
                "primary" if primary.is_none() => primary = Some(i),
                "backup" if ready => {}
                _ => ok = false,
            }
        }
        if let (true, Some(p)) = (ok, primary) {
            if let Some((200, _)) = get(nodes[p].port, "/readyz", Duration::from_millis(500)).await
            {
                return Ok(p);
            }
            seen.push("primary's link not up".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no steady pair within {within:?}: {}",
                seen.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The time from `t0` to the first RequestQueryServer answered by a node other than `skip`.
async fn first_served(
    urls: &[String],
    skip: &str,
    t0: Instant,
    within: Duration,
) -> Option<Duration> {
    loop {
        for u in urls.iter().filter(|u| u.as_str() != skip) {
            let attempt = async {
                let mut c = Client::connect(u).await.ok()?;
                let first = c.next_event(Duration::from_millis(300)).await.ok()??;
                first.session_id.as_ref()?;
                let ev = c
                    .request(
                        Request::new(RequestName::RequestQueryServer),
                        Duration::from_millis(300),
                    )
                    .await
                    .ok()?;
                (ev.name == EventName::EventServerInfo).then_some(())
            };
            if let Ok(Some(())) = tokio::time::timeout(Duration::from_millis(400), attempt).await {
                return Some(t0.elapsed());
            }
        }
        if t0.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// From `t0` until at least `until` (and then until one answers), requests to whichever node
/// serves, one after another: the longest time between two answers (or from `t0` to the first).
async fn longest_gap(urls: &[String], t0: Instant, until: Instant) -> Duration {
    let mut last_ok = t0;
    let mut gap = Duration::ZERO;
    loop {
        let ok = first_served(urls, "", Instant::now(), Duration::ZERO)
            .await
            .is_some();
        let now = Instant::now();
        if ok {
            gap = gap.max(now - last_ok);
            last_ok = now;
            if now >= until {
                return gap;
            }
        } else if now - last_ok > Duration::from_secs(30) {
            return now - last_ok;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The time from `t0` until a node other than `skip` has its link up (`/readyz` 200).
async fn linked(nodes: &[Node], skip: usize, t0: Instant, within: Duration) -> Option<Duration> {
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if i == skip || !n.running() {
                continue;
            }
            if let Some((200, _)) = get(n.port, "/readyz", Duration::from_millis(300)).await {
                return Some(t0.elapsed());
            }
        }
        if t0.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop,
    Partition,
    Nats,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL",
            Fault::Stop => "SIGSTOP beyond the lease",
            Fault::Partition => "partition from NATS",
            Fault::Nats => "loss of one NATS node",
        }
    }
    /// The first four in turn (a short run sees each), then at random.
    fn pick(i: u32, rng: &mut Rng) -> Fault {
        match i {
            1 => Fault::Kill,
            2 => Fault::Stop,
            3 => Fault::Partition,
            4 => Fault::Nats,
            _ => match rng.below(10) {
                0..=4 => Fault::Kill,
                5 | 6 => Fault::Stop,
                7 | 8 => Fault::Partition,
                _ => Fault::Nats,
            },
        }
    }
}

fn ctid_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.ctid {
        return Ok(p.clone());
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("ctid");
    if !bin.is_file() {
        bail!(
            "{} not found: build it first (cargo build --bin ctid, with the same profile) or give --ctid PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// Every event of the export stream: (EventSequenceNumber, ThisDN, event name).
async fn exported(urls: &[String], stream: &str) -> anyhow::Result<Vec<(u64, String, String)>> {
    let client = async_nats::connect(urls).await?;
    let js = async_nats::jetstream::new(client);
    // A cluster whose node was just restarted can answer "stream not found" until its
    // JetStream meta state has caught up: asked again until a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (s, total) = loop {
        let tried = async {
            let mut s = js.get_stream(stream).await?;
            let total = s.info().await?.state.messages;
            anyhow::Ok((s, total))
        };
        match tried.await {
            Ok(found) => break found,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("the export stream {stream}: {e:#}; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.context(format!("the export stream {stream}, for 30 s"))),
        }
    };
    let c = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut msgs = c.messages().await?;
    let mut out = Vec::new();
    while (out.len() as u64) < total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .context("reading the export stream")?
            .context("the export stream ended")??;
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        out.push((
            v["EventSequenceNumber"].as_u64().unwrap_or(0),
            v["ThisDN"].as_str().unwrap_or("").to_string(),
            v["event"].as_str().unwrap_or("").to_string(),
        ));
    }
    Ok(out)
}

/// Events the export has for a client's DNs after its registration that it never got.
fn losses(w: &Watcher, export: &[(u64, String, String)], report: &mut Vec<String>) -> u64 {
    let t = w.tracker.lock().unwrap();
    let Some(&start) = t.seqs.first() else {
        return 0;
    };
    let got: BTreeSet<u64> = t.seqs.iter().copied().collect();
    let mine: BTreeSet<&str> = w.dns.iter().map(String::as_str).collect();
    let mut lost = 0;
    for (seq, dn, name) in export {
        if *seq > start && mine.contains(dn.as_str()) && !got.contains(seq) {
            lost += 1;
            if report.len() < 20 {
                report.push(format!("{} never got #{seq} {name} on {dn}", w.name));
            }
        }
    }
    lost
}

fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let seed = super::seed_of(&args);
    let n_nodes = args.nodes.clamp(2, 3) as usize;
    println!(
        "ctid-chaos --ha: seed={seed} kills={} nodes={n_nodes} lease={}s devices={} workers={} clients={}",
        args.kills, args.lease, args.devices, args.workers, args.clients
    );
    let mut rng = Rng(seed);
    let started = Instant::now();
    let bin = ctid_binary(&args)?;
    let tag = format!("{}x{}", std::process::id(), seed % 100_000);
    let dir = std::env::temp_dir().join(format!("ctid-chaos-ha-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let nats_dir = dir.clone();
    let mut nats = tokio::task::spawn_blocking(move || NatsCluster::start(3, &nats_dir))
        .await?
        .map_err(anyhow::Error::msg)?;

    let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let sim = Sim::start(SimConfig::demo(), any, None).await?;
    let first = 7000u32;
    let devices = args.devices.max(3);
    for n in first..first + devices {
        sim.add_device(DeviceConfig::extension(&n.to_string()))
            .await
            .map_err(|e| anyhow::anyhow!("device {n}: {e}"))?;
    }

    // The nodes: each reaches every NATS node through its own proxy.
    let stream = format!("CHAOS_{tag}");
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"].into_iter().take(n_nodes) {
        let port = free_port();
        let mut proxies = Vec::new();
        for nn in &nats.nodes {
            proxies.push(Proxy::start(nn.port).await?);
        }
        let nats_urls = proxies
            .iter()
            .map(|p| format!("\"nats://127.0.0.1:{}\"", p.port))
            .collect::<Vec<_>>()
            .join(", ");
        let renew = args
            .renew
            .map(|r| format!("renew-interval = {r}\n"))
            .unwrap_or_default();
        let text = config_text(sim.csta_addr(), first, devices).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ) + &format!(
            r#"
[export.nats]
url = [{nats_urls}]
stream = "{stream}"
subject-prefix = "chaos{tag}"

[ha]
cluster = "chaos{tag}"
node = "{name}"
lease = {lease}
{renew}replicas = 3
snapshot-every = 2000
advertise = "ws://127.0.0.1:{port}/ws"
"#,
            lease = args.lease,
        );
        let config = dir.join(format!("ctid-{name}.toml"));
        std::fs::write(&config, text)?;
        nodes.push(Node {
            name: name.to_string(),
            port,
            config,
            log: dir.join(format!("ctid-{name}.log")),
            child: None,
            proxies,
        });
    }
    println!("ctid logs and configurations: {}", dir.display());
    // a first (it creates the cluster's stream and becomes primary), then the backups.
    nodes[0].spawn(&bin)?;
    steady(&nodes, Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)?;
    for n in nodes.iter_mut().skip(1) {
        n.spawn(&bin)?;
    }
    steady(&nodes, Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)?;
    let urls: Vec<String> = nodes.iter().map(Node::ws_url).collect();

    let dns = all_dns(first, devices);
    let (observer, desks) = start_clients(&urls, &dns, args.clients).await?;
    let gate = Arc::new(Gate::default());
    let load = start_load(&sim, &gate, &mut rng, &args, first, devices);

    let opts = ResumeOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        give_up_after: Duration::from_secs(30),
    };
    let settle = Duration::from_millis(args.settle_ms);
    let lease = Duration::from_secs_f64(args.lease);
    let mut mismatches = 0u32;
    let mut switchovers: Vec<u64> = Vec::new();
    let mut nats_switchovers = 0u32;
    let mut nats_gaps: Vec<u64> = Vec::new();
    tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;
    for i in 1..=args.kills {
        tokio::time::sleep(Duration::from_millis(
            200 + rng.below(args.max_gap_ms.max(1)),
        ))
        .await;
        let p = match steady(&nodes, Duration::from_secs(30)).await {
            Ok(p) => p,
            Err(e) => {
                mismatches += 1;
                println!("fault {i}: not steady before it: {e}");
                continue;
            }
        };
        let fault = Fault::pick(i, &mut rng);
        let old = nodes[p].ws_url();
        let t0 = Instant::now();
        let mut nats_down = None;
        match fault {
            Fault::Kill => nodes[p].kill().await,
            Fault::Stop => nodes[p].signal(libc::SIGSTOP),
            Fault::Partition => nodes[p].proxies.iter().for_each(|x| x.set_cut(true)),
            Fault::Nats => {
                let j = rng.below(nats.nodes.len() as u64) as usize;
                tokio::task::block_in_place(|| nats.nodes[j].kill());
                nats_down = Some(j);
            }
        }
        let mut line = format!("fault {i}: {} of {}", fault.name(), nodes[p].name);
        if fault == Fault::Nats {
            // Down for a while under load: the longest time no node answered a request.
            let gap = longest_gap(&urls, t0, t0 + lease * 3).await;
            nats_gaps.push(gap.as_millis() as u64);
            if let Some(j) = nats_down {
                let r = tokio::task::block_in_place(|| nats.nodes[j].restart());
                if let Err(e) = r {
                    bail!("NATS node {j} does not start again: {e}");
                }
                line = format!(
                    "fault {i}: {} (n{j}): longest time without an answer {} ms",
                    fault.name(),
                    gap.as_millis()
                );
            }
        } else {
            let served = first_served(&urls, &old, t0, Duration::from_secs(20)).await;
            let link = linked(&nodes, p, t0, Duration::from_secs(20)).await;
            match served {
                Some(d) => {
                    switchovers.push(d.as_millis() as u64);
                    line += &format!(
                        ": served by another node after {} ms, its link up after {}",
                        d.as_millis(),
                        link.map(|l| format!("{} ms", l.as_millis()))
                            .unwrap_or_else(|| "never".into())
                    );
                }
                None => {
                    mismatches += 1;
                    line += ": no other node served within 20 s";
                }
            }
            match fault {
                Fault::Kill => nodes[p].spawn(&bin)?,
                Fault::Stop => {
                    // Wake it well after its lease ended: it must find that it lost.
                    let woke = t0 + lease * 2;
                    tokio::time::sleep_until(woke.into()).await;
                    nodes[p].signal(libc::SIGCONT);
                }
                Fault::Partition => nodes[p].proxies.iter().for_each(|x| x.set_cut(false)),
                Fault::Nats => {}
            }
        }
        let now_primary = match steady(&nodes, Duration::from_secs(30)).await {
            Ok(q) => q,
            Err(e) => {
                mismatches += 1;
                println!("{line}\n  not steady after it: {e}");
                continue;
            }
        };
        if fault == Fault::Nats && now_primary != p {
            nats_switchovers += 1;
            line += " — the primary changed";
        }
        gate.pause().await;
        let mut obs = match Client::connect_any(&urls, opts).await {
            Ok(c) => c,
            Err(e) => {
                mismatches += 1;
                println!("{line}\n  cannot reach the primary to check: {e}");
                gate.resume();
                continue;
            }
        };
        let _ = obs.next_event(Duration::from_secs(5)).await;
        let d = verify(&sim, &mut obs, &observer, &dns, &desks, settle).await?;
        let calls = sim.snapshot().await["calls"]
            .as_array()
            .map_or(0, |c| c.len());
        if d.is_empty() {
            println!("{line}; {calls} calls: consistent");
        } else {
            mismatches += 1;
            println!("{line}: {} differences (seed={seed}, fault {i}):", d.len());
            print_differences(&d);
        }
        gate.resume();
    }

    // The end: stop the load, let the last calls finish, compare once more.
    gate.finish(load).await;
    steady(&nodes, Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)?;
    let mut obs = Client::connect_any(&urls, opts).await?;
    let _ = obs.next_event(Duration::from_secs(5)).await;
    let d = verify(&sim, &mut obs, &observer, &dns, &desks, settle).await?;
    if !d.is_empty() {
        mismatches += 1;
        println!("at the end: {} differences (seed={seed}):", d.len());
        print_differences(&d);
    }
    // Every client caught up (verify synced them); the export has published everything once
    // its lag is 0 on the primary.
    let p = steady(&nodes, Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lag = get(nodes[p].port, "/readyz", Duration::from_secs(1))
            .await
            .and_then(|(_, v)| v["export"]["lag"].as_u64());
        if lag == Some(0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let nats_urls = nats.urls();
    let export = exported(&nats_urls, &stream).await?;
    let mut report = Vec::new();
    let mut lost = 0;
    let mut duplicated = 0;
    for w in std::iter::once(&observer).chain(desks.iter()) {
        lost += losses(w, &export, &mut report);
        let t = w.tracker.lock().unwrap();
        duplicated += t.duplicated;
        lost += t.refused;
    }
    for l in &report {
        println!("  {l}");
    }
    let dual = sim.dual_primary().await;
    if dual.violations > 0 {
        println!(
            "csta-sim saw {} requests from {} superseded connections:",
            dual.violations, dual.connections
        );
        for l in &dual.recent {
            println!("  {l}");
        }
    }
    let events: u64 = desks.iter().map(|d| d.tracker.lock().unwrap().events).sum();
    println!(
        "{} faults; {} switch actions, {events} events to desk clients, {} exported; {} NATS node losses, {nats_switchovers} of them changed the primary, longest time without an answer p50={} ms max={} ms; {:.1} s",
        args.kills,
        gate.steps.load(Ordering::Relaxed),
        export.len(),
        nats_gaps.len(),
        percentile(&nats_gaps, 0.5),
        nats_gaps.iter().max().copied().unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    let failed = mismatches > 0 || lost > 0 || duplicated > 0 || dual.violations > 0;
    if failed {
        println!(
            "repeat with: ctid-chaos --ha --kills {} --seed {seed} (timing differs from run to run); logs in {}",
            args.kills,
            dir.display()
        );
    }
    println!(
        "kills={} mismatches={mismatches} lost={lost} duplicated={duplicated} dual_primary={} switchover_ms_p50={} switchover_ms_max={}",
        args.kills,
        dual.violations,
        percentile(&switchovers, 0.5),
        switchovers.iter().max().copied().unwrap_or(0)
    );
    for n in &mut nodes {
        n.signal(libc::SIGCONT);
        n.kill().await;
    }
    drop(nats);
    if failed {
        std::process::exit(1);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
