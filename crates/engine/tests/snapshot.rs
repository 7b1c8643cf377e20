//! Engine snapshots (hot standby): an engine restored from a snapshot taken after any input,
//! fed the inputs after it, gives the same outputs and ends in the same state as the engine
//! that ran them all (`testkit::check_snapshots`). Over the regression recordings of
//! crates/replay, over a scenario built to put every part of the engine in a non-empty state at
//! some cut (checked: every field of the snapshot holds a value other than its empty one at
//! some cut), and over bad snapshots, which are errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ctid_csta::{Extensions, HotDesk, InvokeId, Message, PrivateData};
use ctid_engine::config::{AgentLoginConfig, DnPattern, LinkOptions};
use ctid_engine::testkit::{check_snapshots, empty_switch_answer};
use ctid_engine::*;
use ctid_protocol::{AddressType, ConnId, EventName};
use serde_json::{json, Value};

fn recordings() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../replay/tests/recordings");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

/// A recording's configuration and inputs with their times (its outputs are what ctid-replay
/// checks; here A's are the reference).
fn read_recording(path: &PathBuf) -> (EngineConfig, Vec<(Now, Input)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["ctid_recording"], json!(1), "{}", path.display());
    let cfg = EngineConfig::from_json(&header["config"]).unwrap();
    let mut inputs = Vec::new();
    for (i, l) in lines.enumerate() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}", i + 2));
        if v.get("in").is_some() {
            let now = Now::from_json(&v["t"]).unwrap();
            inputs.push((now, Input::from_json(&v).unwrap()));
        }
    }
    (cfg, inputs)
}

#[test]
fn recordings_continue_identically_from_a_snapshot_after_any_input() {
    let files = recordings();
    assert!(!files.is_empty(), "no recordings found");
    for f in files {
        let (cfg, inputs) = read_recording(&f);
        assert!(
            inputs.len() > 100,
            "{}: {} inputs",
            f.display(),
            inputs.len()
        );
        let run =
            check_snapshots(&cfg, &inputs, 1).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(run.cuts.len(), inputs.len() + 1);
    }
}

// ------------------------------------------------------------------------------ the scenario

