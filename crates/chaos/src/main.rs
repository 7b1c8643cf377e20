//! `ctid-chaos --drops N [--seed S]`: csta-sim and ctid in one process, calls (and hot-desk
//! changes) driven through the simulator's Rust API, and the CSTA link dropped at random moments
//! N times — sometimes with the switch silent for a while, so things change while ctid cannot
//! see them. After each recovery (and at the end) the load pauses and:
//!
//! * ctid's model, as a client reads it with RequestQueryAddress, must equal the switch's for
//!   every DN (calls and parties, agents, hot-desk pairs — see [`ctid_chaos::check`]);
//! * every client's calls — the observer's (registered on every DN) and each desk client's (a
//!   share of the DNs) — as learnt from its events alone (EventRinging, EventEstablished, … add a
//!   ConnID; EventReleased, EventAbandoned, EventDiverted remove it; EventPartyChanged moves it),
//!   must be the calls ctid (and so the switch) has on its DNs: no client is left with a call the
//!   switch does not have, nor misses one it has. Each client is first caught up with ctid (it
//!   sends a request and takes every event that comes before the answer), so an event still on
//!   its way is never taken for a miss.
//!
//! The comparison is repeated until everything agrees twice in a row; what still differs after
//! `--settle-ms` counts one mismatch and is printed with the seed, the drop and the evidence:
//! the events the client and the observer got for that ConnID, the DNs ctid has it on, the
//! switch's calls on the DN and the client's last events there. The last line is
//! `drops=N mismatches=M`; the exit status is 1 when M > 0.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ctid_chaos::check;
use ctid_client::{Client, ResumeOptions, ResumingClient};
use ctid_protocol::{Event, EventName, Request, RequestName};
use ctid_sim::{DeviceConfig, Sim, SimConfig};
use tokio::sync::{mpsc, oneshot};

mod ha;

#[derive(Parser, Debug)]
#[command(
    name = "ctid-chaos",
    about = "Drop ctid's CSTA link at random moments under load; compare ctid with the switch after every recovery"
)]
struct Args {
    /// How many times to drop the link.
    #[arg(long, default_value_t = 10)]
    drops: u32,
    /// Random seed (default: from the clock; printed so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Extensions carrying calls (7000, 7001, …).
    #[arg(long, default_value_t = 40)]
    devices: u32,
    /// Concurrent call workers.
    #[arg(long, default_value_t = 8)]
    workers: u32,
    /// Pause between call steps (ms).
    #[arg(long, default_value_t = 60)]
    step_ms: u64,
    /// Longest time between two drops (ms); each gap is random up to this.
    #[arg(long, default_value_t = 1500)]
    max_gap_ms: u64,
    /// Longest time the switch stays silent after a drop (ms), changes going on meanwhile.
    #[arg(long, default_value_t = 800)]
    max_down_ms: u64,
    /// How long ctid and the switch may take to agree after a recovery (ms).
    #[arg(long, default_value_t = 5000)]
    settle_ms: u64,
    /// Leave agent states alone (by default agents also log on, change state and log off at the
    /// phones, and ctid must resync them after every outage).
    #[arg(long)]
    no_agents: bool,
    /// Load before the first drop (ms).
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Desk clients, each registered on a share of the DNs.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Hot standby instead of link drops: a three-node NATS cluster, `--nodes` ctid processes
    /// of one `[ha]` cluster, and `--kills` faults of the primary (see the `ha` module).
    #[arg(long)]
    ha: bool,
    /// `--ha`: how many faults (SIGKILL, SIGSTOP beyond the lease, partition from NATS, the
    /// loss of one NATS node).
    #[arg(long, default_value_t = 10)]
    kills: u32,
    /// `--ha`: ctid processes in the cluster.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// `--ha`: the lease (seconds; `[ha] lease`).
    #[arg(long, default_value_t = 1.0)]
    lease: f64,
    /// `--ha`: the lease's renew interval (seconds; default lease / 4).
    #[arg(long)]
    renew: Option<f64>,
    /// `--ha`: the ctid binary (default: `ctid` beside this program).
    #[arg(long)]
    ctid: Option<std::path::PathBuf>,
}

