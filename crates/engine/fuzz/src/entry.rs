//! The fuzz entry function of the engine: [`sequence`] reads the bytes as a program of inputs
//! and drives one [`Engine`] with it — clients connecting, sending requests (built from a few
//! DNs, ConnIDs the engine handed out, modes, private services, user data; or raw text) and going
//! away; the link coming up and going down; the Connector answering the engine's requests
//! (mostly with the right kind of answer, sometimes with an error, a malformed answer or the
//! wrong one), sending events and requests (MonitorStop, SystemStatus); time passing. CSTA
//! messages come from the ctid-csta fixtures with their devices, call IDs, crossRefIDs, states
//! and causes replaced by values the program picks, so the events talk about the engine's calls.
//!
//! It must never panic, and after every input (a panic here is a finding):
//!
//! * events go only to clients that are connected (answers to requests a client sent before it
//!   went away are tolerated: a known engine bug, the server drops them);
//! * `EventSequenceNumber` strictly increases from one event to the next (the copies of one
//!   event — the requester's with its ReferenceID, the others' without — share it);
//! * an invoke ID is never handed out while in flight, and no more than `max-outstanding` are in
//!   flight;
//! * no request gets two answers (events carrying its ReferenceID to its client);
//! * hot-desk pairs: a guest has one host, a host one guest;
//!
//! and at the end, after the link goes down and an hour passes, every request of a client that is
//! still connected has had exactly one answer (docs/protocol.md, §6 and §9.2), and a second engine
//! fed the same inputs at the same times gives byte-identical outputs (the engine is
//! deterministic: docs/architecture.md, "Recording and replay").
//!
//! This file is compiled twice: by the fuzz crate (`crates/engine/fuzz`) and, included by path,
//! by the regular test `crates/engine/tests/fuzz_corpus.rs`. It may use only `ctid_engine`,
//! `ctid_csta`, `ctid_protocol` and `std`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ctid_csta::{InvokeId, Message, MessageKind};
use ctid_engine::config::AgentLoginConfig;
use ctid_engine::{ClientId, DnConfig, Engine, EngineConfig, Input, Now, Output, RegisterFlag};
use ctid_protocol::{
    AddressInfoType, AddressType, ConnId, ControlMode, KvList, RegisterMode, Request, RequestName,
};

/// The DNs programs talk about (4001 and 9999 are not configured).
const DNS: &[&str] = &[
    "1001", "1002", "1003", "2001", "2002", "3001", "3101", "4001", "9999",
];
const CALL_IDS: &[&str] = &["C1", "C2", "C3", "C4"];
const STATES: &[&str] = &[
    "connected",
    "alerting",
    "initiated",
    "hold",
    "queued",
    "fail",
    "null",
];
const CAUSES: &[&str] = &[
    "normalClearing",
    "newCall",
    "transfer",
    "conference",
    "busy",
    "callNotAnswered",
    "redirected",
    "distributed",
    "singleStepTransfer",
    "consultation",
    "makeCall",
    "enteringDistribution",
    "callForwardImmediate",
];
const MAX_OUTSTANDING: usize = 4;
/// Raw text from this client is not checked for answers (its ReferenceIDs are arbitrary).
const RAW_CLIENT: ClientId = 9;

macro_rules! fixtures {
    ($($f:literal),* $(,)?) => {
        &[$(include_str!(concat!("../../../csta/tests/fixtures/", $f))),*]
    };
}

/// Events and Connector requests.
const EVENTS: &[&str] = fixtures![
    "spec-17-ServiceInitiatedEvent.xml",
    "spec-18-OriginatedEvent.xml",
    "spec-19-DeliveredEvent.xml",
    "spec-20-EstablishedEvent.xml",
    "spec-21-ConnectionClearedEvent.xml",
    "spec-22-CallClearedEvent.xml",
    "spec-23-HeldEvent.xml",
    "spec-24-RetrievedEvent.xml",
    "spec-25-TransferedEvent.xml",
    "spec-26-ConferencedEvent.xml",
    "spec-27-DivertedEvent.xml",
    "spec-28-FailedEvent.xml",
    "spec-29-QueuedEvent.xml",
    "spec-30-NetworkReachedEvent.xml",
    "spec-31-AgentLoggedOnEvent.xml",
    "spec-32-AgentNotReadyEvent.xml",
    "spec-33-AgentWorkingAfterCallEvent.xml",
    "spec-34-ForwardingEvent.xml",
    "spec-35-DoNotDisturbEvent.xml",
    "spec-36-OutOfServiceEvent.xml",
    "spec-37-CallInformationEvent.xml",
    "spec-77-PrivateEvent.xml",
    "spec-78-PrivateEvent.xml",
    "spec-84-PrivateEvent.xml",
    "AgentLoggedOffEvent.xml",
    "AgentReadyEvent.xml",
    "AgentBusyEvent.xml",
    "BackInServiceEvent.xml",
    "SnapshotDeviceData.xml",
    "unknown-private-PrivateEvent.xml",
    "spec-13-MonitorStop.xml",
    "spec-09-SystemStatus.xml",
];