/// A CSTA message from its JSON form.
fn m(v: Value) -> Message {
    Message::from_json(&v).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// Drives an engine, keeping every input with its time; the CSTA requests it sends wait in
/// `pending` until answered ([`Run::serve`] answers those an empty switch answers at once).
struct Run {
    e: Engine,
    now: Now,
    cfg: EngineConfig,
    log: Vec<(Now, Input)>,
    pending: Vec<(InvokeId, Message)>,
    /// Hot-desk pairs the switch reports to a query: guest → host.
    pairs: BTreeMap<String, String>,
    /// DNs whose MonitorStart the switch refuses (once each).
    refuse_monitor: BTreeSet<String>,
    /// DNs whose SnapshotDevice is answered with a serviceCrossRefID (segments follow).
    segmented: BTreeSet<String>,
    /// Every client event sent, in order.
    events: Vec<(Vec<ClientId>, ctid_protocol::Event)>,
}

impl Run {
    fn new(cfg: EngineConfig) -> Self {
        Run {
            e: Engine::new(cfg.clone()),
            now: Now {
                mono_ms: 1_000,
                unix_micros: 1_790_000_000_000_000,
            },
            cfg,
            log: Vec::new(),
            pending: Vec::new(),
            pairs: BTreeMap::new(),
            refuse_monitor: BTreeSet::new(),
            segmented: BTreeSet::new(),
            events: Vec::new(),
        }
    }

    fn feed(&mut self, i: Input) -> Vec<Output> {
        self.log.push((self.now, i.clone()));
        let mut out = Vec::new();
        self.e.handle(self.now, i, &mut out);
        for o in &out {
            match o {
                Output::CstaRequest { invoke_id, message } => {
                    self.pending.push((*invoke_id, message.clone()))
                }
                Output::Event { to, event, .. } => {
                    self.events.push((to.clone(), (**event).clone()))
                }
                _ => {}
            }
        }
        out
    }

    fn after(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_micros += ms * 1000;
    }

    fn text(&mut self, client: ClientId, v: Value) -> Vec<Output> {
        self.feed(Input::ClientText {
            client,
            text: v.to_string(),
        })
    }

    fn event(&mut self, v: Value) -> Vec<Output> {
        self.feed(Input::CstaEvent { message: m(v) })
    }

    fn answer(&mut self, invoke_id: InvokeId, message: Message) -> Vec<Output> {
        self.pending.retain(|(i, _)| *i != invoke_id);
        self.feed(Input::CstaAnswer { invoke_id, message })
    }

    /// The invoke ID of the first pending request `f` accepts (left pending).
    fn find(&self, f: impl Fn(&Message) -> bool) -> InvokeId {
        self.pending
            .iter()
            .find(|(_, m)| f(m))
            .map(|(i, _)| *i)
            .unwrap_or_else(|| panic!("no such request pending: {:?}", self.pending))
    }

    /// Answer what an empty switch answers at once (monitors, snapshots, agent and feature
    /// queries, hot-desk queries) until nothing of that is pending, but `max` answers at most.
    fn serve_at_most(&mut self, mut max: usize) {
        while max > 0 {
            let next = self.pending.iter().find_map(|(id, msg)| {
                let a = match msg {
                    Message::MonitorStart(ms) => {
                        let ctid_csta::MonitorObject::Device(d) = &ms.monitor_object else {
                            return None;
                        };
                        if self.refuse_monitor.contains(d.as_str()) {
                            m(json!({"message": "CSTAErrorCode", "operation": "generic"}))
                        } else {
                            empty_switch_answer(msg)?
                        }
                    }
                    Message::SnapshotDevice(sd) if self.segmented.contains(sd.snapshot_object.as_str()) => {
                        m(json!({"message": "SnapshotDeviceResponse",
                                 "crossRefIDorSnapshotData": {"serviceCrossRefID": format!("S{}", sd.snapshot_object)}}))
                    }
                    Message::Escape(e) => match e.private_data.as_ref().and_then(|p| p.hotdesk()) {
                        Some(HotDesk::Extension {
                            action: Some(ctid_csta::HotDeskAction::Query),
                            guest: Some(g),
                            ..
                        }) => {
                            let pair = self.pairs.get(g.as_str()).map(|h| (g.as_str(), h.as_str()));
                            Message::EscapeResponse(ctid_csta::EscapeResponse {
                                extensions: Some(Extensions::private(
                                    HotDesk::answer(pair).into_private_data(),
                                )),
                            })
                        }
                        _ => return None,
                    },
                    other => empty_switch_answer(other)?,
                };
                Some((*id, a))
            });
            let Some((id, a)) = next else { return };
            if let Message::CstaErrorCode(_) = &a {
                // refused once: the retry is answered
                let dn =
                    self.pending
                        .iter()
                        .find(|(i, _)| *i == id)
                        .and_then(|(_, msg)| match msg {
                            Message::MonitorStart(ms) => match &ms.monitor_object {
                                ctid_csta::MonitorObject::Device(d) => Some(d.clone()),
                                _ => None,
                            },
                            _ => None,
                        });
                if let Some(d) = dn {
                    self.refuse_monitor.remove(d.as_str());
                }
            }
            self.answer(id, a);
            max -= 1;
        }
    }

    fn serve(&mut self) {
        self.serve_at_most(usize::MAX);
    }

    /// The ConnID of the last event `name` sent.
    fn conn(&self, name: EventName) -> ConnId {
        self.events
            .iter()
            .rev()
            .find(|(_, e)| e.name == name && e.conn_id.is_some())
            .and_then(|(_, e)| e.conn_id)
            .unwrap_or_else(|| panic!("no {name} with a ConnID"))
    }
}

fn dn(number: &str, t: AddressType, register: RegisterFlag) -> DnConfig {
    DnConfig {
        number: number.into(),
        dn_type: t,
        register,
    }
}

/// A configuration where every option differs from its default.
fn rich_config() -> EngineConfig {
    let link = LinkOptions {
        name: "main".into(),
        request_timeout_ms: 4_000,
        max_outstanding: 3,
        resync_timeout_ms: 8_000,
        hotdesk_enabled: true,
        call_rq_gap_ms: 300,
        device_rq_gap_ms: 200,
    };
    EngineConfig {
        dns: vec![
            dn("1001", AddressType::Dn, RegisterFlag::OnDemand),
            dn("1002", AddressType::Dn, RegisterFlag::OnDemand),
            dn("1003", AddressType::Dn, RegisterFlag::OnDemand),
            dn("2001", AddressType::Dn, RegisterFlag::OnDemand),
            dn("3001", AddressType::Queue, RegisterFlag::True),
            dn("5001", AddressType::Dn, RegisterFlag::False),
        ],
        agent_logins: vec![AgentLoginConfig {
            agent_id: "2001".into(),
            password: Some("pw".into()),
        }],
        accept_dn_types: vec![AddressType::Dn, AddressType::Position],
        request_timeout_ms: 6_000,
        max_outstanding: 7,
        resync_timeout_ms: 9_000,
        hotdesk_enabled: true,
        server_name: "snap".into(),
        call_rq_gap_ms: 350,
        user_data_limit: 9_000,
        agent_logout_on_unregister: true,
        device_rq_gap_ms: 150,
        ani_distribution: ctid_engine::config::AniDistribution::AllCalls,
        internal_dn_pattern: DnPattern::new("^[0-9]{4}$").unwrap(),
        background_processing: true,
        links: vec![link],
        resume_window_ms: 60_000,
        resume_buffer_bytes: 2_200,
        resume_keep_attached_ms: 40_000,
        export_events: true,
    }
}

fn call_events(call: &str, from: &str, to: &str, xref_from: &str, xref_to: &str) -> [Value; 3] {
    [
        json!({"message": "OriginatedEvent", "monitorCrossRefID": xref_from,
               "originatedConnection": {"callID": call, "deviceID": from},
               "callingDevice": {"deviceIdentifier": from}, "calledDevice": {"deviceIdentifier": to},
               "localConnectionInfo": "connected", "cause": "newCall"}),
        json!({"message": "DeliveredEvent", "monitorCrossRefID": xref_to,
               "connection": {"callID": call, "deviceID": to},
               "alertingDevice": {"deviceIdentifier": to}, "callingDevice": {"deviceIdentifier": from},
               "calledDevice": {"deviceIdentifier": to}, "localConnectionInfo": "alerting", "cause": "newCall"}),
        json!({"message": "EstablishedEvent", "monitorCrossRefID": xref_to,
               "establishedConnection": {"callID": call, "deviceID": to},
               "answeringDevice": {"deviceIdentifier": to}, "callingDevice": {"deviceIdentifier": from},
               "calledDevice": {"deviceIdentifier": to}, "localConnectionInfo": "connected", "cause": "newCall"}),
    ]
}

/// Every part in a non-empty state at some point: sessions (one detached with events kept,
/// one ended, one resumed), registrations waiting for their monitor, a queued CSTA request
/// window, hot desks (a pair, a private service with a PrivateEvent held and another queued
/// behind it), an agent with a not-ready reason, calls with user data (repeated keys), a
/// request waiting on its call and one on its device, forwarding, DND, out of service, a
/// segmented snapshot in progress, overload, monitor retries, a Connector's MonitorStop, a
/// reload, a link loss and a link-up resync left unfinished.
fn rich_scenario() -> Run {
    let mut r = Run::new(rich_config());
    r.pairs.insert("2001".into(), "1002".into());
    let session = |client: ClientId, id: &str, owner: &str| Input::SessionOpened {
        client,
        peer: format!("10.0.0.{client}:5000"),
        session_id: id.into(),
        owner: owner.into(),
    };
    r.feed(session(1, "sess-1", "alice"));
    r.feed(Input::ClientConnected {
        client: 2,
        peer: "10.0.0.2:5000".into(),
    });
    r.feed(session(3, "sess-3", "bob"));
    r.feed(session(5, "sess-5", "dave"));
    r.feed(session(9, "sess-9", "carol"));
    r.feed(Input::ClientDisconnected { client: 9 });
    r.feed(Input::ClientInvalid {
        client: 2,
        code: ctid_protocol::ErrorCode(53),
        message: "a binary frame".into(),
        reference_id: Some(4),
    });
    // link up: monitors of Register=true DNs; the window holds 3 at a time (link "main")
    r.feed(Input::LinkUp {
        name: "main".into(),
        priority: Some(2),
        edition: Some("ed3".into()),
    });
    r.after(5);
    // registrations arrive while the resync runs: they wait for their monitor
    r.text(
        1,
        json!({"request": "RequestRegisterClient", "ReferenceID": 1, "ApplicationName": "desk"}),
    );
    r.text(
        1,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 2, "ThisDN": "1001"}),
    );
    r.text(
        1,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 3, "ThisDN": "1002"}),
    );
    r.text(
        2,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 1, "ThisDN": "2001"}),
    );
    r.text(
        2,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 2, "ThisDN": "3001",
                     "RegisterMode": "ModeMonitor"}),
    );
    r.text(
        3,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 1, "ThisDN": "1003"}),
    );
    r.text(
        3,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 2, "ThisDN": "4001",
                     "ControlMode": "RegisterForce"}),
    );
    r.text(
        5,
        json!({"request": "RequestRegisterAddress", "ReferenceID": 1, "ThisDN": "1001"}),
    );
    r.feed(Input::Overload { reached: true });
    r.serve_at_most(3);
    r.after(5);
    r.feed(Input::Overload { reached: false });
    r.serve();
    assert_eq!(r.e.link_state(), LinkState::Up);
    assert_eq!(r.e.host_of("2001"), Some("1002"));
    r.text(
        2,
        json!({"request": "RequestQueryServer", "ReferenceID": 3}),
    );
    r.text(
        1,
        json!({"request": "RequestQueryAddress", "ReferenceID": 4, "ThisDN": "1002",
                     "InfoType": "AddressInfoDNStatus"}),
    );

    // an agent logs in at host 1002 as 2001 (the agent-login hot desk) and goes not ready
    r.after(10);
    r.text(
        1,
        json!({"request": "RequestAgentLogin", "ReferenceID": 5, "ThisDN": "1002",
                     "AgentID": "2001", "ThisQueue": "3001"}),
    );
    let id = r.find(|m| matches!(m, Message::SetAgentState(_)));
    r.answer(id, m(json!({"message": "SetAgentStateResponse"})));
    r.event(
        json!({"message": "AgentLoggedOnEvent", "monitorCrossRefID": "1002", "acdGroup": "3001",
                   "agentDevice": {"deviceIdentifier": "1002"}, "agentID": "2001"}),
    );
    r.serve();
    r.event(
        json!({"message": "AgentReadyEvent", "monitorCrossRefID": "1002", "acdGroup": "3001",
                   "agentDevice": {"deviceIdentifier": "1002"}, "agentID": "2001"}),
    );
    r.text(
        1,
        json!({"request": "RequestAgentNotReady", "ReferenceID": 6, "ThisDN": "1002",
                     "Reasons": {"ReasonCode": "Lunch"}}),
    );
    let id = r.find(|m| matches!(m, Message::SetAgentState(_)));
    r.answer(id, m(json!({"message": "SetAgentStateResponse"})));
    let mut nr = m(
        json!({"message": "AgentNotReadyEvent", "monitorCrossRefID": "1002",
                          "acdGroup": "3001", "agentDevice": {"deviceIdentifier": "1002"},
                          "agentID": "2001"}),
    );
    if let Message::AgentNotReadyEvent(e) = &mut nr {
        e.extensions = Some(Extensions::private(PrivateData::with_not_ready_reason(
            "Lunch",
        )));
    }
    r.feed(Input::CstaEvent { message: nr });
    // a call to the guest shows on the host's desk too (the guest is monitored internally)
    let [_, ring, _] = call_events("C9", "0612345678", "2001", "x", "2001");
    let out = r.event(ring);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event { to, event, .. }
            if to.contains(&1) && event.this_dn.as_deref() == Some("1002"))),
        "the desk's copy: {out:?}"
    );
    r.event(
        json!({"message": "ConnectionClearedEvent", "monitorCrossRefID": "2001",
                   "droppedConnection": {"callID": "C9", "deviceID": "0612345678"},
                   "releasingDevice": {"deviceIdentifier": "0612345678"},
                   "localConnectionInfo": "null", "cause": "normalClearing"}),
    );

    // features on 1001
    r.after(10);
    r.text(
        1,
        json!({"request": "RequestCallForwardSet", "ReferenceID": 7, "ThisDN": "1001",
                     "ForwardMode": "ForwardModeOnBusyAndNoAnswer", "OtherDN": "1003"}),
    );
    // a second request on the device waits for the first (device-rq-gap)
    r.text(
        1,
        json!({"request": "RequestSetDNDOn", "ReferenceID": 8, "ThisDN": "1001"}),
    );
    for ty in ["forwardBusy", "forwardNoAns"] {
        let id = r.find(|m| matches!(m, Message::SetForwarding(_)));
        r.answer(id, m(json!({"message": "SetForwardingResponse"})));
        r.event(
            json!({"message": "ForwardingEvent", "monitorCrossRefID": "1001",
                       "device": {"deviceIdentifier": "1001"}, "forwardStatus": true,
                       "forwardTo": "1003", "forwardingType": ty}),
        );
    }
    let id = r.find(|m| matches!(m, Message::SetDoNotDisturb(_)));
    r.answer(id, m(json!({"message": "SetDoNotDisturbResponse"})));
    r.event(
        json!({"message": "DoNotDisturbEvent", "monitorCrossRefID": "1001",
                   "device": {"deviceIdentifier": "1001"}, "doNotDisturbOn": true}),
    );
    r.event(
        json!({"message": "OutOfServiceEvent", "monitorCrossRefID": "4001",
                   "device": {"deviceIdentifier": "4001"}}),
    );

    // hot desking: a cancel in flight, its PrivateEvent before its answer (held), and an
    // initiate queued behind it
    r.after(10);
    r.text(
        2,
        json!({"request": "RequestPrivateService", "ReferenceID": 4, "ThisDN": "2001",
                     "PrivateMsgID": 2}),
    );
    r.text(
        2,
        json!({"request": "RequestPrivateService", "ReferenceID": 5, "ThisDN": "2001",
                     "PrivateMsgID": 1, "Extensions": {"HOST_DN": "1003"}}),
    );
    let hd = ctid_csta::HotDeskState::Cancelled;
    r.feed(Input::CstaEvent {
        message: Message::PrivateEvent(ctid_csta::PrivateEvent {
            monitor_cross_ref_id: "2001".into(),
            private_data: Some(HotDesk::event(hd, "2001", "1002").into_private_data()),
            extensions: None,
        }),
    });
    r.after(5);
    let escape = |m: &Message| matches!(m, Message::Escape(_));
    let id = r.find(escape);
    r.answer(
        id,
        Message::EscapeResponse(ctid_csta::EscapeResponse { extensions: None }),
    );
    assert_eq!(r.e.host_of("2001"), None);
    // the queued initiate went; its PrivateEvent comes first again, then its answer
    let established = |xref: &str| Input::CstaEvent {
        message: Message::PrivateEvent(ctid_csta::PrivateEvent {
            monitor_cross_ref_id: xref.into(),
            private_data: Some(
                HotDesk::event(ctid_csta::HotDeskState::Established, "2001", "1003")
                    .into_private_data(),
            ),
            extensions: None,
        }),
    };
    r.feed(established("2001"));
    let id = r.find(escape);
    r.answer(
        id,
        Message::EscapeResponse(ctid_csta::EscapeResponse { extensions: None }),
    );
    assert_eq!(r.e.host_of("2001"), Some("1003"));
    // the host's copy of the event changes nothing
    r.feed(established("1003"));

    // the client of session 5 goes: what 1001's calls bring overflows its buffer
    r.feed(Input::ClientDetached { client: 5 });
    // calls: 1001 calls 1003 with user data whose keys repeat
    r.after(10);
    r.text(
        1,
        json!({"request": "RequestMakeCall", "ReferenceID": 9, "ThisDN": "1001",
                     "OtherDN": "1003", "UserData": [["b", "2"], ["a", "1"], ["a", "3"]]}),
    );
    let id = r.find(|m| matches!(m, Message::MakeCall(_)));
    r.answer(
        id,
        m(json!({"message": "MakeCallResponse",
                          "callingDevice": {"callID": "C1", "deviceID": "1001"}})),
    );
    for (i, ev) in call_events("C1", "1001", "1003", "1001", "1003")
        .into_iter()
        .enumerate()
    {
        if i == 1 {
            // the copy on the caller's monitor too
            let mut copy = ev.clone();
            copy["monitorCrossRefID"] = json!("1001");
            r.event(copy);
        }
        r.event(ev);
    }
    let c1 = r.conn(EventName::EventDialing);
    r.text(
        1,
        json!({"request": "RequestAttachUserData", "ReferenceID": 10, "ThisDN": "1001",
                     "ConnID": c1.to_string(), "UserData": {"Case": 42, "z": "last"}}),
    );
    r.after(10);
    // hold, and DTMF on the same call that waits for it (call-rq-gap; answered on acceptance)
    r.text(
        1,
        json!({"request": "RequestHoldCall", "ReferenceID": 11, "ThisDN": "1001",
                     "ConnID": c1.to_string()}),
    );
    r.text(
        1,
        json!({"request": "RequestSendDTMF", "ReferenceID": 12, "ThisDN": "1001",
                     "ConnID": c1.to_string(), "DTMFDigits": "42#"}),
    );
    let id = r.find(|m| matches!(m, Message::HoldCall(_)));
    r.answer(id, m(json!({"message": "HoldCallResponse"})));
    for x in ["1001", "1003"] {
        r.event(json!({"message": "HeldEvent", "monitorCrossRefID": x, "cause": "normal",
                       "heldConnection": {"callID": "C1", "deviceID": "1001"},
                       "holdingDevice": {"deviceIdentifier": "1001"}, "localConnectionInfo": "hold"}));
    }
    let id = r.find(|m| matches!(m, Message::GenerateDigits(_)));
    r.answer(id, m(json!({"message": "GenerateDigitsResponse"})));
    r.text(
        1,
        json!({"request": "RequestUpdateUserData", "ReferenceID": 13, "ThisDN": "1001",
                     "ConnID": c1.to_string(), "UserData": {"Case": 43}}),
    );
    // a mute transfer of the held call to 1002: the consultation (its origin noted from the
    // answer before the switch reports the call), then the transfer ctid makes by itself
    r.text(
        1,
        json!({"request": "RequestMuteTransfer", "ReferenceID": 14, "ThisDN": "1001",
                     "ConnID": c1.to_string(), "OtherDN": "1002"}),
    );
    let id = r.find(|m| matches!(m, Message::ConsultationCall(_)));
    r.answer(
        id,
        m(json!({"message": "ConsultationCallResponse",
                          "initiatedCall": {"callID": "C2", "deviceID": "1001"}})),
    );
    let [orig, deliv, _] = call_events("C2", "1001", "1002", "1001", "1002");
    r.event(orig);
    r.event(deliv);
    let id = r.find(|m| matches!(m, Message::TransferCall(_)));
    r.answer(id, m(json!({"message": "TransferCallResponse", "transferredCall": {"callID": "C2"},
        "connections": [
            {"endpoint": {"deviceID": "1003"}, "newConnection": {"callID": "C2", "deviceID": "1003"},
             "oldConnection": {"callID": "C1", "deviceID": "1003"}},
            {"endpoint": {"deviceID": "1002"}, "newConnection": {"callID": "C2", "deviceID": "1002"},
             "oldConnection": {"callID": "C2", "deviceID": "1002"}}]})));
    for x in ["1001", "1002", "1003"] {
        r.event(json!({"message": "TransferedEvent", "monitorCrossRefID": x, "cause": "transfer",
            "localConnectionInfo": if x == "1001" { "null" } else { "connected" },
            "primaryOldCall": {"callID": "C1", "deviceID": "1001"},
            "secondaryOldCall": {"callID": "C2", "deviceID": "1001"},
            "transferredConnections": [
                {"endpoint": {"deviceID": "1003"}, "newConnection": {"callID": "C2", "deviceID": "1003"},
                 "oldConnection": {"callID": "C1", "deviceID": "1003"}},
                {"endpoint": {"deviceID": "1002"}, "newConnection": {"callID": "C2", "deviceID": "1002"},
                 "oldConnection": {"callID": "C2", "deviceID": "1002"}}],
            "transferredToDevice": {"deviceIdentifier": "1002"},
            "transferringDevice": {"deviceIdentifier": "1001"}}));
    }
    // 1002 hangs up; the call stays with 1003 (which remembers who left)
    r.event(
        json!({"message": "ConnectionClearedEvent", "monitorCrossRefID": "1002",
                   "droppedConnection": {"callID": "C2", "deviceID": "1002"},
                   "releasingDevice": {"deviceIdentifier": "1002"},
                   "localConnectionInfo": "null", "cause": "normalClearing"}),
    );
    // an outside call waits in queue 3001
    r.event(json!({"message": "QueuedEvent", "monitorCrossRefID": "3001", "cause": "enteringDistribution",
                   "queuedConnection": {"callID": "C4", "deviceID": "3001"},
                   "queue": {"deviceIdentifier": "3001"}, "callingDevice": {"deviceIdentifier": "0612345678"},
                   "calledDevice": {"deviceIdentifier": "3001"}, "numberQueued": 1, "callsInFront": 0,
                   "localConnectionInfo": "queued"}));
    // the client of 1003 goes without a clean close (having had every event up to `last`):
    // its session keeps the events
    let last = r
        .events
        .iter()
        .filter(|(to, _)| to.contains(&3))
        .map(|(_, e)| e.event_sequence_number)
        .max()
        .unwrap_or(0);
    r.feed(Input::ClientDetached { client: 3 });
    r.after(20);
    // the switch says a monitor's events were lost: re-monitor everything, on the same link
    r.segmented.insert("1001".into());
    r.refuse_monitor.insert("1003".into());
    r.feed(Input::Resync {
        reason: "messagesLost".into(),
    });
    r.serve_at_most(4);
    r.feed(Input::CstaEvent {
        message: m(
            json!({"message": "SnapshotDeviceData", "serviceCrossRefID": "S1001",
                          "segmentID": 1, "lastSegment": false, "snapshotData": []}),
        ),
    });
    r.serve();
    // events the engine cannot use: unknown monitor, a duplicate hot-desk event, no callID
    r.event(
        json!({"message": "DoNotDisturbEvent", "monitorCrossRefID": "nobody",
                   "device": {"deviceIdentifier": "7777"}, "doNotDisturbOn": true}),
    );
    r.event(
        json!({"message": "HeldEvent", "monitorCrossRefID": "1001", "cause": "normal",
                   "heldConnection": {"deviceID": "1001"},
                   "holdingDevice": {"deviceIdentifier": "1001"}, "localConnectionInfo": "hold"}),
    );
    r.feed(Input::CstaAnswer {
        invoke_id: InvokeId::new(8888).unwrap(),
        message: m(json!({"message": "HoldCallResponse"})),
    });
    // the Connector asks things of ctid
    r.feed(Input::CstaRequest {
        invoke_id: InvokeId::new(42).unwrap(),
        message: m(json!({"message": "SystemStatus", "systemStatus": "normal"})),
    });
    r.feed(Input::CstaRequest {
        invoke_id: InvokeId::new(43).unwrap(),
        message: m(json!({"message": "MonitorStop", "monitorCrossRefID": "1002"})),
    });
    // time passes: waiting requests go after their gap, unanswered ones time out
    r.after(400);
    r.feed(Input::Tick);
    r.after(1_200);
    r.feed(Input::Tick);
    // another connection resumes the detached session and gets the events it missed
    r.feed(session(4, "sess-4", "bob"));
    r.text(
        4,
        json!({"request": "RequestResumeSession", "ReferenceID": 1,
                     "SessionID": "sess-3", "EventSequenceNumber": last}),
    );
    r.feed(Input::ClientDetached { client: 3 });
    r.feed(session(6, "sess-6", "bob"));
    r.text(
        6,
        json!({"request": "RequestResumeSession", "ReferenceID": 1,
                     "SessionID": "sess-unknown", "EventSequenceNumber": 1}),
    );
    // long enough for an attached session to let old events go, and for the detached one
    // to expire
    r.after(61_000);
    r.event(
        json!({"message": "DoNotDisturbEvent", "monitorCrossRefID": "1001",
                   "device": {"deviceIdentifier": "1001"}, "doNotDisturbOn": false}),
    );
    r.feed(Input::Tick);
    r.after(10);
    // a reload adds a DN
    let mut cfg = r.cfg.clone();
    cfg.dns
        .push(dn("1004", AddressType::Dn, RegisterFlag::True));
    r.feed(Input::Reconfigure(Box::new(cfg)));
    r.serve_at_most(2);
    r.after(10);
    r.feed(Input::LinkDown {
        reason: "connection reset".into(),
    });
    r.after(10);
    r.feed(Input::LinkUp {
        name: "main".into(),
        priority: Some(2),
        edition: Some("ed3".into()),
    });
    r.serve_at_most(5);
    r.after(10);
    r.feed(Input::Tick);
    let c = r.e.session_counters();
    assert!(
        c.resumed >= 1 && c.replayed >= 1 && c.expired >= 1 && c.overflowed >= 1 && c.refused >= 1,
        "{c:?}"
    );
    r
}

