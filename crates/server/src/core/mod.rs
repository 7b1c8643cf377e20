//! The core task: owns the [`Engine`], feeds it client and link inputs in arrival order (link
//! messages first when both are ready), a Tick when the engine's `poll_timeout` comes, and carries
//! out its outputs. Each event is
//! encoded to JSON once and the same bytes are queued to every client it goes to. A client whose
//! bounded queue is full is disconnected (never blocks the others).
//!
//! For operability it also times each client request to its answer and stamps the client events
//! caused by a CSTA event with the moment that event reached the core (the WebSocket writer
//! observes the switch-to-client latency), answers [`CoreMsg::Snapshot`] with the engine's DN and
//! call views (`/api/state`), and hands [`CoreMsg::Reconfigure`] to the engine (config reload).
//!
//! Every input reaches the engine through [`Core::handle`], which also writes it and its outputs
//! to the recording when `record-inputs` is set ([`crate::record`]).

mod ha;

pub use ha::{HaCore, LinkStart};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use ctid_engine::{
    CallView, ClientId, DnView, Engine, EngineConfig, Input, LinkState, Now, Output,
};
use ctid_protocol::RequestName;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::link::LinkCmd;
use crate::metrics::Metrics;
use crate::record::Recorder;

/// Messages to the core.
#[derive(Debug)]
pub enum CoreMsg {
    /// A link input from the link manager (link up and down).
    Link(Input),
    /// The inputs one read of link `link` gave (answers, events, requests, resyncs), straight
    /// from its driver: taken only while `link` is the active one ([`CoreMsg::LinkActive`]).
    LinkInputs {
        link: usize,
        inputs: Vec<Input>,
    },
    /// The link manager's choice of the link that carries the traffic (sent before the
    /// `LinkUp` or `LinkDown` that goes with it).
    LinkActive(Option<usize>),
    ClientOpen {
        id: ClientId,
        peer: String,
        tx: mpsc::Sender<Outgoing>,
        /// What is queued for this client; the writer subtracts what it takes off the queue.
        queued: Arc<QueueLoad>,
        /// The new session's SessionID (random, drawn by the connection task).
        session_id: String,
        /// The token name the connection was opened with ("" without authentication).
        owner: String,
    },
    Client(Input),
    /// The connection opened as `id` ended; `clean`: with close code 1000 from the client (or
    /// for a protocol violation), which ends its session; otherwise the session is kept for a
    /// resume (docs/protocol.md §6.9).
    ClientClose {
        id: ClientId,
        clean: bool,
    },
    /// The engine's DN and call views, for `/api/state` and the web monitor.
    Snapshot(oneshot::Sender<Snapshot>),
    /// A reloaded configuration (checked by the caller).
    Reconfigure(Box<EngineConfig>),
    /// `[ha]`: a message of the input stream (a backup applies it).
    Replicated(crate::ha::log::Replicated),
    /// `[ha]`: the latest engine snapshot, read (or why not).
    HaSnapshot(Result<Option<(u64, Vec<u8>)>, String>),
    /// `[ha]`: the lease changed hands.
    Lease(crate::ha::lease::Change),
    /// `[ha]`: NATS is reachable: the input stream and the lease task's orders.
    HaUp {
        log: Box<crate::ha::log::Log>,
        lease_cmds: mpsc::UnboundedSender<crate::ha::lease::LeaseCmd>,
    },
    /// `[ha]`: a planned switchover (`POST /admin/ha/switchover`).
    Switchover {
        to: Option<String>,
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// Graceful shutdown: let every client go (their writers send a close frame saying why),
    /// accept no more; answers when done.
    Shutdown(oneshot::Sender<usize>),
}

static SHUTTING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Is the process shutting down? (A client writer whose queue ended then says so in its close
/// frame instead of "too slow".)
pub fn shutting_down() -> bool {
    SHUTTING_DOWN.load(std::sync::atomic::Ordering::Relaxed)
}

/// The encoded events of one turn of the core for one client (its writer is woken once for
/// them, and writes them with one flush), or the order to close its connection.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub frames: Vec<Utf8Bytes>,
    /// When the CSTA events behind the frames reached the core (switch-to-client latency).
    pub since: Vec<Instant>,
    /// Close the connection with this code and reason, after the frames.
    pub close: Option<crate::session::CloseReason>,
}

/// What is queued for one client (in the core's batch of the turn and in its channel), against
/// `client-queue` and `client-queue-bytes`.
#[derive(Debug, Default)]
pub struct QueueLoad {
    pub events: AtomicUsize,
    pub bytes: AtomicUsize,
}

impl QueueLoad {
    /// The writer took `frames` off the queue.
    pub fn taken(&self, frames: &[Utf8Bytes]) {
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        self.events.fetch_sub(frames.len(), Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Outgoing {
    fn close(code: u16, reason: impl Into<String>) -> Self {
        Outgoing {
            frames: Vec::new(),
            since: Vec::new(),
            close: Some(crate::session::CloseReason {
                code,
                reason: reason.into(),
            }),
        }
    }
}

/// What the engine shows the web monitor.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub dns: Vec<DnView>,
    pub calls: Vec<CallView>,
    /// Hot-desk pairs (guest, host).
    pub hotdesk_pairs: Vec<(String, String)>,
    /// Resumable client sessions (attached and detached).
    pub sessions: Vec<ctid_engine::SessionView>,
}

/// What the HTTP side can read about the engine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    #[serde(serialize_with = "link_state_name")]
    pub link: LinkState,
    pub link_name: String,
    pub monitored: usize,
    pub dns: usize,
    pub clients: usize,
    pub outstanding: usize,
    /// CSTA requests allowed in flight now (`max-outstanding`, halved under overload).
    pub window_limit: usize,
}

fn link_state_name<S: serde::Serializer>(l: &LinkState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.as_str())
}

pub struct Core {
    engine: Engine,
    /// The connection carrying each session, by the session's client number.
    clients: HashMap<ClientId, mpsc::Sender<Outgoing>>,
    /// Connection (the client number it opened as) → the session it carries (itself until it
    /// resumes another), and the reverse: which connection carries a session now.
    conn_session: HashMap<ClientId, ClientId>,
    session_conn: HashMap<ClientId, ClientId>,
    /// What is queued per client (the queue is bounded in events and in bytes).
    queued: HashMap<ClientId, Arc<QueueLoad>>,
    max_queued_bytes: usize,
    max_queued_events: usize,
    /// The frames of this turn per client, handed to each client's writer at once when the
    /// turn's outputs are carried out (one wake-up per client and turn, not per event).
    pending: HashMap<ClientId, Outgoing>,
    /// `pending` taken out to be handed over (kept for its allocation).
    flushing: Vec<(ClientId, Outgoing)>,
    /// The link whose inputs are taken ([`CoreMsg::LinkActive`]).
    active_link: Option<usize>,
    peers: HashMap<ClientId, String>,
    /// Requests awaiting their answer: (client, ReferenceID) → (received, name).
    inflight: HashMap<(ClientId, u32), (Instant, RequestName)>,
    /// Ranges of the output buffer caused by a CSTA event, with its arrival time.
    origins: Vec<(usize, usize, Instant)>,
    link: mpsc::UnboundedSender<LinkCmd>,
    metrics: Metrics,
    status: watch::Sender<Status>,
    start: Instant,
    link_name: String,
    /// `record-inputs`: every input and its outputs, written as they happen.
    recorder: Option<Recorder>,
    /// `[export.nats]`: the events addressed to the export go there.
    export: Option<crate::export::ExportHandle>,
    /// `[ha]`: hot standby.
    ha: Option<HaCore>,
    /// Inputs produced while carrying out outputs (a slow client detached): handled as the
    /// next turn, so that they are appended before their own outputs go out.
    deferred: Vec<Input>,
    /// Added to the local monotonic clock: a new primary continues the clock of the inputs it
    /// applied.
    mono_offset: u64,
    /// The connection numbers the client port hands out (a new primary moves it above every
    /// session it knows).
    next_id: Arc<AtomicU64>,
}

impl Core {
    pub fn new(
        engine: Engine,
        link: mpsc::UnboundedSender<LinkCmd>,
        metrics: Metrics,
        status: watch::Sender<Status>,
        max_queued_bytes: usize,
    ) -> Self {
        Core {
            engine,
            clients: HashMap::new(),
            conn_session: HashMap::new(),
            session_conn: HashMap::new(),
            queued: HashMap::new(),
            max_queued_bytes: max_queued_bytes.max(1),
            max_queued_events: usize::MAX,
            pending: HashMap::new(),
            flushing: Vec::new(),
            active_link: None,
            peers: HashMap::new(),
            inflight: HashMap::new(),
            origins: Vec::new(),
            link,
            metrics,
            status,
            start: Instant::now(),
            link_name: String::new(),
            recorder: None,
            export: None,
            ha: None,
            deferred: Vec::new(),
            mono_offset: 0,
            next_id: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `client-queue`: events queued per client before it is dropped as too slow.
    pub fn with_client_queue(mut self, events: usize) -> Self {
        self.max_queued_events = events.max(1);
        self
    }

    /// Share the client port's connection numbering (a new primary moves it on).
    pub fn with_next_id(mut self, next_id: Arc<AtomicU64>) -> Self {
        self.next_id = next_id;
        self
    }

    /// Run as a node of a hot-standby cluster (`[ha]`).
    pub fn with_ha(mut self, ha: Option<HaCore>) -> Self {
        self.ha = ha;
        self
    }

    /// Does this node's engine speak (standalone, or primary)?
    fn acting(&self) -> bool {
        self.ha.as_ref().is_none_or(HaCore::acting)
    }

    /// Publish the events addressed to the export (`[export.nats]`).
    pub fn with_export(mut self, export: Option<crate::export::ExportHandle>) -> Self {
        self.export = export;
        self
    }

    /// Record every input and output of the engine to this recorder (`record-inputs`).
    pub fn with_recorder(mut self, recorder: Option<Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// The one way into the engine: every `engine.handle` call goes through here, so that a
    /// recording holds all of them. The input is written before the engine sees it (an input
    /// that crashes the engine is the recording's last line), its outputs when it returns.
    fn handle(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        if let Some(h) = &mut self.ha {
            h.capture(now, &input);
        }
        match &mut self.recorder {
            None => self.engine.handle(now, input, out),
            Some(rec) => {
                rec.input(now, &input);
                let from = out.len();
                self.engine.handle(now, input, out);
                rec.outputs(&out[from..]);
            }
        }
    }

    fn now(&self) -> Now {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Now {
            mono_ms: self.start.elapsed().as_millis() as u64 + self.mono_offset,
            unix_micros: unix,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<CoreMsg>) {
        let mut out = Vec::new();
        // `[ha]`: refresh the pair's view (lease age, readiness) even when nothing happens.
        let mut ha_tick = tokio::time::interval(Duration::from_millis(200));
        ha_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One timer for the engine's deadline, moved only when the deadline moves (a new timer
        // per turn would register and cancel a timer-wheel entry for every input).
        let far = || Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far().into());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            if !self.deferred.is_empty() {
                let now = self.now();
                for input in std::mem::take(&mut self.deferred) {
                    self.handle(now, input, &mut out);
                }
                self.commit(&mut out).await;
                self.publish();
                continue;
            }
            // Sleep until the engine's next deadline (no fixed tick); a backup's engine keeps
            // the primary's time (its ticks come with the stream).
            let offset = self.mono_offset;
            let wake = self
                .engine
                .poll_timeout()
                .filter(|_| self.acting())
                .map(|ms| self.start + Duration::from_millis(ms.saturating_sub(offset)));
            if wake != armed {
                sleep.as_mut().reset(wake.unwrap_or_else(far).into());
                armed = wake;
            }
            tokio::select! {
                biased;
                m = rx.recv() => {
                    let Some(m) = m else { return };
                    // Take what else is ready in the same turn, then act once.
                    let mut batch = vec![m];
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    order_batch(&mut batch, self.engine.config().background_processing);
                    for m in batch {
                        self.message(m, &mut out).await;
                    }
                }
                _ = &mut sleep, if wake.is_some() => {
                    armed = None; // spent: set again before the next wait
                    let now = self.now();
                    self.handle(now, Input::Tick, &mut out);
                }
                _ = ha_tick.tick(), if self.ha.is_some() => {}
            }
            self.commit(&mut out).await;
            self.publish();
        }
    }

    async fn message(&mut self, m: CoreMsg, out: &mut Vec<Output>) {
        let now = self.now();
        // A node that does not act takes no link or client input (stale ones from a link or
        // connections it just let go).
        if !self.acting()
            && matches!(
                m,
                CoreMsg::Link(_)
                    | CoreMsg::LinkInputs { .. }
                    | CoreMsg::Client(_)
                    | CoreMsg::ClientClose { .. }
                    | CoreMsg::ClientOpen { .. }
            )
        {
            if let CoreMsg::ClientOpen { tx, .. } = m {
                let reason = self
                    .ha
                    .as_ref()
                    .map(|h| h.shared.not_primary_reason())
                    .unwrap_or_default();
                let _ = tx.try_send(Outgoing::close(crate::ha::CLOSE_NOT_PRIMARY, reason));
            }
            return;
        }
        match m {
            CoreMsg::Replicated(r) => {
                if !self.acting() {
                    self.apply_replicated(r);
                }
            }
            CoreMsg::HaSnapshot(r) => self.snapshot_loaded(r),
            CoreMsg::Lease(c) => self.lease_change(c, out).await,
            CoreMsg::HaUp { log, lease_cmds } => self.ha_up(*log, lease_cmds),
            CoreMsg::Switchover { to, reply } => {
                let r = self.switchover(to, out).await;
                let _ = reply.send(r);
            }
            CoreMsg::Link(input) => {
                if let Input::LinkUp { name, .. } = &input {
                    self.link_name = name.clone();
                }
                self.link_input(now, input, out, Instant::now());
            }
            CoreMsg::LinkActive(link) => self.active_link = link,
            CoreMsg::LinkInputs { link, inputs } => {
                if self.active_link != Some(link) {
                    tracing::debug!(
                        link,
                        inputs = inputs.len(),
                        "inputs from a link that is not active dropped"
                    );
                    return;
                }
                let arrived = Instant::now();
                for input in inputs {
                    self.link_input(now, input, out, arrived);
                }
            }
            CoreMsg::ClientOpen {
                id,
                peer,
                tx,
                queued,
                session_id,
                owner,
            } => {
                self.queued.insert(id, queued);
                if shutting_down() {
                    drop(tx);
                    return;
                }
                self.clients.insert(id, tx);
                self.conn_session.insert(id, id);
                self.session_conn.insert(id, id);
                self.peers.insert(id, peer.clone());
                let input = Input::SessionOpened {
                    client: id,
                    peer,
                    session_id,
                    owner,
                };
                self.handle(now, input, out);
            }
            CoreMsg::Client(mut input) => {
                // Frames of a connection are its session's (another one after a resume).
                let conn = match &mut input {
                    Input::ClientText { client, .. }
                    | Input::ClientRequest { client, .. }
                    | Input::ClientInvalid { client, .. } => client,
                    _ => return self.client_input(now, input, out),
                };
                match self.conn_session.get(conn) {
                    Some(s) => *conn = *s,
                    None => return, // a connection whose session moved on: nothing to do
                }
                self.client_input(now, input, out);
            }
            CoreMsg::ClientClose { id, clean } => {
                let Some(session) = self.conn_session.remove(&id) else {
                    return;
                };
                if self.session_conn.get(&session) != Some(&id) {
                    return; // the session moved to another connection
                }
                self.session_conn.remove(&session);
                if self.clients.remove(&session).is_some() {
                    self.forget_client(session);
                    let input = if clean {
                        Input::ClientDisconnected { client: session }
                    } else {
                        Input::ClientDetached { client: session }
                    };
                    self.handle(now, input, out);
                }
            }
            CoreMsg::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    dns: self.engine.dn_views(),
                    calls: self.engine.call_views(),
                    hotdesk_pairs: self.engine.hotdesk_pairs(),
                    sessions: {
                        // How long detached, by the clock now (the engine's is its last input).
                        let now_ms = self.start.elapsed().as_millis() as u64;
                        let mut v = self.engine.session_views();
                        for s in &mut v {
                            s.detached_for_ms = s.detached_at_ms.map(|t| now_ms.saturating_sub(t));
                        }
                        v
                    },
                });
            }
            CoreMsg::Reconfigure(cfg) => {
                if self.acting() {
                    self.handle(now, Input::Reconfigure(cfg), out)
                } else {
                    info!("configuration reload: a backup follows the primary's engine configuration (the link and client settings apply here)");
                }
            }
            CoreMsg::Shutdown(done) => {
                SHUTTING_DOWN.store(true, std::sync::atomic::Ordering::Relaxed);
                let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                tracing::info!(
                    clients = ids.len(),
                    "shutting down: closing every client session"
                );
                for id in &ids {
                    // Dropping the sender ends the client's writer, which sends the close frame.
                    self.clients.remove(id);
                    // A node of a pair keeps the sessions: they resume on the next primary.
                    if self.ha.is_none() {
                        self.handle(now, Input::ClientDisconnected { client: *id }, out);
                    }
                }
                if self.ha.is_some() {
                    self.step_down("shutting down", false);
                }
                let _ = done.send(ids.len());
            }
        }
    }

