//! The core's side of hot standby ([`crate::ha`], docs/operations.md §13): capturing the
//! primary's input batches and appending them before their outputs go out (the output rule),
//! applying the stream on a backup, taking over, stepping down and the planned switchover.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ctid_engine::{Engine, EngineConfig, Input, LinkState, Now, Output};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{Core, CoreMsg, Outgoing};
use crate::config::LinkConfig;
use crate::ha::lease::{Change, LeaseCmd, LeaseWatch};
use crate::ha::log::{AppendError, Log, Replicated};
use crate::ha::{HaConfig, HaView, LeaseSeen, Role, Shared, CLOSE_NOT_PRIMARY};

/// What the core needs to start the CSTA link when it becomes primary.
pub struct LinkStart {
    pub links: Vec<LinkConfig>,
    pub settings: watch::Receiver<Vec<LinkConfig>>,
}

/// The hot-standby state the core keeps.
pub struct HaCore {
    pub cfg: HaConfig,
    pub shared: Shared,
    log: Option<Log>,
    lease_cmds: Option<mpsc::UnboundedSender<LeaseCmd>>,
    lease_view: watch::Receiver<LeaseWatch>,
    view: watch::Sender<HaView>,
    role: Role,
    term: u64,
    /// Last stream sequence applied to (or appended from) this engine.
    applied: u64,
    /// The inputs of this turn, as lines, until appended.
    batch: Vec<u8>,
    /// A multi-part message being put together.
    parts: Vec<u8>,
    follower: Option<JoinHandle<()>>,
    link_task: Option<JoinHandle<()>>,
    link_start: LinkStart,
    /// This node's engine configuration: the genesis of a new cluster.
    base: EngineConfig,
    /// The cluster's export lineage (from its genesis).
    lineage: Option<String>,
    export_cfg: Option<crate::export::NatsConfig>,
    core_tx: mpsc::Sender<CoreMsg>,
    /// The time of the last input applied from the stream.
    last_now: Option<Now>,
    /// The stream has a gap this node cannot fill (trimmed): it cannot be ready.
    broken: Option<String>,
    last_error: String,
    /// The stream message of the last snapshot this node loaded or stored.
    snap_at: u64,
    /// A snapshot is being read; the follower starts when it is in.
    loading: bool,
    /// The engine handled inputs that were never appended: it must be rebuilt.
    rebuild: bool,
    /// When a gap last sent this node to the snapshot (reloads are spaced).
    gap_reload: Option<Instant>,
    /// `[export.nats]` on a backup: the export's events of the last [`EXPORT_TAIL_MS`] of
    /// applied inputs (at most [`EXPORT_TAIL_EVENTS`]), offered again when this node becomes
    /// primary: those the old primary had not published yet are not lost (JetStream drops the
    /// rest by their `Nats-Msg-Id`).
    export_tail: std::collections::VecDeque<(u64, std::sync::Arc<ctid_protocol::Event>)>,
}

/// The longest one attempt to read the stored snapshot may take.
const SNAPSHOT_READ: Duration = Duration::from_secs(20);

/// How far back a backup keeps the export's events (inside the export stream's 120 s
/// duplicate window, so a re-offered event that was published is dropped by JetStream).
const EXPORT_TAIL_MS: u64 = 30_000;
/// At most this many of them.
const EXPORT_TAIL_EVENTS: usize = 100_000;

