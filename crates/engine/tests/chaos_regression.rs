//! Found by ctid-chaos (issue 11): clients not told of a call ctid's model has, or never told
//! that a call they were told of ended, around a link drop.
//!
//! After a drop ctid re-monitors every DN, one MonitorStart after the other, then snapshots each,
//! while calls go on. The same switch event comes once per monitored device, and by design each
//! copy produces the events of its own DN only — but every copy updates the model, parties of
//! other DNs included. So:
//!
//! * a call that reaches DN B after A is monitored again but before B is, is learnt from A's
//!   copies (they name B as a party); B's own copies never come, and B's snapshot then takes the
//!   call as already reported because the model has B as a party: B's clients are never told of
//!   a call ctid lists on B (RequestQueryAddress);
//! * the other way round, a call B's clients know that ends in that window is taken off B by A's
//!   copy ("B is not monitored"), so B's snapshot has nothing to release;
//! * calls that began during the outage are unknown to ctid until the snapshots are answered; a
//!   transfer or conference of them in the meantime tells each DN's clients that the DN is on the
//!   resulting call (EventPartyChanged / EventPartyAdded) without making it a party, so when the
//!   call ends its clients get no EventReleased.
//!
//! The events are written as the Connector (csta-sim) sends them; the third test is the trace of
//! `ctid-chaos --drops 3 --seed 17` reduced to three DNs.
//!
//! Each test is also a snapshot test: an engine restored from a snapshot after any input it fed
//! must continue exactly as the original (`testkit::check_snapshots`, run when the test passed).

use ctid_csta::*;
use ctid_engine::*;
use ctid_protocol::{AddressType, ConnId, Event, EventName};

const A: &str = "7001";
const B: &str = "7002";
const C: &str = "7003";

/// The client registered on `dn` (one each).
fn client_of(dn: &str) -> ClientId {
    match dn {
        A => 1,
        B => 2,
        _ => 3,
    }
}

/// A Connector message as it is on the wire (ECMA-323 ed3): `body` is the root element's name,
/// a space and its content; `{x}` stands for the monitorCrossRefID (ctid's = the device here).
fn xml(x: &str, body: &str) -> Message {
    let body = body.replace("{x}", x);
    let (root, content) = body.split_once(' ').unwrap();
    let text = format!(
        r#"<{root} xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3">{content}</{root}>"#
    );
    decode(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn wire(m: Message) -> Message {
    decode(&encode(&m, Edition::Ed3).unwrap()).unwrap()
}

fn originated(call: &str, from: &str, to: &str) -> String {
    format!(
        "OriginatedEvent <monitorCrossRefID>{{x}}</monitorCrossRefID>\
         <originatedConnection><callID>{call}</callID><deviceID>{from}</deviceID></originatedConnection>\
         <callingDevice><deviceIdentifier>{from}</deviceIdentifier></callingDevice>\
         <calledDevice><deviceIdentifier>{to}</deviceIdentifier></calledDevice>\
         <localConnectionInfo>connected</localConnectionInfo><cause>newCall</cause>"
    )
}

fn delivered(call: &str, from: &str, to: &str) -> String {
    format!(
        "DeliveredEvent <monitorCrossRefID>{{x}}</monitorCrossRefID>\
         <connection><callID>{call}</callID><deviceID>{to}</deviceID></connection>\
         <alertingDevice><deviceIdentifier>{to}</deviceIdentifier></alertingDevice>\
         <callingDevice><deviceIdentifier>{from}</deviceIdentifier></callingDevice>\
         <calledDevice><deviceIdentifier>{to}</deviceIdentifier></calledDevice>\
         <lastRedirectionDevice><notRequired/></lastRedirectionDevice>\
         <localConnectionInfo>connected</localConnectionInfo><cause>newCall</cause>"
    )
}

fn cleared(call: &str, who: &str) -> String {
    format!(
        "ConnectionClearedEvent <monitorCrossRefID>{{x}}</monitorCrossRefID>\
         <droppedConnection><callID>{call}</callID><deviceID>{who}</deviceID></droppedConnection>\
         <releasingDevice><deviceIdentifier>{who}</deviceIdentifier></releasingDevice>\
         <cause>normalClearing</cause>"
    )
}

/// A conferences `primary` (with B) and `secondary` (with C): C is added.
fn conferenced(primary: &str, secondary: &str) -> String {
    let item = |dev: &str, old: &str| {
        format!(
            "<connectionListItem>\
             <newConnection><callID>{primary}</callID><deviceID>{dev}</deviceID></newConnection>\
             <oldConnection><callID>{old}</callID><deviceID>{dev}</deviceID></oldConnection>\
             <endpoint><deviceID>{dev}</deviceID></endpoint></connectionListItem>"
        )
    };
    format!(
        "ConferencedEvent <monitorCrossRefID>{{x}}</monitorCrossRefID>\
         <primaryOldCall><callID>{primary}</callID><deviceID>{A}</deviceID></primaryOldCall>\
         <secondaryOldCall><callID>{secondary}</callID><deviceID>{A}</deviceID></secondaryOldCall>\
         <conferencingDevice><deviceIdentifier>{A}</deviceIdentifier></conferencingDevice>\
         <addedParty><deviceIdentifier>{C}</deviceIdentifier></addedParty>\
         <conferenceConnections>{}{}{}</conferenceConnections>\
         <localConnectionInfo>connected</localConnectionInfo><cause>conference</cause>",
        item(A, primary),
        item(B, primary),
        item(C, secondary),
    )
}

/// A SnapshotDeviceResponse: `calls` are (callID, device, localConnectionState).
fn snapshot(calls: &[(&str, &str, &str)]) -> Message {
    let data: String = calls
        .iter()
        .map(|(call, dev, state)| {
            format!(
                "<snapshotDeviceResponseInfo><connectionIdentifier><callID>{call}</callID>\
                 <deviceID>{dev}</deviceID></connectionIdentifier><localCallState>\
                 <compoundCallState><localConnectionState>{state}</localConnectionState>\
                 </compoundCallState></localCallState></snapshotDeviceResponseInfo>"
            )
        })
        .collect();
    xml(
        "",
        &format!(
            "SnapshotDeviceResponse <crossRefIDorSnapshotData><snapshotData>{data}</snapshotData>\
             </crossRefIDorSnapshotData>"
        ),
    )
}

fn events(out: &[Output]) -> Vec<(Vec<ClientId>, Event)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { to, event, .. } => Some((to.clone(), Event::clone(event))),
            _ => None,
        })
        .collect()
}