    /// An input of the link; the client events a CSTA event causes are stamped with `arrived`.
    fn link_input(&mut self, now: Now, input: Input, out: &mut Vec<Output>, arrived: Instant) {
        let from = out.len();
        let event = matches!(input, Input::CstaEvent { .. });
        self.handle(now, input, out);
        if event && out.len() > from {
            self.origins.push((from, out.len(), arrived));
        }
    }

    /// A frame of a client (its session's number already in it).
    fn client_input(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        // The connection's task parsed the request (a frame that did not parse comes as
        // ClientText, for its EventError); here it is counted and timed to its answer.
        match input {
            Input::ClientRequest { client, request } => {
                self.metrics.request_in(request.name.as_str());
                if request.name == RequestName::RequestRegisterClient {
                    info!(
                        client,
                        peer = self.peers.get(&client).map(String::as_str).unwrap_or(""),
                        app = request.application_name.as_deref().unwrap_or(""),
                        "client registered as application"
                    );
                }
                if let Some(r) = request.reference_id {
                    self.inflight
                        .insert((client, r), (Instant::now(), request.name));
                }
                self.handle(now, Input::ClientRequest { client, request }, out);
            }
            input => self.handle(now, input, out),
        }
    }

    /// A resume: the connection opened as `connection` carries `session` from now on; a
    /// connection that carried it until now is closed with 4001.
    fn rebind(&mut self, connection: ClientId, session: ClientId, dropped: &mut Vec<ClientId>) {
        // What either was given this turn goes first, on its own connection.
        self.flush_client(connection, dropped);
        self.flush_client(session, dropped);
        let Some(tx) = self.clients.remove(&connection) else {
            return;
        };
        if let Some(old) = self.clients.insert(session, tx) {
            let _ = old.try_send(Outgoing::close(
                4001,
                "session resumed on another connection",
            ));
        }
        if let Some(old_conn) = self.session_conn.insert(session, connection) {
            self.conn_session.remove(&old_conn);
        }
        self.session_conn.remove(&connection);
        self.conn_session.insert(connection, session);
        if let Some(q) = self.queued.remove(&connection) {
            self.queued.insert(session, q);
        }
        if let Some(p) = self.peers.remove(&connection) {
            self.peers.insert(session, p);
        }
        self.inflight.retain(|(c, _), _| *c != connection);
    }