/// Answers (positive responses and errors).
const ANSWERS: &[&str] = fixtures![
    "MonitorStartResponse.xml",
    "spec-14-MonitorStopResponse.xml",
    "spec-16-SnapshotDeviceResponse.xml",
    "SnapshotDeviceResponse-empty.xml",
    "SnapshotDeviceResponse-crossref.xml",
    "spec-39-MakeCallResponse.xml",
    "spec-41-AnswerCallResponse.xml",
    "spec-43-ClearConnectionResponse.xml",
    "spec-45-ClearCallResponse.xml",
    "spec-47-HoldCallResponse.xml",
    "spec-49-RetrieveCallResponse.xml",
    "spec-51-ConsultationCallResponse.xml",
    "TransferCallResponse.xml",
    "ConferenceCallResponse.xml",
    "spec-55-SingleStepTransferCallResponse.xml",
    "spec-58-DeflectCallResponse.xml",
    "spec-60-AlternateCallResponse.xml",
    "spec-62-ReconnectCallResponse.xml",
    "spec-64-GenerateDigitsResponse.xml",
    "spec-66-SetAgentStateResponse.xml",
    "spec-68-GetAgentStateResponse.xml",
    "spec-70-SetForwardingResponse.xml",
    "spec-72-GetForwardingResponse.xml",
    "spec-74-SetDoNotDisturbResponse.xml",
    "spec-76-EscapeResponse.xml",
    "spec-83-EscapeResponse.xml",
    "spec-86-EscapeResponse.xml",
    "spec-88-EscapeResponse.xml",
    "spec-11-CSTAErrorCode.xml",
    "spec-79-CSTAErrorCode.xml",
    "spec-80-CSTAErrorCode.xml",
    "spec-81-CSTAErrorCode.xml",
    "CSTAErrorCode-unspecified.xml",
];

/// The requests programs send (with attributes picked per request).
const REQUESTS: &[RequestName] = &[
    RequestName::RequestRegisterAddress,
    RequestName::RequestRegisterAddress,
    RequestName::RequestUnregisterAddress,
    RequestName::RequestQueryAddress,
    RequestName::RequestQueryServer,
    RequestName::RequestRegisterClient,
    RequestName::RequestPrivateService,
    RequestName::RequestMakeCall,
    RequestName::RequestAnswerCall,
    RequestName::RequestReleaseCall,
    RequestName::RequestHoldCall,
    RequestName::RequestRetrieveCall,
    RequestName::RequestInitiateTransfer,
    RequestName::RequestCompleteTransfer,
    RequestName::RequestInitiateConference,
    RequestName::RequestCompleteConference,
    RequestName::RequestSingleStepTransfer,
    RequestName::RequestMuteTransfer,
    RequestName::RequestAlternateCall,
    RequestName::RequestReconnectCall,
    RequestName::RequestRedirectCall,
    RequestName::RequestClearCall,
    RequestName::RequestDeleteFromConference,
    RequestName::RequestSendDTMF,
    RequestName::RequestAgentLogin,
    RequestName::RequestAgentReady,
    RequestName::RequestAgentNotReady,
    RequestName::RequestAgentLogout,
    RequestName::RequestCallForwardSet,
    RequestName::RequestCallForwardCancel,
    RequestName::RequestSetDNDOn,
    RequestName::RequestSetDNDOff,
    RequestName::RequestAttachUserData,
    RequestName::RequestUpdateUserData,
    RequestName::RequestDeletePair,
    RequestName::RequestDeleteUserData,
    RequestName::RequestRouteCall,
];