/// Is `v` other than the empty value of its type (null, false, 0, "", an empty array or
/// object, or the JSON text of an empty KV list)?
fn holds_something(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !matches!(s.as_str(), "" | "{}" | "[]"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Every path of `v`, with whether it held something: a key that is data (a DN, a SessionID,
/// a ConnID, a client number — anything with a character other than a letter or `_`) stands
/// as `*`, an array's items as `[]`; a field name or an enum variant stays.
fn paths(v: &Value, path: &mut String, seen: &mut BTreeMap<String, bool>) {
    *seen.entry(path.clone()).or_default() |= holds_something(v);
    let len = path.len();
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let data = !k.chars().all(|c| c.is_ascii_alphabetic() || c == '_');
                path.push('.');
                path.push_str(if data { "*" } else { k });
                paths(x, path, seen);
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for x in a {
                path.push_str("[]");
                paths(x, path, seen);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Paths the scenario leaves empty on purpose, and why.
const LEFT_EMPTY: &[(&str, &str)] = &[
    (
        ".answers.ready",
        "requests released from waiting are served before `handle` returns",
    ),
    (
        ".window.entries.*.kind.HdService.held.synthesized",
        "a held change is its PrivateEvent's own change, never an implied one",
    ),
];

#[test]
fn a_scenario_that_fills_every_part_continues_identically_from_any_cut() {
    let r = rich_scenario();
    let run = check_snapshots(&r.cfg, &r.log, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.cuts.len(), r.log.len() + 1);
    // Every field of the snapshot held a value at some cut: a part's state the scenario never
    // fills could be lost by a restore without the check above seeing it.
    let mut seen = BTreeMap::new();
    for s in &run.snapshots {
        paths(s, &mut String::new(), &mut seen);
    }
    // The fields are the ones listed: a field added to a part (or left out of the snapshot)
    // is seen here and must be listed — and filled by the scenario, see below.
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshot_fields.txt");
    let fields: String = seen
        .keys()
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}\n"))
        .collect();
    if std::env::var_os("SNAPSHOT_FIELDS").is_some_and(|v| v == "write") {
        std::fs::write(&file, &fields).unwrap();
    }
    let listed = std::fs::read_to_string(&file).unwrap_or_default();
    let listed: BTreeSet<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    let now: BTreeSet<&str> = fields.lines().collect();
    let added: Vec<_> = now.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&now).collect();
    assert!(
        added.is_empty() && gone.is_empty(),
        "the snapshot's fields are not the ones in {}:\n  new: {added:?}\n  gone: {gone:?}\n\
         (make the scenario fill a new field, then SNAPSHOT_FIELDS=write cargo test -p \
         ctid-engine --test snapshot writes the list)",
        file.display()
    );
    let never: Vec<&String> = seen
        .iter()
        .filter(|(p, used)| !**used && !LEFT_EMPTY.iter().any(|(q, _)| q == p))
        .map(|(p, _)| p)
        .collect();
    assert!(
        never.is_empty(),
        "{} snapshot fields never held a value in the scenario:\n{}",
        never.len(),
        never
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (p, why) in LEFT_EMPTY {
        assert!(seen.contains_key(*p), "{p} ({why}) is no snapshot field");
    }
}

// ------------------------------------------------------------------------------ bad snapshots

/// The scenario's snapshot with the most in it.
fn fullest_snapshot() -> Value {
    let r = rich_scenario();
    let run = check_snapshots(&r.cfg, &r.log, usize::MAX).unwrap_or_else(|e| panic!("{e}"));
    run.snapshots
        .into_iter()
        .max_by_key(|s| s.to_string().len())
        .unwrap()
}

fn restore_err(v: &Value) -> String {
    match Engine::restore(v) {
        Ok(_) => panic!(
            "restored: {}",
            &v.to_string()[..200.min(v.to_string().len())]
        ),
        Err(e) => e.0,
    }
}

#[test]
fn a_snapshot_that_is_not_one_is_an_error_that_says_why() {
    let s = fullest_snapshot();
    assert_eq!(s["ctid_snapshot"], json!(1));
    assert!(restore_err(&json!([1, 2])).contains("expected a JSON object"));
    assert!(restore_err(&json!({"dns": {}})).contains("no \"ctid_snapshot\" key"));
    let mut v = s.clone();
    v["ctid_snapshot"] = json!(2);
    assert!(
        restore_err(&v).contains("reads format 1"),
        "{}",
        restore_err(&v)
    );
    let mut v = s.clone();
    v.as_object_mut().unwrap().remove("dns");
    assert_eq!(restore_err(&v), "snapshot: part \"dns\" missing");
    let mut v = s.clone();
    v["outbox"]["seq"] = json!("many");
    let e = restore_err(&v);
    assert!(
        e.starts_with("snapshot: part \"outbox\": invalid type"),
        "{e}"
    );
    let mut v = s.clone();
    v["calls"]["calls"]
        .as_object_mut()
        .unwrap()
        .values_mut()
        .next()
        .unwrap()["parties"][0]["state"] = json!("Dancing");
    let e = restore_err(&v);
    assert!(e.contains("part \"calls\"") && e.contains("Dancing"), "{e}");
    // an index that contradicts what it indexes
    let mut v = s.clone();
    let first = v["window"]["by_invoke"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .cloned()
        .expect("a request in flight");
    v["window"]["by_invoke"]
        .as_object_mut()
        .unwrap()
        .remove(&first);
    let e = restore_err(&v);
    assert!(e.starts_with("snapshot: part \"window\": request"), "{e}");
    let mut v = s.clone();
    v["hotdesk"]["table"]["by_host"] = json!({});
    assert!(restore_err(&v).contains("hot-desk table"));
    let mut v = s;
    v["sessions"]["by_id"] = json!({"sess-x": 1});
    assert!(restore_err(&v).contains("part \"sessions\""));
}

/// Every way of cutting a value short or giving it the wrong type, one at a time: each
/// object without one of its keys, each array without its last item, each value replaced by
/// one of another type. `f` gets the path and the changed snapshot.
fn damaged(v: &Value, f: &mut dyn FnMut(&str, Value)) {
    fn walk(root: &Value, at: &mut Vec<PathStep>, node: &Value, f: &mut dyn FnMut(&str, Value)) {
        let name = at.iter().map(PathStep::text).collect::<String>();
        let mut change = |how: &str, new: Option<Value>| {
            let mut copy = root.clone();
            let Some((last, parents)) = at.split_last() else {
                return;
            };
            let mut p = &mut copy;
            for s in parents {
                p = s.get_mut(p);
            }
            match (last, new) {
                (PathStep::Key(k), None) => {
                    p.as_object_mut().unwrap().remove(k);
                }
                (PathStep::Index(i), None) => {
                    p.as_array_mut().unwrap().remove(*i);
                }
                (s, Some(n)) => *s.get_mut(p) = n,
            }
            f(&format!("{name} {how}"), copy);
        };
        change("removed", None);
        let wrong = match node {
            Value::String(_) => json!(7),
            Value::Number(_) => json!("7"),
            Value::Bool(_) => json!("yes"),
            Value::Null => json!({"x": 1}),
            Value::Array(_) | Value::Object(_) => json!(7),
        };
        change("ill-typed", Some(wrong));
        match node {
            Value::Object(o) => {
                for (k, x) in o {
                    at.push(PathStep::Key(k.clone()));
                    walk(root, at, x, f);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    at.push(PathStep::Index(i));
                    walk(root, at, x, f);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), v, f);
}

enum PathStep {
    Key(String),
    Index(usize),
}

impl PathStep {
    fn text(&self) -> String {
        match self {
            PathStep::Key(k) => format!(".{k}"),
            PathStep::Index(i) => format!("[{i}]"),
        }
    }
    fn get_mut<'a>(&self, v: &'a mut Value) -> &'a mut Value {
        match self {
            PathStep::Key(k) => &mut v[k.as_str()],
            PathStep::Index(i) => &mut v[*i],
        }
    }
}

/// Every field removed or given another type is an error; an entry of a map or a list
/// removed may be a legal state, and then the engine runs.
#[test]
fn a_damaged_snapshot_is_an_error_or_an_engine_that_runs_never_a_panic() {
    let s = fullest_snapshot();
    let (mut errors, mut restored) = (0, 0);
    damaged(&s, &mut |what, v| {
        // A field of the engine's own state (not of a CSTA message or the configuration, whose
        // JSON forms have optional keys) is required.
        let own_field = !what.contains(".message") && !what.contains(".cfg");
        let removed_field = what.ends_with(" removed")
            && what
                .rsplit_once(' ')
                .and_then(|(p, _)| p.rsplit('.').next())
                .is_some_and(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        match Engine::restore(&v) {
            Err(e) => {
                assert!(e.0.starts_with("snapshot: "), "{what}: {e}");
                errors += 1;
            }
            Ok(mut e) => {
                assert!(
                    !(own_field && removed_field),
                    "{what}: restored without the field"
                );
                // what is left is a legal state: a map or a list with one entry fewer
                assert!(what.ends_with(" removed"), "{what}: restored");
                restored += 1;
                // whatever it holds, it runs
                let mut out = Vec::new();
                let now = Now {
                    mono_ms: 10_000_000,
                    unix_micros: 1_800_000_000_000_000,
                };
                e.handle(now, Input::Tick, &mut out);
                e.handle(now, Input::ClientDetached { client: 1 }, &mut out);
                e.handle(
                    now,
                    Input::LinkDown {
                        reason: "test".into(),
                    },
                    &mut out,
                );
            }
        }
    });
    assert!(
        errors > 500 && restored > 10,
        "{errors} errors, {restored} restored"
    );
}

// ------------------------------------------------------------------------------ max_client_id

#[test]
fn max_client_id_counts_every_client_the_state_names_but_the_export() {
    let cfg = EngineConfig {
        export_events: true,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg.clone());
    assert_eq!(e.max_client_id(), 0, "the export is not counted");
    let now = Now {
        mono_ms: 1,
        unix_micros: 1_790_000_000_000_000,
    };
    let mut out = Vec::new();
    for c in [3, 7] {
        e.handle(
            now,
            Input::ClientConnected {
                client: c,
                peer: "p".into(),
            },
            &mut out,
        );
    }
    e.handle(
        now,
        Input::SessionOpened {
            client: 12,
            peer: "p".into(),
            session_id: "s".into(),
            owner: String::new(),
        },
        &mut out,
    );
    assert_eq!(e.max_client_id(), 12);
    // a detached session is still known; an ended one is not
    e.handle(now, Input::ClientDetached { client: 12 }, &mut out);
    assert_eq!(e.max_client_id(), 12);
    e.handle(now, Input::ClientDisconnected { client: 12 }, &mut out);
    assert_eq!(e.max_client_id(), 7);
    let restored = Engine::restore(&e.snapshot()).unwrap();
    assert_eq!(restored.max_client_id(), 7);
}