    fn forget_client(&mut self, id: ClientId) {
        self.pending.remove(&id);
        self.peers.remove(&id);
        self.queued.remove(&id);
        if !self.inflight.is_empty() {
            self.inflight.retain(|(c, _), _| *c != id);
        }
    }

    fn act(&mut self, out: &mut Vec<Output>) {
        let mut dropped = Vec::new();
        let origins = std::mem::take(&mut self.origins);
        let mut origin = origins.iter().peekable();
        for (i, o) in out.drain(..).enumerate() {
            while origin.peek().is_some_and(|(_, end, _)| *end <= i) {
                origin.next();
            }
            let since = origin
                .peek()
                .filter(|(start, _, _)| *start <= i)
                .map(|(_, _, t)| *t);
            match o {
                Output::Event { to, event, text } => {
                    if event.is_error() {
                        self.metrics.rejected_requests.inc();
                    }
                    if let (Some(r), [c]) = (event.reference_id, to.as_slice()) {
                        if let Some((t, name)) = self.inflight.remove(&(*c, r)) {
                            self.metrics.request_latency.observe(t.elapsed());
                            if event.is_error() {
                                let code = event.error_code.as_ref().map_or(0, |c| c.0);
                                self.metrics.request_error(name.as_str(), code);
                            }
                        }
                    }
                    self.metrics.event_out(event.name.as_str(), to.len() as u64);
                    // The outbox's text, shared (not copied) by every client's frame.
                    let text = match Utf8Bytes::try_from(bytes::Bytes::from_owner(SharedText(text)))
                    {
                        Ok(t) => t,
                        Err(_) => Utf8Bytes::from(event.to_json()), // not reached: JSON is UTF-8
                    };
                    if let Some(x) = &mut self.export {
                        if to.contains(&ctid_engine::io::EXPORT) {
                            x.offer(&event, text.as_str());
                        }
                    }
                    for c in to {
                        if !self.clients.contains_key(&c) {
                            continue;
                        }
                        if dropped.contains(&c) {
                            continue; // already dropped in this batch: one log line, one count
                        }
                        if let Some(q) = self.queued.get(&c) {
                            let n = text.len();
                            let events = q.events.load(Ordering::Relaxed) + 1;
                            let over = if events > self.max_queued_events {
                                Some(("client-queue", self.max_queued_events))
                            } else if q.bytes.load(Ordering::Relaxed) + n > self.max_queued_bytes {
                                Some(("client-queue-bytes", self.max_queued_bytes))
                            } else {
                                None
                            };
                            if let Some((setting, limit)) = over {
                                warn!(
                                    client = c,
                                    limit,
                                    "client too slow: send queue over {setting}; disconnecting"
                                );
                                self.metrics.clients_dropped_slow.inc();
                                dropped.push(c);
                                continue;
                            }
                            q.events.fetch_add(1, Ordering::Relaxed);
                            q.bytes.fetch_add(n, Ordering::Relaxed);
                            if events as i64 > self.metrics.queue_high_water.get() {
                                self.metrics.queue_high_water.set(events as i64);
                            }
                        }
                        let p = self.pending.entry(c).or_default();
                        p.frames.push(text.clone());
                        p.since.extend(since);
                    }
                }
                Output::Rebind {
                    connection,
                    session,
                } => self.rebind(connection, session, &mut dropped),
                Output::Close {
                    client,
                    code,
                    reason,
                } => {
                    self.flush_client(client, &mut dropped);
                    if let Some(tx) = self.clients.remove(&client) {
                        let _ = tx.try_send(Outgoing::close(code, reason));
                    }
                    if let Some(conn) = self.session_conn.remove(&client) {
                        self.conn_session.remove(&conn);
                    }
                    self.forget_client(client);
                }
                Output::CstaRequest { invoke_id, message } => {
                    let _ = self.link.send(LinkCmd::Request { invoke_id, message });
                }
                Output::CstaAnswer { invoke_id, message } => {
                    let _ = self.link.send(LinkCmd::Answer { invoke_id, message });
                }
            }
        }
        // Each client's writer is woken once for what this turn gave it.
        let mut batches = std::mem::take(&mut self.flushing);
        batches.extend(self.pending.drain());
        for (c, batch) in batches.drain(..) {
            self.send_batch(c, batch, &mut dropped);
        }
        self.flushing = batches;
        for c in dropped {
            self.pending.remove(&c);
            if self.clients.remove(&c).is_some() {
                // Too slow is not a clean end: the session is kept for a resume, the events it
                // could not take are among those kept (docs/protocol.md §6.9).
                if let Some(conn) = self.session_conn.remove(&c) {
                    self.conn_session.remove(&conn);
                }
                self.forget_client(c);
                self.deferred.push(Input::ClientDetached { client: c });
            }
        }
        if !out.is_empty() {
            self.act(out);
        }
    }