impl HaCore {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: HaConfig,
        shared: Shared,
        lease_view: watch::Receiver<LeaseWatch>,
        view: watch::Sender<HaView>,
        link_start: LinkStart,
        base: EngineConfig,
        export_cfg: Option<crate::export::NatsConfig>,
        core_tx: mpsc::Sender<CoreMsg>,
    ) -> Self {
        HaCore {
            cfg,
            shared,
            log: None,
            lease_cmds: None,
            lease_view,
            view,
            role: Role::Backup,
            term: 0,
            applied: 0,
            batch: Vec::new(),
            parts: Vec::new(),
            follower: None,
            link_task: None,
            link_start,
            base,
            lineage: None,
            export_cfg,
            core_tx,
            last_now: None,
            broken: None,
            last_error: String::new(),
            snap_at: 0,
            loading: false,
            rebuild: false,
            gap_reload: None,
            export_tail: Default::default(),
        }
    }

    /// Does this node's engine speak (outputs go out, timers run)?
    pub fn acting(&self) -> bool {
        self.role == Role::Primary
    }

    /// Keep an input of this turn for the append.
    pub fn capture(&mut self, now: Now, input: &Input) {
        if self.role != Role::Primary {
            return;
        }
        write_line(&mut self.batch, now, input);
    }
}

/// One input as a line of the stream: `{"t":[…],"in":…}` and a newline.
fn write_line(buf: &mut Vec<u8>, now: Now, input: &Input) {
    let mut v = input.to_json();
    if let Value::Object(m) = &mut v {
        m.insert("t".into(), now.to_json());
    }
    if serde_json::to_writer(&mut *buf, &v).is_ok() {
        buf.push(b'\n');
    }
}

impl HaCore {
    /// Keep the export's events of these outputs (see `export_tail`).
    fn keep_export_tail(&mut self, now: Now, outs: &mut [Output]) {
        for o in outs.iter() {
            if let Output::Event { to, event, .. } = o {
                if to.contains(&ctid_engine::io::EXPORT) {
                    self.export_tail.push_back((now.mono_ms, event.clone()));
                }
            }
        }
        let oldest = now.mono_ms.saturating_sub(EXPORT_TAIL_MS);
        while self
            .export_tail
            .front()
            .is_some_and(|(t, _)| *t < oldest || self.export_tail.len() > EXPORT_TAIL_EVENTS)
        {
            self.export_tail.pop_front();
        }
    }
}

impl Drop for HaCore {
    fn drop(&mut self) {
        for t in [self.follower.take(), self.link_task.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
    }
}

/// One line of the stream, decoded (a transient value: the size of `Input` is fine here).
#[allow(clippy::large_enum_variant)]
enum Line {
    Genesis {
        config: Box<EngineConfig>,
        lineage: String,
    },
    Input(Now, Input),
}

fn parse_line(l: &[u8]) -> Result<Line, String> {
    let v: Value = serde_json::from_slice(l).map_err(|e| e.to_string())?;
    if let Some(g) = v.get("genesis") {
        let config = EngineConfig::from_json(g.get("config").unwrap_or(&Value::Null))
            .map_err(|e| e.to_string())?;
        let lineage = g
            .get("lineage")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Ok(Line::Genesis {
            config: Box::new(config),
            lineage,
        });
    }
    let now = Now::from_json(v.get("t").unwrap_or(&Value::Null)).map_err(|e| e.to_string())?;
    let input = Input::from_json(&v).map_err(|e| e.to_string())?;
    Ok(Line::Input(now, input))
}

/// A stored snapshot: the engine, the cluster's lineage and the time of the last input.
fn restore(body: &[u8]) -> Result<(Engine, String, Now), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let engine = Engine::restore(v.get("engine").unwrap_or(&Value::Null)).map_err(|e| e.0)?;
    let lineage = v
        .get("lineage")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let t = Now::from_json(v.get("t").unwrap_or(&Value::Null)).map_err(|e| e.0)?;
    Ok((engine, lineage, t))
}

/// The stream's last sequence is at least `seq` (this node appended it).
fn raise_last(shared: &Shared, seq: u64) {
    let _ = shared
        .stream_last
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
            Some(if l == crate::ha::UNKNOWN {
                seq
            } else {
                l.max(seq)
            })
        });
}

