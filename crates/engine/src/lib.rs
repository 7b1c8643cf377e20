//! ctid-engine: the T-Server brain, sans-IO.
//!
//! [`Engine::handle`] takes the time ([`Now`]) and one [`Input`] (a client connected or sent a
//! request, the link came up or went down, a CSTA answer/event/request arrived, a timer tick) and
//! appends the [`Output`]s to act on: events for clients (already stamped with
//! `EventSequenceNumber` and `time`, to be encoded once and sent to every listed client) and CSTA
//! messages for the link. No clock, no sockets, no tokio: the same inputs give the same outputs.
//!
//! It owns the DN table ([`dn`]), client registrations, pending CSTA requests with their
//! deadlines and the `max-outstanding` window, and the hot-desk association table ([`hotdesk`]).
#![deny(unsafe_code)]

pub mod calls;
pub mod config;
pub mod control;
pub mod dn;
pub mod errors;
pub mod hotdesk;
pub mod io;
pub mod window;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ctid_csta::{
    HotDesk, InvokeId, Message, MonitorObject, MonitorStart, MonitorStop, MonitorType,
};
use ctid_protocol::{
    AddressInfoType, AddressType, ConnId, ControlMode, ErrorCode, Event, EventName, InfoStatus,
    KvList, RegisterMode, Request, RequestName,
};
use tracing::{debug, info, warn};

pub use config::{DnConfig, EngineConfig, RegisterFlag};
use dn::{Dn, Monitor, Reg};
use hotdesk::{Change, HotDeskTable};
pub use io::{ClientId, Input, Now, Output, RecordError, Tag};
use window::RequestWindow;

/// Link state as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No operational link.
    Down,
    /// Link up; re-monitoring and resync running (switch requests still get 54).
    Syncing { deadline_ms: u64 },
    /// Operational; EventLinkConnected sent.
    Up,
}

#[derive(Debug, Clone)]
enum PendingKind {
    MonitorStart {
        dn: String,
    },
    MonitorStop,
    HdQuery {
        dn: String,
        /// Part of a link-up resync: changes are distributed as EventPrivateInfo.
        resync: bool,
    },
    HdService(Box<HdService>),
    /// A call-control / agent / feature request; `origin` is the call a consultation is made from.
    Call {
        expect: u64,
        origin: Option<ConnId>,
    },
    Snapshot {
        dn: String,
    },
    /// GetAgentState at (re-)monitoring; `resync`: report differences as events.
    AgentQuery {
        dn: String,
        resync: bool,
    },
}

#[derive(Debug, Clone)]
struct HdService {
    client: ClientId,
    request: Request,
    guest: String,
    /// Service 1: the requested host. Service 2: the former host as far as we know.
    host: Option<String>,
    service: u32,
    /// A matching PrivateEvent arrived before the answer: its change was applied to the table
    /// and is held here, not yet distributed.
    held: Option<Change>,
}

#[derive(Debug, Default)]
struct ClientState {
    peer: String,
    app: Option<String>,
    regs: BTreeSet<String>,
}

/// Every request this build serves (EventServerInfo `SupportedRequests`).
pub const SUPPORTED_REQUESTS: &str =
    "RequestRegisterClient,RequestQueryServer,RequestQueryAddress,\
RequestRegisterAddress,RequestUnregisterAddress,RequestPrivateService,RequestMakeCall,\
RequestAnswerCall,RequestReleaseCall,RequestClearCall,RequestHoldCall,RequestRetrieveCall,\
RequestInitiateTransfer,RequestCompleteTransfer,RequestInitiateConference,\
RequestCompleteConference,RequestMuteTransfer,RequestSingleStepTransfer,\
RequestDeleteFromConference,RequestAlternateCall,RequestReconnectCall,RequestRedirectCall,\
RequestRouteCall,RequestSendDTMF,RequestCallForwardSet,RequestCallForwardCancel,\
RequestSetDNDOn,RequestSetDNDOff,RequestQueryCall,RequestAgentLogin,RequestAgentLogout,\
RequestAgentReady,RequestAgentNotReady,RequestAttachUserData,RequestUpdateUserData,\
RequestDeletePair,RequestDeleteUserData";

/// One DN as the web monitor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnView {
    pub number: String,
    pub dn_type: &'static str,
    pub configured: bool,
    pub monitored: bool,
    pub registrations: usize,
    pub status: String,
    pub calls: usize,
    pub agent_id: Option<String>,
    pub agent_status: Option<String>,
    /// Hot desking: the host this guest uses.
    pub host: Option<String>,
    /// Hot desking: the guest using this host.
    pub guest: Option<String>,
    pub forward_to: Option<String>,
    pub dnd: bool,
}

/// One call as the web monitor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    pub conn_id: String,
    pub call_id: String,
    pub call_type: &'static str,
    /// (DN, party state)
    pub parties: Vec<(String, &'static str)>,
}

/// Counters for metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub duplicate_private_events: u64,
    pub unknown_cross_ref: u64,
    pub late_answers: u64,
    pub events_sent: u64,
    /// Call events whose connection carries no callID (cannot be tracked; dropped).
    pub events_without_call_id: u64,
    pub requests: u64,
    pub request_errors: u64,
}

/// The T-Server engine.
pub struct Engine {
    cfg: EngineConfig,
    dns: BTreeMap<String, Dn>,
    clients: BTreeMap<ClientId, ClientState>,
    hd: HotDeskTable,
    hd_supported: bool,
    /// Guest → tag of its private service in flight; others wait in `hd_waiting`.
    hd_busy: BTreeMap<String, Tag>,
    hd_waiting: BTreeMap<String, VecDeque<(ClientId, Request)>>,
    xref: BTreeMap<String, String>,
    window: RequestWindow<PendingKind>,
    sync_tags: BTreeSet<Tag>,
    link: LinkState,
    link_name: String,
    seq: u64,
    now: Now,
    pub counters: Counters,
    /// The call model.
    pub calls: calls::Calls,
    expects: Vec<control::Expect>,
    next_expect: u64,
    call_waiting: BTreeMap<ConnId, VecDeque<(u64, ClientId, Request)>>,
    ready_requests: VecDeque<(ClientId, Request)>,
    consult_origins: BTreeMap<String, ConnId>,
    login_owner: BTreeMap<String, ClientId>,
    snapshot_parts: BTreeMap<String, (String, Vec<ctid_csta::SnapshotDeviceResponseInfo>)>,
}

fn kv(pairs: &[(&str, &str)]) -> KvList {
    let mut k = KvList::new();
    for (a, b) in pairs {
        k.insert_str(*a, *b);
    }
    k
}

