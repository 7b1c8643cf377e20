//! The orchestrator: [`Engine`] owns the parts and is the only code that calls across them.
//! [`Engine::handle`] routes one input to the parts in a fixed order and carries their answers
//! to the others (a request to send goes into the request window, an event through the outbox);
//! [`Engine::poll_timeout`] says when it next needs time. Every feature's own logic lives in
//! the part named after it; what is here is the sequencing (`docs/architecture.md`).
//!
//! The API in the quinn-proto manner: `handle*` take input, `poll*` and the views read.

use std::sync::Arc;

use ctid_csta::{HotDesk as Dialect, InvokeId, Message};
use ctid_protocol::{
    AddressInfoType, AddressType, ConnId, ErrorCode, Event, EventName, InfoStatus, KvList, Request,
    RequestName,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::agents::{AgentChange, Agents};
use crate::answers::{Accepted, Answers, Gaps, Lane, Ready, Then};
use crate::call_control;
use crate::calls::Calls;
use crate::clients::Clients;
use crate::config::{DnConfig, EngineConfig, RegisterFlag};
use crate::dns::{Dn, Dns, MonitorChange, Registration};
use crate::features::{self, Features};
use crate::hotdesk::{Change, HdService, HotDesk, Outcome, ServiceStep};
use crate::io::{ClientId, Input, Now, Output, Tag};
use crate::link::{LinkPhase, LinkState};
use crate::outbox::{Notice, Outbox, Refusal};
use crate::requests::{self, Guard, Handler};
use crate::sessions::{Ended, Resume, SessionCounters, Sessions};
use crate::status::{self, CallView, DnView, SessionView, Status};
use crate::userdata;
use crate::window::RequestWindow;

/// What the answer to a CSTA request the engine sent is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Pending {
    /// MonitorStart of a DN.
    MonitorStart { dn: String },
    /// A request whose answer changes nothing (MonitorStop, an agent logout on unregister).
    Untracked,
    /// The hot-desking query of a DN; `resync`: part of a link-up resync (changes are
    /// announced).
    HdQuery { dn: String, resync: bool },
    /// A private service (hot desking).
    HdService(Box<HdService>),
    /// A client's call, agent or feature request (`answers`); `origin`: the call a
    /// consultation is made from.
    Call { expect: u64, origin: Option<ConnId> },
    /// SnapshotDevice of a DN.
    Snapshot { dn: String },
    /// GetAgentState of a DN; `resync`: report differences as events.
    AgentQuery { dn: String, resync: bool },
    /// GetForwarding or GetDoNotDisturb of a DN; `resync`: report differences as events.
    FeatureQuery { dn: String, resync: bool },
}

/// Counters for metrics and tests (gathered from the parts).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Hot-desking PrivateEvents that changed nothing.
    pub duplicate_private_events: u64,
    /// Events for a monitorCrossRefID ctid does not hold.
    pub unknown_cross_ref: u64,
    /// CSTA answers for no request in flight (late, duplicated or unknown).
    pub late_answers: u64,
    /// Client event copies sent.
    pub events_sent: u64,
    /// Call events whose connection carries no callID (cannot be tracked; dropped).
    pub events_without_call_id: u64,
    /// Client requests taken.
    pub requests: u64,
    /// Client requests answered with EventError.
    pub request_errors: u64,
}

/// The T-Server engine.
///
/// Its state is written whole by [`Engine::snapshot`] (`crate::snapshot`): every field below
/// but the two scratch buffers marked `skip`, which are empty between [`Engine::handle`] calls.
#[derive(Serialize)]
pub struct Engine {
    #[serde(serialize_with = "crate::snapshot::with::config::serialize")]
    cfg: EngineConfig,
    clients: Clients,
    dns: Dns,
    hotdesk: HotDesk,
    calls: Calls,
    agents: Agents,
    features: Features,
    answers: Answers,
    window: RequestWindow<Pending>,
    link: LinkPhase,
    outbox: Outbox,
    now: Now,
    requests: u64,
    late_answers: u64,
    /// A reused buffer for what the call model builds per event (scratch: drained within the
    /// input that fills it, so not in a snapshot).
    #[serde(skip)]
    scratch: Vec<Notice>,
    /// The Connector reported `overloadReached` (and not `overloadRelieved` since): the
    /// request window is halved.
    overloaded: bool,
    /// Resumable client sessions and the events kept for them.
    sessions: Sessions,
    /// Outputs that go after the input's own, unkept: a resume's rebind, EventSessionResumed
    /// and the replayed events (already kept once). Scratch: appended to the input's outputs
    /// before [`Engine::handle`] returns, so not in a snapshot.
    #[serde(skip)]
    late: Vec<Output>,
}

const NO_LINK: &str = "no link to the CSTA Connector";

impl Engine {
    /// An engine with the configured DNs; the link is down.
    pub fn new(cfg: EngineConfig) -> Self {
        let mut calls = Calls::default();
        calls.ani_distribution = cfg.ani_distribution;
        let mut clients = Clients::default();
        if cfg.export_events {
            // The export is addressed like a client that never leaves (docs/operations.md).
            clients.connect(crate::io::EXPORT, "export".to_string());
        }
        Engine {
            clients,
            dns: Dns::new(&cfg),
            hotdesk: HotDesk::new(cfg.hotdesk_enabled),
            calls,
            agents: Agents::default(),
            features: Features::default(),
            answers: Answers::default(),
            window: RequestWindow::default(),
            link: LinkPhase::default(),
            outbox: Outbox::default(),
            now: Now::default(),
            requests: 0,
            late_answers: 0,
            scratch: Vec::new(),
            overloaded: false,
            sessions: Sessions::default(),
            late: Vec::new(),
            cfg,
        }
    }

    // ------------------------------------------------------------------------------ views

    /// The link state.
    pub fn link_state(&self) -> LinkState {
        self.link.state
    }
    /// Number of DNs with an active switch monitor.
    pub fn monitored_count(&self) -> usize {
        self.dns.monitored_count()
    }
    /// Number of DNs known (configured and unconfigured).
    pub fn dn_count(&self) -> usize {
        self.dns.len()
    }
    /// Number of connected clients (the event export is not one).
    pub fn client_count(&self) -> usize {
        self.clients.len() - usize::from(self.cfg.export_events)
    }
    /// Sessions whose connection went and that may still be resumed.
    pub fn detached_sessions(&self) -> usize {
        self.sessions.detached_count()
    }
    /// What the session part counted (resumes, expiries, replayed events, refusals).
    pub fn session_counters(&self) -> SessionCounters {
        self.sessions.counters
    }
    /// Every resumable session, sorted by client number.
    pub fn session_views(&self) -> Vec<SessionView> {
        self.sessions
            .clients()
            .into_iter()
            .filter_map(|c| {
                let s = self.sessions.get(c)?;
                let st = self.clients.get(c);
                Some(SessionView {
                    client: c,
                    peer: st.map(|x| x.peer.clone()).unwrap_or_default(),
                    app: st.and_then(|x| x.app.clone()),
                    owner: s.owner.clone(),
                    detached_for_ms: s.detached_at.map(|t| self.now.mono_ms.saturating_sub(t)),
                    detached_at_ms: s.detached_at,
                    kept_events: s.kept(),
                    kept_bytes: s.bytes(),
                    dns: st.map(|x| x.regs.len()).unwrap_or(0),
                })
            })
            .collect()
    }
    /// CSTA requests sent and not answered.
    pub fn outstanding(&self) -> usize {
        self.window.in_flight()
    }
    /// CSTA requests allowed in flight now: `max-outstanding`, halved while the Connector
    /// reports `overloadReached` (`docs/configuration.md`, system status).
    pub fn window_limit(&self) -> usize {
        let max = self.cfg.max_outstanding.max(1);
        if self.overloaded {
            (max / 2).max(1)
        } else {
            max
        }
    }
    fn gaps(&self) -> Gaps {
        Gaps {
            call_ms: self.cfg.call_rq_gap_ms,
            device_ms: self.cfg.device_rq_gap_ms,
        }
    }
    /// The current hot-desk pairs (guest, host).
    pub fn hotdesk_pairs(&self) -> Vec<(String, String)> {
        self.hotdesk.table.pairs()
    }
    /// The host a guest is associated with.
    pub fn host_of(&self, guest: &str) -> Option<&str> {
        self.hotdesk.table.host_of(guest)
    }
    /// Is this DN monitored at the switch?
    pub fn is_monitored(&self, dn: &str) -> bool {
        self.dns.is_monitored(dn)
    }
    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    /// The call model.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }
    /// The last EventSequenceNumber given.
    pub fn sequence(&self) -> u64 {
        self.outbox.sequence()
    }
    /// What the parts counted.
    pub fn counters(&self) -> Counters {
        Counters {
            duplicate_private_events: self.hotdesk.duplicate_events,
            unknown_cross_ref: self.dns.unknown_cross_ref,
            late_answers: self.late_answers,
            events_sent: self.outbox.events_sent,
            events_without_call_id: self.calls.events_without_call_id,
            requests: self.requests,
            request_errors: self.outbox.request_errors,
        }
    }