/// The program: bytes read one at a time, zeros once they run out.
struct Prog<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Prog<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn pick<'s, T>(&mut self, from: &'s [T]) -> &'s T {
        &from[self.byte() as usize % from.len()]
    }
    fn chance(&mut self, of_256: u8) -> bool {
        self.byte() < of_256
    }
}

/// Replace the text of the elements this program controls: devices, call IDs, crossRefIDs,
/// states, causes, hot-desking state.
fn rewrite(xml: &str, p: &mut Prog<'_>, xrefs: &[String]) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(j) = rest.find('>') else { break };
        let tag = &rest[1..j];
        out.push_str(&rest[..=j]);
        rest = &rest[j + 1..];
        if tag.starts_with('/') || tag.starts_with('?') || tag.contains(' ') || tag.ends_with('/') {
            continue;
        }
        let Some(k) = rest.find('<') else { continue };
        if !rest[k..].starts_with(&format!("</{tag}>")) || rest[..k].trim().is_empty() {
            continue;
        }
        let local = tag.rsplit(':').next().unwrap_or(tag);
        let value: Option<String> = match local {
            "deviceIdentifier"
            | "deviceID"
            | "agentID"
            | "forwardTo"
            | "acdGroup"
            | "guest"
            | "host"
            | "callingDevice"
            | "calledDirectoryNumber"
            | "snapshotObject" => Some(p.pick(DNS).to_string()),
            "callID" => Some(p.pick(CALL_IDS).to_string()),
            "monitorCrossRefID" => Some(if xrefs.is_empty() || p.chance(16) {
                "x0".to_string()
            } else {
                p.pick(xrefs).clone()
            }),
            "localConnectionInfo" | "localConnectionState" => Some(p.pick(STATES).to_string()),
            "cause" => Some(p.pick(CAUSES).to_string()),
            "state" => Some(
                if p.chance(128) {
                    "established"
                } else {
                    "cancelled"
                }
                .to_string(),
            ),
            _ => None,
        };
        if let Some(v) = value {
            out.push_str(&v);
            rest = &rest[k..];
        }
    }
    out.push_str(rest);
    out
}

/// The local name of a document's root element.
fn root(xml: &str) -> &str {
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find([' ', '>', '/']).unwrap_or(rest.len());
        return rest[..end].rsplit(':').next().unwrap_or("");
    }
    ""
}

fn config() -> EngineConfig {
    let dn = |n: &str, t, r| DnConfig {
        number: n.into(),
        dn_type: t,
        register: r,
    };
    EngineConfig {
        dns: vec![
            dn("1001", AddressType::Dn, RegisterFlag::True),
            dn("1002", AddressType::Dn, RegisterFlag::True),
            dn("1003", AddressType::Dn, RegisterFlag::OnDemand),
            dn("2001", AddressType::Dn, RegisterFlag::OnDemand),
            dn("2002", AddressType::Dn, RegisterFlag::False),
            dn("3001", AddressType::Queue, RegisterFlag::True),
            dn("3101", AddressType::RouteDn, RegisterFlag::True),
        ],
        agent_logins: vec![AgentLoginConfig {
            agent_id: "2001".into(),
            password: Some("pw".into()),
        }],
        request_timeout_ms: 1_000,
        max_outstanding: MAX_OUTSTANDING,
        resync_timeout_ms: 3_000,
        agent_logout_on_unregister: true,
        ..EngineConfig::default()
    }
}