/// The events the client of `dn` got about `conn` on `dn`.
fn told(ev: &[(Vec<ClientId>, Event)], dn: &str, conn: ConnId) -> Vec<EventName> {
    ev.iter()
        .filter(|(to, e)| {
            to.contains(&client_of(dn))
                && e.this_dn.as_deref() == Some(dn)
                && e.conn_id == Some(conn)
        })
        .map(|(_, e)| e.name)
        .collect()
}

struct T {
    e: Engine,
    now: Now,
    /// Requests held back by [`T::serve`]: (invoke ID, the device).
    held: Vec<(InvokeId, String)>,
    /// The configuration and every input fed, with its time (for the snapshot check).
    cfg: EngineConfig,
    log: Vec<(Now, Input)>,
}

impl Drop for T {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = testkit::check_snapshots(&self.cfg, &self.log, 1) {
            panic!("snapshot check: {e}");
        }
    }
}

/// Which requests [`T::serve`] keeps unanswered.
#[derive(Clone, Copy)]
enum Hold<'a> {
    Nothing,
    /// The MonitorStart of this device.
    MonitorOf(&'a str),
    /// Every SnapshotDevice.
    Snapshots,
}

impl T {
    /// Extensions `dns` (Register = true, no hot desking), each registered by its client, link
    /// up.
    fn new(dns: &[&str]) -> Self {
        let cfg = EngineConfig {
            hotdesk_enabled: false,
            dns: dns
                .iter()
                .map(|n| DnConfig {
                    number: n.to_string(),
                    dn_type: AddressType::Dn,
                    register: RegisterFlag::True,
                })
                .collect(),
            ..EngineConfig::default()
        };
        let mut t = T {
            e: Engine::new(cfg.clone()),
            now: Now {
                mono_ms: 1_000,
                unix_micros: 1_790_000_000_000_000,
            },
            held: Vec::new(),
            cfg,
            log: Vec::new(),
        };
        for dn in dns {
            t.input(Input::ClientConnected {
                client: client_of(dn),
                peer: "p".into(),
            });
        }
        let out = t.input(Input::LinkUp {
            name: "test".into(),
            priority: None,
            edition: None,
        });
        t.serve(out, Hold::Nothing);
        assert_eq!(t.e.link_state(), LinkState::Up);
        for dn in dns {
            let out = t.input(Input::ClientText {
                client: client_of(dn),
                text: format!(
                    r#"{{"request":"RequestRegisterAddress","ReferenceID":1,"ThisDN":"{dn}"}}"#
                ),
            });
            let ev = events(&t.serve(out, Hold::Nothing));
            assert_eq!(ev[0].1.name, EventName::EventRegistered);
        }
        t
    }
    fn input(&mut self, i: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.log.push((self.now, i.clone()));
        self.e.handle(self.now, i, &mut out);
        out
    }
    /// The copy of `body` for the monitor of `x`; the client events.
    fn event(&mut self, x: &str, body: &str) -> Vec<(Vec<ClientId>, Event)> {
        events(&self.input(Input::CstaEvent {
            message: xml(x, body),
        }))
    }
    /// Answer the CSTA requests in `out` (and those they lead to) like a Connector with no
    /// calls and no agents, but for the requests `hold` says to keep (in `self.held`); the
    /// other outputs.
    fn serve(&mut self, mut out: Vec<Output>, hold: Hold) -> Vec<Output> {
        let mut rest = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out {
                let Output::CstaRequest { invoke_id, message } = o else {
                    rest.push(o);
                    continue;
                };
                let answer = match (message, hold) {
                    (Message::MonitorStart(m), _) => {
                        let MonitorObject::Device(d) = m.monitor_object else {
                            panic!("{m:?}")
                        };
                        if matches!(hold, Hold::MonitorOf(h) if h == d) {
                            self.held.push((invoke_id, d.into()));
                            continue;
                        }
                        Message::MonitorStartResponse(MonitorStartResponse {
                            monitor_cross_ref_id: d,
                            monitor_existing_calls: None,
                            extensions: None,
                        })
                    }
                    (Message::SnapshotDevice(s), Hold::Snapshots) => {
                        self.held.push((invoke_id, s.snapshot_object.into()));
                        continue;
                    }
                    (other, _) => testkit::empty_switch_answer(&other)
                        .unwrap_or_else(|| panic!("unexpected request {other:?}")),
                };
                next.extend(self.input(Input::CstaAnswer {
                    invoke_id,
                    message: wire(answer),
                }));
            }
            out = next;
        }
        rest
    }
    /// Answer a held-back request; the client events of what follows.
    fn answer(&mut self, invoke_id: InvokeId, message: Message) -> Vec<(Vec<ClientId>, Event)> {
        let out = self.input(Input::CstaAnswer {
            invoke_id,
            message: wire(message),
        });
        events(&self.serve(out, Hold::Nothing))
    }
    /// The link drops and comes back; the requests `hold` says are kept unanswered.
    fn drop_and_return(&mut self, hold: Hold) {
        self.input(Input::LinkDown {
            reason: "test".into(),
        });
        let out = self.input(Input::LinkUp {
            name: "test".into(),
            priority: None,
            edition: None,
        });
        self.serve(out, hold);
    }
    /// The ConnIDs ctid lists on `dn` (RequestQueryAddress, AddressInfoDNStatus).
    fn query(&mut self, dn: &str) -> Vec<String> {
        let out = self.input(Input::ClientText {
            client: client_of(dn),
            text: format!(
                r#"{{"request":"RequestQueryAddress","ReferenceID":99,"ThisDN":"{dn}","InfoType":"AddressInfoDNStatus"}}"#
            ),
        });
        let ev = events(&out);
        assert_eq!(ev[0].1.name, EventName::EventAddressInfo);
        (1..)
            .map_while(|n| {
                ev[0]
                    .1
                    .extension_str(&format!("conn-{n}"))
                    .map(str::to_string)
            })
            .collect()
    }
}