    /// When the engine next needs [`Input::Tick`] (monotonic ms): the earliest CSTA request
    /// deadline, EventACK deadline, call-rq-gap release, resync deadline or monitor retry.
    /// `None`: not until another input arrives.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.window.next_deadline(),
            self.dns.next_retry(),
            self.answers.next_deadline(self.gaps()),
            self.link.deadline(),
            self.sessions.next_expiry(self.cfg.resume_window_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A read-only view of every DN (for the web monitor and `/api/state`), sorted by number.
    pub fn dn_views(&self) -> Vec<DnView> {
        self.dns.iter().map(|d| self.status().dn_view(d)).collect()
    }

    /// A read-only view of every active call, sorted by ConnID.
    pub fn call_views(&self) -> Vec<CallView> {
        status::call_views(&self.calls)
    }

    fn status(&self) -> Status<'_> {
        Status {
            calls: &self.calls,
            features: &self.features,
            agents: &self.agents,
            hotdesk: &self.hotdesk,
            cfg: &self.cfg,
        }
    }

    // ------------------------------------------------------------------------------ snapshots

    /// An engine from the parts of a snapshot (`crate::snapshot`): every field by name, so a
    /// field added to `Engine` does not compile here until the snapshot reads it.
    pub(crate) fn from_snapshot_parts(
        p: &crate::snapshot::Parts<'_>,
    ) -> Result<Engine, crate::io::RecordError> {
        let mut e = Engine {
            cfg: p.config("cfg")?,
            clients: p.get("clients")?,
            dns: p.get("dns")?,
            hotdesk: p.get("hotdesk")?,
            calls: p.get("calls")?,
            agents: p.get("agents")?,
            features: p.get("features")?,
            answers: p.get("answers")?,
            window: p.get("window")?,
            link: p.get("link")?,
            outbox: p.get("outbox")?,
            now: p.get("now")?,
            requests: p.get("requests")?,
            late_answers: p.get("late_answers")?,
            scratch: Vec::new(),
            overloaded: p.get("overloaded")?,
            sessions: p.get("sessions")?,
            late: Vec::new(),
        };
        // As `detach` does: a detached session's buffer has its room at once.
        e.sessions.reserve_detached(e.cfg.resume_buffer_bytes);
        Ok(e)
    }