/// The engine and what the harness knows about it.
struct Harness {
    engine: Engine,
    now: Now,
    out: Vec<Output>,
    connected: BTreeSet<ClientId>,
    /// Clients that disconnected (and did not come back).
    gone: BTreeSet<ClientId>,
    /// Invoke IDs in flight and the request each carries.
    pending: BTreeMap<InvokeId, Message>,
    /// monitorCrossRefIDs handed out so far (each new one is unique, as a Connector's are).
    next_xref: u64,
    xrefs: Vec<String>,
    conn_ids: Vec<ConnId>,
    last_seq: u64,
    last_event: Option<(ctid_protocol::EventName, Option<String>)>,
    next_ref: u32,
    /// (client, ReferenceID) → answers seen.
    asked: HashMap<(ClientId, u32), u32>,
    link_up: bool,
    /// Every input with its time, and the JSON text of every output (for the replay check).
    log: Vec<(Now, Input)>,
    outputs: Vec<String>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            engine: Engine::new(config()),
            now: Now {
                mono_ms: 1_000,
                unix_micros: 1_764_000_000_000_000,
            },
            out: Vec::new(),
            connected: BTreeSet::new(),
            gone: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_xref: 0,
            xrefs: Vec::new(),
            conn_ids: Vec::new(),
            last_seq: 0,
            last_event: None,
            next_ref: 0,
            asked: HashMap::new(),
            link_up: false,
            log: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) {
        if std::env::var_os("CTID_FUZZ_TRACE").is_some() {
            eprintln!("in  {input:?}");
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.log.push((self.now, input.clone()));
        self.engine.handle(self.now, input, &mut out);
        for o in &out {
            self.outputs.push(o.to_json().to_string());
            self.output(o);
        }
        self.out = out;
        self.invariants();
    }

    fn output(&mut self, o: &Output) {
        if std::env::var_os("CTID_FUZZ_TRACE").is_some() {
            match o {
                Output::Event { to, event, .. } => eprintln!("out {to:?} {}", event.to_json()),
                other => eprintln!("out {other:?}"),
            }
        }
        match o {
            Output::Event { to, event, .. } => {
                for c in to {
                    // Known engine bug (issue 6 report): an answer to a request a client sent
                    // before it disconnected may still be addressed to it (the server drops it);
                    // anything unsolicited must not be.
                    assert!(
                        self.connected.contains(c)
                            || (event.reference_id.is_some() && self.gone.contains(c)),
                        "{} to client {c}, which is not connected",
                        event.name.as_str()
                    );
                }
                // Copies of one event (the requester's with its ReferenceID, the others'
                // without) share a number; distinct events never do.
                let copy = event.event_sequence_number == self.last_seq
                    && self
                        .last_event
                        .as_ref()
                        .is_some_and(|(n, dn)| *n == event.name && *dn == event.this_dn);
                assert!(
                    event.event_sequence_number > self.last_seq || copy,
                    "EventSequenceNumber {} after {} ({})",
                    event.event_sequence_number,
                    self.last_seq,
                    event.to_json()
                );
                self.last_seq = event.event_sequence_number;
                self.last_event = Some((event.name, event.this_dn.clone()));
                if let Some(r) = event.reference_id {
                    for c in to {
                        if let Some(n) = self.asked.get_mut(&(*c, r)) {
                            *n += 1;
                            assert!(
                                *n == 1,
                                "client {c} got a second answer to ReferenceID {r}: {}",
                                event.to_json()
                            );
                        }
                    }
                }
                for c in [event.conn_id, event.previous_conn_id]
                    .into_iter()
                    .flatten()
                {
                    if !self.conn_ids.contains(&c) && self.conn_ids.len() < 16 {
                        self.conn_ids.push(c);
                    }
                }
            }
            Output::CstaRequest {
                invoke_id: tag,
                message,
            } => {
                assert!(self.link_up, "{} sent with the link down", message.name());
                assert!(
                    !self.pending.contains_key(tag),
                    "invoke ID {tag} handed out while in flight"
                );
                self.pending.insert(*tag, message.clone());
            }
            Output::CstaAnswer { .. } => {}
            // The fuzzer's clients have no resumable sessions.
            Output::Rebind { .. } | Output::Close { .. } => {
                panic!("{o:?} without a resumable session")
            }
        }
    }

    fn invariants(&self) {
        assert!(
            self.engine.outstanding() <= MAX_OUTSTANDING,
            "{} CSTA requests in flight",
            self.engine.outstanding()
        );
        let pairs = self.engine.hotdesk_pairs();
        let guests: BTreeSet<&String> = pairs.iter().map(|(g, _)| g).collect();
        let hosts: BTreeSet<&String> = pairs.iter().map(|(_, h)| h).collect();
        assert!(
            guests.len() == pairs.len() && hosts.len() == pairs.len(),
            "hot-desk pairs {pairs:?}"
        );
        let _ = self.engine.dn_views();
        let _ = self.engine.call_views();
    }

    fn request(&mut self, p: &mut Prog<'_>) {
        let client = *p.pick(&[1u64, 2, 3]);
        if self.gone.contains(&client) {
            return;
        }
        if !self.connected.contains(&client) {
            self.connected.insert(client);
            self.input(Input::ClientConnected {
                client,
                peer: format!("fuzz-{client}"),
            });
        }
        let name = *p.pick(REQUESTS);
        let mut r = Request::new(name);
        self.next_ref += 1;
        r.reference_id = Some(self.next_ref);
        if p.chance(240) {
            r.this_dn = Some(p.pick(DNS).to_string());
        }
        if p.chance(128) {
            r.other_dn = Some(p.pick(DNS).to_string());
        }
        if p.chance(160) && !self.conn_ids.is_empty() {
            r.conn_id = Some(*p.pick(&self.conn_ids));
        } else if p.chance(8) {
            r.conn_id = Some(ConnId(u64::from(p.byte())));
        }
        if p.chance(64) && !self.conn_ids.is_empty() {
            r.transfer_conn_id = Some(*p.pick(&self.conn_ids));
        }
        if p.chance(48) && !self.conn_ids.is_empty() {
            r.conference_conn_id = Some(*p.pick(&self.conn_ids));
        }
        if p.chance(64) {
            r.register_mode = Some(*p.pick(&[
                RegisterMode::Share,
                RegisterMode::Private,
                RegisterMode::Monitor,
            ]));
        }
        if p.chance(32) {
            r.control_mode =
                Some(*p.pick(&[ControlMode::Default, ControlMode::Force, ControlMode::Local]));
        }
        if p.chance(32) {
            r.address_type =
                Some(*p.pick(&[AddressType::Dn, AddressType::Queue, AddressType::RouteDn]));
        }
        r.info_type = Some(*p.pick(&[AddressInfoType::DnStatus, AddressInfoType::AddressType]));
        if p.chance(64) {
            r.agent_id = Some(p.pick(DNS).to_string());
        }
        if p.chance(128) {
            r.private_msg_id = Some(u32::from(p.byte() % 4));
        }
        if p.chance(96) {
            let mut k = KvList::new();
            k.insert_str("HOST_DN", *p.pick(DNS));
            r.extensions = Some(k);
        }
        if p.chance(48) {
            let mut k = KvList::new();
            k.insert_str("k", "v");
            if p.chance(64) {
                k.insert_int("n", i64::from(p.byte()));
            }
            r.user_data = Some(k);
            r.data_key = Some("k".into());
        }
        if p.chance(16) {
            r.dtmf_digits = Some("12#".into());
        }
        self.asked.insert((client, self.next_ref), 0);
        let input = if p.chance(64) {
            Input::ClientText {
                client,
                text: r.to_json(),
            }
        } else {
            Input::ClientRequest { client, request: r }
        };
        self.input(input);
    }

    /// The answer the Connector would give to `request`, from the fixtures.
    fn answer_for(&self, request: &Message, p: &mut Prog<'_>) -> Option<Message> {
        if p.chance(24) {
            return self.decode(ANSWERS[28 + p.byte() as usize % 5], p);
        }
        let want = format!("{}Response", request.name());
        let candidates: Vec<&str> = ANSWERS
            .iter()
            .copied()
            .filter(|a| root(a) == want)
            .collect();
        let t = if candidates.is_empty() {
            *p.pick(ANSWERS)
        } else {
            *p.pick(&candidates)
        };
        self.decode(t, p)
    }

    fn decode(&self, xml: &str, p: &mut Prog<'_>) -> Option<Message> {
        let text = rewrite(xml, p, &self.xrefs);
        ctid_csta::decode(text.as_bytes()).ok()
    }

    fn answer(&mut self, p: &mut Prog<'_>) {
        if self.pending.is_empty() {
            return;
        }
        let i = p.byte() as usize % self.pending.len();
        let (tag, req) = {
            let (t, m) = self.pending.iter().nth(i).expect("index below len");
            (*t, m.clone())
        };
        self.pending.remove(&tag);
        if p.chance(8) {
            return self.input(Input::CstaAnswerMalformed {
                invoke_id: tag,
                reason: "fuzz: malformed".into(),
            });
        }
        let Some(mut msg) = self.answer_for(&req, p) else {
            return;
        };
        if let Message::MonitorStartResponse(r) = &mut msg {
            self.next_xref += 1;
            let x = format!("x{}", self.next_xref);
            r.monitor_cross_ref_id = x.as_str().into();
            self.xrefs.push(x);
        }
        self.input(Input::CstaAnswer {
            invoke_id: tag,
            message: msg,
        });
    }

    fn switch_message(&mut self, p: &mut Prog<'_>) {
        let t = *p.pick(EVENTS);
        let Some(msg) = self.decode(t, p) else {
            return;
        };
        let input = match msg.kind() {
            MessageKind::Request => Input::CstaRequest {
                invoke_id: InvokeId::new(u16::from(p.byte())).unwrap_or(InvokeId::EVENT),
                message: msg,
            },
            _ => Input::CstaEvent { message: msg },
        };
        self.input(input);
    }

    fn link_down(&mut self) {
        self.link_up = false;
        self.pending.clear();
        self.xrefs.clear();
        self.input(Input::LinkDown {
            reason: "fuzz".into(),
        });
    }

    fn tick(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_micros += ms * 1_000;
        self.input(Input::Tick);
    }
}