impl Engine {
    /// An engine with the configured DNs; the link is down.
    pub fn new(cfg: EngineConfig) -> Self {
        let mut dns = BTreeMap::new();
        for d in &cfg.dns {
            dns.insert(
                d.number.clone(),
                Dn::configured(&d.number, d.dn_type, d.register),
            );
        }
        Engine {
            hd_supported: cfg.hotdesk_enabled,
            cfg,
            dns,
            clients: BTreeMap::new(),
            hd: HotDeskTable::default(),
            hd_busy: BTreeMap::new(),
            hd_waiting: BTreeMap::new(),
            xref: BTreeMap::new(),
            window: RequestWindow::default(),
            sync_tags: BTreeSet::new(),
            link: LinkState::Down,
            link_name: String::new(),
            seq: 0,
            now: Now::default(),
            counters: Counters::default(),
            calls: calls::Calls::default(),
            expects: Vec::new(),
            next_expect: 0,
            call_waiting: BTreeMap::new(),
            ready_requests: VecDeque::new(),
            consult_origins: BTreeMap::new(),
            login_owner: BTreeMap::new(),
            snapshot_parts: BTreeMap::new(),
        }
    }

    /// The link state.
    pub fn link_state(&self) -> LinkState {
        self.link
    }
    /// Number of DNs with an active switch monitor.
    pub fn monitored_count(&self) -> usize {
        self.xref.len()
    }
    /// Number of DNs known (configured and unconfigured).
    pub fn dn_count(&self) -> usize {
        self.dns.len()
    }
    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }
    /// CSTA requests sent and not answered.
    pub fn outstanding(&self) -> usize {
        self.window.in_flight()
    }

    /// When the engine next needs [`Input::Tick`] (monotonic ms): the earliest request deadline,
    /// expectation deadline, call-rq-gap release or resync deadline. `None`: not until another
    /// input arrives.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.window.next_deadline();
        let mut min = |d: Option<u64>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |x: u64| x.min(d)));
            }
        };
        min(self.expects.iter().filter_map(|x| x.deadline_ms).min());
        min(self
            .call_waiting
            .values()
            .filter_map(|q| q.front().map(|(at, _, _)| at + self.cfg.call_rq_gap_ms))
            .min());
        if let LinkState::Syncing { deadline_ms } = self.link {
            min(Some(deadline_ms));
        }
        t
    }
    /// The current hot-desk pairs (guest, host).
    pub fn hotdesk_pairs(&self) -> Vec<(String, String)> {
        self.hd.pairs()
    }
    /// The host a guest is associated with.
    pub fn host_of(&self, guest: &str) -> Option<&str> {
        self.hd.host_of(guest)
    }
    /// Is this DN monitored at the switch?
    pub fn is_monitored(&self, dn: &str) -> bool {
        self.dns
            .get(dn)
            .is_some_and(|d| matches!(d.monitor, Monitor::Active { .. }))
    }
    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// A read-only view of every DN (for the web monitor and `/api/state`), sorted by number.
    pub fn dn_views(&self) -> Vec<DnView> {
        let mut v: Vec<DnView> = self
            .dns
            .values()
            .map(|d| {
                let (k, calls, agent) = self.dn_status(d);
                DnView {
                    number: d.number.clone(),
                    dn_type: d.dn_type.as_str(),
                    configured: d.configured,
                    monitored: matches!(d.monitor, Monitor::Active { .. }),
                    registrations: d.regs.len(),
                    status: k
                        .get_str("status")
                        .unwrap_or("AddressStatusIdle")
                        .to_string(),
                    calls,
                    agent_id: agent,
                    agent_status: k.get_str("AgentStatus").map(str::to_string),
                    host: self.hd.host_of(&d.number).map(str::to_string),
                    guest: self.hd.guest_of(&d.number).map(str::to_string),
                    forward_to: d.forward.as_ref().map(|f| f.1.clone()),
                    dnd: d.dnd,
                }
            })
            .collect();
        v.sort_by(|a, b| a.number.cmp(&b.number));
        v
    }

    /// A read-only view of every active call, sorted by ConnID.
    pub fn call_views(&self) -> Vec<CallView> {
        let mut v: Vec<CallView> = self
            .calls
            .calls
            .values()
            .map(|c| CallView {
                conn_id: c.conn_id.to_string(),
                call_id: c.call_id.clone(),
                call_type: c.call_type.as_str(),
                parties: c
                    .parties
                    .iter()
                    .map(|p| (p.dn.clone(), p.state.as_str()))
                    .collect(),
            })
            .collect();
        v.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
        v
    }

    /// Handle one input; append what to do to `out`.
    pub fn handle(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        self.now = now;
        match input {
            Input::ClientConnected { client, peer } => self.client_connected(client, peer, out),
            Input::ClientDisconnected { client } => self.client_disconnected(client, out),
            Input::ClientText { client, text } => match ctid_protocol::parse_request(&text) {
                Ok(req) => self.request(client, req, out),
                Err(e) => {
                    self.counters.request_errors += 1;
                    info!(client, code = e.code.0, reason = %e.message, "rejected request");
                    let ev = e.to_event();
                    self.emit(out, vec![client], ev);
                }
            },
            Input::ClientRequest { client, request } => self.request(client, request, out),
            Input::ClientInvalid {
                client,
                code,
                message,
                reference_id,
            } => {
                self.counters.request_errors += 1;
                info!(client, code = code.0, reason = %message, "rejected request");
                let ev = Event::error(code, message).with_reference_id(reference_id);
                self.emit(out, vec![client], ev);
            }
            Input::LinkUp { name } => self.link_up(name, out),
            Input::LinkDown { reason } => self.link_down(&reason, out),
            Input::CstaAnswer { invoke_id, message } => self.answer(invoke_id, Ok(message), out),
            Input::CstaAnswerMalformed { invoke_id, reason } => {
                self.answer(invoke_id, Err(reason), out)
            }
            Input::CstaEvent { message } => self.csta_event(message, out),
            Input::CstaRequest { invoke_id, message } => self.csta_request(invoke_id, message, out),
            Input::Tick => self.tick(out),
            Input::Reconfigure(cfg) => self.reconfigure(*cfg, out),
        }
        while let Some((client, req)) = self.ready_requests.pop_front() {
            if self.clients.contains_key(&client) {
                self.control_request(client, req, out);
            }
        }
        self.pump(out);
    }

    // ------------------------------------------------------------------------------ emitting

    fn stamp(&mut self, ev: &mut Event) {
        self.seq += 1;
        let secs = self.now.unix_micros / 1_000_000;
        let micros = (self.now.unix_micros % 1_000_000) as u32;
        ev.stamp(self.seq, ctid_protocol::format_unix_micros(secs, micros));
    }

    fn emit(&mut self, out: &mut Vec<Output>, mut to: Vec<ClientId>, mut event: Event) {
        // An answer to a client that has gone (it disconnected with a request in flight).
        to.retain(|c| self.clients.contains_key(c));
        if to.is_empty() {
            return;
        }
        self.stamp(&mut event);
        self.counters.events_sent += to.len() as u64;
        out.push(Output::Event { to, event });
    }

    /// The requester's copy with its ReferenceID and everyone else's without, one sequence
    /// number for both.
    fn emit_answer(
        &mut self,
        out: &mut Vec<Output>,
        requester: ClientId,
        reference_id: Option<u32>,
        others: Vec<ClientId>,
        mut event: Event,
    ) {
        self.stamp(&mut event);
        let others: Vec<ClientId> = others
            .into_iter()
            .filter(|c| *c != requester && self.clients.contains_key(c))
            .collect();
        if !others.is_empty() {
            let mut copy = event.clone();
            copy.reference_id = None;
            self.counters.events_sent += others.len() as u64;
            out.push(Output::Event {
                to: others,
                event: copy,
            });
        }
        if !self.clients.contains_key(&requester) {
            return;
        }
        event.reference_id = reference_id;
        self.counters.events_sent += 1;
        out.push(Output::Event {
            to: vec![requester],
            event,
        });
    }

    fn error(
        &mut self,
        out: &mut Vec<Output>,
        client: ClientId,
        req: &Request,
        code: u32,
        msg: String,
    ) {
        self.counters.request_errors += 1;
        info!(client, request = req.name.as_str(), code, reason = %msg, "rejected request");
        let ev = Event::error_for(req, ErrorCode(code), msg);
        self.emit(out, vec![client], ev);
    }

    fn csta_error(
        &mut self,
        out: &mut Vec<Output>,
        client: ClientId,
        req: &Request,
        e: &ctid_csta::CstaError,
        msg: String,
    ) {
        self.counters.request_errors += 1;
        let code = errors::tlib_code(e);
        info!(client, request = req.name.as_str(), code, csta = %e, "Connector refused request");
        let ev =
            Event::error_for(req, ErrorCode(code), msg).with_extension("CSTAError", e.to_string());
        self.emit(out, vec![client], ev);
    }

    fn registrants(&self, dns: &[&str]) -> Vec<ClientId> {
        let mut v: BTreeSet<ClientId> = BTreeSet::new();
        for d in dns {
            if let Some(dn) = self.dns.get(*d) {
                v.extend(dn.regs.keys().copied());
            }
        }
        v.into_iter().collect()
    }

    fn all_clients(&self) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self.clients.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn link_event(&self, up: bool, reason: Option<&str>) -> Event {
        let mut ev = Event::new(if up {
            EventName::EventLinkConnected
        } else {
            EventName::EventLinkDisconnected
        });
        if !self.link_name.is_empty() {
            ev.application_name = Some(self.link_name.clone());
            ev.extensions = Some(kv(&[("LinkName", &self.link_name)]));
        }
        if !up {
            ev.error_code = Some(ErrorCode(54));
            ev.error_message = Some(
                reason
                    .unwrap_or("no link to the CSTA Connector")
                    .to_string(),
            );
        }
        ev
    }

    // ------------------------------------------------------------------------------ CSTA requests

    fn send(&mut self, kind: PendingKind, message: Message) -> Tag {
        self.window.push(kind, message)
    }

    /// Send queued requests while the window allows.
    fn pump(&mut self, out: &mut Vec<Output>) {
        self.window.pump(
            self.now.mono_ms,
            self.cfg.max_outstanding,
            self.cfg.request_timeout_ms,
            out,
        );
    }

    fn link_usable(&self) -> bool {
        !matches!(self.link, LinkState::Down)
    }

    // ------------------------------------------------------------------------------ clients

    fn client_connected(&mut self, client: ClientId, peer: String, out: &mut Vec<Output>) {
        info!(client, %peer, "client connected");
        self.clients.insert(
            client,
            ClientState {
                peer,
                ..Default::default()
            },
        );
        let ev = self.link_event(self.link == LinkState::Up, Some("link not operational"));
        self.emit(out, vec![client], ev);
    }

    fn client_disconnected(&mut self, client: ClientId, out: &mut Vec<Output>) {
        let Some(st) = self.clients.remove(&client) else {
            return;
        };
        info!(client, peer = %st.peer, app = st.app.as_deref().unwrap_or(""), "client disconnected");
        for dn in st.regs {
            if self.cfg.agent_logout_on_unregister && self.login_owner.get(&dn) == Some(&client) {
                self.login_owner.remove(&dn);
                let agent = self
                    .dns
                    .get(&dn)
                    .and_then(|d| d.agent.as_ref().map(|a| a.agent_id.clone()));
                if agent.is_some() && self.link == LinkState::Up {
                    info!(%dn, "agent-logout-on-unregister: logging the agent out");
                    let msg = Message::SetAgentState(ctid_csta::SetAgentState {
                        device: dn.clone(),
                        requested_agent_state: ctid_csta::ReqAgentState::LoggedOff,
                        agent_id: agent,
                        password: None,
                        group: None,
                        extensions: None,
                    });
                    self.send(PendingKind::MonitorStop, msg);
                }
            }
            if let Some(d) = self.dns.get_mut(&dn) {
                d.regs.remove(&client);
                d.waiters.retain(|(c, _)| *c != client);
            }
            self.sync_monitor(&dn);
        }
        for q in self.hd_waiting.values_mut() {
            q.retain(|(c, _)| *c != client);
        }
        // Its requests in flight are answered to nobody; queued ones are not sent.
        self.expects.retain(|x| x.client != client);
        for q in self.call_waiting.values_mut() {
            q.retain(|(_, c, _)| *c != client);
        }
        self.call_waiting.retain(|_, q| !q.is_empty());
        self.ready_requests.retain(|(c, _)| *c != client);
        let _ = out;
    }

    fn request(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        self.counters.requests += 1;
        self.clients.entry(client).or_default();
        debug!(client, request = req.name.as_str(), "request");
        match req.name {
            RequestName::RequestRegisterClient => {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.app = req.application_name.clone();
                }
                let ev = Event::reply(EventName::EventACK, &req);
                self.emit(out, vec![client], ev);
            }
            RequestName::RequestQueryServer => {
                let mut ev = Event::reply(EventName::EventServerInfo, &req);
                let status = if self.link == LinkState::Up {
                    "LinkConnected"
                } else {
                    "LinkDisconnected"
                };
                ev.extensions = Some(kv(&[
                    ("ServerName", &self.cfg.server_name),
                    ("ServerVersion", env!("CARGO_PKG_VERSION")),
                    ("LinkStatus", status),
                    ("SupportedRequests", SUPPORTED_REQUESTS),
                ]));
                self.emit(out, vec![client], ev);
            }
            RequestName::RequestRegisterAddress => self.register(client, req, out),
            RequestName::RequestUnregisterAddress => self.unregister(client, req, out),
            RequestName::RequestQueryAddress => self.query_address(client, req, out),
            RequestName::RequestPrivateService => self.private_service(client, req, out),
            _ => self.control_request(client, req, out),
        }
    }

    /// The DN-status Extensions (§2.5), the number of calls and the agent.
    fn dn_status(&self, d: &Dn) -> (KvList, usize, Option<String>) {
        let mut k = KvList::new();
        let n = self.call_status(&d.number, &mut k);
        let agent = self.feature_status(&d.number, &mut k);
        if let Some(h) = self.hd.host_of(&d.number) {
            k.insert_str("HOST_DN", h);
        }
        (k, n, agent)
    }

    fn registered_event(&self, dn: &str, client_req: &Request) -> Event {
        let mut ev = Event::reply(EventName::EventRegistered, client_req);
        ev.this_dn = Some(dn.to_string());
        if let Some(d) = self.dns.get(dn) {
            ev.info_type = Some(AddressInfoType::AddressType);
            ev.info_status = Some(InfoStatus::AddressType(d.dn_type));
            ev.address_type = Some(d.dn_type);
            let (k, _, agent) = self.dn_status(d);
            ev.extensions = Some(k);
            ev.agent_id = agent;
        }
        ev
    }

    fn register(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let Some(number) = req.this_dn.clone() else {
            return self.error(out, client, &req, 53, "ThisDN missing".into());
        };
        let mode = req.register_mode.unwrap_or(RegisterMode::Share);
        let control = req.control_mode.unwrap_or(ControlMode::Default);
        let wanted = req.address_type.filter(|t| *t != AddressType::Unknown);
        match self.dns.get(&number) {
            Some(d) if d.configured => {
                if let Some(t) = wanted {
                    if t != d.dn_type {
                        let msg = format!(
                            "DN {number} is configured as {}, not {}",
                            d.dn_type.as_str(),
                            t.as_str()
                        );
                        return self.error(out, client, &req, 53, msg);
                    }
                }
            }
            Some(_) => {}
            None => {
                let t = wanted.unwrap_or(AddressType::Dn);
                if !self.cfg.accept_dn_types.contains(&t) {
                    let msg = format!(
                        "DN {number} is not configured and type {} is not accepted (accept-dn-type)",
                        t.as_str()
                    );
                    return self.error(out, client, &req, 59, msg);
                }
                self.dns
                    .insert(number.clone(), Dn::unconfigured(&number, t));
            }
        }
        let Some(d) = self.dns.get_mut(&number) else {
            return self.error(out, client, &req, 52, format!("DN {number} vanished"));
        };
        let others_hold = d.regs.keys().any(|c| *c != client);
        let private_elsewhere = d
            .regs
            .iter()
            .any(|(c, r)| *c != client && r.mode == RegisterMode::Private);
        if private_elsewhere || (mode == RegisterMode::Private && others_hold) {
            let msg = format!("DN {number} is held in ModePrivate by another client");
            if d.regs.is_empty() && !d.configured {
                self.forget_if_unused(&number);
            }
            return self.error(out, client, &req, 42, msg);
        }
        d.regs.insert(client, Reg { mode, control });
        // First switch-level registration: answer after MonitorStart (and the hot-desk query).
        let starting = matches!(d.monitor, Monitor::Starting { .. }) || d.query_tag.is_some();
        let start = !starting
            && self.link != LinkState::Down
            && d.wants_monitor()
            && matches!(d.monitor, Monitor::Off);
        let wait = starting || start;
        let req = if wait {
            d.waiters.push((client, req));
            None
        } else {
            Some(req)
        };
        self.clients
            .entry(client)
            .or_default()
            .regs
            .insert(number.clone());
        if start {
            self.start_monitor(&number, false);
        }
        let Some(req) = req else {
            return; // answered when the switch-level registration is done
        };
        let ev = self.registered_event(&number, &req);
        self.emit(out, vec![client], ev);
    }

    fn unregister(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let Some(number) = req.this_dn.clone() else {
            return self.error(out, client, &req, 53, "ThisDN missing".into());
        };
        let had = self
            .dns
            .get_mut(&number)
            .is_some_and(|d| d.regs.remove(&client).is_some());
        if !had {
            return self.error(
                out,
                client,
                &req,
                41,
                format!("DN {number} is not registered by this client"),
            );
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.regs.remove(&number);
        }
        let ev = Event::reply(EventName::EventUnregistered, &req);
        self.emit(out, vec![client], ev);
        self.sync_monitor(&number);
    }

    fn query_address(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let Some(number) = req.this_dn.clone() else {
            return self.error(out, client, &req, 53, "ThisDN missing".into());
        };
        let Some(info) = req.info_type else {
            return self.error(
                out,
                client,
                &req,
                53,
                "InfoType missing (AddressInfoDNStatus or AddressInfoAddressType)".into(),
            );
        };
        let Some(d) = self.dns.get(&number) else {
            return self.error(
                out,
                client,
                &req,
                59,
                format!("DN {number} is not known to this server"),
            );
        };
        let mut ev = Event::reply(EventName::EventAddressInfo, &req);
        ev.info_type = Some(info);
        match info {
            AddressInfoType::DnStatus => {
                let (k, n, agent) = self.dn_status(d);
                ev.info_status = Some(InfoStatus::Number(n as i64));
                ev.extensions = Some(k);
                ev.agent_id = agent;
            }
            AddressInfoType::AddressType => {
                ev.info_status = Some(InfoStatus::AddressType(d.dn_type));
            }
            other => {
                let msg = format!("InfoType {} is not supported", other.as_str());
                return self.error(out, client, &req, 51, msg);
            }
        }
        self.emit(out, vec![client], ev);
    }

    fn reconfigure(&mut self, cfg: EngineConfig, out: &mut Vec<Output>) {
        let new: BTreeMap<String, DnConfig> = cfg
            .dns
            .iter()
            .map(|d| (d.number.clone(), d.clone()))
            .collect();
        let removed: Vec<String> = self
            .dns
            .values()
            .filter(|d| d.configured && !new.contains_key(&d.number))
            .map(|d| d.number.clone())
            .collect();
        for n in &removed {
            let regs: Vec<ClientId> = self.dns[n].regs.keys().copied().collect();
            for c in &regs {
                if let Some(st) = self.clients.get_mut(c) {
                    st.regs.remove(n);
                }
            }
            if !regs.is_empty() {
                let mut ev = Event::new(EventName::EventUnregistered).with_this_dn(n.clone());
                ev.error_code = Some(ErrorCode(59));
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
            if let Some(d) = self.dns.get(n) {
                if matches!(d.monitor, Monitor::Off) && d.query_tag.is_none() {
                    self.dns.remove(n);
                }
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
                    self.dns
                        .insert(n.clone(), Dn::configured(n, d.dn_type, d.register));
                }
            }
            self.sync_monitor(n);
        }
        info!(added, removed = removed.len(), "configuration reloaded");
        self.hd_supported = self.hd_supported && cfg.hotdesk_enabled;
        if cfg.hotdesk_enabled && !self.cfg.hotdesk_enabled {
            self.hd_supported = true;
        }
        self.cfg = cfg;
    }

    // ------------------------------------------------------------------------------ monitors

    fn start_monitor(&mut self, number: &str, sync: bool) {
        let msg = Message::MonitorStart(MonitorStart {
            monitor_object: MonitorObject::Device(number.to_string()),
            monitor_type: Some(MonitorType::Device),
            extensions: None,
        });
        let tag = self.send(
            PendingKind::MonitorStart {
                dn: number.to_string(),
            },
            msg,
        );
        if sync {
            self.sync_tags.insert(tag);
        }
        if let Some(d) = self.dns.get_mut(number) {
            d.monitor = Monitor::Starting { tag };
        }
    }

    /// Start or stop the switch monitor of a DN to match who needs it; forget an unconfigured
    /// DN nobody uses.
    fn sync_monitor(&mut self, number: &str) {
        let Some(d) = self.dns.get(number) else {
            return;
        };
        let wants = d.wants_monitor();
        match (&d.monitor, wants) {
            (Monitor::Off, true) if self.link_usable() => self.start_monitor(number, false),
            (Monitor::Active { xref }, false) => {
                let xref = xref.clone();
                self.xref.remove(&xref);
                if let Some(d) = self.dns.get_mut(number) {
                    d.monitor = Monitor::Off;
                }
                if self.link_usable() {
                    let msg = Message::MonitorStop(MonitorStop {
                        monitor_cross_ref_id: xref,
                        extensions: None,
                    });
                    self.send(PendingKind::MonitorStop, msg);
                }
            }
            _ => {}
        }
        self.forget_if_unused(number);
    }

    fn forget_if_unused(&mut self, number: &str) {
        let Some(d) = self.dns.get(number) else {
            return;
        };
        if !d.configured
            && d.regs.is_empty()
            && d.waiters.is_empty()
            && matches!(d.monitor, Monitor::Off)
            && d.query_tag.is_none()
            && !self.hd.involves(number)
        {
            debug!(dn = number, "forgetting unconfigured DN");
            self.dns.remove(number);
        }
    }

    /// Answer everyone waiting for the first registration of a DN.
    fn release_waiters(&mut self, number: &str, out: &mut Vec<Output>) {
        let Some(d) = self.dns.get_mut(number) else {
            return;
        };
        let waiters = std::mem::take(&mut d.waiters);
        for (client, req) in waiters {
            let ev = self.registered_event(number, &req);
            self.emit(out, vec![client], ev);
        }
    }

    fn fail_waiters(
        &mut self,
        number: &str,
        code: u32,
        msg: &str,
        csta: Option<&ctid_csta::CstaError>,
        out: &mut Vec<Output>,
    ) {
        let Some(d) = self.dns.get_mut(number) else {
            return;
        };
        let waiters = std::mem::take(&mut d.waiters);
        for (client, req) in &waiters {
            if let Some(d) = self.dns.get_mut(number) {
                d.regs.remove(client);
            }
            if let Some(c) = self.clients.get_mut(client) {
                c.regs.remove(number);
            }
            match csta {
                Some(e) => self.csta_error(out, *client, req, e, msg.to_string()),
                None => self.error(out, *client, req, code, msg.to_string()),
            }
        }
        self.forget_if_unused(number);
    }

    fn start_query(&mut self, number: &str, resync: bool) {
        let msg = Message::Escape(ctid_csta::Escape {
            escape_register_id: None,
            private_data: Some(HotDesk::query_guest(number).into_private_data()),
            extensions: None,
        });
        let tag = self.send(
            PendingKind::HdQuery {
                dn: number.to_string(),
                resync,
            },
            msg,
        );
        if resync {
            self.sync_tags.insert(tag);
        }
        if let Some(d) = self.dns.get_mut(number) {
            d.query_tag = Some(tag);
        }
    }

    // ------------------------------------------------------------------------------ link

    fn link_up(&mut self, name: String, out: &mut Vec<Output>) {
        info!(link = %name, "CTI link {name} is selected; re-monitoring");
        self.link_name = name;
        self.link = LinkState::Syncing {
            deadline_ms: self.now.mono_ms + self.cfg.resync_timeout_ms,
        };
        let mut numbers: Vec<String> = self
            .dns
            .values()
            .filter(|d| d.wants_monitor() && matches!(d.monitor, Monitor::Off))
            .map(|d| d.number.clone())
            .collect();
        // ACD queues and routing points first, then the rest (tserver-behaviour §2.4).
        numbers.sort_by_key(|n| {
            let t = self.dns[n].dn_type;
            (
                !matches!(t, AddressType::Queue | AddressType::RouteDn),
                n.clone(),
            )
        });
        for n in numbers {
            self.start_monitor(&n, true);
        }
        self.maybe_synced(out);
    }

    fn maybe_synced(&mut self, out: &mut Vec<Output>) {
        if let LinkState::Syncing { .. } = self.link {
            if self.sync_tags.is_empty() {
                self.finish_sync(out);
            }
        }
    }

    fn finish_sync(&mut self, out: &mut Vec<Output>) {
        self.sync_tags.clear();
        // Pairs nobody can observe any more are dropped (§4.12).
        let stale: Vec<(String, String)> = self
            .hd
            .pairs()
            .into_iter()
            .filter(|(g, h)| !self.is_monitored(g) && !self.is_monitored(h))
            .collect();
        for (g, _) in stale {
            debug!(guest = %g, "dropping hot-desk pair no longer monitored");
            self.hd.remove_guest(&g);
            self.forget_if_unused(&g);
        }
        self.link = LinkState::Up;
        info!(
            monitored = self.xref.len(),
            "link operational; EventLinkConnected"
        );
        let ev = self.link_event(true, None);
        let all = self.all_clients();
        self.emit(out, all, ev);
    }

    fn link_down(&mut self, reason: &str, out: &mut Vec<Output>) {
        let was = self.link;
        self.link = LinkState::Down;
        warn!(%reason, "link lost");
        let pending = self.window.clear();
        self.sync_tags.clear();
        self.xref.clear();
        let numbers: Vec<String> = self.dns.keys().cloned().collect();
        for n in &numbers {
            if let Some(d) = self.dns.get_mut(n) {
                d.monitor = Monitor::Off;
                d.query_tag = None;
            }
        }
        self.expects_link_down(out);
        self.snapshot_parts.clear();
        for (_, kind) in pending {
            match kind {
                PendingKind::Call { .. }
                | PendingKind::Snapshot { .. }
                | PendingKind::AgentQuery { .. } => {}
                PendingKind::MonitorStart { dn } | PendingKind::HdQuery { dn, .. } => {
                    self.release_waiters(&dn, out);
                }
                PendingKind::MonitorStop => {}
                PendingKind::HdService(s) => {
                    self.finish_service_failed(*s, 54, "no link to the CSTA Connector", None, out);
                }
            }
        }
        for (_, q) in std::mem::take(&mut self.hd_waiting) {
            for (client, req) in q {
                self.error(
                    out,
                    client,
                    &req,
                    54,
                    "no link to the CSTA Connector".into(),
                );
            }
        }
        self.hd_busy.clear();
        if was != LinkState::Down || !self.clients.is_empty() {
            let ev = self.link_event(false, Some(reason));
            let all = self.all_clients();
            self.emit(out, all, ev);
        }
        for n in numbers {
            self.forget_if_unused(&n);
        }
    }

    fn tick(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        for (tag, kind) in self.window.expired(now) {
            self.sync_tags.remove(&tag);
            match kind {
                PendingKind::MonitorStart { dn } => {
                    warn!(%dn, "MonitorStart timed out");
                    if let Some(d) = self.dns.get_mut(&dn) {
                        d.monitor = Monitor::Off;
                    }
                    self.release_waiters(&dn, out);
                }
                PendingKind::HdQuery { dn, .. } => {
                    warn!(%dn, "hot-desking query timed out");
                    if let Some(d) = self.dns.get_mut(&dn) {
                        d.query_tag = None;
                    }
                    self.release_waiters(&dn, out);
                }
                PendingKind::MonitorStop => {}
                PendingKind::Call { expect, .. } => self.call_timeout(expect, out),
                PendingKind::Snapshot { dn } => warn!(%dn, "SnapshotDevice timed out"),
                PendingKind::AgentQuery { dn, .. } => warn!(%dn, "GetAgentState timed out"),
                PendingKind::HdService(s) => {
                    if s.held.is_some() {
                        self.finish_service_ok(*s, out);
                    } else {
                        self.finish_service_failed(
                            *s,
                            57,
                            "no answer from the CSTA Connector",
                            None,
                            out,
                        );
                    }
                }
            }
        }
        self.expect_tick(out);
        if let LinkState::Syncing { deadline_ms } = self.link {
            if deadline_ms <= now {
                warn!(
                    left = self.sync_tags.len(),
                    "resync-timeout reached; the rest continues in the background"
                );
                self.finish_sync(out);
            }
        }
        self.maybe_synced(out);
    }

    // ------------------------------------------------------------------------------ CSTA input

    fn answer(&mut self, invoke_id: InvokeId, msg: Result<Message, String>, out: &mut Vec<Output>) {
        let Some((tag, kind)) = self.window.answer(invoke_id) else {
            self.counters.late_answers += 1;
            debug!(%invoke_id, "answer for no pending request (late or unknown)");
            return;
        };
        self.sync_tags.remove(&tag);
        match kind {
            PendingKind::MonitorStart { dn } => self.monitor_answer(&dn, msg, out),
            PendingKind::MonitorStop => {}
            PendingKind::HdQuery { dn, resync } => self.query_answer(&dn, resync, msg, out),
            PendingKind::HdService(s) => self.service_answer(*s, msg, out),
            PendingKind::Call { expect, origin } => self.call_answer(expect, origin, msg, out),
            PendingKind::Snapshot { dn } => self.snapshot_answer(&dn, msg, out),
            PendingKind::AgentQuery { dn, resync } => self.agent_answer(&dn, resync, msg, out),
        }
        self.maybe_synced(out);
    }

    fn monitor_answer(&mut self, dn: &str, msg: Result<Message, String>, out: &mut Vec<Output>) {
        match msg {
            Ok(Message::MonitorStartResponse(r)) => {
                let xref = r.monitor_cross_ref_id;
                debug!(%dn, %xref, "monitored");
                self.xref.insert(xref.clone(), dn.to_string());
                let Some(d) = self.dns.get_mut(dn) else {
                    return;
                };
                d.monitor = Monitor::Active { xref };
                if !d.wants_monitor() {
                    // Everybody left while MonitorStart was in flight.
                    self.sync_monitor(dn);
                    self.release_waiters(dn, out);
                    return;
                }
                let resync = self.link != LinkState::Up;
                let snapshot = d.dn_type != AddressType::Unknown;
                let is_ext = d.dn_type == AddressType::Dn;
                let d_type_is_position = d.dn_type == AddressType::Position;
                if snapshot {
                    self.start_snapshot(dn);
                }
                if is_ext || d_type_is_position {
                    self.start_agent_query(dn, resync);
                }
                if is_ext && self.hd_supported {
                    self.start_query(dn, resync);
                } else {
                    self.release_waiters(dn, out);
                }
            }
            Ok(Message::CstaErrorCode(e)) => {
                warn!(%dn, error = %e.error, "MonitorStart refused");
                if let Some(d) = self.dns.get_mut(dn) {
                    d.monitor = Monitor::Off;
                }
                let msg = format!("the switch refused to monitor {dn}: {}", e.error);
                self.fail_waiters(dn, 0, &msg, Some(&e.error), out);
            }
            Ok(other) => {
                warn!(%dn, answer = other.name(), "unexpected answer to MonitorStart");
                if let Some(d) = self.dns.get_mut(dn) {
                    d.monitor = Monitor::Off;
                }
                let msg = format!("unexpected answer {} to MonitorStart", other.name());
                self.fail_waiters(dn, 1121, &msg, None, out);
            }
            Err(reason) => {
                if let Some(d) = self.dns.get_mut(dn) {
                    d.monitor = Monitor::Off;
                }
                let msg = format!("malformed answer to MonitorStart: {reason}");
                self.fail_waiters(dn, 1102, &msg, None, out);
            }
        }
    }

    fn query_answer(
        &mut self,
        dn: &str,
        resync: bool,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        if let Some(d) = self.dns.get_mut(dn) {
            d.query_tag = None;
        }
        match msg {
            Ok(Message::EscapeResponse(r)) => {
                let pair = match r.private_data().and_then(|p| p.hotdesk()) {
                    Some(HotDesk::Extension {
                        guest: Some(g),
                        host: Some(h),
                        ..
                    }) if g == dn => Some(h.clone()),
                    Some(HotDesk::Extension { .. }) => None,
                    _ => {
                        warn!(%dn, "hot-desking query answer without the dialect's data");
                        None
                    }
                };
                let changes = match pair {
                    Some(h) => self.hd.apply_established(dn, &h),
                    None => self.hd.apply_cancelled(dn, None),
                };
                if resync {
                    for c in changes {
                        self.distribute(c, out);
                    }
                }
            }
            Ok(Message::CstaErrorCode(e)) => {
                if errors::is_dialect_unsupported(&e.error) {
                    if self.hd_supported {
                        warn!(error = %e.error, "the Connector does not support hot desking; disabling it on this link");
                    }
                    self.hd_supported = false;
                } else {
                    warn!(%dn, error = %e.error, "hot-desking query failed");
                }
            }
            Ok(other) => {
                warn!(%dn, answer = other.name(), "unexpected answer to the hot-desking query")
            }
            Err(reason) => warn!(%dn, %reason, "malformed answer to the hot-desking query"),
        }
        self.release_waiters(dn, out);
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
                if let Some(dn) = self.xref.remove(&m.monitor_cross_ref_id) {
                    warn!(%dn, xref = %m.monitor_cross_ref_id, "the Connector stopped a monitor; re-monitoring");
                    if let Some(d) = self.dns.get_mut(&dn) {
                        d.monitor = Monitor::Off;
                    }
                    self.sync_monitor(&dn);
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
        if !self.xref.contains_key(xref) {
            self.counters.unknown_cross_ref += 1;
            debug!(event = msg.name(), %xref, "event for an unknown monitorCrossRefID dropped");
            return;
        }
        if !matches!(msg, Message::PrivateEvent(_)) {
            let d = self.xref[xref].clone();
            self.call_model_event(&d, &msg, out);
            return;
        }
        if let Message::PrivateEvent(pe) = &msg {
            match pe.private_data.as_ref().and_then(|p| p.hotdesk()) {
                Some(HotDesk::Event { state, guest, host }) => {
                    let established = *state == ctid_csta::HotDeskState::Established;
                    if !established && *state != ctid_csta::HotDeskState::Cancelled {
                        warn!(state = %state, "unknown hot-desking state ignored");
                        return;
                    }
                    self.hotdesk_event(established, guest.clone(), host.clone(), out);
                }
                _ => debug!("private event of another dialect ignored"),
            }
        }
    }

    // ------------------------------------------------------------------------------ hot desking

    /// Keep the internal monitor of agent-login guests in step with the association table and
    /// the host's agent (tserver-behaviour §4.10).
    pub(crate) fn agent_login_sync(&mut self, guest: &str) {
        let linked = self.hd.host_of(guest).is_some_and(|h| {
            self.dns
                .get(h)
                .and_then(|d| d.agent.as_ref())
                .is_some_and(|a| a.agent_id == guest)
        });
        match self.dns.get_mut(guest) {
            Some(d) if d.internal == linked => return,
            Some(d) => d.internal = linked,
            None if linked => {
                let mut d = Dn::unconfigured(guest, AddressType::Dn);
                d.internal = true;
                self.dns.insert(guest.to_string(), d);
            }
            None => return,
        }
        info!(%guest, linked, "agent-login hot desk: internal monitor of the guest");
        self.sync_monitor(guest);
    }

    fn distribute(&mut self, c: Change, out: &mut Vec<Output>) {
        let to = self.registrants(&[&c.guest, &c.host]);
        if c.synthesized {
            info!(guest = %c.guest, host = %c.host, id = c.msg_id(), "synthesized hot-desk change");
        }
        let ev = Event::hot_desk(c.msg_id(), c.guest.clone(), c.host.clone());
        self.emit(out, to, ev);
        self.agent_login_sync(&c.guest);
        if c.established {
            for n in [&c.guest, &c.host] {
                self.forget_if_unused(n);
            }
        } else {
            let (g, h) = (c.guest.clone(), c.host.clone());
            self.forget_if_unused(&g);
            self.forget_if_unused(&h);
        }
    }

    fn hotdesk_event(
        &mut self,
        established: bool,
        guest: String,
        host: String,
        out: &mut Vec<Output>,
    ) {
        // A private service for this guest waiting for its answer holds a matching event.
        if let Some(tag) = self.hd_busy.get(&guest).copied() {
            let matches = match self.window.kind(tag) {
                Some(PendingKind::HdService(s)) => {
                    s.held.is_none()
                        && if s.service == 1 {
                            established && s.host.as_deref() == Some(host.as_str())
                        } else {
                            !established
                        }
                }
                _ => false,
            };
            if matches {
                let mut changes = if established {
                    self.hd.apply_established(&guest, &host)
                } else {
                    self.hd.apply_cancelled(&guest, Some(&host))
                };
                let main = changes.pop();
                for c in changes {
                    self.distribute(c, out);
                }
                if let Some(PendingKind::HdService(s)) = self.window.kind_mut(tag) {
                    s.held = Some(main.unwrap_or(Change {
                        established,
                        guest: guest.clone(),
                        host: host.clone(),
                        synthesized: false,
                    }));
                }
                return;
            }
        }
        let changes = if established {
            self.hd.apply_established(&guest, &host)
        } else {
            self.hd.apply_cancelled(&guest, Some(&host))
        };
        if changes.is_empty() {
            self.counters.duplicate_private_events += 1;
            debug!(%guest, %host, established, "duplicate hot-desking event");
        }
        for c in changes {
            self.distribute(c, out);
        }
    }

    fn private_service(&mut self, client: ClientId, req: Request, out: &mut Vec<Output>) {
        let Some(id) = req.private_msg_id else {
            return self.error(out, client, &req, 53, "PrivateMsgID missing".into());
        };
        if id != 1 && id != 2 {
            return self.error(
                out,
                client,
                &req,
                51,
                format!("PrivateMsgID {id} is not supported"),
            );
        }
        if !self.hd_supported {
            return self.error(out, client, &req, 51, "hot desking not available".into());
        }
        if self.link != LinkState::Up {
            return self.error(
                out,
                client,
                &req,
                54,
                "no link to the CSTA Connector".into(),
            );
        }
        let Some(guest) = req.this_dn.clone() else {
            return self.error(out, client, &req, 53, "ThisDN missing".into());
        };
        let reg = self
            .dns
            .get(&guest)
            .and_then(|d| d.regs.get(&client).map(|r| (r.mode, d.dn_type)));
        let Some((mode, dn_type)) = reg else {
            return self.error(out, client, &req, 41, "ThisDN not registered".into());
        };
        if mode == RegisterMode::Monitor {
            return self.error(
                out,
                client,
                &req,
                41,
                "ThisDN registered in ModeMonitor".into(),
            );
        }
        if dn_type != AddressType::Dn {
            return self.error(out, client, &req, 53, "ThisDN is not an Extension".into());
        }
        let host = if id == 1 {
            let h = match req
                .extensions
                .as_ref()
                .map(|e| (e.get_str("HOST_DN"), e.get("HOST_DN")))
            {
                Some((Some(h), _)) => h.to_string(),
                Some((None, Some(_))) => {
                    return self.error(out, client, &req, 53, "HOST_DN must be a string".into());
                }
                _ => return self.error(out, client, &req, 53, "HOST_DN missing".into()),
            };
            if h.is_empty() || !ctid_protocol::is_valid_dn(&h) {
                return self.error(
                    out,
                    client,
                    &req,
                    53,
                    format!("HOST_DN {h:?} is not a valid DN"),
                );
            }
            if h == guest {
                return self.error(out, client, &req, 53, "HOST_DN equals ThisDN".into());
            }
            Some(h)
        } else {
            self.hd.host_of(&guest).map(str::to_string)
        };
        if self.hd_busy.contains_key(&guest) {
            self.hd_waiting
                .entry(guest)
                .or_default()
                .push_back((client, req));
            return;
        }
        let hd = match &host {
            Some(h) if id == 1 => HotDesk::associate(&guest, h),
            _ => HotDesk::cancel(&guest),
        };
        let msg = Message::Escape(ctid_csta::Escape {
            escape_register_id: None,
            private_data: Some(hd.into_private_data()),
            extensions: None,
        });
        let svc = HdService {
            client,
            request: req,
            guest: guest.clone(),
            host,
            service: id,
            held: None,
        };
        let tag = self.send(PendingKind::HdService(Box::new(svc)), msg);
        self.hd_busy.insert(guest, tag);
    }

    fn service_answer(
        &mut self,
        s: HdService,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        match msg {
            Ok(Message::EscapeResponse(_)) => self.finish_service_ok(s, out),
            Ok(Message::CstaErrorCode(e)) => {
                let text = match (&e.error, s.service) {
                    (ctid_csta::CstaError::StateIncompatibility(_), 1) => {
                        format!("hot desking: guest {} is already associated", s.guest)
                    }
                    (ctid_csta::CstaError::StateIncompatibility(_), _) => {
                        format!("hot desking: guest {} is not associated", s.guest)
                    }
                    (
                        ctid_csta::CstaError::Operation(ctid_csta::OperationError::InvalidDeviceID),
                        _,
                    ) => "hot desking: unknown device".to_string(),
                    (ctid_csta::CstaError::SystemResourceAvailability(_), _) => format!(
                        "hot desking: host {} is in use by another guest",
                        s.host.as_deref().unwrap_or("")
                    ),
                    (err, _) => format!("hot desking refused by the Connector: {err}"),
                };
                if errors::is_dialect_unsupported(&e.error) {
                    warn!(error = %e.error, "the Connector does not support hot desking; disabling it");
                    self.hd_supported = false;
                    let req = s.request.clone();
                    self.finish_service_failed(s, 51, "hot desking not available", None, out);
                    let _ = req;
                    return;
                }
                let err = e.error.clone();
                self.finish_service_failed(s, 0, &text, Some(&err), out);
            }
            Ok(other) => {
                let text = format!(
                    "unexpected answer {} to the hot-desking service",
                    other.name()
                );
                self.finish_service_failed(s, 1121, &text, None, out);
            }
            Err(reason) => {
                let text = format!("malformed answer from the Connector: {reason}");
                self.finish_service_failed(s, 1102, &text, None, out);
            }
        }
    }

    fn finish_service_ok(&mut self, s: HdService, out: &mut Vec<Output>) {
        let main = match s.held.clone() {
            Some(c) => Some(c),
            None => {
                let mut changes = if s.service == 1 {
                    self.hd
                        .apply_established(&s.guest, s.host.as_deref().unwrap_or(""))
                } else {
                    self.hd.apply_cancelled(&s.guest, s.host.as_deref())
                };
                let main = changes.pop();
                for c in changes {
                    self.distribute(c, out);
                }
                main
            }
        };
        let (msg_id, host, others) = match &main {
            Some(c) => (
                c.msg_id(),
                c.host.clone(),
                self.registrants(&[&c.guest, &c.host]),
            ),
            // Already in that state (a duplicate): only the requester needs its answer.
            None => (s.service, s.host.clone().unwrap_or_default(), Vec::new()),
        };
        let ev = Event::hot_desk(msg_id, s.guest.clone(), host);
        self.emit_answer(out, s.client, s.request.reference_id, others, ev);
        self.agent_login_sync(&s.guest);
        self.service_done(&s.guest, out);
    }

    fn finish_service_failed(
        &mut self,
        s: HdService,
        code: u32,
        text: &str,
        csta: Option<&ctid_csta::CstaError>,
        out: &mut Vec<Output>,
    ) {
        match csta {
            Some(e) => self.csta_error(out, s.client, &s.request, e, text.to_string()),
            None => self.error(out, s.client, &s.request, code, text.to_string()),
        }
        if let Some(c) = s.held.clone() {
            // The change happened anyway: everyone learns of it.
            self.distribute(c, out);
        }
        self.service_done(&s.guest, out);
    }

    fn service_done(&mut self, guest: &str, out: &mut Vec<Output>) {
        self.hd_busy.remove(guest);
        let next = self.hd_waiting.get_mut(guest).and_then(|q| q.pop_front());
        if self.hd_waiting.get(guest).is_some_and(|q| q.is_empty()) {
            self.hd_waiting.remove(guest);
        }
        if let Some((client, req)) = next {
            self.private_service(client, req, out);
        }
    }
}