    /// Hand `c`'s frames of this turn to its writer (one message, one wake-up); a client whose
    /// channel is full or gone goes on `dropped`.
    fn flush_client(&mut self, c: ClientId, dropped: &mut Vec<ClientId>) {
        if let Some(batch) = self.pending.remove(&c) {
            self.send_batch(c, batch, dropped);
        }
    }

    fn send_batch(&mut self, c: ClientId, batch: Outgoing, dropped: &mut Vec<ClientId>) {
        if dropped.contains(&c) {
            return;
        }
        let Some(tx) = self.clients.get(&c) else {
            return;
        };
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(
                    client = c,
                    "client too slow: send queue full; disconnecting"
                );
                self.metrics.clients_dropped_slow.inc();
                dropped.push(c);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => dropped.push(c),
        }
    }

    fn publish(&mut self) {
        if self.ha.is_some() {
            self.ha_publish();
        }
        let link = self.engine.link_state();
        self.metrics
            .monitored_dns
            .set(self.engine.monitored_count() as i64);
        self.metrics
            .registered_dns
            .set(self.engine.dn_count() as i64);
        self.metrics.clients.set(self.clients.len() as i64);
        self.metrics
            .sessions_detached
            .set(self.engine.detached_sessions() as i64);
        let sc = self.engine.session_counters();
        self.metrics.sessions_resumed.follow(sc.resumed);
        self.metrics.sessions_expired.follow(sc.expired);
        self.metrics.sessions_overflowed.follow(sc.overflowed);
        self.metrics.sessions_refused.follow(sc.refused);
        self.metrics.events_replayed.follow(sc.replayed);
        self.metrics
            .outstanding
            .set(self.engine.outstanding() as i64);
        self.metrics.sync_done.set((link == LinkState::Up) as i64);
        self.metrics
            .window_limit
            .set(self.engine.window_limit() as i64);
        let c = self.engine.counters();
        self.metrics.unmatched_answers.follow(c.late_answers);
        self.metrics
            .duplicate_private_events
            .follow(c.duplicate_private_events);
        self.metrics.unknown_cross_ref.follow(c.unknown_cross_ref);
        self.metrics
            .events_without_call_id
            .follow(c.events_without_call_id);
        // Compared in place: the link name is cloned only when something changed.
        let (monitored, dns, clients) = (
            self.engine.monitored_count(),
            self.engine.dn_count(),
            self.clients.len(),
        );
        let (outstanding, window_limit) = (self.engine.outstanding(), self.engine.window_limit());
        let link_name = &self.link_name;
        self.status.send_if_modified(|old| {
            let changed = old.link != link
                || old.monitored != monitored
                || old.dns != dns
                || old.clients != clients
                || old.outstanding != outstanding
                || old.window_limit != window_limit
                || old.link_name != *link_name;
            if changed {
                *old = Status {
                    link,
                    link_name: link_name.clone(),
                    monitored,
                    dns,
                    clients,
                    outstanding,
                    window_limit,
                };
            }
            changed
        });
    }
}

