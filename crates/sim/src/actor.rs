//! The switch task: the one owner of the switch [`Model`] and of every CSTA connection's
//! session and monitors. Connection tasks feed it decoded frames; the control API and the
//! [`crate::Sim`] handle feed it closures. It answers each request (or refuses it with a
//! CSTAErrorCode), then fans the events the model produced out to every monitor of every device
//! involved, each copy with that monitor's `monitorCrossRefID`. Faults (stall, delay, fail-next,
//! system status, malformed frames, dropped connections) live here too.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ctid_csta::frame::encode_message;
use ctid_csta::*;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{SessionMode, SimConfig};
use crate::dual::Tracker;
use crate::error::{Result, SimError};
use crate::events::{conn, set_xref};
use crate::model::Model;

/// A closure run against the model (it sends its own result); its events are sent after it.
pub(crate) type ModelFn = Box<dyn FnOnce(&mut Model) + Send>;
/// A closure run against the switch task itself (faults, state).
pub(crate) type ActorFn = Box<dyn FnOnce(&mut Actor) + Send>;

/// What the switch task is told. (Inbound frames dominate; boxing them would cost an
/// allocation per frame for nothing.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cmd {
    /// A new CSTA connection.
    Accepted {
        id: u64,
        peer: SocketAddr,
        tx: mpsc::Sender<Bytes>,
        kill: oneshot::Sender<()>,
    },
    /// A frame from a connection, decoded (or why not).
    Inbound {
        id: u64,
        invoke: InvokeId,
        xml: Bytes,
        msg: std::result::Result<Message, DecodeError>,
    },
    /// A connection ended.
    Closed {
        id: u64,
    },
    Model(ModelFn),
    Actor(ActorFn),
}

/// Counters shared with the handle (load mode prints them).
#[derive(Debug, Default)]
pub struct Stats {
    /// Event frames sent (one per monitor copy).
    pub events_out: AtomicU64,
    /// Frames sent (responses, events, requests).
    pub frames_out: AtomicU64,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Connections closed because their send queue overflowed.
    pub slow_closed: AtomicU64,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// ecma354: waiting for StartApplicationSession.
    AwaitingStart,
    Active,
}

struct ConnState {
    peer: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<()>>,
    opts: CodecOptions,
    phase: Phase,
    session_id: Option<String>,
    deadline: Option<Instant>,
    registered: Option<String>,
    next_invoke: u16,
    /// crossRefID → device.
    monitors: BTreeMap<String, String>,
    /// Frames sent and received on this connection.
    frames_out: u64,
    frames_in: u64,
}

/// The switch task's state.
pub(crate) struct Actor {
    pub(crate) cfg: SimConfig,
    pub(crate) model: Model,
    conns: BTreeMap<u64, ConnState>,
    /// device → (connection, crossRefID) of every monitor on it.
    fanout: HashMap<String, Vec<(u64, String)>>,
    next_xref: u64,
    next_session: u64,
    pub(crate) system_status: SystemStatusValue,
    pub(crate) stall: bool,
    pub(crate) delay_ms: u64,
    /// `model.removals` when monitors were last reconciled.
    seen_removals: u64,
    pub(crate) fail_next: Option<(CstaError, Option<String>)>,
    /// Requests the fail-next fault lets through before it applies.
    pub(crate) fail_skip: u32,
    stats: Arc<Stats>,
    /// The dual-primary check (shared with the handle, which reads it).
    dual: Arc<Mutex<Tracker>>,
    /// Requests swallowed while stalled.
    stalled_requests: u64,
    /// When the switch started: the model's clock (`Model::now_ms`).
    epoch: Instant,
}

fn is_system_or_session(m: &Message) -> bool {
    matches!(
        m,
        Message::RequestSystemStatus(_)
            | Message::SystemStatus(_)
            | Message::SystemRegister(_)
            | Message::StartApplicationSession(_)
            | Message::ResetApplicationSessionTimer(_)
            | Message::StopApplicationSession(_)
    )
}