/// A calls B while B's MonitorStart is in flight: B's snapshot shows the call ringing at B, so
/// B's clients must get EventRinging, as for any call the resync finds.
#[test]
fn a_call_reaching_a_dn_before_its_monitor_is_back_is_reported_to_its_clients() {
    let mut t = T::new(&[A, B]);
    t.drop_and_return(Hold::MonitorOf(B));
    assert!(t.e.is_monitored(A) && !t.e.is_monitored(B));
    let mut ev = t.event(A, &originated("C1", A, B));
    assert_eq!(
        told(&ev, A, ev[0].1.conn_id.unwrap()),
        [EventName::EventDialing]
    );
    let c = ev[0].1.conn_id.unwrap();
    // A's copy of the delivery: the model learns that B rings; A's clients get nothing.
    ev.extend(t.event(A, &delivered("C1", A, B)));
    let (b_monitor, _) = t.held.pop().unwrap();
    let out = t.input(Input::CstaAnswer {
        invoke_id: b_monitor,
        message: wire(Message::MonitorStartResponse(MonitorStartResponse {
            monitor_cross_ref_id: B.into(),
            monitor_existing_calls: None,
            extensions: None,
        })),
    });
    let out = t.serve(out, Hold::Snapshots);
    ev.extend(events(&out));
    let (snap, dev) = t.held.pop().unwrap();
    assert_eq!(dev, B);
    ev.extend(t.answer(snap, snapshot(&[("C1", B, "alerting")])));
    assert_eq!(t.e.link_state(), LinkState::Up);
    assert_eq!(t.query(B), [c.to_string()], "ctid lists {c} on {B}");
    assert_eq!(
        told(&ev, B, c),
        [EventName::EventRinging],
        "the clients of {B} were never told of {c}, which ctid lists on {B}: {ev:?}"
    );
}