/// `background-processing` (docs/configuration.md): when on, the switch's messages of a batch
/// are handled before the client requests queued with them (each side keeps its order); when
/// off, everything in arrival order.
fn order_batch(batch: &mut [CoreMsg], background_processing: bool) {
    if background_processing {
        // A stable sort: link messages first, the rest after, each in arrival order.
        batch.sort_by_key(|m| !matches!(m, CoreMsg::Link(_) | CoreMsg::LinkInputs { .. }));
    }
}

/// An event's JSON as the bytes of a WebSocket frame, without a copy.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Keep `Arc` in the public surface for callers that share a core sender.
pub type CoreTx = Arc<mpsc::Sender<CoreMsg>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn order(batch: &[CoreMsg]) -> Vec<String> {
        batch
            .iter()
            .map(|m| match m {
                CoreMsg::Link(i) => format!("link:{}", i.name()),
                CoreMsg::Client(Input::ClientText { client, .. }) => format!("client:{client}"),
                CoreMsg::ClientClose { id, .. } => format!("close:{id}"),
                _ => "other".into(),
            })
            .collect()
    }

    fn batch() -> Vec<CoreMsg> {
        let text = |client| {
            CoreMsg::Client(Input::ClientText {
                client,
                text: "{}".into(),
            })
        };
        vec![
            text(1),
            CoreMsg::Link(Input::Tick),
            text(2),
            CoreMsg::ClientClose { id: 1, clean: true },
            CoreMsg::Link(Input::LinkDown { reason: "x".into() }),
        ]
    }

    #[test]
    fn background_processing_puts_switch_messages_first() {
        let mut b = batch();
        order_batch(&mut b, true);
        assert_eq!(
            order(&b),
            [
                "link:Tick",
                "link:LinkDown",
                "client:1",
                "client:2",
                "close:1"
            ]
        );
        let mut b = batch();
        order_batch(&mut b, false);
        assert_eq!(
            order(&b),
            [
                "client:1",
                "link:Tick",
                "client:2",
                "close:1",
                "link:LinkDown"
            ]
        );
    }
}