fn random_lineage() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Core {
    /// `[ha]`: NATS is reachable; follow the stream from the start and take part in the lease.
    pub(super) fn ha_up(&mut self, log: Log, lease_cmds: mpsc::UnboundedSender<LeaseCmd>) {
        let Some(h) = &mut self.ha else { return };
        h.log = Some(log);
        h.lease_cmds = Some(lease_cmds);
        info!(cluster = %h.cfg.cluster, node = %h.cfg.node, "hot standby: following the input stream as a backup");
        self.begin_following();
        self.ha_publish();
    }

    /// Read the latest snapshot, then follow the stream after it (or after what this engine
    /// has, when that is newer): [`Core::snapshot_loaded`] goes on.
    fn begin_following(&mut self) {
        let Some(h) = &mut self.ha else { return };
        if let Some(t) = h.follower.take() {
            t.abort();
        }
        let Some(log) = h.log.clone() else { return };
        h.loading = true;
        let tx = h.core_tx.clone();
        tokio::spawn(async move {
            // A read can hang when the object is replaced meanwhile (its chunks are purged):
            // give each attempt a deadline and read the newer one.
            let mut r = Err(String::new());
            for attempt in 1..=3 {
                r = match tokio::time::timeout(SNAPSHOT_READ, log.load_snapshot()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "reading the snapshot took more than {SNAPSHOT_READ:?} (attempt {attempt} of 3)"
                    )),
                };
                match &r {
                    Err(e) if attempt < 3 => {
                        warn!(error = %e, "hot standby: reading the snapshot again")
                    }
                    _ => break,
                }
            }
            let _ = tx.send(CoreMsg::HaSnapshot(r)).await;
        });
    }

    /// The latest snapshot is read: take it when it is newer than this engine (or this engine
    /// must be rebuilt), then follow the stream.
    pub(super) fn snapshot_loaded(&mut self, r: Result<Option<(u64, Vec<u8>)>, String>) {
        let Some(h) = &mut self.ha else { return };
        if !h.loading || h.role != Role::Backup {
            return;
        }
        h.loading = false;
        match r {
            Ok(Some((seq, body))) if seq > h.applied || h.rebuild => match restore(&body) {
                Ok((engine, lineage, t)) => {
                    info!(
                        seq,
                        bytes = body.len(),
                        "hot standby: loaded the engine snapshot; following the stream after it"
                    );
                    self.engine = engine;
                    let Some(h) = self.ha.as_mut() else { return };
                    h.applied = seq;
                    h.snap_at = seq;
                    h.shared.snapshot_seq.store(seq, Ordering::Relaxed);
                    h.lineage = Some(lineage);
                    h.last_now = Some(t);
                    h.broken = None;
                    h.rebuild = false;
                    h.parts.clear();
                }
                Err(e) => {
                    self.metrics.ha_snapshot_errors.inc();
                    error!(seq, error = %e, "hot standby: the stored snapshot does not load; following the stream without it");
                }
            },
            Ok(_) => {}
            Err(e) => {
                self.metrics.ha_snapshot_errors.inc();
                warn!(error = %e, "hot standby: cannot read the snapshot; following the stream without it");
            }
        }
        let Some(h) = self.ha.as_mut() else { return };
        if h.rebuild {
            h.rebuild = false;
            h.applied = 0;
            h.parts.clear();
            h.last_now = None;
            h.broken = None;
            self.engine = Engine::new(h.base.clone());
        }
        h.shared.applied.store(h.applied, Ordering::Relaxed);
        self.start_follower();
        self.ha_publish();
    }

    /// Snapshots (docs/operations.md §13): a ready backup stores one every `snapshot-every`
    /// stream messages — its engine is the primary's at that message, so the primary pays
    /// nothing; the primary stores one itself only when none was stored for four intervals (no
    /// backup running). Taken now, written by a task, then the stream is trimmed below the
    /// snapshot before.
    fn maybe_snapshot(&mut self) {
        let Some(h) = &mut self.ha else { return };
        let due = |h: &HaCore| match h.role {
            Role::Backup => {
                !h.loading
                    && h.broken.is_none()
                    && h.parts.is_empty()
                    && h.applied >= h.snap_at + h.cfg.snapshot_every
            }
            Role::Primary => h.applied >= h.snap_at + 4 * h.cfg.snapshot_every,
            _ => false,
        };
        if !due(h) {
            return;
        }
        // Only now (not on every message) see whether another node stored a newer one.
        let others = h
            .lease_view
            .borrow()
            .nodes
            .iter()
            .map(|n| n.snapshot_seq)
            .max()
            .unwrap_or(0);
        if others > h.snap_at && others <= h.applied {
            h.snap_at = others;
            if !due(h) {
                return;
            }
        }
        let Some(log) = h.log.clone() else { return };
        let seq = h.applied;
        let trim_below = if h.snap_at > 0 { h.snap_at + 1 } else { 0 };
        let lineage = h.lineage.clone().unwrap_or_default();
        let gate = (h.role == Role::Primary).then(|| h.shared.gate.clone());
        let shared = h.shared.clone();
        // The time of the stream's clock: a backup's is that of the last input it applied.
        let last_now = h.last_now;
        h.snap_at = seq;
        let t = match (&gate, last_now) {
            (None, Some(t)) => t,
            _ => self.now(),
        };
        let body = json!({
            "seq": seq,
            "lineage": lineage,
            "t": t.to_json(),
            "engine": self.engine.snapshot(),
        });
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            // An old primary (its lease gone) does not write: the new one owns the store.
            if gate.is_some_and(|g| !g.is_open()) {
                return;
            }
            match log.save_snapshot(seq, bytes, trim_below).await {
                Ok(()) => {
                    shared.snapshot_seq.fetch_max(seq, Ordering::Relaxed);
                    metrics.ha_snapshots.inc();
                    info!(seq, trim_below, "hot standby: stored an engine snapshot");
                }
                Err(e) => {
                    metrics.ha_snapshot_errors.inc();
                    warn!(seq, error = %e, "hot standby: cannot store the snapshot (the stream is not trimmed)");
                }
            }
        });
    }

    fn start_follower(&mut self) {
        let Some(h) = &mut self.ha else { return };
        if let Some(t) = h.follower.take() {
            t.abort();
        }
        let Some(log) = h.log.clone() else { return };
        let from = h.applied + 1;
        let tx = h.core_tx.clone();
        let last = h.shared.stream_last.clone();
        h.follower = Some(tokio::spawn(log.follow(from, tx, last)));
    }

    /// A backup applies one stream message (older ones are skipped).
    pub(super) fn apply_replicated(&mut self, r: Replicated) {
        let Some(h) = &mut self.ha else { return };
        if r.seq <= h.applied {
            return;
        }
        if r.seq != h.applied + 1 {
            let why = format!(
                "the input stream starts at {} but this node needs {} (trimmed without a snapshot)",
                r.seq,
                h.applied + 1
            );
            if h.broken.is_none() {
                warn!(%why, "hot standby: a gap in the stream; loading the latest snapshot");
            }
            h.broken = Some(why);
            if h.gap_reload
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
            {
                h.gap_reload = Some(Instant::now());
                self.begin_following();
            }
            return;
        }
        h.applied = r.seq;
        h.shared.applied.store(r.seq, Ordering::Relaxed);
        let payload = match r.part {
            Some((i, n)) if i < n => {
                h.parts.extend_from_slice(&r.payload);
                return;
            }
            Some(_) => {
                let mut p = std::mem::take(&mut h.parts);
                p.extend_from_slice(&r.payload);
                p
            }
            None => r.payload.to_vec(),
        };
        let mut scratch = Vec::new();
        for l in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match parse_line(l) {
                Ok(Line::Genesis { config, lineage }) => {
                    info!(%lineage, "hot standby: the cluster's genesis: engine configuration from the stream");
                    self.engine = Engine::new(*config);
                    if let Some(h) = &mut self.ha {
                        h.lineage = Some(lineage);
                    }
                }
                Ok(Line::Input(now, input)) => {
                    if let Some(h) = &mut self.ha {
                        h.last_now = Some(now);
                    }
                    self.handle(now, input, &mut scratch);
                    if let Some(h) = self.ha.as_mut().filter(|h| h.export_cfg.is_some()) {
                        h.keep_export_tail(now, &mut scratch);
                    }
                    scratch.clear();
                }
                Err(e) => {
                    error!(seq = r.seq, error = %e, "hot standby: an input of the stream does not decode; skipped (this node may now differ from the primary)");
                }
            }
        }
        self.maybe_snapshot();
    }

    /// Readiness of a backup: applied the stream to its end, no gap.
    fn update_ready(&mut self) {
        let Some(h) = &self.ha else { return };
        let last = h.shared.stream_last.load(Ordering::Relaxed);
        let ready = h.role == Role::Backup
            && h.log.is_some()
            && h.broken.is_none()
            && h.applied >= last
            && !h.loading
            && h.parts.is_empty();
        h.shared.ready.store(ready, Ordering::Release);
    }

    /// The clock a new primary continues: never behind the last input applied, and counting the
    /// time since it by the wall clock.
    fn continue_clock(&mut self) {
        let Some(last) = self.ha.as_ref().and_then(|h| h.last_now) else {
            return;
        };
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let target = last.mono_ms + unix_us.saturating_sub(last.unix_micros) / 1000;
        let local = self.start.elapsed().as_millis() as u64;
        if target > local + self.mono_offset {
            self.mono_offset = target - local;
        }
    }

    /// The lease changed hands.
    pub(super) async fn lease_change(&mut self, c: Change, out: &mut Vec<Output>) {
        let Some(h) = &self.ha else { return };
        match (c, h.role) {
            (Change::Won { term }, Role::Backup) => self.take_over(term, out).await,
            (Change::Won { .. }, _) => {}
            (Change::Lost { why }, Role::Primary | Role::TakingOver) => {
                let rebuild = self.ha.as_ref().is_some_and(|h| !h.batch.is_empty());
                self.step_down(&why, rebuild);
            }
            (Change::Lost { .. }, _) => {}
        }
    }

    /// Won the lease: catch up with the stream, append the take-over batch (fencing anyone who
    /// appends after this node's last sequence), start the link and serve.
    async fn take_over(&mut self, term: u64, out: &mut Vec<Output>) {
        let started = Instant::now();
        let Some(h) = &mut self.ha else { return };
        let Some(log) = h.log.clone() else { return };
        if h.loading {
            let rebuild = h.rebuild;
            return self.step_down("won the lease while a snapshot was loading", rebuild);
        }
        h.role = Role::TakingOver;
        h.term = term;
        h.shared.set_role(Role::TakingOver);
        if let Some(t) = h.follower.take() {
            t.abort();
        }
        info!(
            term,
            applied = h.applied,
            "hot standby: won the lease; catching up before serving"
        );
        self.ha_publish();
        loop {
            let Some(h) = &self.ha else { return };
            if !h.shared.gate.is_open() {
                return self.step_down("the lease lapsed while taking over", false);
            }
            let (first, last) = match log.bounds().await {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "hot standby: taking over: cannot read the stream; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let applied = h.applied;
            if last > applied && first > applied + 1 {
                let why = format!("the input stream starts at {first}, this node has applied only up to {applied}: cannot take over");
                error!(%why, "hot standby");
                if let Some(h) = &mut self.ha {
                    h.broken = Some(why.clone());
                }
                return self.step_down(&why, false);
            }
            let mut failed = false;
            for seq in applied + 1..=last {
                match log.get(seq).await {
                    Ok(r) => self.apply_replicated(r),
                    Err(e) => {
                        warn!(seq, error = %e, "hot standby: taking over: cannot read a message; retrying");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            // The take-over batch: the old primary's link and connections are gone.
            self.continue_clock();
            let now = self.now();
            let Some(h) = &self.ha else { return };
            let genesis = h.applied == 0;
            let lineage = h.lineage.clone().unwrap_or_else(random_lineage);
            let mut lines = Vec::new();
            let mut inputs = Vec::new();
            if genesis {
                let g = json!({"genesis": {"config": h.base.to_json(), "lineage": lineage}});
                let _ = serde_json::to_writer(&mut lines, &g);
                lines.push(b'\n');
            } else {
                if self.engine.link_state() != LinkState::Down {
                    inputs.push(Input::LinkDown {
                        reason: format!("node {} takes over (term {term})", h.cfg.node),
                    });
                }
                for s in self.engine.session_views() {
                    if s.detached_at_ms.is_none() {
                        inputs.push(Input::ClientDetached { client: s.client });
                    }
                }
            }
            for i in &inputs {
                write_line(&mut lines, now, i);
            }
            let id = format!("{}:{term}:takeover:{}", h.cfg.node, h.applied);
            let left = h.shared.gate.remaining().unwrap_or(h.cfg.lease);
            match log.append(h.applied, &id, &lines, left).await {
                Ok(seq) => {
                    let Some(h) = self.ha.as_mut() else { return };
                    h.applied = seq;
                    h.shared.applied.store(seq, Ordering::Relaxed);
                    raise_last(&h.shared, seq);
                    if genesis {
                        h.lineage = Some(lineage.clone());
                        self.engine = Engine::new(h.base.clone());
                    }
                    for i in inputs {
                        self.handle(now, i, out);
                    }
                    break;
                }
                Err(AppendError::Fenced) => continue, // more to catch up with
                Err(AppendError::Unavailable(e)) => {
                    warn!(error = %e, "hot standby: taking over: the append failed; retrying");
                    self.metrics.ha_append_errors.inc();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // Serve: new connections are numbered above every session the engine knows.
        self.next_id
            .fetch_max(self.engine.max_client_id(), Ordering::Relaxed);
        let Some(h) = &mut self.ha else { return };
        h.role = Role::Primary;
        // The first snapshot of this term comes `snapshot-every` messages from now.
        h.snap_at = h.snap_at.max(h.applied);
        h.shared.set_role(Role::Primary);
        h.shared.ready.store(false, Ordering::Release);
        h.last_error.clear();
        self.metrics.ha_takeovers.inc();
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        self.link = link_tx;
        h.link_task = Some(tokio::spawn(crate::link::run_links(
            h.link_start.links.clone(),
            h.core_tx.clone(),
            link_rx,
            self.metrics.clone(),
            h.link_start.settings.clone(),
            h.shared.gate.clone(),
        )));
        if self.export.is_none() {
            if let (Some(n), Some(lineage)) = (h.export_cfg.clone(), h.lineage.clone()) {
                self.export = Some(crate::export::start(n, lineage, self.metrics.clone()));
            }
        }
        // The last events the old primary may not have published, ahead of this node's own.
        let tail = std::mem::take(&mut h.export_tail);
        if let Some(x) = &mut self.export {
            for (_, ev) in tail {
                x.offer(&ev, &ev.to_json());
            }
        }
        info!(
            term = h.term,
            applied = h.applied,
            ms = started.elapsed().as_millis() as u64,
            "hot standby: primary; connecting the CSTA link"
        );
        self.ha_publish();
    }

    /// Stop being primary: close the gate, the link and every client connection (4010 naming
    /// the primary if known), and follow the stream again. `rebuild`: this engine handled
    /// inputs that were not appended, so it starts again from the stream.
    pub(super) fn step_down(&mut self, why: &str, rebuild: bool) {
        let Some(h) = &mut self.ha else { return };
        let was = h.role;
        h.shared.gate.close();
        h.role = Role::Backup;
        h.shared.set_role(Role::Backup);
        h.last_error = why.to_string();
        if was == Role::Primary || was == Role::TakingOver {
            warn!(
                why,
                rebuild, "hot standby: no longer primary; following as a backup"
            );
            self.metrics.ha_stepdowns.inc();
        }
        if let Some(t) = h.link_task.take() {
            t.abort();
        }
        // The lease task lets go if it still holds the lease.
        if let Some(c) = &h.lease_cmds {
            let (done, _) = oneshot::channel();
            let _ = c.send(LeaseCmd::HandOver { to: None, done });
        }
        let reason = h.shared.not_primary_reason();
        for (_, tx) in self.clients.drain() {
            let _ = tx.try_send(Outgoing::close(CLOSE_NOT_PRIMARY, reason.clone()));
        }
        self.conn_session.clear();
        self.session_conn.clear();
        self.queued.clear();
        self.peers.clear();
        self.inflight.clear();
        self.origins.clear();
        self.deferred.clear();
        // A backup publishes nothing: the next primary exports (what this node still holds
        // is published by the task as it ends, or dropped by JetStream as a duplicate).
        self.export = None;
        let Some(h) = self.ha.as_mut() else { return };
        h.batch.clear();
        if rebuild {
            h.rebuild = true;
            self.begin_following();
        } else {
            self.start_follower();
        }
        self.ha_publish();
    }

    /// The output rule: append this turn's inputs, then release their outputs. A backup's
    /// outputs go nowhere.
    pub(super) async fn commit(&mut self, out: &mut Vec<Output>) {
        let Some(h) = &mut self.ha else {
            return self.act(out);
        };
        if h.role != Role::Primary {
            out.clear();
            self.origins.clear();
            return;
        }
        if !h.batch.is_empty() {
            let payload = std::mem::take(&mut h.batch);
            let id = format!("{}:{}:{}", h.cfg.node, h.term, h.applied);
            let Some(log) = h.log.clone() else { return };
            let t0 = Instant::now();
            loop {
                let Some(h) = self.ha.as_mut() else { return };
                let left = h.shared.gate.remaining().unwrap_or(h.cfg.lease);
                if left.is_zero() {
                    h.batch = payload;
                    out.clear();
                    return self
                        .step_down("the lease lapsed before the inputs were acknowledged", true);
                }
                match log.append(h.applied, &id, &payload, left).await {
                    Ok(seq) => {
                        h.applied = seq;
                        h.shared.applied.store(seq, Ordering::Relaxed);
                        raise_last(&h.shared, seq);
                        self.metrics.ha_appends.inc();
                        self.metrics.ha_append_latency.observe(t0.elapsed());
                        self.maybe_snapshot();
                        break;
                    }
                    Err(AppendError::Fenced) => {
                        h.batch = payload;
                        out.clear();
                        self.metrics.ha_append_errors.inc();
                        return self
                            .step_down("fenced: another node appended to the input stream", true);
                    }
                    Err(AppendError::Unavailable(e)) => {
                        self.metrics.ha_append_errors.inc();
                        warn!(error = %e, "hot standby: append failed; retrying while the lease lasts");
                        tokio::time::sleep(Duration::from_millis(20).min(left)).await;
                    }
                }
            }
        }
        let Some(h) = self.ha.as_ref() else { return };
        if !h.shared.gate.is_open() {
            out.clear();
            return self.step_down("the lease lapsed", false);
        }
        self.act(out);
    }

    /// A planned switchover (docs/operations.md §13): a last replicated batch (link down,
    /// sessions detached), then the lease handed to a ready backup; this node follows.
    pub(super) async fn switchover(
        &mut self,
        to: Option<String>,
        out: &mut Vec<Output>,
    ) -> Result<Value, String> {
        let Some(h) = &self.ha else {
            return Err("hot standby is not configured ([ha])".into());
        };
        if h.role != Role::Primary {
            return Err(format!(
                "this node is not primary (it is {})",
                h.role.as_str()
            ));
        }
        let nodes = h.lease_view.borrow().nodes.clone();
        let target = nodes
            .iter()
            .filter(|n| n.ready && n.role == "backup" && n.seen_ms_ago < 5_000)
            .find(|n| to.as_deref().is_none_or(|t| t == n.node))
            .cloned()
            .ok_or_else(|| match &to {
                Some(t) => format!("node {t} is not a ready backup"),
                None => "no ready backup".to_string(),
            })?;
        let me = h.cfg.node.clone();
        let now = self.now();
        if self.engine.link_state() != LinkState::Down {
            let reason = format!("planned switchover to node {}", target.node);
            self.handle(now, Input::LinkDown { reason }, out);
        }
        for s in self.engine.session_views() {
            if s.detached_at_ms.is_none() {
                self.handle(now, Input::ClientDetached { client: s.client }, out);
            }
        }
        self.commit(out).await;
        let Some(h) = &self.ha else {
            return Err("hot standby is not configured ([ha])".into());
        };
        if h.role != Role::Primary {
            return Err("this node stopped being primary during the switchover".into());
        }
        if let Some(t) = self.ha.as_mut().and_then(|h| h.link_task.take()) {
            t.abort();
        }
        let Some(h) = self.ha.as_ref() else {
            return Err("hot standby is not configured ([ha])".into());
        };
        let (done, rx) = oneshot::channel();
        if let Some(c) = &h.lease_cmds {
            let _ = c.send(LeaseCmd::HandOver {
                to: Some((target.node.clone(), target.url.clone())),
                done,
            });
        }
        let r = rx
            .await
            .unwrap_or_else(|_| Err("the lease task is gone".into()));
        if let Ok(mut u) = h.shared.primary_url.lock() {
            if r.is_ok() {
                *u = Some(target.url.clone());
            }
        }
        match r {
            Ok(term) => {
                info!(to = %target.node, term, "hot standby: switchover: handed the lease over");
                self.step_down(&format!("handed over to {}", target.node), false);
                Ok(json!({"from": me, "to": target.node, "term": term}))
            }
            Err(e) => {
                self.step_down(&format!("switchover failed: {e}"), false);
                Err(format!(
                    "the hand-over failed ({e}); this node let the lease go"
                ))
            }
        }
    }

    /// Refresh the view `/api/ha` shows and the metrics.
    pub(super) fn ha_publish(&mut self) {
        self.update_ready();
        let Some(h) = &self.ha else { return };
        let last = match h.shared.stream_last.load(Ordering::Relaxed) {
            crate::ha::UNKNOWN => h.applied,
            l => l.max(h.applied),
        };
        let lw = h.lease_view.borrow().clone();
        let lease = lw.value.as_ref().map(|v| LeaseSeen {
            holder: v.holder.clone(),
            url: v.url.clone(),
            term: v.term,
            age_ms: lw
                .seen_at
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or(0),
        });
        let term = if h.role == Role::Primary || h.role == Role::TakingOver {
            h.term
        } else {
            lease.as_ref().map(|l| l.term).unwrap_or(h.term)
        };
        let v = HaView {
            enabled: true,
            cluster: h.cfg.cluster.clone(),
            node: h.cfg.node.clone(),
            role: h.role,
            term,
            lease,
            applied_seq: h.applied,
            stream_last_seq: last,
            lag: last.saturating_sub(h.applied),
            snapshot_seq: h.snap_at,
            ready: h.shared.ready.load(Ordering::Relaxed),
            nodes: lw.nodes,
            last_error: h.broken.clone().unwrap_or_else(|| h.last_error.clone()),
        };
        self.metrics.ha_role.set(match h.role {
            Role::Standalone => 0,
            Role::Backup => 1,
            Role::TakingOver => 2,
            Role::Primary => 3,
        });
        self.metrics.ha_term.set(v.term as i64);
        self.metrics.ha_applied_seq.set(v.applied_seq as i64);
        self.metrics.ha_lag.set(v.lag as i64);
        self.metrics.ha_ready.set(v.ready as i64);
        h.view.send_replace(v);
    }
}