/// B's clients know a call from before the drop; it ends while B's MonitorStart is in flight:
/// B's snapshot no longer shows it, so B's clients must get EventReleased.
#[test]
fn a_call_ending_before_its_dns_monitor_is_back_is_released_for_its_clients() {
    let mut t = T::new(&[A, B]);
    let ev = t.event(A, &originated("C1", A, B));
    let c = ev[0].1.conn_id.unwrap();
    t.event(A, &delivered("C1", A, B));
    assert_eq!(
        told(&t.event(B, &delivered("C1", A, B)), B, c),
        [EventName::EventRinging]
    );
    t.drop_and_return(Hold::MonitorOf(B));
    // The caller hangs up; A's copies of the clearing name B too.
    let mut ev = t.event(A, &cleared("C1", A));
    ev.extend(t.event(A, &cleared("C1", B)));
    let (b_monitor, _) = t.held.pop().unwrap();
    ev.extend(t.answer(
        b_monitor,
        Message::MonitorStartResponse(MonitorStartResponse {
            monitor_cross_ref_id: B.into(),
            monitor_existing_calls: None,
            extensions: None,
        }),
    ));
    assert_eq!(t.e.link_state(), LinkState::Up);
    assert!(t.query(B).is_empty(), "ctid lists no call on {B}");
    assert_eq!(
        told(&ev, B, c),
        [EventName::EventReleased],
        "the clients of {B} still hold {c}, which ctid and the switch no longer have: {ev:?}"
    );
}

/// The calls A–B (C1) and A–C (C2) begin while the link is down. Once every DN is monitored
/// again, but before the snapshots are answered, A conferences them; then everyone hangs up.
/// C's clients are told C joined the call (EventPartyAdded), so they must be told it ended.
#[test]
fn a_conference_of_calls_begun_during_the_outage_is_released_for_the_added_party() {
    let mut t = T::new(&[A, B, C]);
    t.drop_and_return(Hold::Snapshots);
    assert!(t.e.is_monitored(A) && t.e.is_monitored(B) && t.e.is_monitored(C));
    assert_eq!(t.held.len(), 3);
    let mut ev = Vec::new();
    for x in [B, A, C] {
        ev.extend(t.event(x, &conferenced("C1", "C2")));
    }
    let added: Vec<_> = ev
        .iter()
        .filter(|(to, e)| to.contains(&client_of(C)) && e.name == EventName::EventPartyAdded)
        .collect();
    assert_eq!(added.len(), 1, "{ev:?}");
    let c = added[0].1.conn_id.unwrap();
    // Each clearing reaches every monitor still on the call.
    for (who, monitors) in [(A, [A, B, C].as_slice()), (B, &[B, C]), (C, &[C])] {
        for x in monitors {
            ev.extend(t.event(x, &cleared("C1", who)));
        }
    }
    // The snapshots find nothing.
    for (invoke_id, _) in std::mem::take(&mut t.held) {
        ev.extend(t.answer(invoke_id, snapshot(&[])));
    }
    assert_eq!(t.e.link_state(), LinkState::Up);
    assert!(t.query(C).is_empty(), "ctid lists no call on {C}");
    let seen = told(&ev, C, c);
    assert_eq!(seen.first(), Some(&EventName::EventPartyAdded), "{seen:?}");
    assert_eq!(
        seen.last(),
        Some(&EventName::EventReleased),
        "the clients of {C} were told {C} joined {c} and never that it ended ({seen:?}): {ev:?}"
    );
}