/// splitmix64: small, seedable, good enough to pick moments and devices.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Pauses the load for a check.
#[derive(Default)]
struct Gate {
    paused: AtomicBool,
    stop: AtomicBool,
    /// Steps in progress (a check waits until none is).
    busy: AtomicU64,
    steps: AtomicU64,
}

impl Gate {
    /// Wait while paused; false when the run is over.
    async fn enter(&self) -> bool {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            if !self.paused.load(Ordering::SeqCst) {
                self.busy.fetch_add(1, Ordering::SeqCst);
                if !self.paused.load(Ordering::SeqCst) {
                    return true;
                }
                self.busy.fetch_sub(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    fn leave(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }
    async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        while self.busy.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
    /// Stop the load and let its tasks finish their step (at most 10 s each).
    async fn finish(&self, load: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in load {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// The first 20 differences of a comparison, indented under its headline.
fn print_differences(d: &[String]) {
    for l in d.iter().take(20) {
        println!("  {l}");
    }
}

/// One step at the phones, gated; switch refusals are part of the game and ignored.
async fn step<F, T>(gate: &Gate, f: F) -> Option<Option<T>>
where
    F: std::future::Future<Output = Result<T, ctid_sim::SimError>>,
{
    if !gate.enter().await {
        return None;
    }
    let r = f.await.ok();
    gate.leave();
    Some(r)
}

/// A call worker: takes idle extensions, runs a random call through them, gives them back.
async fn call_worker(
    sim: Sim,
    gate: Arc<Gate>,
    idle: Arc<Mutex<VecDeque<String>>>,
    mut rng: Rng,
    pause: Duration,
) {
    loop {
        let picked = {
            let mut q = idle.lock().unwrap();
            if q.len() >= 3 {
                let a = q.pop_front().unwrap();
                let b = q.pop_front().unwrap();
                let c = q.pop_front().unwrap();
                Some((a, b, c))
            } else {
                None
            }
        };
        let Some((a, b, c)) = picked else {
            tokio::time::sleep(pause).await;
            continue;
        };
        let done = async {
            let nap = |rng: &mut Rng| {
                Duration::from_millis(
                    pause.as_millis() as u64 / 2 + rng.below(pause.as_millis() as u64 + 1),
                )
            };
            step(&gate, sim.dial(&a, &b)).await?;
            tokio::time::sleep(nap(&mut rng)).await;
            if rng.chance(15) {
                // Abandoned while ringing.
                step(&gate, sim.hangup(&a)).await?;
                return Some(());
            }
            step(&gate, sim.answer(&b)).await?;
            tokio::time::sleep(nap(&mut rng)).await;
            if rng.chance(30) {
                step(&gate, sim.hold(&a)).await?;
                tokio::time::sleep(nap(&mut rng)).await;
                step(&gate, sim.retrieve(&a)).await?;
                tokio::time::sleep(nap(&mut rng)).await;
            }
            let mut last = a.clone();
            if rng.chance(25) {
                step(&gate, sim.consult(&a, &c)).await?;
                tokio::time::sleep(nap(&mut rng)).await;
                step(&gate, sim.answer(&c)).await?;
                tokio::time::sleep(nap(&mut rng)).await;
                if rng.chance(50) {
                    step(&gate, sim.transfer(&a)).await?;
                    last = b.clone();
                } else {
                    step(&gate, sim.conference(&a)).await?;
                }
                tokio::time::sleep(nap(&mut rng)).await;
            }
            step(&gate, sim.hangup(&last)).await?;
            Some(())
        }
        .await;
        // Whatever happened, leave the phones idle before giving them back.
        for d in [&a, &b, &c] {
            for _ in 0..4 {
                if !gate.enter().await {
                    break;
                }
                let r = sim.hangup(d).await;
                gate.leave();
                if r.is_err() {
                    break;
                }
            }
        }
        {
            let mut q = idle.lock().unwrap();
            q.push_back(a);
            q.push_back(b);
            q.push_back(c);
        }
        if done.is_none() && gate.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Guests sit down at desks and leave; with `agents`, agents change state too.
async fn desk_worker(sim: Sim, gate: Arc<Gate>, mut rng: Rng, pause: Duration, agents: bool) {
    loop {
        let guest = format!("{}", 2001 + rng.below(9));
        let host = format!("{}", 1001 + rng.below(9));
        let r = match rng.below(if agents { 4 } else { 2 }) {
            0 => step(&gate, sim.hotdesk_associate(&guest, &host)).await,
            1 => step(&gate, sim.hotdesk_cancel(&guest)).await,
            _ => {
                let st = ["loggedOn", "ready", "notReady", "loggedOff"][rng.below(4) as usize];
                step(&gate, sim.agent_state(&guest, st, None, None)).await
            }
        };
        if r.is_none() {
            return;
        }
        tokio::time::sleep(
            pause * 4 + Duration::from_millis(rng.below(pause.as_millis() as u64 * 4 + 1)),
        )
        .await;
    }
}

/// What one client learnt from its events: DN → ConnIDs.
#[derive(Default)]
struct Tracker {
    calls: BTreeMap<String, BTreeSet<String>>,
    /// (DN, ConnID) → the events that concerned it, for the report of a difference.
    history: BTreeMap<(String, String), Vec<String>>,
    /// DN → its last few call events (any ConnID), for the report of a difference.
    recent: BTreeMap<String, VecDeque<String>>,
    closed: Option<String>,
    events: u64,
    /// Every EventSequenceNumber received, in order (the first frames of connections and
    /// EventSessionResumed aside): duplicates and, against the export, losses.
    seqs: Vec<u64>,
    /// Events numbered at or below one received before.
    duplicated: u64,
    /// Resumes refused: the session's buffered events are gone.
    refused: u64,
}

impl Tracker {
    fn event(&mut self, ev: &Event) {
        self.events += 1;
        if ev.session_id.is_none() && ev.name != EventName::EventSessionResumed {
            let n = ev.event_sequence_number;
            if self.seqs.last().is_some_and(|l| n <= *l) {
                self.duplicated += 1;
            }
            self.seqs.push(n);
        }
        if ctid_client::is_resume_refusal(ev) {
            self.refused += 1;
            self.closed = Some(format!("resume refused: {:?}", ev.error_message));
        }
        let (Some(dn), Some(conn)) = (ev.this_dn.as_deref(), ev.conn_id) else {
            return;
        };
        let conn = conn.to_string();
        let line = format!(
            "#{} {}{}{}",
            ev.event_sequence_number,
            ev.name.as_str(),
            ev.previous_conn_id
                .map(|p| format!(" (prev {p})"))
                .unwrap_or_default(),
            ev.other_dn
                .as_deref()
                .map(|o| format!(" other {o}"))
                .unwrap_or_default(),
        );
        let h = self
            .history
            .entry((dn.to_string(), conn.clone()))
            .or_default();
        if h.len() < 40 {
            h.push(line.clone());
        }
        let r = self.recent.entry(dn.to_string()).or_default();
        if r.len() == 8 {
            r.pop_front();
        }
        r.push_back(format!("{line} {conn}"));
        let set = self.calls.entry(dn.to_string()).or_default();
        match ev.name {
            EventName::EventReleased | EventName::EventAbandoned | EventName::EventDiverted => {
                set.remove(&conn);
            }
            EventName::EventPartyChanged => {
                if let Some(p) = ev.previous_conn_id {
                    set.remove(&p.to_string());
                }
                set.insert(conn);
            }
            EventName::EventError | EventName::EventUserEvent => {}
            _ => {
                set.insert(conn);
            }
        }
    }

    /// Everything this client was told about `conn`, on any of its DNs.
    fn about(&self, conn: &str) -> String {
        let v: Vec<String> = self
            .history
            .iter()
            .filter(|((_, c), h)| c == conn || h.iter().any(|l| l.contains(conn)))
            .map(|((dn, c), h)| format!("{dn} {c}: {h:?}"))
            .collect();
        if v.is_empty() {
            "nothing".into()
        } else {
            v.join("; ")
        }
    }

    /// The last call events this client got on `dn`.
    fn recent_on(&self, dn: &str) -> Vec<String> {
        self.recent
            .get(dn)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// An event as the reader loop sees it; false when the connection is over.
    fn take(&mut self, r: ctid_client::Result<Option<Event>>) -> bool {
        match r {
            Ok(Some(ev)) if ev.name == EventName::EventServerDisconnected => {
                self.closed = ev.error_message.clone().or(Some("closed".into()));
                false
            }
            Ok(Some(ev)) => {
                self.event(&ev);
                true
            }
            Ok(None) => true,
            Err(e) => {
                self.closed = Some(e.to_string());
                false
            }
        }
    }
}

/// A client whose events are tracked: the observer (every DN) or a desk client (a share).
struct Watcher {
    name: String,
    dns: Vec<String>,
    tracker: Arc<Mutex<Tracker>>,
    /// Desk clients: asks the reader task to catch up (see [`Watcher::sync`]); the observer is
    /// read in place by [`drain`].
    sync: Option<mpsc::Sender<oneshot::Sender<()>>>,
}

impl Watcher {
    /// Returns once this client's tracker holds every event ctid sent it before now: the reader
    /// task sends a request and applies the events that arrive before its answer (ctid writes a
    /// client's events in order), then whatever else is already there.
    async fn sync(&self) {
        let Some(tx) = &self.sync else {
            return;
        };
        let (ack, done) = oneshot::channel();
        // An error: the reader has ended, and its tracker's `closed` says why.
        if tx.send(ack).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Apply every event already received by `client` (its buffered ones and what is readable now).
async fn drain(client: &mut ResumingClient, tracker: &Mutex<Tracker>) {
    loop {
        let r = client.next_event(Duration::ZERO).await;
        let more = matches!(r, Ok(Some(_)));
        if !tracker.lock().unwrap().take(r) || !more {
            return;
        }
    }
}

/// A client registered on `dns` whose events are tracked; with several `urls` (a pair) it
/// follows the primary and resumes its session there.
async fn desk_client(urls: &[String], name: String, dns: Vec<String>) -> anyhow::Result<Watcher> {
    let opts = ResumeOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        give_up_after: Duration::from_secs(60),
    };
    let mut c = ResumingClient::connect_any(urls, opts).await?;
    c.next_event(Duration::from_secs(5)).await?;
    for d in &dns {
        let ev = c
            .request(Request::register_address(d.clone()), Duration::from_secs(5))
            .await?;
        if ev.name != EventName::EventRegistered {
            bail!("register {d}: {ev:?}");
        }
    }
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    // What was already there when it registered: from a query, as a desktop would do.
    for d in &dns {
        let q = c
            .request(
                Request::query_address(d.clone(), ctid_protocol::AddressInfoType::DnStatus),
                Duration::from_secs(5),
            )
            .await?;
        let mut t = tracker.lock().unwrap();
        let set = t.calls.entry(d.clone()).or_default();
        for n in 1.. {
            match q.extension_str(&format!("conn-{n}")) {
                Some(c) => set.insert(c.to_string()),
                None => break,
            };
        }
    }
    // From here on every event counts (for duplicates and losses).
    tracker.lock().unwrap().seqs.push(c.last_sequence());
    let t = tracker.clone();
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<()>>(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = c.next_event(Duration::from_secs(1)) => {
                    if !t.lock().unwrap().take(r) {
                        return;
                    }
                }
                Some(ack) = rx.recv() => {
                    // The answer comes after every event ctid sent this client before it; the
                    // events read meanwhile wait in the client's buffer, drained below.
                    let r = c
                        .request(
                            Request::new(RequestName::RequestQueryServer),
                            Duration::from_secs(30),
                        )
                        .await;
                    if let Err(e) = r {
                        t.lock().unwrap().closed = Some(format!("sync: {e}"));
                        let _ = ack.send(());
                        return;
                    }
                    drain(&mut c, &t).await;
                    let _ = ack.send(());
                }
            }
        }
    });
    Ok(Watcher {
        name,
        dns,
        tracker,
        sync: Some(tx),
    })
}

/// What ctid and the switch have, to explain a client's difference.
struct Truth<'a> {
    model: &'a check::Model,
    snapshot: &'a serde_json::Value,
    /// ConnID → the DNs ctid has it on.
    parties: BTreeMap<&'a str, Vec<&'a str>>,
}

impl<'a> Truth<'a> {
    fn new(model: &'a check::Model, snapshot: &'a serde_json::Value) -> Self {
        let mut parties: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (dn, conns) in &model.conns {
            for c in conns {
                parties.entry(c.as_str()).or_default().push(dn.as_str());
            }
        }
        Truth {
            model,
            snapshot,
            parties,
        }
    }

    /// The switch's calls on `dn`: callID and connections.
    fn switch_calls_of(&self, dn: &str) -> Vec<String> {
        self.snapshot["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["device"].as_str() == Some(dn))
            })
            .map(|c| format!("{} {}", c["callID"], c["connections"]))
            .collect()
    }

    /// One client's calls (`t`, learnt from its events) against ctid's, on each of its DNs;
    /// each difference with what the client, the observer (`obs`, unless the client is the
    /// observer) and both sides know of the call.
    fn differences(&self, w: &Watcher, t: &Tracker, obs: Option<&Tracker>, out: &mut Vec<String>) {
        if let Some(why) = &t.closed {
            out.push(format!("{} was disconnected: {why}", w.name));
        }
        let witness = |c: &str| {
            obs.map(|o| format!("\n      the observer's events for {c}: {}", o.about(c)))
                .unwrap_or_default()
        };
        let empty = BTreeSet::new();
        for dn in &w.dns {
            let mine = t.calls.get(dn).unwrap_or(&empty);
            let real = self.model.conns.get(dn).unwrap_or(&empty);
            for c in mine.difference(real) {
                out.push(format!(
                    "{} holds ConnID {c} on {dn}, which the switch does not have\n      \
                     the switch's calls on {dn}: {:?}\n      its events for {c}: {}{}\n      \
                     its last events on {dn}: {:?}",
                    w.name,
                    self.switch_calls_of(dn),
                    t.about(c),
                    witness(c),
                    t.recent_on(dn)
                ));
            }
            for c in real.difference(mine) {
                out.push(format!(
                    "{} was never told of ConnID {c} on {dn}\n      \
                     ctid has {c} on {:?}; the switch's calls on {dn}: {:?}\n      \
                     its events for {c}: {}{}\n      its last events on {dn}: {:?}",
                    w.name,
                    self.parties.get(c.as_str()).cloned().unwrap_or_default(),
                    self.switch_calls_of(dn),
                    t.about(c),
                    witness(c),
                    t.recent_on(dn)
                ));
            }
        }
    }
}

/// The observer's and each desk client's calls, as learnt from their events, against ctid's
/// (already compared with the switch).
fn check_clients(
    observer: &Watcher,
    desks: &[Watcher],
    model: &check::Model,
    snapshot: &serde_json::Value,
) -> Vec<String> {
    let cx = Truth::new(model, snapshot);
    let mut d = Vec::new();
    let obs = observer.tracker.lock().unwrap();
    cx.differences(observer, &obs, None, &mut d);
    for w in desks {
        let t = w.tracker.lock().unwrap();
        cx.differences(w, &t, Some(&obs), &mut d);
    }
    d
}

/// Compare everything until it agrees twice in a row or `settle` passes; the differences that
/// remain. ctid's model is read first; then every client is caught up to at least that moment
/// (its tracker holds all the events ctid sent it before), so a difference is never an event
/// still on its way — and one that is still there at the deadline is a client that was not told.
async fn verify(
    sim: &Sim,
    obs: &mut Client,
    observer: &Watcher,
    dns: &[String],
    desks: &[Watcher],
    settle: Duration,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + settle;
    let mut agreed = false;
    loop {
        let model = check::ctid_model(obs, dns)
            .await
            .map_err(anyhow::Error::msg)?;
        let snapshot = sim.snapshot().await;
        let mut d = check::diff(&model, &check::sim_model(&snapshot, dns));
        if d.is_empty() {
            observer.sync().await;
            for desk in desks {
                desk.sync().await;
            }
            d = check_clients(observer, desks, &model, &snapshot);
        }
        if d.is_empty() {
            if agreed {
                return Ok(d);
            }
            // Once more, so a change still in flight is not mistaken for agreement.
            agreed = true;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        agreed = false;
        if Instant::now() >= deadline {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seed given, or one from the clock (printed, so that a run can be repeated).
fn seed_of(args: &Args) -> u64 {
    args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

/// Every DN ctid is configured with: desks 1001–1010, guests 2001–2010, a queue, a routing
/// point and the extensions carrying calls.
fn all_dns(first: u32, devices: u32) -> Vec<String> {
    let mut dns: Vec<String> = (1001..=1010)
        .chain(2001..=2010)
        .map(|n| n.to_string())
        .collect();
    dns.push("3001".into());
    dns.push("3101".into());
    dns.extend((first..first + devices).map(|n| n.to_string()));
    dns
}

/// The observer (a client registered on every DN, whose events are tracked like a desk
/// client's — and the other witness when a desk client misses something) and `clients` desk
/// clients, each registered on a share of the DNs.
async fn start_clients(
    urls: &[String],
    dns: &[String],
    clients: u32,
) -> anyhow::Result<(Watcher, Vec<Watcher>)> {
    let observer = desk_client(urls, "the observer".into(), dns.to_vec())
        .await
        .context("observer")?;
    let mut desks = Vec::new();
    let n = clients.max(1) as usize;
    for i in 0..n {
        let share: Vec<String> = dns.iter().skip(i).step_by(n).cloned().collect();
        desks.push(
            desk_client(urls, format!("desk client {i}"), share)
                .await
                .context("desk client")?,
        );
    }
    Ok((observer, desks))
}

/// The load at the phones: call workers on the extensions and the desk worker (hot desks and,
/// unless `--no-agents`, agent states).
fn start_load(
    sim: &Sim,
    gate: &Arc<Gate>,
    rng: &mut Rng,
    args: &Args,
    first: u32,
    devices: u32,
) -> Vec<tokio::task::JoinHandle<()>> {
    let idle = Arc::new(Mutex::new(
        (first..first + devices)
            .map(|n| n.to_string())
            .collect::<VecDeque<_>>(),
    ));
    let step = Duration::from_millis(args.step_ms.max(1));
    let mut load = Vec::new();
    for _ in 0..args.workers.max(1) {
        let r = Rng(rng.next());
        load.push(tokio::spawn(call_worker(
            sim.clone(),
            gate.clone(),
            idle.clone(),
            r,
            step,
        )));
    }
    load.push(tokio::spawn(desk_worker(
        sim.clone(),
        gate.clone(),
        Rng(rng.next()),
        step,
        !args.no_agents,
    )));
    load
}

fn config(csta: SocketAddr, first: u32, devices: u32) -> anyhow::Result<ctid_server::Config> {
    ctid_server::Config::parse(&config_text(csta, first, devices)).map_err(anyhow::Error::msg)
}

/// The configuration of a ctid under test: the simulator's link, every DN registered.
fn config_text(csta: SocketAddr, first: u32, devices: u32) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
server-name = "ctid-chaos"

[[link]]
name = "csta-sim"
host = "{host}"
port = {port}
session = "ecma354"
kpl-interval = 0.5
kpl-tolerance = 2
connect-tout = 0.5
reconnect-min = 0.05
reconnect-max = 0.2
request-timeout = 2

[[dn]]
range = "1001-1010"
register = true

[[dn]]
range = "2001-2010"
register = true

[[dn]]
number = "3001"
type = "ACDQueue"
register = true

[[dn]]
number = "3101"
type = "RoutingPoint"
register = true

[[dn]]
range = "{first}-{last}"
register = true

[[agent-login]]
agent-id = "2001"
"#,
        host = csta.ip(),
        port = csta.port(),
        last = first + devices - 1,
    )
}

async fn wait_up(ctid: &ctid_server::Running, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut rx = ctid.status.clone();
    while rx.borrow().link.as_str() != "up" {
        if Instant::now() >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
    }
    true
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.ha {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
            )
            .with_writer(std::io::stderr)
            .init();
        return ha::run(args).await;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let seed = seed_of(&args);
    println!(
        "ctid-chaos: seed={seed} drops={} devices={} workers={} clients={}",
        args.drops, args.devices, args.workers, args.clients
    );
    let mut rng = Rng(seed);
    let started = Instant::now();
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let sim = Sim::start(SimConfig::demo(), any, None).await?;
    let first = 7000u32;
    let devices = args.devices.max(3);
    for n in first..first + devices {
        sim.add_device(DeviceConfig::extension(&n.to_string()))
            .await
            .map_err(|e| anyhow::anyhow!("device {n}: {e}"))?;
    }
    let ctid = ctid_server::start(config(sim.csta_addr(), first, devices)?).await?;
    if !wait_up(&ctid, Duration::from_secs(10)).await {
        bail!("ctid's link never came up");
    }
    let url = ctid.ws_url();
    let dns = all_dns(first, devices);
    // Reads ctid's model (RequestQueryAddress needs no registration).
    let mut obs = Client::connect(&url).await?;
    obs.next_event(Duration::from_secs(5)).await?;
    let (observer, desks) = start_clients(std::slice::from_ref(&url), &dns, args.clients).await?;
    let gate = Arc::new(Gate::default());
    let load = start_load(&sim, &gate, &mut rng, &args, first, devices);

    let settle = Duration::from_millis(args.settle_ms);
    let mut mismatches = 0u32;
    let mut survived = 0u32;
    tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;
    for i in 1..=args.drops {
        tokio::time::sleep(Duration::from_millis(
            200 + rng.below(args.max_gap_ms.max(1)),
        ))
        .await;
        let down = Duration::from_millis(rng.below(args.max_down_ms + 1));
        let framing = rng.chance(25);
        if !down.is_zero() {
            sim.set_stall(true).await;
        }
        let how = if framing {
            let _ = sim.inject_malformed_kind("framing").await;
            "framing lost"
        } else {
            sim.drop_connections().await;
            "connection dropped"
        };
        tokio::time::sleep(down).await;
        sim.set_stall(false).await;
        let t = Instant::now();
        // Give the link a moment to notice before waiting for it to be back.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !wait_up(&ctid, Duration::from_secs(15)).await {
            mismatches += 1;
            println!("drop {i}: the link did not come back within 15 s");
            continue;
        }
        gate.pause().await;
        let d = verify(&sim, &mut obs, &observer, &dns, &desks, settle).await?;
        let calls = sim.snapshot().await["calls"]
            .as_array()
            .map_or(0, |c| c.len());
        if d.is_empty() {
            survived += 1;
            println!("drop {i}: {how}, switch silent {down:?}, back after {:?}, {calls} calls: consistent", t.elapsed());
        } else {
            mismatches += 1;
            println!(
                "drop {i}: {how}, switch silent {down:?}: {} differences (seed={seed}, drop {i}):",
                d.len()
            );
            print_differences(&d);
        }
        gate.resume();
    }
    // The end: stop the load, let the last calls finish, compare once more.
    gate.finish(load).await;
    let d = verify(&sim, &mut obs, &observer, &dns, &desks, settle).await?;
    if !d.is_empty() {
        mismatches += 1;
        println!("at the end: {} differences (seed={seed}):", d.len());
        print_differences(&d);
    }
    let events: u64 = desks.iter().map(|d| d.tracker.lock().unwrap().events).sum();
    println!(
        "survived {survived} of {} drops; {} switch actions, {events} events to desk clients, {:.1} s",
        args.drops,
        gate.steps.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    if mismatches > 0 {
        println!(
            "repeat with: ctid-chaos --drops {} --seed {seed} (timing differs from run to run)",
            args.drops
        );
    }
    println!("drops={} mismatches={mismatches}", args.drops);
    drop(ctid);
    if mismatches > 0 {
        std::process::exit(1);
    }
    Ok(())
}