/// The local name of the root element of a document, cheaply (for frames that did not decode).
pub(crate) fn root_name(xml: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(xml).ok()?;
    let mut rest = s;
    loop {
        let i = rest.find('<')?;
        rest = &rest[i + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        let name = &rest[..end];
        return Some(name.rsplit(':').next().unwrap_or(name).to_string());
    }
}

impl Actor {
    pub(crate) fn new(
        cfg: SimConfig,
        model: Model,
        stats: Arc<Stats>,
        dual: Arc<Mutex<Tracker>>,
    ) -> Self {
        let system_status = SystemStatusValue::parse(&cfg.system_status);
        Actor {
            cfg,
            model,
            conns: BTreeMap::new(),
            fanout: HashMap::new(),
            next_xref: 1,
            next_session: 1,
            system_status,
            stall: false,
            delay_ms: 0,
            seen_removals: 0,
            fail_next: None,
            fail_skip: 0,
            stats,
            dual,
            stalled_requests: 0,
            epoch: Instant::now(),
        }
    }

    /// Run until cancelled.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        self.clock();
                        self.handle(cmd)
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.check_sessions();
                    self.clock();
                    if self.model.ring_timeouts(self.cfg.no_answer_secs) > 0 {
                        self.flush_events();
                        self.reconcile_monitors();
                    }
                }
            }
        }
        for (_, c) in std::mem::take(&mut self.conns) {
            if let Some(k) = c.kill {
                let _ = k.send(());
            }
        }
    }

    /// Set the model's clock (milliseconds since start).
    fn clock(&mut self) {
        self.model.now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Accepted { id, peer, tx, kill } => self.on_accept(id, peer, tx, kill),
            Cmd::Inbound {
                id,
                invoke,
                xml,
                msg,
            } => {
                self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                let peer = self.conns.get_mut(&id).map(|c| {
                    c.frames_in += 1;
                    c.peer
                });
                // frames of a connection already dropped are ignored, by the check too
                if let Some(peer) = peer {
                    let kind = match &msg {
                        Ok(m) => m.name().to_string(),
                        Err(_) => root_name(&xml).unwrap_or_else(|| "an undecodable frame".into()),
                    };
                    self.dual().inbound(id, peer, &kind);
                }
                match msg {
                    Ok(m) => self.on_message(id, invoke, m),
                    Err(e) => self.on_bad_document(id, invoke, &xml, e),
                }
            }
            Cmd::Closed { id } => self.remove_conn(id, "closed by peer"),
            Cmd::Model(f) => {
                f(&mut self.model);
                self.flush_events();
                self.reconcile_monitors();
            }
            Cmd::Actor(f) => f(self),
        }
    }

    // ------------------------------------------------------------------ connections

    fn on_accept(
        &mut self,
        id: u64,
        peer: SocketAddr,
        tx: mpsc::Sender<Bytes>,
        kill: oneshot::Sender<()>,
    ) {
        info!(conn = id, %peer, session = self.cfg.session.as_str(), "CSTA connection accepted");
        let phase = match self.cfg.session {
            SessionMode::Ecma354 => Phase::AwaitingStart,
            _ => Phase::Active,
        };
        self.conns.insert(
            id,
            ConnState {
                peer,
                tx,
                kill: Some(kill),
                opts: CodecOptions {
                    edition: self.cfg.edition,
                    hotdesk_ns: self.cfg.hotdesk_ns.clone(),
                },
                phase,
                session_id: None,
                deadline: None,
                registered: None,
                next_invoke: 0,
                monitors: BTreeMap::new(),
                frames_out: 0,
                frames_in: 0,
            },
        );
        if self.cfg.session == SessionMode::SystemRegister {
            // the Connector speaks first (csta-xml.md §3.2)
            self.send_system_status(id);
        }
    }

    /// Forget a connection: its monitors go; dropping its sender lets its task flush and close.
    fn remove_conn(&mut self, id: u64, why: &str) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        info!(conn = id, peer = %c.peer, why, "CSTA connection removed");
        self.dual().closed(id);
        for (xref, dev) in c.monitors {
            self.unindex_monitor(id, &xref, &dev);
        }
    }

    /// The dual-primary check (a poisoned lock is still good: it only holds counters).
    fn dual(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.dual.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill_conn(&mut self, id: u64, why: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            if let Some(k) = c.kill.take() {
                let _ = k.send(());
            }
        }
        self.remove_conn(id, why);
    }

    fn unindex_monitor(&mut self, id: u64, xref: &str, dev: &str) {
        if let Some(v) = self.fanout.get_mut(dev) {
            v.retain(|(c, x)| !(*c == id && x == xref));
            if v.is_empty() {
                self.fanout.remove(dev);
            }
        }
        if let Some(n) = self.model.monitored.get_mut(dev) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.model.monitored.remove(dev);
            }
        }
    }

    // ------------------------------------------------------------------ sending

    fn send_raw(&mut self, id: u64, frame: Bytes) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.tx.try_send(frame) {
            Ok(()) => {
                c.frames_out += 1;
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(
                    conn = id,
                    "send queue full: the client is too slow; closing"
                );
                self.stats.slow_closed.fetch_add(1, Ordering::Relaxed);
                self.kill_conn(id, "send queue overflow");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.remove_conn(id, "writer gone"),
        }
    }

    fn encode(&self, id: u64, invoke: InvokeId, msg: &Message) -> Option<Bytes> {
        let c = self.conns.get(&id)?;
        let mut b = BytesMut::with_capacity(512);
        match encode_message(invoke, msg, &c.opts, &mut b) {
            Ok(()) => Some(b.freeze()),
            Err(e) => {
                warn!(conn = id, message = msg.name(), error = %e, "cannot encode");
                None
            }
        }
    }

    fn send(&mut self, id: u64, invoke: InvokeId, msg: &Message) {
        if let Some(b) = self.encode(id, invoke, msg) {
            self.send_raw(id, b);
        }
    }

    /// A response (or CSTAErrorCode), delayed when the delay fault is on.
    fn respond(&mut self, id: u64, invoke: InvokeId, msg: &Message) {
        if self.delay_ms == 0 {
            return self.send(id, invoke, msg);
        }
        let Some(b) = self.encode(id, invoke, msg) else {
            return;
        };
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let tx = c.tx.clone();
        let d = Duration::from_millis(self.delay_ms);
        self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = tx.send(b).await;
        });
    }

    fn refuse(&mut self, id: u64, invoke: InvokeId, e: &SimError) {
        debug!(conn = id, %invoke, error = %e, "request refused");
        let msg = Message::CstaErrorCode(CstaErrorCode {
            error: e.csta_error(),
        });
        self.respond(id, invoke, &msg);
    }

    /// A request of the simulator's own to one connection.
    fn send_request(&mut self, id: u64, msg: &Message) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let n = c.next_invoke;
        c.next_invoke = if n >= 9998 { 0 } else { n + 1 };
        self.send(id, InvokeId::new(n).unwrap_or(InvokeId::EVENT), msg);
    }

    fn send_system_status(&mut self, id: u64) {
        let reg = self.conns.get(&id).and_then(|c| c.registered.clone());
        let msg = Message::SystemStatus(SystemStatus {
            sys_stat_register_id: reg.map(Into::into),
            system_status: self.system_status.clone(),
            extensions: None,
        });
        self.send_request(id, &msg);
    }

    /// Fan the model's events out to every monitor of each device.
    fn flush_events(&mut self) {
        let out = self.model.take_out();
        for (device, msg) in out {
            let Some(targets) = self.fanout.get(&device).cloned() else {
                continue;
            };
            for (id, xref) in targets {
                let mut m = msg.clone();
                set_xref(&mut m, &xref);
                if let Some(b) = self.encode(id, InvokeId::EVENT, &m) {
                    self.stats.events_out.fetch_add(1, Ordering::Relaxed);
                    self.send_raw(id, b);
                }
            }
        }
    }

    /// Monitors on devices that no longer exist are stopped by the switch (MonitorStop).
    /// Only after a device was removed: scanning every monitor per request made start-up
    /// quadratic in the number of monitors.
    fn reconcile_monitors(&mut self) {
        if self.model.removals == self.seen_removals {
            return;
        }
        self.seen_removals = self.model.removals;
        let gone: Vec<(u64, String, String)> = self
            .conns
            .iter()
            .flat_map(|(id, c)| {
                c.monitors
                    .iter()
                    .filter(|(_, d)| !self.model.has_device(d))
                    .map(move |(x, d)| (*id, x.clone(), d.clone()))
            })
            .collect();
        for (id, xref, dev) in gone {
            self.stop_monitor_from_switch(id, &xref, &dev);
        }
    }

    fn stop_monitor_from_switch(&mut self, id: u64, xref: &str, dev: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.monitors.remove(xref);
        }
        self.unindex_monitor(id, xref, dev);
        let msg = Message::MonitorStop(MonitorStop {
            monitor_cross_ref_id: xref.into(),
            extensions: None,
        });
        self.send_request(id, &msg);
    }

    // ------------------------------------------------------------------ inbound

    fn on_bad_document(&mut self, id: u64, invoke: InvokeId, xml: &[u8], e: DecodeError) {
        let root = root_name(xml).unwrap_or_default();
        match e {
            DecodeError::Missing { .. } | DecodeError::Invalid { .. }
                if !invoke.is_event()
                    && !root.ends_with("Response")
                    && !root.ends_with("Event")
                    && root != "CSTAErrorCode" =>
            {
                warn!(conn = id, %invoke, root, error = %e, "invalid request");
                if self.stall {
                    self.stalled_requests += 1;
                    return;
                }
                self.refuse(id, invoke, &SimError::invalid_param(e.to_string()));
            }
            _ => warn!(conn = id, %invoke, root, error = %e, "undecodable frame skipped"),
        }
    }

    fn on_message(&mut self, id: u64, invoke: InvokeId, msg: Message) {
        match msg.kind() {
            MessageKind::Request => {}
            MessageKind::Unknown => {
                if msg.name().ends_with("Response") || invoke.is_event() {
                    debug!(conn = id, root = msg.name(), "unknown message ignored");
                    return;
                }
                if self.stall {
                    self.stalled_requests += 1;
                    return;
                }
                let e = SimError::op(
                    OperationError::ServiceNotSupported,
                    format!("{} is not supported", msg.name()),
                );
                return self.refuse(id, invoke, &e);
            }
            _ => {
                debug!(conn = id, %invoke, root = msg.name(), "answer/event from client");
                return;
            }
        }
        if self.stall {
            self.stalled_requests += 1;
            debug!(conn = id, %invoke, root = msg.name(), "stalled: request swallowed");
            return;
        }
        let Some(phase) = self.conns.get(&id).map(|c| c.phase) else {
            return;
        };
        // ECMA-354 gate
        if let Message::StartApplicationSession(s) = &msg {
            return self.start_session(id, invoke, s);
        }
        if matches!(
            msg,
            Message::ResetApplicationSessionTimer(_) | Message::StopApplicationSession(_)
        ) && self.cfg.session != SessionMode::Ecma354
        {
            return self.refuse(
                id,
                invoke,
                &SimError::op(
                    OperationError::ServiceNotSupported,
                    "no ECMA-354 sessions here",
                ),
            );
        }
        if phase == Phase::AwaitingStart {
            return self.refuse(
                id,
                invoke,
                &SimError::op(
                    OperationError::Generic,
                    "no application session (send StartApplicationSession first)",
                ),
            );
        }
        // fail-next fault
        if let Some((err, service)) = &self.fail_next {
            let applies = match service {
                Some(s) => s == msg.name(),
                None => !is_system_or_session(&msg),
            };
            if applies && self.fail_skip > 0 {
                self.fail_skip -= 1;
            } else if applies {
                let e = SimError::csta(err.clone(), "fail-next fault");
                self.fail_next = None;
                info!(conn = id, %invoke, root = msg.name(), error = %e.csta_error(), "fail-next fault used");
                return self.refuse(id, invoke, &e);
            }
        }
        if !is_system_or_session(&msg)
            && matches!(
                self.system_status,
                SystemStatusValue::Disabled | SystemStatusValue::Initializing
            )
        {
            let e = SimError::resource(
                SystemResourceAvailabilityError::ResourceOutOfService,
                format!("system status is {}", self.system_status),
            );
            return self.refuse(id, invoke, &e);
        }
        match self.request(id, invoke, &msg) {
            Ok(Some(resp)) => self.respond(id, invoke, &resp),
            Ok(None) => {}
            Err(e) => self.refuse(id, invoke, &e),
        }
        self.flush_events();
        self.reconcile_monitors();
    }

    fn start_session(&mut self, id: u64, invoke: InvokeId, s: &StartApplicationSession) {
        if self.cfg.session != SessionMode::Ecma354 {
            return self.refuse(
                id,
                invoke,
                &SimError::op(
                    OperationError::ServiceNotSupported,
                    "no ECMA-354 sessions here",
                ),
            );
        }
        let want = self.cfg.edition;
        let edition = if s.requested_protocol_versions.is_empty()
            || s.requested_protocol_versions
                .iter()
                .any(|v| v.trim() == want.namespace())
        {
            Some(want)
        } else {
            s.requested_protocol_versions
                .iter()
                .find_map(|v| Edition::from_namespace(v.trim()))
        };
        let Some(edition) = edition else {
            let msg =
                Message::StartApplicationSessionNegResponse(StartApplicationSessionNegResponse {
                    error_code: Some(SessionErrorCode::Defined(
                        SessionDefinedError::RequestedProtocolVersionNotSupported,
                    )),
                    extensions: None,
                });
            return self.respond(id, invoke, &msg);
        };
        let duration = s
            .requested_session_duration
            .filter(|d| *d > 0)
            .unwrap_or(self.cfg.session_duration)
            .clamp(5, 86_400);
        let sid = format!("SIM{:04}{}", self.next_session, id);
        self.next_session += 1;
        if let Some(c) = self.conns.get_mut(&id) {
            c.opts.edition = edition;
            c.phase = Phase::Active;
            c.session_id = Some(sid.clone());
            c.deadline = Some(Instant::now() + Duration::from_secs(u64::from(duration)));
        }
        info!(conn = id, session = sid, %edition, duration, "application session started");
        let msg = Message::StartApplicationSessionPosResponse(StartApplicationSessionPosResponse {
            session_id: sid.into(),
            actual_protocol_version: Some(edition.namespace().into()),
            actual_session_duration: Some(duration),
            extensions: None,
        });
        self.respond(id, invoke, &msg);
        // the Connector then reports its status (csta-xml.md §3.4)
        self.send_system_status(id);
    }

    fn check_sessions(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            warn!(conn = id, "application session timer expired");
            let msg = Message::ApplicationSessionTerminated(ApplicationSessionTerminated {
                session_term_reason: Some(SessionTermReasonChoice::Defined(
                    SessionTermReason::SessionTimerExpired,
                )),
                extensions: None,
            });
            self.send(id, InvokeId::EVENT, &msg);
            self.remove_conn(id, "session timer expired");
        }
    }

    /// One request: `Ok(Some(response))`, `Ok(None)` when the answer was already sent.
    fn request(&mut self, id: u64, invoke: InvokeId, msg: &Message) -> Result<Option<Message>> {
        let m = &mut self.model;
        let r = match msg {
            Message::RequestSystemStatus(_) => {
                Message::RequestSystemStatusResponse(RequestSystemStatusResponse {
                    system_status: Some(self.system_status.clone()),
                    extensions: None,
                })
            }
            Message::SystemStatus(s) => {
                debug!(conn = id, status = %s.system_status, "client reports system status");
                Message::SystemStatusResponse(SystemStatusResponse { extensions: None })
            }
            Message::SystemRegister(_) => {
                let reg = format!("csta-sim-{id}");
                if let Some(c) = self.conns.get_mut(&id) {
                    c.registered = Some(reg.clone());
                }
                Message::SystemRegisterResponse(SystemRegisterResponse {
                    sys_stat_register_id: Some(reg.into()),
                    extensions: None,
                })
            }
            Message::ResetApplicationSessionTimer(r) => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return Err(SimError::BadRequest("connection closed".into()));
                };
                if c.session_id.as_deref() != Some(r.session_id.trim()) {
                    Message::ResetApplicationSessionTimerNegResponse(
                        ResetApplicationSessionTimerNegResponse {
                            error_code: Some(SessionErrorCode::Defined(
                                SessionDefinedError::InvalidSessionID,
                            )),
                            extensions: None,
                        },
                    )
                } else {
                    let d = r
                        .requested_session_duration
                        .filter(|d| *d > 0)
                        .unwrap_or(self.cfg.session_duration)
                        .clamp(5, 86_400);
                    c.deadline = Some(Instant::now() + Duration::from_secs(u64::from(d)));
                    Message::ResetApplicationSessionTimerPosResponse(
                        ResetApplicationSessionTimerPosResponse {
                            actual_session_duration: Some(d),
                            extensions: None,
                        },
                    )
                }
            }
            Message::StopApplicationSession(s) => {
                let ok = self.conns.get(&id).and_then(|c| c.session_id.as_deref())
                    == Some(s.session_id.trim());
                if !ok {
                    Message::StopApplicationSessionNegResponse(StopApplicationSessionNegResponse {
                        error_code: Some(SessionErrorCode::Defined(
                            SessionDefinedError::InvalidSessionID,
                        )),
                        extensions: None,
                    })
                } else {
                    let resp = Message::StopApplicationSessionPosResponse(
                        StopApplicationSessionPosResponse { extensions: None },
                    );
                    self.send(id, invoke, &resp);
                    self.remove_conn(id, "application session stopped");
                    return Ok(None);
                }
            }
            Message::MonitorStart(ms) => {
                let device = match &ms.monitor_object {
                    MonitorObject::Device(d) => d.trim().to_string(),
                    MonitorObject::Call(_) => {
                        return Err(SimError::op(
                            OperationError::InvalidMonitorObjectType,
                            "call monitors are not supported",
                        ))
                    }
                };
                if let Some(MonitorType::Call) = ms.monitor_type {
                    return Err(SimError::op(
                        OperationError::MonitorTypeNotSupported,
                        "monitorType call is not supported",
                    ));
                }
                if !m.has_device(&device) {
                    return Err(SimError::unknown_device(&device));
                }
                let xref = self.next_xref.to_string();
                self.next_xref += 1;
                if let Some(c) = self.conns.get_mut(&id) {
                    c.monitors.insert(xref.clone(), device.clone());
                }
                self.fanout
                    .entry(device.clone())
                    .or_default()
                    .push((id, xref.clone()));
                *self.model.monitored.entry(device.clone()).or_insert(0) += 1;
                debug!(conn = id, device, xref, "monitor started");
                Message::MonitorStartResponse(MonitorStartResponse {
                    monitor_cross_ref_id: xref.into(),
                    monitor_existing_calls: None,
                    extensions: None,
                })
            }
            Message::MonitorStop(ms) => {
                let xref = ms.monitor_cross_ref_id.trim().to_string();
                let dev = self
                    .conns
                    .get_mut(&id)
                    .and_then(|c| c.monitors.remove(&xref))
                    .ok_or_else(|| {
                        SimError::op(
                            OperationError::InvalidMonitorCrossRefID,
                            format!("no monitor {xref:?} on this connection"),
                        )
                    })?;
                self.unindex_monitor(id, &xref, &dev);
                Message::MonitorStopResponse(MonitorStopResponse { extensions: None })
            }
            Message::SnapshotDevice(s) => {
                let data = m.snapshot_device(s.snapshot_object.trim())?;
                let seg = self.cfg.snapshot_segment;
                if seg > 0 && data.len() > seg {
                    let xref = self.next_xref.to_string();
                    self.next_xref += 1;
                    let resp = Message::SnapshotDeviceResponse(SnapshotDeviceResponse {
                        cross_ref_id_or_snapshot_data: SnapshotResult::ServiceCrossRefId(
                            xref.as_str().into(),
                        ),
                        extensions: None,
                    });
                    self.respond(id, invoke, &resp);
                    let n = data.len().div_ceil(seg);
                    for (i, chunk) in data.chunks(seg).enumerate() {
                        let ev = Message::SnapshotDeviceData(SnapshotDeviceData {
                            service_cross_ref_id: xref.as_str().into(),
                            segment_id: Some(i as u32 + 1),
                            last_segment: Some(i + 1 == n),
                            snapshot_data: chunk.to_vec(),
                            extensions: None,
                        });
                        self.send(id, InvokeId::EVENT, &ev);
                    }
                    return Ok(None);
                }
                Message::SnapshotDeviceResponse(SnapshotDeviceResponse {
                    cross_ref_id_or_snapshot_data: SnapshotResult::Data(data),
                    extensions: None,
                })
            }
            Message::Escape(e) => Message::EscapeResponse(m.escape(e)?),
            Message::MakeCall(mc) => {
                let from = mc.calling_device.trim();
                let cid = m.make_call(from, mc.called_directory_number.trim(), true)?;
                Message::MakeCallResponse(MakeCallResponse {
                    calling_device: conn(&cid, from),
                    extensions: None,
                })
            }
            Message::AnswerCall(a) => {
                use LocalConnectionState as S;
                let c = m.complete_connection(&a.call_to_be_answered, &[S::Alerting])?;
                m.answer(&c)?;
                Message::AnswerCallResponse(AnswerCallResponse { extensions: None })
            }
            Message::ClearConnection(c) => {
                use LocalConnectionState as S;
                let x = m.complete_connection(
                    &c.connection_to_be_cleared,
                    &[S::Connected, S::Initiated, S::Alerting, S::Hold, S::Queued],
                )?;
                m.clear_connection(x.call(), x.device())?;
                Message::ClearConnectionResponse(ClearConnectionResponse { extensions: None })
            }
            Message::ClearCall(c) => {
                m.clear_call(c.call_to_be_cleared.call())?;
                Message::ClearCallResponse(ClearCallResponse { extensions: None })
            }
            Message::HoldCall(h) => {
                let c =
                    m.complete_connection(&h.call_to_be_held, &[LocalConnectionState::Connected])?;
                m.hold(&c)?;
                Message::HoldCallResponse(HoldCallResponse { extensions: None })
            }
            Message::RetrieveCall(r) => {
                let c =
                    m.complete_connection(&r.call_to_be_retrieved, &[LocalConnectionState::Hold])?;
                m.retrieve(&c)?;
                Message::RetrieveCallResponse(RetrieveCallResponse { extensions: None })
            }
            Message::ConsultationCall(c) => {
                let cid = m.consult(&c.existing_call, c.consulted_device.trim())?;
                Message::ConsultationCallResponse(ConsultationCallResponse {
                    initiated_call: conn(&cid, c.existing_call.device()),
                    extensions: None,
                })
            }
            Message::TransferCall(t) => {
                let (cid, list) = m.transfer(&t.held_call, &t.active_call)?;
                let (cid, list) = renumbered(m, self.cfg.renumber_transfers, cid, list);
                Message::TransferCallResponse(TransferCallResponse {
                    transferred_call: Some(crate::events::call_only(&cid)),
                    connections: list,
                    extensions: None,
                })
            }
            Message::ConferenceCall(t) => {
                let (cid, list) = m.conference(&t.held_call, &t.active_call)?;
                let (cid, list) = renumbered(m, self.cfg.renumber_transfers, cid, list);
                Message::ConferenceCallResponse(ConferenceCallResponse {
                    conference_call: Some(crate::events::call_only(&cid)),
                    connections: list,
                    extensions: None,
                })
            }
            Message::SingleStepTransferCall(s) => {
                let to = s.transferred_to.trim();
                let cid = m.single_step_transfer(&s.active_call, to)?;
                let (cid, list) = renumbered(m, self.cfg.renumber_transfers, cid, Vec::new());
                Message::SingleStepTransferCallResponse(SingleStepTransferCallResponse {
                    transferred_call: Some(conn(&cid, to)),
                    connections: list,
                    extensions: None,
                })
            }
            Message::DeflectCall(d) => {
                m.deflect(&d.call_to_be_diverted, d.new_destination.0.trim())?;
                Message::DeflectCallResponse(DeflectCallResponse { extensions: None })
            }
            Message::AlternateCall(a) => {
                m.alternate(&a.held_call, &a.active_call)?;
                Message::AlternateCallResponse(AlternateCallResponse { extensions: None })
            }
            Message::ReconnectCall(r) => {
                m.reconnect(&r.active_call, &r.held_call)?;
                Message::ReconnectCallResponse(ReconnectCallResponse { extensions: None })
            }
            Message::GenerateDigits(g) => {
                m.generate_digits(&g.connection_to_send_digits)?;
                Message::GenerateDigitsResponse(GenerateDigitsResponse { extensions: None })
            }
            Message::SetAgentState(s) => {
                m.set_agent_state(
                    s.device.trim(),
                    &s.requested_agent_state,
                    s.agent_id
                        .as_deref()
                        .map(str::trim)
                        .filter(|x| !x.is_empty()),
                    s.group.as_deref().map(str::trim).filter(|x| !x.is_empty()),
                    s.extensions
                        .as_ref()
                        .and_then(|e| e.private_data.as_ref())
                        .and_then(|p| p.not_ready_reason()),
                )?;
                Message::SetAgentStateResponse(SetAgentStateResponse {
                    pending_agent_state: None,
                    extensions: None,
                })
            }
            Message::GetAgentState(g) => Message::GetAgentStateResponse(GetAgentStateResponse {
                agent_state_list: m.get_agent_state(g.device.trim())?,
                extensions: None,
            }),
            Message::SetForwarding(s) => {
                m.set_forwarding(
                    s.device.trim(),
                    s.forwarding_type.as_ref(),
                    s.activate_forward,
                    s.forward_dn.as_deref().map(str::trim),
                )?;
                Message::SetForwardingResponse(SetForwardingResponse { extensions: None })
            }
            Message::GetForwarding(g) => Message::GetForwardingResponse(GetForwardingResponse {
                forwarding_list: m.get_forwarding(g.device.trim())?,
                extensions: None,
            }),
            Message::SetDoNotDisturb(s) => {
                m.set_dnd(s.device.trim(), s.do_not_disturb_on)?;
                Message::SetDoNotDisturbResponse(SetDoNotDisturbResponse { extensions: None })
            }
            Message::GetDoNotDisturb(g) => {
                Message::GetDoNotDisturbResponse(GetDoNotDisturbResponse {
                    do_not_disturb_on: m.device(g.device.trim())?.dnd,
                    extensions: None,
                })
            }
            other => {
                return Err(SimError::op(
                    OperationError::ServiceNotSupported,
                    format!("{} is not supported", other.name()),
                ))
            }
        };
        Ok(Some(r))
    }

    // ------------------------------------------------------------------ faults and state

    /// Close every CSTA connection at once.
    pub(crate) fn drop_all(&mut self) -> usize {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in &ids {
            self.kill_conn(*id, "drop fault");
        }
        ids.len()
    }

    /// Change the system status and tell every connection in session.
    pub(crate) fn set_system_status(&mut self, s: SystemStatusValue) -> usize {
        self.system_status = s;
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Active)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.send_system_status(*id);
        }
        ids.len()
    }

    /// Stop every monitor from the switch side (MonitorStop requests), as a Connector that lost
    /// its switch does.
    pub(crate) fn stop_all_monitors(&mut self) -> usize {
        let all: Vec<(u64, String, String)> = self
            .conns
            .iter()
            .flat_map(|(id, c)| {
                c.monitors
                    .iter()
                    .map(move |(x, d)| (*id, x.clone(), d.clone()))
            })
            .collect();
        for (id, x, d) in &all {
            self.stop_monitor_from_switch(*id, x, d);
        }
        all.len()
    }

    /// Send a malformed frame of `kind` to every connection.
    pub(crate) fn inject_malformed(&mut self, kind: &str) -> Result<usize> {
        let ns = self.cfg.edition.namespace();
        let good = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SystemStatus xmlns=\"{ns}\"><systemStatus>{}</systemStatus></SystemStatus>",
            self.system_status
        );
        let frame = |indicator: u16, len: Option<u16>, invoke: &[u8; 4], xml: &[u8]| {
            let mut b = BytesMut::new();
            b.put_u16(indicator);
            b.put_u16(len.unwrap_or((8 + xml.len()) as u16));
            b.put_slice(invoke);
            b.put_slice(xml);
            b.freeze()
        };
        let bytes = match kind {
            "xml" => {
                let bad = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeliveredEvent xmlns=\"{ns}\"><monitorCrossRefID>1</monitorCrossRefID><connection><callID>C0</callID>");
                frame(0, None, b"9999", bad.as_bytes())
            }
            "invoke" => frame(0, None, b"99X9", good.as_bytes()),
            "format" => frame(0x0100, None, b"9999", good.as_bytes()),
            "framing" => frame(0, Some(4), b"9999", b""),
            other => {
                return Err(SimError::BadRequest(format!(
                    "malformed kind {other:?}: expected xml, invoke, format or framing"
                )))
            }
        };
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in &ids {
            self.send_raw(*id, bytes.clone());
        }
        Ok(ids.len())
    }

    /// The simulator's own state (connections, monitors, faults) plus the model's.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = self.model.to_json();
        let dual = self.dual();
        let conns: Vec<Value> = self
            .conns
            .iter()
            .map(|(id, c)| {
                json!({
                    "id": id,
                    "peer": c.peer.to_string(),
                    "session": match c.phase { Phase::AwaitingStart => "awaiting-start", Phase::Active => "active" },
                    "sessionID": c.session_id,
                    "edition": c.opts.edition.as_str(),
                    "sysStatRegisterID": c.registered,
                    "monitors": c.monitors.iter().map(|(x, d)| json!({"monitorCrossRefID": x, "device": d})).collect::<Vec<_>>(),
                    "framesIn": c.frames_in,
                    "framesOut": c.frames_out,
                    "link": dual.role(*id),
                })
            })
            .collect();
        drop(dual);
        v["connections"] = json!(conns);
        v["systemStatus"] = json!(self.system_status.as_str());
        v["sessionMode"] = json!(self.cfg.session.as_str());
        v["edition"] = json!(self.cfg.edition.as_str());
        v["faults"] = json!({
            "stall": self.stall,
            "delayMs": self.delay_ms,
            "failNext": self.fail_next.as_ref().map(|(e, s)| json!({"error": e.to_string(), "service": s})),
            "stalledRequests": self.stalled_requests,
        });
        v["stats"] = json!({
            "eventsOut": self.stats.events_out.load(Ordering::Relaxed),
            "framesOut": self.stats.frames_out.load(Ordering::Relaxed),
            "framesIn": self.stats.frames_in.load(Ordering::Relaxed),
            "slowClosed": self.stats.slow_closed.load(Ordering::Relaxed),
        });
        v
    }
}