    /// The indexes a restored engine relies on agree with what they index.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.window
            .check()
            .map_err(|e| format!("part \"window\": {e}"))?;
        self.sessions
            .check()
            .map_err(|e| format!("part \"sessions\": {e}"))?;
        self.hotdesk
            .table
            .check()
            .map_err(|e| format!("part \"hotdesk\": {e}"))?;
        Ok(())
    }

    /// Every client number the state holds (the export's included), to `f`.
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        // Every field, by name: a new one needs a decision here.
        let Engine {
            cfg: _,
            clients,
            dns,
            hotdesk,
            calls: _,
            agents,
            features: _,
            answers,
            window,
            link: _,
            outbox: _,
            now: _,
            requests: _,
            late_answers: _,
            scratch: _,
            overloaded: _,
            sessions,
            late: _,
        } = self;
        clients.client_ids(f);
        sessions.client_ids(f);
        dns.client_ids(f);
        agents.client_ids(f);
        hotdesk.client_ids(f);
        answers.client_ids(f);
        for k in window.kinds() {
            if let Pending::HdService(s) = k {
                f(s.client);
            }
        }
    }

    // ------------------------------------------------------------------------------ input

    /// Handle one input; append what to do to `out`.
    pub fn handle(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        self.now = now;
        self.outbox.set_now(now);
        self.calls.set_now(now.unix_micros);
        let from = out.len();
        match input {
            Input::ClientConnected { client, peer } => {
                self.client_connected(client, peer, None, out)
            }
            Input::SessionOpened {
                client,
                peer,
                session_id,
                owner,
            } => {
                if self.cfg.resume_window_ms > 0 {
                    self.sessions.open(client, session_id.clone(), owner);
                }
                self.client_connected(client, peer, Some(session_id), out)
            }
            Input::ClientDisconnected { client } => self.end_session(client, Ended::Closed),
            Input::ClientDetached { client } => self.client_detached(client),
            Input::ClientText { client, text } => match ctid_protocol::parse_request(&text) {
                Ok(req) => self.request(client, req, out),
                Err(e) => {
                    self.outbox.refuse_frame(
                        out,
                        &self.clients,
                        client,
                        e.code,
                        e.message,
                        e.reference_id,
                    );
                }
            },
            Input::ClientRequest { client, request } => self.request(client, request, out),
            Input::ClientInvalid {
                client,
                code,
                message,
                reference_id,
            } => self
                .outbox
                .refuse_frame(out, &self.clients, client, code, message, reference_id),
            Input::LinkUp {
                name,
                priority,
                edition,
            } => self.link_up(name, priority, edition, out),
            Input::LinkDown { reason } => self.link_down(&reason, out),
            Input::Resync { reason } => self.resync(&reason),
            Input::Overload { reached } => self.overload(reached),
            Input::CstaAnswer { invoke_id, message } => self.answer(invoke_id, Ok(message), out),
            Input::CstaAnswerMalformed { invoke_id, reason } => {
                self.answer(invoke_id, Err(reason), out)
            }
            Input::CstaEvent { message } => self.csta_event(message, out),
            Input::CstaRequest { invoke_id, message } => self.csta_request(invoke_id, message, out),
            Input::Tick => self.tick(out),
            Input::Reconfigure(cfg) => self.reconfigure(*cfg, out),
        }
        while let Some(r) = self.answers.next_ready() {
            if self.clients.is_connected(r.client) {
                if let Some(entry) = requests::lookup(r.request.name) {
                    self.serve(r, entry.handler, entry.guard, out);
                }
            }
        }
        let limit = self.window_limit();
        self.window
            .pump(now.mono_ms, limit, self.cfg.request_timeout_ms, out);
        self.keep_for_sessions(from, out);
        out.append(&mut self.late);
    }

    /// Keep what went to sessions (for a resume) and hold back what went to detached ones
    /// (docs/protocol.md §6.9); a detached session that can no longer be resumed whole ends.
    fn keep_for_sessions(&mut self, from: usize, out: &mut Vec<Output>) {
        if self.sessions.is_empty() || out.len() == from {
            return;
        }
        let (now, window, limit) = (
            self.now.mono_ms,
            self.cfg.resume_keep_attached_ms,
            self.cfg.resume_buffer_bytes,
        );
        let mut lost = Vec::new();
        let mut holds_back = false;
        for o in &mut out[from..] {
            let Output::Event { to, event, text } = o else {
                continue;
            };
            if !to.iter().any(|c| self.sessions.get(*c).is_some()) {
                continue;
            }
            let seq = event.event_sequence_number;
            lost.extend(self.sessions.keep(to, seq, text, now, window, limit));
            let before = to.len();
            to.retain(|c| !self.sessions.is_detached(*c));
            holds_back |= to.len() != before;
        }
        if holds_back {
            let tail = out.split_off(from);
            out.extend(
                tail.into_iter()
                    .filter(|o| !matches!(o, Output::Event { to, .. } if to.is_empty())),
            );
        }
        lost.sort_unstable();
        lost.dedup();
        for c in lost {
            warn!(
                client = c,
                limit, "detached session: resume-buffer-bytes overflowed; the session ends"
            );
            self.sessions.counters.overflowed += 1;
            self.end_session(c, Ended::EventsLost);
        }
    }

    // ------------------------------------------------------------------------------ sending

    fn refuse(&mut self, out: &mut Vec<Output>, client: ClientId, req: &Request, r: Refusal) {
        self.outbox.refuse(out, &self.clients, client, req, r);
    }

    fn emit(&mut self, out: &mut Vec<Output>, to: Vec<ClientId>, ev: Event) {
        self.outbox.emit(out, &self.clients, to, ev);
    }

    /// Queue a CSTA request; during a resync, `sync` makes EventLinkConnected wait for it.
    fn send(&mut self, kind: Pending, message: Message, sync: bool) -> Tag {
        let tag = self.window.push(kind, message);
        if sync {
            self.link.wait_for(tag);
        }
        tag
    }

    /// Send a client's call, agent or feature request; its answer goes to expectation `expect`.
    fn send_call(&mut self, expect: u64, origin: Option<ConnId>, message: Message) {
        self.send(Pending::Call { expect, origin }, message, false);
    }

    /// Deliver what a part built for `dn`, in order.
    fn notices(&mut self, dn: &str, notes: &mut Vec<Notice>, out: &mut Vec<Output>) {
        for n in notes.drain(..) {
            match n {
                Notice::Deliver(event) => self.deliver(out, dn, event),
                Notice::Registrants(event) => {
                    let to = self.dns.registrants(&[dn]);
                    self.emit(out, to, event);
                }
            }
        }
    }

    /// The host whose clients also see `dn`'s events: `dn` is an agent-login guest (monitored
    /// internally for its host).
    fn desk_of(&self, dn: &str) -> Option<String> {
        if !self.dns.get(dn).is_some_and(|d| d.internal) {
            return None;
        }
        self.hotdesk.table.host_of(dn).map(str::to_string)
    }

    /// The DN a request on a call acts for: ThisDN, or, when ThisDN is an agent-login host and
    /// the call (ConnID) is its guest's, the guest — the desk's client sees the guest's calls as
    /// the host's, and its requests on them act on the guest's connection.
    fn acting_dn(&self, this_dn: String, req: &Request) -> String {
        let Some(call) = req.conn_id.and_then(|c| self.calls.get(c)) else {
            return this_dn;
        };
        if call.party(&this_dn).is_some() {
            return this_dn;
        }
        match self.hotdesk.agent_login_guest(&this_dn, &self.agents) {
            Some(g) if call.party(g).is_some() => {
                debug!(host = %this_dn, guest = %g, "request at an agent-login desk acts for the guest");
                g.to_string()
            }
            _ => this_dn,
        }
    }

    /// Deliver an event of `dn`: to the requester waiting for it (with its ReferenceID) and
    /// every other client registered on `dn`; an agent-login guest's events also reach the
    /// host's clients, as events of the host (a host client's request is answered on that copy).
    fn deliver(&mut self, out: &mut Vec<Output>, dn: &str, ev: Event) {
        let to = self.dns.registrants(&[dn]);
        let mut desk = None;
        if let Some(host) = self.desk_of(dn) {
            let extra: Vec<_> = self
                .dns
                .registrants(&[&host])
                .into_iter()
                .filter(|c| !to.contains(c))
                .collect();
            if !extra.is_empty() {
                let mut copy = ev.clone();
                copy.this_dn = Some(host);
                copy.reference_id = None;
                desk = Some((extra, copy));
            }
        }
        let Some(x) = self.answers.take_matching(dn, &ev) else {
            if let Some((extra, copy)) = desk {
                self.emit(out, extra, copy);
            }
            return self.emit(out, to, ev);
        };
        if let Some(Then::MuteTransfer { original }) = x.then {
            if let Some((extra, copy)) = desk {
                self.emit(out, extra, copy);
            }
            // Second step: transfer the original call to the consultation now dialling.
            let step = ev.conn_id.and_then(|consult| {
                call_control::mute_transfer_step(&self.calls, dn, original, consult)
            });
            if let Some(msg) = step {
                let id = self.answers.expect(
                    x.client,
                    x.request,
                    dn.to_string(),
                    vec![EventName::EventReleased],
                    Some(original),
                    None,
                    None,
                );
                self.send_call(id, None, msg);
            }
            return self.emit(out, to, ev);
        }
        self.answers.release(x.conn);
        let rid = x.request.reference_id;
        match desk {
            // The requester asked at the desk: its answer is the host's copy.
            Some((extra, copy)) if extra.contains(&x.client) => {
                self.outbox
                    .emit_answer(out, &self.clients, x.client, rid, extra, copy);
                self.emit(out, to, ev);
            }
            desk => {
                if let Some((extra, copy)) = desk {
                    self.emit(out, extra, copy);
                }
                self.outbox
                    .emit_answer(out, &self.clients, x.client, rid, to, ev);
            }
        }
    }

    // ------------------------------------------------------------------------------ clients

    fn client_connected(
        &mut self,
        client: ClientId,
        peer: String,
        session_id: Option<String>,
        out: &mut Vec<Output>,
    ) {
        info!(client, %peer, "client connected");
        self.clients.connect(client, peer);
        let mut ev = self
            .link
            .event(self.link.is_up(), Some("link not operational"));
        ev.session_id = session_id;
        self.emit(out, vec![client], ev);
    }

    /// The connection of `client` went without a clean close: a resumable session is kept
    /// for `resume-window` (docs/protocol.md §6.9), anything else ends.
    fn client_detached(&mut self, client: ClientId) {
        let limit = self.cfg.resume_buffer_bytes;
        if self.cfg.resume_window_ms > 0 && self.sessions.detach(client, self.now.mono_ms, limit) {
            info!(
                client,
                window_ms = self.cfg.resume_window_ms,
                "client connection lost: session kept for a resume"
            );
            return;
        }
        self.end_session(client, Ended::Closed);
    }

    /// The session of `client` ends (`why`): as a disconnect always ended a client.
    fn end_session(&mut self, client: ClientId, why: Ended) {
        if why == Ended::Expired {
            info!(client, "session not resumed within resume-window: it ends");
            self.sessions.counters.expired += 1;
        }
        self.sessions.end(client, why);
        self.client_disconnected(client);
    }

    /// RequestResumeSession (docs/protocol.md §6.9): the requester's connection takes over the
    /// session it names, which gets every event it missed; or EventError.
    fn resume(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let (Some(id), Some(last)) = (req.session_id.clone(), req.event_sequence_number) else {
            let msg = "RequestResumeSession needs SessionID and EventSequenceNumber".to_string();
            self.refuse(out, client, &req, (ErrorCode::INVALID_ATTR, msg));
            return;
        };
        let owner = self
            .sessions
            .get(client)
            .map(|s| s.owner.clone())
            .unwrap_or_default();
        match self.sessions.resume(client, &owner, &id, last) {
            Resume::Refuse { code, message, end } => {
                warn!(client, session = %id, %message, "RequestResumeSession refused");
                if let Some((old, why)) = end {
                    if !self.sessions.is_detached(old) {
                        out.push(Output::Close {
                            client: old,
                            code: 4002,
                            reason: format!("session ended: {message}"),
                        });
                    }
                    self.end_session(old, why);
                }
                self.refuse(out, client, &req, (code, message));
            }
            Resume::Ok { session, replay } => {
                info!(
                    connection = client,
                    client = session,
                    replayed = replay.len(),
                    "session resumed"
                );
                // The connection's own fresh session (it made no request) goes without a trace.
                self.sessions.discard(client);
                self.clients.disconnect(client);
                self.late.push(Output::Rebind {
                    connection: client,
                    session,
                });
                let mut ev = Event::new(EventName::EventSessionResumed);
                ev.reference_id = req.reference_id;
                ev.session_id = Some(id);
                let mut k = KvList::new();
                k.insert_int("Replayed", replay.len() as i64);
                ev.extensions = Some(k);
                self.outbox.stamp_as(&mut ev, last);
                self.late
                    .push(crate::outbox::event_output(vec![session], ev));
                for text in replay {
                    match ctid_protocol::parse_event(&text) {
                        // The kept text is what was sent: replayed as it is.
                        Ok(e) => self.late.push(Output::Event {
                            to: vec![session],
                            event: Arc::new(e),
                            text: Arc::from(text),
                        }),
                        // ctid wrote the text itself: this is a bug, said loudly.
                        Err(e) => {
                            error!(client = session, %e, %text, "a kept event does not read back; not replayed")
                        }
                    }
                }
            }
        }
    }

    fn client_disconnected(&mut self, client: ClientId) {
        let Some(st) = self.clients.disconnect(client) else {
            return;
        };
        info!(client, peer = %st.peer, app = st.app.as_deref().unwrap_or(""), "client disconnected");
        for dn in st.regs {
            self.logout_on_unregister(client, &dn);
            self.dns.client_gone(client, &dn);
            self.sync_monitor(&dn);
        }
        self.hotdesk.client_gone(client);
        // Its requests in flight are answered to nobody; queued ones are not sent.
        self.answers.client_gone(client);
    }

    /// `agent-logout-on-unregister`: `client` leaves `dn` (RequestUnregisterAddress or
    /// disconnect); the agent it logged in there is logged out.
    fn logout_on_unregister(&mut self, client: ClientId, dn: &str) {
        if !self.cfg.agent_logout_on_unregister || self.agents.owner(dn) != Some(client) {
            return;
        }
        self.agents.forget_owner(dn);
        if let Some(msg) = self.agents.logout_message(dn) {
            if self.link.is_up() {
                info!(%dn, "agent-logout-on-unregister: logging the agent out");
                self.send(Pending::Untracked, msg, false);
            }
        }
    }

    /// A request from a client: through the table to its handler.
    fn request(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        self.requests += 1;
        if req.name == RequestName::RequestResumeSession {
            return self.resume(client, req, out);
        }
        self.sessions.used(client);
        self.clients.ensure(client);
        debug!(client, request = req.name.as_str(), "request");
        match requests::lookup(req.name) {
            Some(entry) => {
                let r = Ready {
                    client,
                    request: req,
                    gap_passed: false,
                };
                self.serve(r, entry.handler, entry.guard, out)
            }
            None => {
                let msg = format!("{} is not supported by this server", req.name.as_str());
                self.refuse(out, client, &req, (ErrorCode::UNSUP_OPER, msg));
            }
        }
    }

    /// Serve a request (`gap_passed`: one the call-rq-gap / device-rq-gap let go, sent
    /// without waiting again).
    fn serve(&mut self, r: Ready, handler: Handler, guard: Guard, out: &mut Vec<Output>) {
        let Ready {
            client,
            request: req,
            gap_passed,
        } = r;
        let dn = match guard {
            Guard::None => None,
            Guard::Switch | Guard::Local => {
                let link_ok = guard == Guard::Local || self.link.is_up();
                let dns = &self.dns;
                match requests::check(&req, link_ok, |dn| dns.mode_of(dn, client)) {
                    Ok(dn) => Some(dn),
                    Err(r) => return self.refuse(out, client, &req, r),
                }
            }
        };
        // A request on a call that already has one in flight waits (call-rq-gap).
        if guard == Guard::Switch && !gap_passed {
            if let Some(c) = req.conn_id.filter(|c| self.answers.busy(*c)) {
                self.answers
                    .wait(Lane::Call(c), self.now.mono_ms, client, req);
                return;
            }
        }
        let dn = dn.unwrap_or_default();
        // At an agent-login desk, requests on the guest's calls act for the guest.
        let dn = match handler {
            Handler::CallControl | Handler::QueryCall | Handler::UserData => {
                self.acting_dn(dn, &req)
            }
            _ => dn,
        };
        // So does one on a device that has one in flight (device-rq-gap; 0: not held back).
        let device_request = matches!(
            handler,
            Handler::CallControl | Handler::Feature | Handler::Agent
        );
        if device_request
            && guard == Guard::Switch
            && !gap_passed
            && self.cfg.device_rq_gap_ms > 0
            && self.answers.device_busy(&dn)
        {
            self.answers
                .wait(Lane::Device(dn), self.now.mono_ms, client, req);
            return;
        }
        match handler {
            Handler::RegisterClient => {
                self.clients.set_app(client, req.application_name.clone());
                let ev = Event::reply(EventName::EventACK, &req);
                self.emit(out, vec![client], ev);
            }
            Handler::QueryServer => {
                let mut ev = Event::reply(EventName::EventServerInfo, &req);
                let status = if self.link.is_up() {
                    "LinkConnected"
                } else {
                    "LinkDisconnected"
                };
                let mut k = KvList::new();
                k.insert_str("ServerName", self.cfg.server_name.clone());
                k.insert_str("ServerVersion", env!("CARGO_PKG_VERSION"));
                k.insert_str("LinkStatus", status);
                k.insert_str("SupportedRequests", requests::supported());
                ev.extensions = Some(k);
                self.emit(out, vec![client], ev);
            }
            Handler::Register => self.register(client, req, out),
            Handler::Unregister => self.unregister(client, req, out),
            Handler::QueryAddress => self.query_address(client, req, out),
            Handler::PrivateService => self.private_service(client, req, out),
            Handler::CallControl => match call_control::service(&req, &dn, &self.calls) {
                Ok(s) => {
                    // UserData for the call the request makes (checked here, taken by the call
                    // model when the call appears: `Answers::dialing_request`).
                    if s.events.contains(&EventName::EventDialing) {
                        let base = s
                            .origin
                            .and_then(|o| self.calls.get(o))
                            .map(|c| c.user_data.clone())
                            .unwrap_or_default();
                        let limit = self.cfg.user_data_limit;
                        if let Err(r) = userdata::check_new_call(&req, &base, limit) {
                            return self.refuse(out, client, &req, r);
                        }
                    }
                    let id =
                        self.answers
                            .expect(client, req, dn, s.events, s.conn, s.then, s.on_accept);
                    self.send_call(id, s.origin, s.message);
                }
                Err(r) => self.refuse(out, client, &req, r),
            },
            Handler::Feature => {
                let built = match req.name {
                    RequestName::RequestSetDNDOn | RequestName::RequestSetDNDOff => {
                        let (m, want) = features::dnd_request(&req, &dn);
                        Ok((vec![m], want, None))
                    }
                    _ => features::forward_request(&req, &dn),
                };
                match built {
                    Ok((msgs, want, answered_by)) => {
                        let id = self
                            .answers
                            .expect(client, req, dn, vec![want], None, None, None);
                        if let Some(mode) = answered_by {
                            self.answers.only_forward_mode(id, mode);
                        }
                        // Each one is tracked: the first refusal is the request's answer.
                        for m in msgs {
                            self.send_call(id, None, m);
                        }
                    }
                    Err(r) => self.refuse(out, client, &req, r),
                }
            }
            Handler::Agent => match self.agents.request(&req, &dn, client, &self.cfg) {
                Ok((msg, want)) => {
                    let id = self
                        .answers
                        .expect(client, req, dn, vec![want], None, None, None);
                    self.send_call(id, None, msg);
                }
                Err(r) => self.refuse(out, client, &req, r),
            },
            Handler::QueryCall => {
                let c = match call_control::call_of(&req, &self.calls, &dn) {
                    Ok(c) => c,
                    Err(r) => return self.refuse(out, client, &req, r),
                };
                let mut e = self.calls.party_info(&dn, c);
                e.this_dn = req.this_dn.clone();
                e.reference_id = req.reference_id;
                self.emit(out, vec![client], e);
            }
            Handler::UserData => self.user_data(client, req, dn, out),
        }
    }

    fn user_data(&mut self, client: ClientId, req: Request, dn: String, out: &mut Vec<Output>) {
        let c = match call_control::call_of(&req, &self.calls, &dn) {
            Ok(c) => c,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        let Some(call) = self.calls.get(c) else {
            return;
        };
        let data = match userdata::apply(&req, &call.user_data, self.cfg.user_data_limit) {
            Ok(d) => d,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        let mut parties: Vec<String> = call.parties.iter().map(|p| p.dn.clone()).collect();
        self.calls.set_user_data(c, data);
        // The desks showing an agent-login guest's calls are told too.
        let desks: Vec<String> = parties.iter().filter_map(|p| self.desk_of(p)).collect();
        parties.extend(desks);
        let refs: Vec<&str> = parties.iter().map(String::as_str).collect();
        let to = self.dns.registrants(&refs);
        let mut e = self
            .calls
            .call_event(EventName::EventAttachedDataChanged, &dn, c);
        e.this_dn = req.this_dn.clone();
        self.outbox
            .emit_answer(out, &self.clients, client, req.reference_id, to, e);
    }

    // ------------------------------------------------------------------------------ registration

    fn register(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let number = match requests::this_dn(&req) {
            Ok(n) => n,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        let busy = self.hotdesk.querying(&number);
        let link_usable = self.link.usable();
        let r = self.dns.register(
            client,
            &req,
            &number,
            &self.cfg.accept_dn_types,
            link_usable,
            busy,
        );
        match r {
            Err(r) => {
                self.forget_if_unused(&number);
                self.refuse(out, client, &req, r);
            }
            Ok(reg) => {
                self.clients.add_reg(client, &number);
                match reg {
                    Registration::Waiting { start: true } => self.start_monitor(&number, false),
                    Registration::Waiting { start: false } => {}
                    Registration::Done => {
                        let ev = self.status().registered_event(&self.dns, &number, &req);
                        self.emit(out, vec![client], ev);
                    }
                }
            }
        }
    }

    fn unregister(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let number = match requests::this_dn(&req) {
            Ok(n) => n,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        if !self.dns.unregister(client, &number) {
            let r = (
                ErrorCode::NOT_REGISTERED,
                format!("DN {number} is not registered by this client"),
            );
            return self.refuse(out, client, &req, r);
        }
        self.clients.remove_reg(client, &number);
        let ev = Event::reply(EventName::EventUnregistered, &req);
        self.emit(out, vec![client], ev);
        self.logout_on_unregister(client, &number);
        self.sync_monitor(&number);
    }

    fn query_address(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let number = match requests::this_dn(&req) {
            Ok(n) => n,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        let Some(info) = req.info_type else {
            let r = (
                ErrorCode::INVALID_ATTR,
                "InfoType missing (AddressInfoDNStatus or AddressInfoAddressType)".to_string(),
            );
            return self.refuse(out, client, &req, r);
        };
        let Some(d) = self.dns.get(&number) else {
            let r = (
                ErrorCode::NOT_CONFIGURED,
                format!("DN {number} is not known to this server"),
            );
            return self.refuse(out, client, &req, r);
        };
        let mut ev = Event::reply(EventName::EventAddressInfo, &req);
        ev.info_type = Some(info);
        match info {
            AddressInfoType::DnStatus => {
                let (k, n, agent) = self.status().dn_status(d);
                ev.info_status = Some(InfoStatus::Number(n as i64));
                ev.extensions = Some(k);
                ev.agent_id = agent;
            }
            AddressInfoType::AddressType => {
                ev.info_status = Some(InfoStatus::AddressType(d.dn_type));
            }
            other => {
                let msg = format!("InfoType {} is not supported", other.as_str());
                return self.refuse(out, client, &req, (ErrorCode::UNSUP_OPER, msg));
            }
        }
        self.emit(out, vec![client], ev);
    }

    fn reconfigure(&mut self, mut cfg: EngineConfig, out: &mut Vec<Output>) {
        // The options of the link in use stay the ones in force; the export is set at start.
        cfg.select_link(&self.link.name);
        cfg.export_events = self.cfg.export_events;
        self.dns
            .set_internal_pattern(cfg.internal_dn_pattern.clone());
        self.calls.ani_distribution = cfg.ani_distribution;
        let new: std::collections::BTreeMap<String, DnConfig> = cfg
            .dns
            .iter()
            .map(|d| (d.number.clone(), d.clone()))
            .collect();
        let removed: Vec<String> = self
            .dns
            .iter()
            .filter(|d| d.configured && !new.contains_key(&d.number))
            .map(|d| d.number.clone())
            .collect();
        for n in &removed {
            let regs: Vec<ClientId> = self.dns.registrants(&[n]);
            for c in &regs {
                self.clients.remove_reg(*c, n);
            }
            if !regs.is_empty() {
                let mut ev = Event::new(EventName::EventUnregistered).with_this_dn(n.clone());
                ev.error_code = Some(ErrorCode::NOT_CONFIGURED);
                ev.error_message = Some(format!("DN {n} was removed from the configuration"));
                self.emit(out, regs, ev);
            }
            if let Some(d) = self.dns.get_mut(n) {
                d.regs.clear();
                d.waiters.clear();
                d.configured = false;
                d.register = RegisterFlag::OnDemand;
            }
            self.sync_monitor(n);
            let off = self
                .dns
                .get(n)
                .is_some_and(|d| matches!(d.monitor, crate::dns::Monitor::Off));
            if off && !self.hotdesk.querying(n) {
                self.dns.remove(n);
                self.forget_parts(n);
            }
        }
        let mut added = 0;
        for (n, d) in &new {
            match self.dns.get_mut(n) {
                Some(x) => {
                    x.configured = true;
                    x.dn_type = d.dn_type;
                    x.register = d.register;
                }
                None => {
                    added += 1;
                    self.dns.insert(Dn::configured(n, d.dn_type, d.register));
                }
            }
            self.sync_monitor(n);
        }
        info!(added, removed = removed.len(), "configuration reloaded");
        self.hotdesk
            .reconfigure(self.cfg.hotdesk_enabled, cfg.hotdesk_enabled);
        self.cfg = cfg;
    }

    // ------------------------------------------------------------------------------ monitors

    fn start_monitor(&mut self, number: &str, sync: bool) {
        let tag = self.send(
            Pending::MonitorStart {
                dn: number.to_string(),
            },
            Dns::monitor_start(number),
            sync,
        );
        self.dns.starting(number, tag);
    }

    /// Start or stop the switch monitor of a DN to match who needs it; forget an unconfigured
    /// DN nobody uses.
    fn sync_monitor(&mut self, number: &str) {
        match self.dns.sync(number, self.link.usable()) {
            MonitorChange::Start => self.start_monitor(number, false),
            MonitorChange::Stop(msg) => {
                self.send(Pending::Untracked, *msg, false);
            }
            MonitorChange::None => {}
        }
        self.forget_if_unused(number);
    }

    fn forget_if_unused(&mut self, number: &str) {
        let keep = self.hotdesk.refers_to(number);
        if self.dns.forget_if_unused(number, keep) {
            self.forget_parts(number);
        }
    }

    /// A DN left the table: what the other parts kept of it goes too.
    fn forget_parts(&mut self, number: &str) {
        self.agents.forget(number);
        self.features.forget(number);
        self.calls.forget_dn(number);
    }

    /// Answer everyone waiting for the first registration of a DN.
    fn release_waiters(&mut self, number: &str, out: &mut Vec<Output>) {
        for (client, req) in self.dns.take_waiters(number) {
            let ev = self.status().registered_event(&self.dns, number, &req);
            self.emit(out, vec![client], ev);
        }
    }

    fn fail_waiters(
        &mut self,
        number: &str,
        refusal: Refusal,
        csta: Option<&ctid_csta::CstaError>,
        out: &mut Vec<Output>,
    ) {
        for (client, req) in self.dns.take_waiters(number) {
            self.dns.client_gone(client, number);
            self.clients.remove_reg(client, number);
            match csta {
                Some(e) => {
                    self.outbox
                        .refuse_csta(out, &self.clients, client, &req, e, refusal.1.clone())
                }
                None => self.refuse(out, client, &req, refusal.clone()),
            }
        }
        self.forget_if_unused(number);
    }

    fn monitor_answer(&mut self, dn: &str, msg: Result<Message, String>, out: &mut Vec<Output>) {
        let refusal = match msg {
            Ok(Message::MonitorStartResponse(r)) => {
                let xref = String::from(r.monitor_cross_ref_id);
                debug!(%dn, %xref, "monitored");
                if !self.dns.active(dn, xref, self.now.mono_ms) {
                    return;
                }
                let Some(d) = self.dns.get(dn) else {
                    return;
                };
                if !d.wants_monitor() {
                    // Everybody left while MonitorStart was in flight.
                    self.sync_monitor(dn);
                    self.release_waiters(dn, out);
                    return;
                }
                // A link-up resync, or a resync on the same session (messagesLost).
                let caught_up = self.link.caught_up(dn);
                let resync = !self.link.is_up() || caught_up;
                let sync = !self.link.is_up();
                let dn_type = d.dn_type;
                if dn_type != AddressType::Unknown {
                    // During a resync the call catch-up comes before EventLinkConnected.
                    self.send(
                        Pending::Snapshot { dn: dn.to_string() },
                        Calls::snapshot(dn),
                        sync,
                    );
                }
                let is_ext = dn_type == AddressType::Dn;
                if is_ext || dn_type == AddressType::Position {
                    self.send(
                        Pending::AgentQuery {
                            dn: dn.to_string(),
                            resync,
                        },
                        Agents::query(dn),
                        sync,
                    );
                }
                if is_ext {
                    for q in Features::queries(dn) {
                        let dn = dn.to_string();
                        self.send(Pending::FeatureQuery { dn, resync }, q, sync);
                    }
                }
                if is_ext && self.hotdesk.supported {
                    self.start_query(dn, resync);
                } else {
                    self.release_waiters(dn, out);
                }
                return;
            }
            Ok(Message::CstaErrorCode(e)) => {
                warn!(%dn, error = %e.error, "MonitorStart refused");
                self.dns.monitor_off(dn);
                if crate::dns::device_gone(&e.error) {
                    self.device_gone(dn, &e.error, out);
                }
                let msg = format!("the switch refused to monitor {dn}: {}", e.error);
                self.fail_waiters(dn, (ErrorCode(0), msg), Some(&e.error), out);
                self.dns.retry_later(dn, self.now.mono_ms);
                return;
            }
            Ok(other) => {
                warn!(%dn, answer = other.name(), "unexpected answer to MonitorStart");
                let msg = format!("unexpected answer {} to MonitorStart", other.name());
                (ErrorCode::CSTA_RESULT_UNEXPECTED, msg)
            }
            Err(reason) => {
                let msg = format!("malformed answer to MonitorStart: {reason}");
                (ErrorCode::CSTA_BADLY_STRUCTURED, msg)
            }
        };
        self.dns.monitor_off(dn);
        self.fail_waiters(dn, refusal, None, out);
        self.dns.retry_later(dn, self.now.mono_ms);
    }

    /// The switch says `dn` does not exist (`docs/protocol.md`, "Monitor retries"): every client
    /// registered on it (not waiting for its first registration: those get EventError) gets an
    /// unsolicited EventUnregistered with the mapped ErrorCode, and its registration ends.
    fn device_gone(&mut self, dn: &str, e: &ctid_csta::CstaError, out: &mut Vec<Output>) {
        let gone = self.dns.drop_registrations(dn);
        if gone.is_empty() {
            return;
        }
        warn!(%dn, error = %e, clients = gone.len(), "device gone at the switch; unregistering its clients");
        for c in &gone {
            self.clients.remove_reg(*c, dn);
        }
        let mut ev = Event::new(EventName::EventUnregistered).with_this_dn(dn.to_string());
        ev.error_code = Some(ErrorCode(crate::errors::tlib_code(e)));
        ev.error_message = Some(format!("the switch no longer knows DN {dn}: {e}"));
        let ev = ev.with_extension("CSTAError", e.to_string());
        self.emit(out, gone, ev);
    }

    // ------------------------------------------------------------------------------ hot desking

    fn start_query(&mut self, number: &str, resync: bool) {
        let tag = self.send(
            Pending::HdQuery {
                dn: number.to_string(),
                resync,
            },
            HotDesk::query(number),
            resync,
        );
        self.hotdesk.query_sent(number, tag);
    }

    fn query_answer(
        &mut self,
        dn: &str,
        resync: bool,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        let changes = self.hotdesk.query_answer(dn, msg);
        if resync {
            for c in changes {
                self.distribute(c, out);
            }
        }
        self.release_waiters(dn, out);
    }

    /// Announce a hot-desk change to the clients of the guest and the host (EventPrivateInfo 1
    /// or 2), then keep the agent-login hot desk in step.
    fn distribute(&mut self, c: Change, out: &mut Vec<Output>) {
        let to = self.dns.registrants(&[&c.guest, &c.host]);
        if c.synthesized {
            info!(guest = %c.guest, host = %c.host, id = c.msg_id(), "synthesized hot-desk change");
        }
        let ev = Event::hot_desk(c.msg_id(), c.guest.clone(), c.host.clone());
        self.emit(out, to, ev);
        self.agent_login_sync(&c.guest);
        self.forget_if_unused(&c.guest);
        self.forget_if_unused(&c.host);
    }

    /// Keep the internal monitor of an agent-login guest in step with the association table
    /// and the host's agent (`docs/protocol.md`, §9.2).
    fn agent_login_sync(&mut self, guest: &str) {
        let linked = self.hotdesk.agent_login_linked(guest, &self.agents);
        if self.dns.set_internal(guest, linked) {
            info!(%guest, linked, "agent-login hot desk: internal monitor of the guest");
            self.sync_monitor(guest);
        }
    }

    fn private_service(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let id = match self.hotdesk.precheck(&req) {
            Ok(id) => id,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        let dns = &self.dns;
        let guest = match requests::check(&req, self.link.is_up(), |dn| dns.mode_of(dn, client)) {
            Ok(g) => g,
            Err(r) => return self.refuse(out, client, &req, r),
        };
        let dn_type = self.dns.dn_type(&guest);
        match self
            .hotdesk
            .service(client, req.clone(), id, guest, dn_type)
        {
            Ok(ServiceStep::Queued) => {}
            Ok(ServiceStep::Send(msg, svc)) => {
                let guest = svc.guest.clone();
                let tag = self.send(Pending::HdService(svc), *msg, false);
                self.hotdesk.service_sent(&guest, tag);
            }
            Err(r) => self.refuse(out, client, &req, r),
        }
    }

    fn service_answer(
        &mut self,
        s: HdService,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        match self.hotdesk.service_answer(&s, msg) {
            Outcome::Ok => self.service_ok(s, out),
            Outcome::Failed { code, text, csta } => {
                self.service_failed(s, (code, text), csta.as_ref(), out)
            }
        }
    }

    fn service_ok(&mut self, s: HdService, out: &mut Vec<Output>) {
        let (implied, main) = self.hotdesk.service_applied(&s);
        for c in implied {
            self.distribute(c, out);
        }
        let (msg_id, host, others) = match &main {
            Some(c) => (
                c.msg_id(),
                c.host.clone(),
                self.dns.registrants(&[&c.guest, &c.host]),
            ),
            // Already in that state (a duplicate): only the requester needs its answer.
            None => (
                s.service.id(),
                s.host.clone().unwrap_or_default(),
                Vec::new(),
            ),
        };
        let ev = Event::hot_desk(msg_id, s.guest.clone(), host);
        self.outbox.emit_answer(
            out,
            &self.clients,
            s.client,
            s.request.reference_id,
            others,
            ev,
        );
        self.agent_login_sync(&s.guest);
        self.service_done(&s.guest, out);
    }

    fn service_failed(
        &mut self,
        s: HdService,
        refusal: Refusal,
        csta: Option<&ctid_csta::CstaError>,
        out: &mut Vec<Output>,
    ) {
        match csta {
            Some(e) => {
                self.outbox
                    .refuse_csta(out, &self.clients, s.client, &s.request, e, refusal.1)
            }
            None => self.refuse(out, s.client, &s.request, refusal),
        }
        if let Some(c) = s.held.clone() {
            // The change happened anyway: everyone learns of it.
            self.distribute(c, out);
        }
        self.service_done(&s.guest, out);
    }

    fn service_done(&mut self, guest: &str, out: &mut Vec<Output>) {
        if let Some((client, req)) = self.hotdesk.service_done(guest) {
            self.private_service(client, req, out);
        }
    }

    fn hotdesk_event(&mut self, established: bool, guest: &str, host: &str, out: &mut Vec<Output>) {
        let in_flight = match self
            .hotdesk
            .in_flight(guest)
            .and_then(|t| self.window.kind_mut(t))
        {
            Some(Pending::HdService(s)) => Some(&mut **s),
            _ => None,
        };
        let changes = self.hotdesk.event(established, guest, host, in_flight);
        for c in changes {
            self.distribute(c, out);
        }
    }

    // ------------------------------------------------------------------------------ link

    fn link_up(
        &mut self,
        name: String,
        priority: Option<i64>,
        edition: Option<String>,
        out: &mut Vec<Output>,
    ) {
        info!(link = %name, "CTI link {name} is selected; re-monitoring");
        // The options of this link apply (`docs/configuration.md`, `[[link]]`).
        let hotdesk_before = self.cfg.hotdesk_enabled;
        if self.cfg.select_link(&name) {
            self.hotdesk
                .reconfigure(hotdesk_before, self.cfg.hotdesk_enabled);
        }
        self.overloaded = false;
        let deadline = self.now.mono_ms + self.cfg.resync_timeout_ms;
        self.link.syncing(name, priority, edition, deadline);
        for n in self.dns.to_monitor() {
            self.start_monitor(&n, true);
        }
        self.maybe_synced(out);
    }

    fn maybe_synced(&mut self, out: &mut Vec<Output>) {
        if self.link.sync_complete() {
            self.finish_sync(out);
        }
    }

    fn finish_sync(&mut self, out: &mut Vec<Output>) {
        // Pairs nobody can observe any more are dropped (`docs/protocol.md`, §6.7–6.8).
        let stale: Vec<(String, String)> = self
            .hotdesk
            .table
            .pairs()
            .into_iter()
            .filter(|(g, h)| !self.dns.is_monitored(g) && !self.dns.is_monitored(h))
            .collect();
        for (g, _) in stale {
            debug!(guest = %g, "dropping hot-desk pair no longer monitored");
            self.hotdesk.table.remove_guest(&g);
            self.forget_if_unused(&g);
        }
        self.link.up();
        info!(
            monitored = self.dns.monitored_count(),
            "link operational; EventLinkConnected"
        );
        let ev = self.link.event(true, None);
        let all = self.clients.all();
        self.emit(out, all, ev);
    }

    /// System status `messagesLost` (`docs/configuration.md`): the session stopped every
    /// monitor it held and stays operational. Every DN that should be monitored is monitored
    /// again and, as after a link-up, snapshotted, its agent queried and (Extensions) its hot
    /// desk queried; only the differences go to clients. No link events: the request window,
    /// the requests in flight and the clients' pending requests stay. A MonitorStart in flight
    /// is left alone (its answer brings a monitor the session did not stop).
    fn resync(&mut self, reason: &str) {
        if !self.link.usable() {
            debug!(%reason, "resync without a link ignored");
            return;
        }
        warn!(%reason, "resynchronising on the same session");
        self.dns.monitors_lost();
        self.calls.link_lost();
        let sync = !self.link.is_up();
        for n in self.dns.to_monitor() {
            if !sync {
                self.link.catch_up(&n);
            }
            self.start_monitor(&n, sync);
        }
    }

    /// `overloadReached` / `overloadRelieved`: the request window is halved / restored.
    fn overload(&mut self, reached: bool) {
        if self.overloaded != reached {
            self.overloaded = reached;
            info!(
                limit = self.window_limit(),
                "Connector overload {}; CSTA request window now {}",
                if reached { "reached" } else { "relieved" },
                self.window_limit()
            );
        }
    }

    fn link_down(&mut self, reason: &str, out: &mut Vec<Output>) {
        let was = self.link.down();
        self.overloaded = false;
        warn!(%reason, "link lost");
        let pending = self.window.clear();
        self.dns.link_lost();
        self.hotdesk.forget_queries();
        for (client, req) in self.answers.link_lost() {
            self.refuse(out, client, &req, (ErrorCode::NO_SWITCH, NO_LINK.into()));
        }
        self.calls.link_lost();
        for (_, kind) in pending {
            match kind {
                Pending::MonitorStart { dn } | Pending::HdQuery { dn, .. } => {
                    self.release_waiters(&dn, out);
                }
                Pending::HdService(s) => {
                    self.service_failed(*s, (ErrorCode::NO_SWITCH, NO_LINK.into()), None, out);
                }
                Pending::Call { .. }
                | Pending::Snapshot { .. }
                | Pending::AgentQuery { .. }
                | Pending::FeatureQuery { .. }
                | Pending::Untracked => {}
            }
        }
        for (client, req) in self.hotdesk.link_lost() {
            self.refuse(out, client, &req, (ErrorCode::NO_SWITCH, NO_LINK.into()));
        }
        if was != LinkState::Down || !self.clients.is_empty() {
            let ev = self.link.event(false, Some(reason));
            let all = self.clients.all();
            self.emit(out, all, ev);
        }
        let numbers: Vec<String> = self.dns.iter().map(|d| d.number.clone()).collect();
        for n in numbers {
            self.forget_if_unused(&n);
        }
    }

    fn tick(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        for c in self.sessions.expired(now, self.cfg.resume_window_ms) {
            self.end_session(c, Ended::Expired);
        }
        for (tag, kind) in self.window.expired(now) {
            self.link.done(tag);
            match kind {
                Pending::MonitorStart { dn } => {
                    warn!(%dn, "MonitorStart timed out");
                    self.dns.monitor_off(&dn);
                    self.release_waiters(&dn, out);
                    self.dns.retry_later(&dn, now);
                }
                Pending::HdQuery { dn, .. } => {
                    warn!(%dn, "hot-desking query timed out");
                    self.hotdesk.query_gone(&dn);
                    self.release_waiters(&dn, out);
                }
                Pending::Untracked => {}
                Pending::Call { expect, .. } => {
                    if let Some(x) = self.answers.take(expect) {
                        let r = (
                            ErrorCode::TIMEOUT,
                            "no answer from the CSTA Connector".to_string(),
                        );
                        self.refuse(out, x.client, &x.request, r);
                        self.answers.release(x.conn);
                    }
                }
                Pending::Snapshot { dn } => warn!(%dn, "SnapshotDevice timed out"),
                Pending::AgentQuery { dn, .. } => warn!(%dn, "GetAgentState timed out"),
                Pending::FeatureQuery { dn, .. } => {
                    warn!(%dn, "GetForwarding / GetDoNotDisturb timed out")
                }
                Pending::HdService(s) => {
                    if s.held.is_some() {
                        self.service_ok(*s, out);
                    } else {
                        let r = (
                            ErrorCode::TIMEOUT,
                            "no answer from the CSTA Connector".to_string(),
                        );
                        self.service_failed(*s, r, None, out);
                    }
                }
            }
        }
        for n in self.dns.due_retries(now) {
            if self.link.usable() {
                info!(dn = %n, "retrying MonitorStart");
                self.start_monitor(&n, false);
            }
        }
        for x in self.answers.tick(now, self.gaps()) {
            debug!(
                request = x.request.name.as_str(),
                "accepted, no event in time: EventACK"
            );
            let ev = Event::reply(EventName::EventACK, &x.request);
            self.emit(out, vec![x.client], ev);
        }
        if self.link.sync_overdue(now) {
            warn!(
                left = self.link.waiting(),
                "resync-timeout reached; the rest continues in the background"
            );
            self.finish_sync(out);
        }
        self.maybe_synced(out);
    }

    // ------------------------------------------------------------------------------ CSTA input

    fn answer(&mut self, invoke_id: InvokeId, msg: Result<Message, String>, out: &mut Vec<Output>) {
        let Some((tag, kind)) = self.window.answer(invoke_id) else {
            self.late_answers += 1;
            debug!(%invoke_id, "answer for no pending request (late or unknown)");
            return;
        };
        self.link.done(tag);
        match kind {
            Pending::MonitorStart { dn } => self.monitor_answer(&dn, msg, out),
            Pending::Untracked => {}
            Pending::HdQuery { dn, resync } => self.query_answer(&dn, resync, msg, out),
            Pending::HdService(s) => self.service_answer(*s, msg, out),
            Pending::Call { expect, origin } => self.call_answer(expect, origin, msg, out),
            Pending::Snapshot { dn } => {
                let mut notes = std::mem::take(&mut self.scratch);
                let gone = self.calls.snapshot_answer(&dn, msg, &self.dns, &mut notes);
                self.notices(&dn, &mut notes, out);
                self.scratch = notes;
                if let Some(e) = gone {
                    // The switch no longer knows the DN: its clients are told, like a refused
                    // MonitorStart (docs/protocol.md §6.4), and a monitor nobody wants stops.
                    self.device_gone(&dn, &e, out);
                    self.sync_monitor(&dn);
                }
            }
            Pending::AgentQuery { dn, resync } => {
                if self.dns.contains(&dn) {
                    let change = self.agents.answer(&dn, resync, msg);
                    self.agent_change(&dn, change, false, out);
                }
            }
            Pending::FeatureQuery { dn, resync } => {
                if self.dns.contains(&dn) {
                    for e in self.features.answer(&dn, resync, msg) {
                        self.deliver(out, &dn, e);
                    }
                }
            }
        }
        self.maybe_synced(out);
    }

    /// Deliver an agent change; `sync_first`: the agent-login hot desk follows before the
    /// events go (a switch event) rather than after (a GetAgentState answer).
    fn agent_change(
        &mut self,
        dn: &str,
        change: AgentChange,
        sync_first: bool,
        out: &mut Vec<Output>,
    ) {
        if sync_first {
            for a in &change.agents {
                self.agent_login_sync(a);
            }
        }
        for e in change.events {
            self.deliver(out, dn, e);
        }
        if !sync_first {
            for a in &change.agents {
                self.agent_login_sync(a);
            }
        }
    }

    /// The CSTA answer to a call, agent or feature request.
    fn call_answer(
        &mut self,
        expect: u64,
        origin: Option<ConnId>,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        let consultation = match (&msg, origin) {
            (Ok(Message::ConsultationCallResponse(r)), Some(o)) => {
                r.initiated_call.call_id.clone().map(|c| (c, o))
            }
            _ => None,
        };
        if let Ok(m) = &msg {
            let acted_on = self.answers.request_conn(expect);
            self.calls.remap_from_answer(m, acted_on);
        }
        if !self.answers.contains(expect) {
            // Answered already by its event; a consultation still needs its origin noted.
            if let Some((c, o)) = consultation {
                self.calls.note_consultation(&c, o);
            }
            return;
        }
        let refusal = match msg {
            Ok(Message::CstaErrorCode(e)) => {
                let Some(x) = self.answers.take(expect) else {
                    return;
                };
                let text = format!(
                    "{} refused by the switch: {}",
                    x.request.name.as_str(),
                    e.error
                );
                self.outbox
                    .refuse_csta(out, &self.clients, x.client, &x.request, &e.error, text);
                self.answers.release(x.conn);
                return;
            }
            Ok(m) if matches!(m.kind(), ctid_csta::MessageKind::Response) => {
                if let Some((c, o)) = consultation {
                    self.calls.note_consultation(&c, o);
                }
                let deadline = self.now.mono_ms + self.cfg.request_timeout_ms;
                match self.answers.accepted(expect, deadline) {
                    Accepted::Gone => {}
                    Accepted::Waiting(conn) => self.answers.release(conn),
                    Accepted::Answer(x) => {
                        let name = x.on_accept.unwrap_or(EventName::EventACK);
                        let mut ev = Event::reply(name, &x.request);
                        ev.conn_id = x.request.conn_id;
                        ev.dtmf_digits = x.request.dtmf_digits.clone();
                        ev.other_dn = x.request.other_dn.clone();
                        ev.reference_id = None;
                        // The clients of the DN the request named (an agent-login desk's
                        // request acts for its guest but is answered on the desk).
                        let shown = x.request.this_dn.as_deref().unwrap_or(&x.dn);
                        let to = self.dns.registrants(&[shown]);
                        self.outbox.emit_answer(
                            out,
                            &self.clients,
                            x.client,
                            x.request.reference_id,
                            to,
                            ev,
                        );
                        self.answers.release(x.conn);
                    }
                }
                return;
            }
            Ok(other) => (
                ErrorCode::CSTA_RESULT_UNEXPECTED,
                format!("unexpected answer {} from the Connector", other.name()),
            ),
            Err(reason) => (
                ErrorCode::CSTA_BADLY_STRUCTURED,
                format!("malformed answer from the Connector: {reason}"),
            ),
        };
        if let Some(x) = self.answers.take(expect) {
            self.refuse(out, x.client, &x.request, refusal);
            self.answers.release(x.conn);
        }
    }

    fn csta_request(&mut self, invoke_id: InvokeId, msg: Message, out: &mut Vec<Output>) {
        match msg {
            Message::MonitorStop(m) => {
                out.push(Output::CstaAnswer {
                    invoke_id,
                    message: Message::MonitorStopResponse(ctid_csta::MonitorStopResponse {
                        extensions: None,
                    }),
                });
                let stopped = self
                    .dns
                    .stopped_by_connector(&m.monitor_cross_ref_id, self.now.mono_ms);
                if let Some((dn, later)) = stopped {
                    warn!(%dn, xref = %m.monitor_cross_ref_id, later, "the Connector stopped a monitor; re-monitoring");
                    if !later {
                        self.sync_monitor(&dn);
                    }
                }
            }
            Message::SystemStatus(_) => out.push(Output::CstaAnswer {
                invoke_id,
                message: Message::SystemStatusResponse(ctid_csta::SystemStatusResponse {
                    extensions: None,
                }),
            }),
            other => {
                debug!(
                    request = other.name(),
                    "unsupported request from the Connector"
                );
                out.push(Output::CstaAnswer {
                    invoke_id,
                    message: Message::CstaErrorCode(ctid_csta::CstaErrorCode {
                        error: ctid_csta::CstaError::Operation(
                            ctid_csta::OperationError::ServiceNotSupported,
                        ),
                    }),
                });
            }
        }
    }

    fn csta_event(&mut self, msg: Message, out: &mut Vec<Output>) {
        let Some(xref) = msg.monitor_cross_ref_id() else {
            debug!(
                event = msg.name(),
                "event without monitorCrossRefID ignored"
            );
            return;
        };
        let Some(d) = self.dns.dn_of_xref(xref) else {
            debug!(event = msg.name(), %xref, "event for an unknown monitorCrossRefID dropped");
            return;
        };
        if let Message::PrivateEvent(pe) = &msg {
            match pe.private_data.as_ref().and_then(|p| p.hotdesk()) {
                Some(Dialect::Event { state, guest, host }) => {
                    let established = *state == ctid_csta::HotDeskState::Established;
                    if !established && *state != ctid_csta::HotDeskState::Cancelled {
                        warn!(state = %state, "unknown hot-desking state ignored");
                        return;
                    }
                    let (g, h) = (guest.clone(), host.clone());
                    self.hotdesk_event(established, &g, &h, out);
                }
                _ => debug!("private event of another dialect ignored"),
            }
            return;
        }
        let mut notes = std::mem::take(&mut self.scratch);
        if let Message::SnapshotDeviceData(s) = &msg {
            if let Some(dn) = self.calls.snapshot_segment(s, &self.dns, &mut notes) {
                self.notices(&dn, &mut notes, out);
            }
            self.scratch = notes;
            return;
        }
        let handled = self
            .calls
            .event(&d, &msg, &self.dns, &self.answers, &mut notes);
        self.notices(&d, &mut notes, out);
        self.scratch = notes;
        if handled {
            return;
        }
        if let Some(change) = self.agents.event(&d, &msg) {
            return self.agent_change(&d, change, true, out);
        }
        if let Some(ev) = self.features.event(&d, &msg) {
            return self.deliver(out, &d, ev);
        }
        match msg {
            Message::AgentBusyEvent(_)
            | Message::CallInformationEvent(_)
            | Message::ServiceCompletionFailureEvent(_) => {}
            other => debug!(event = other.name(), "event not used by the call model"),
        }
    }
}