/// Run one program.
pub fn sequence(data: &[u8]) {
    let mut h = Harness::new();
    let mut p = Prog { data, pos: 0 };
    let mut steps = 0;
    while !p.done() && steps < 2_000 {
        steps += 1;
        match p.byte() % 16 {
            0 => {
                let c = *p.pick(&[1u64, 2, 3]);
                if !h.gone.contains(&c) && h.connected.insert(c) {
                    h.input(Input::ClientConnected {
                        client: c,
                        peer: format!("fuzz-{c}"),
                    });
                }
            }
            1 => {
                let c = *p.pick(&[1u64, 2, 3]);
                if h.connected.remove(&c) {
                    h.gone.insert(c);
                    h.asked.retain(|(x, _), _| *x != c);
                    h.input(Input::ClientDisconnected { client: c });
                }
            }
            2..=5 => h.request(&mut p),
            6 => {
                let n = p.byte() as usize % 64;
                let start = p.pos.min(data.len());
                let end = (start + n).min(data.len());
                p.pos = end;
                let text = String::from_utf8_lossy(&data[start..end]).into_owned();
                if h.connected.insert(RAW_CLIENT) {
                    h.input(Input::ClientConnected {
                        client: RAW_CLIENT,
                        peer: "raw".into(),
                    });
                }
                h.input(Input::ClientText {
                    client: RAW_CLIENT,
                    text,
                });
            }
            7 => {
                if !h.link_up {
                    h.link_up = true;
                    h.input(Input::LinkUp {
                        name: "fuzz".into(),
                        priority: None,
                        edition: None,
                    });
                }
            }
            8 => {
                if p.chance(64) {
                    h.link_down();
                }
            }
            9..=11 => h.answer(&mut p),
            12 | 13 => h.switch_message(&mut p),
            14 => {
                let ms = u64::from(p.byte()) * 20;
                h.tick(ms);
            }
            _ => {
                // An answer to a tag that is not pending (late, duplicated or unknown).
                let tag = InvokeId::new(u16::from(p.byte())).unwrap_or(InvokeId::EVENT);
                if !h.pending.contains_key(&tag) {
                    let t: &str = ANSWERS[p.byte() as usize % ANSWERS.len()];
                    if let Some(m) = h.decode(t, &mut p) {
                        h.input(Input::CstaAnswer {
                            invoke_id: tag,
                            message: m,
                        });
                    }
                }
            }
        }
    }
    // The end: the link goes, an hour passes; every request has had its one answer.
    if h.link_up {
        h.link_down();
    }
    for _ in 0..4 {
        h.tick(900_000);
    }
    let unanswered: Vec<_> = h
        .asked
        .iter()
        .filter(|((c, _), n)| **n == 0 && h.connected.contains(c))
        .map(|(k, _)| *k)
        .collect();
    assert!(
        unanswered.is_empty(),
        "requests never answered (client, ReferenceID): {unanswered:?}"
    );
    // Determinism: the same inputs at the same times give the same outputs, byte for byte —
    // also after a trip through the recording's JSON form.
    let mut again = Engine::new(config());
    let mut outputs = Vec::with_capacity(h.outputs.len());
    let mut out = Vec::new();
    for (now, input) in &h.log {
        let input = Input::from_json(&input.to_json())
            .unwrap_or_else(|e| panic!("input does not survive its JSON form: {e}: {input:?}"));
        out.clear();
        again.handle(*now, input, &mut out);
        outputs.extend(out.iter().map(|o| o.to_json().to_string()));
    }
    if let Some(i) =
        (0..h.outputs.len().max(outputs.len())).find(|i| h.outputs.get(*i) != outputs.get(*i))
    {
        panic!(
            "replay differs at output {i}:\n  first:  {:?}\n  replay: {:?}",
            h.outputs.get(i),
            outputs.get(i)
        );
    }
}