/// With `renumber_transfers`, the resulting call `cid` of a transfer or conference gets a new
/// callID: every connection of the answer's list points at it (the old one as
/// `oldConnection`), and a list is made of the call's parties when there was none.
fn renumbered(
    m: &mut Model,
    on: bool,
    cid: String,
    mut list: Vec<ConnectionListItem>,
) -> (String, Vec<ConnectionListItem>) {
    if !on {
        return (cid, list);
    }
    let parties = m.parties_of(&cid);
    let new = m.renumber_call(&cid);
    if list.is_empty() {
        list = parties
            .iter()
            .map(|d| ConnectionListItem {
                new_connection: None,
                old_connection: Some(conn(&cid, d)),
                endpoint: Some(Endpoint::DeviceId(d.as_str().into())),
                associated_nid: None,
            })
            .collect();
    }
    for item in &mut list {
        let d = item
            .old_connection
            .as_ref()
            .map(|c| c.device().to_string())
            .unwrap_or_default();
        item.new_connection = Some(conn(&new, &d));
    }
    (new, list)
}

#[cfg(test)]
mod tests {
    use super::root_name;

    #[test]
    fn root_names() {
        assert_eq!(
            root_name(b"<?xml version=\"1.0\"?>\n<!-- x --><csta:MakeCall xmlns:csta=\"u\">"),
            Some("MakeCall".into())
        );
        assert_eq!(root_name(b"<A/>"), Some("A".into()));
        assert_eq!(root_name(b"nothing"), None);
    }
}
