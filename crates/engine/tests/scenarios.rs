//! Scripted scenarios: the engine driven by hand-made inputs, asserting whole outputs. The
//! real-socket versions of these live in crates/server/tests (ctid + csta-sim).
//!
//! Every scenario is also a snapshot test: the harness keeps the inputs it fed and, when the
//! scenario passed, checks that an engine restored from a snapshot after any of them continues
//! exactly as the original did (`testkit::check_snapshots`).

use ctid_csta::*;
use ctid_engine::*;
use ctid_protocol::{Event, EventName, Request};

struct T {
    e: Engine,
    now: Now,
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

fn xml_answer(m: Message) -> Message {
    // Round trip through the codec so the test uses what a Connector would send.
    decode(&encode(&m, Edition::Ed3).unwrap()).unwrap()
}

impl T {
    fn new(cfg: EngineConfig) -> Self {
        T {
            e: Engine::new(cfg.clone()),
            now: Now {
                mono_ms: 1_000,
                unix_micros: 1_790_000_000_000_000,
            },
            cfg,
            log: Vec::new(),
        }
    }
    fn input(&mut self, i: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.log.push((self.now, i.clone()));
        self.e.handle(self.now, i, &mut out);
        out
    }
    fn text(&mut self, client: ClientId, json: &str) -> Vec<Output> {
        self.input(Input::ClientText {
            client,
            text: json.to_string(),
        })
    }
    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now.mono_ms += ms;
        self.input(Input::Tick)
    }
    /// Bring the link up and answer every MonitorStart / hot-desk query it sends.
    fn up(&mut self, pairs: &[(&str, &str)]) -> Vec<Output> {
        let out = self.input(Input::LinkUp {
            name: "test".into(),
            priority: None,
            edition: None,
        });
        self.serve(out, pairs)
    }
    /// Answer the CSTA requests in `out` like a Connector would; return the client events.
    fn serve(&mut self, mut out: Vec<Output>, pairs: &[(&str, &str)]) -> Vec<Output> {
        let mut events = Vec::new();
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out {
                match o {
                    Output::CstaRequest {
                        invoke_id: tag,
                        message,
                    } => {
                        let answer = match message {
                            Message::Escape(e) => {
                                let Some(HotDesk::Extension { guest: Some(g), .. }) =
                                    e.private_data.as_ref().and_then(|p| p.hotdesk()).cloned()
                                else {
                                    panic!("{e:?}")
                                };
                                let pair =
                                    pairs.iter().find(|(pg, _)| *pg == g).map(|(a, b)| (*a, *b));
                                Message::EscapeResponse(EscapeResponse {
                                    extensions: Some(Extensions::private(
                                        HotDesk::answer(pair).into_private_data(),
                                    )),
                                })
                            }
                            other => testkit::empty_switch_answer(&other)
                                .unwrap_or_else(|| panic!("unexpected request {other:?}")),
                        };
                        next.extend(self.input(Input::CstaAnswer {
                            invoke_id: tag,
                            message: xml_answer(answer),
                        }));
                    }
                    ev => events.push(ev),
                }
            }
            out = next;
        }
        events
    }
}

fn events(out: &[Output]) -> Vec<(Vec<ClientId>, Event)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { to, event, .. } => Some((to.clone(), Event::clone(event))),
            _ => None,
        })
        .collect()
}

fn requests(out: &[Output]) -> Vec<(InvokeId, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::CstaRequest {
                invoke_id: tag,
                message,
            } => Some((*tag, message.clone())),
            _ => None,
        })
        .collect()
}

fn private_event(xref: &str, established: bool, g: &str, h: &str) -> Input {
    let state = if established {
        HotDeskState::Established
    } else {
        HotDeskState::Cancelled
    };
    Input::CstaEvent {
        message: xml_answer(Message::PrivateEvent(PrivateEvent {
            monitor_cross_ref_id: xref.into(),
            private_data: Some(HotDesk::event(state, g, h).into_private_data()),
            extensions: None,
        })),
    }
}

fn register(
    t: &mut T,
    client: ClientId,
    dn: &str,
    rid: u32,
    pairs: &[(&str, &str)],
) -> Vec<(Vec<ClientId>, Event)> {
    let out = t.text(
        client,
        &format!(r#"{{"request":"RequestRegisterAddress","ReferenceID":{rid},"ThisDN":"{dn}"}}"#),
    );
    events(&t.serve(out, pairs))
}

#[test]
fn first_registration_waits_for_the_hot_desk_query() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    let ev = events(&t.up(&[]));
    assert_eq!(ev[0].1.name, EventName::EventLinkConnected);
    let ev = register(&mut t, 1, "2010", 7, &[("2010", "1010")]);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let (to, e) = &ev[0];
    assert_eq!(to, &vec![1]);
    assert_eq!(e.name, EventName::EventRegistered);
    assert_eq!(e.reference_id, Some(7));
    assert_eq!(e.extension_str("HOST_DN"), Some("1010"));
    let out = t.text(1, r#"{"request":"RequestQueryAddress","ReferenceID":8,"ThisDN":"2010","InfoType":"AddressInfoDNStatus"}"#);
    let ev = events(&out);
    assert_eq!(ev[0].1.name, EventName::EventAddressInfo);
    assert_eq!(ev[0].1.extension_str("HOST_DN"), Some("1010"));
    // the host has no HOST_DN
    let ev = register(&mut t, 1, "1010", 9, &[("2010", "1010")]);
    assert_eq!(ev[0].1.extension_str("HOST_DN"), None);
}

#[test]
fn private_events_reach_each_client_once() {
    let mut t = T::new(EngineConfig::default());
    for c in [1, 2, 3] {
        t.input(Input::ClientConnected {
            client: c,
            peer: "p".into(),
        });
    }
    t.up(&[]);
    register(&mut t, 1, "2001", 1, &[]);
    register(&mut t, 2, "1001", 1, &[]);
    register(&mut t, 3, "2001", 2, &[]);
    register(&mut t, 3, "1001", 3, &[]);
    let out = t.input(private_event("2001", true, "2001", "1001"));
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, vec![1, 2, 3]);
    assert_eq!(
        (
            ev[0].1.private_msg_id,
            ev[0].1.this_dn.as_deref(),
            ev[0].1.other_dn.as_deref()
        ),
        (Some(1), Some("2001"), Some("1001"))
    );
    assert_eq!(ev[0].1.reference_id, None);
    // the copy on the host's monitor is a duplicate
    assert!(events(&t.input(private_event("1001", true, "2001", "1001"))).is_empty());
    assert_eq!(t.e.counters().duplicate_private_events, 1);
    // moving to another host: implied cancel, then established
    let ev = events(&t.input(private_event("2001", true, "2001", "1002")));
    let ids: Vec<_> = ev
        .iter()
        .map(|(_, e)| (e.private_msg_id.unwrap(), e.other_dn.clone().unwrap()))
        .collect();
    assert_eq!(ids, vec![(2, "1001".to_string()), (1, "1002".to_string())]);
    // an event for a monitor we do not have is dropped
    assert!(events(&t.input(private_event("999", false, "2001", "1002"))).is_empty());
    assert_eq!(t.e.counters().unknown_cross_ref, 1);
}

fn service(t: &mut T, client: ClientId, json: &str) -> (InvokeId, Message) {
    let out = t.text(client, json);
    let r = requests(&out);
    assert_eq!(r.len(), 1, "{out:?}");
    r[0].clone()
}

#[test]
fn private_service_answer_before_or_after_the_event() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.input(Input::ClientConnected {
        client: 2,
        peer: "b".into(),
    });
    t.up(&[]);
    register(&mut t, 1, "2001", 1, &[]);
    register(&mut t, 2, "1001", 1, &[]);
    // event first (held), then the answer
    let (tag, msg) = service(
        &mut t,
        1,
        r#"{"request":"RequestPrivateService","ReferenceID":15,"ThisDN":"2001","PrivateMsgID":1,"Extensions":{"HOST_DN":"1001"}}"#,
    );
    let Message::Escape(e) = msg else { panic!() };
    assert_eq!(
        e.private_data.unwrap().hotdesk(),
        Some(&HotDesk::associate("2001", "1001"))
    );
    assert!(events(&t.input(private_event("2001", true, "2001", "1001"))).is_empty());
    let ev = events(&t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: Message::EscapeResponse(EscapeResponse { extensions: None }),
    }));
    assert_eq!(ev.len(), 2);
    let mine = ev.iter().find(|(to, _)| to == &vec![1]).unwrap();
    let theirs = ev.iter().find(|(to, _)| to == &vec![2]).unwrap();
    assert_eq!(mine.1.reference_id, Some(15));
    assert_eq!(theirs.1.reference_id, None);
    assert_eq!(mine.1.event_sequence_number, theirs.1.event_sequence_number);
    assert!(events(&t.input(private_event("1001", true, "2001", "1001"))).is_empty());
    // cancel: answer first, then the event is a duplicate
    let (tag, _) = service(
        &mut t,
        1,
        r#"{"request":"RequestPrivateService","ReferenceID":16,"ThisDN":"2001","PrivateMsgID":2}"#,
    );
    let ev = events(&t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: Message::EscapeResponse(EscapeResponse { extensions: None }),
    }));
    assert_eq!(ev.len(), 2);
    assert!(ev
        .iter()
        .all(|(_, e)| e.private_msg_id == Some(2) && e.other_dn.as_deref() == Some("1001")));
    assert!(events(&t.input(private_event("2001", false, "2001", "1001"))).is_empty());
}

#[test]
fn private_service_errors() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    // link down: 54
    let ev = events(&t.text(
        1,
        r#"{"request":"RequestPrivateService","ReferenceID":1,"ThisDN":"2001","PrivateMsgID":2}"#,
    ));
    assert_eq!(ev[0].1.error_code.map(|c| c.0), Some(54));
    t.up(&[]);
    let code = |t: &mut T, json: &str| events(&t.text(1, json))[0].1.error_code.map(|c| c.0);
    assert_eq!(
        code(
            &mut t,
            r#"{"request":"RequestPrivateService","ReferenceID":2,"ThisDN":"2001","PrivateMsgID":2}"#
        ),
        Some(41)
    );
    register(&mut t, 1, "2001", 3, &[]);
    assert_eq!(
        code(
            &mut t,
            r#"{"request":"RequestPrivateService","ReferenceID":4,"ThisDN":"2001","PrivateMsgID":1}"#
        ),
        Some(53)
    );
    assert_eq!(
        code(
            &mut t,
            r#"{"request":"RequestPrivateService","ReferenceID":5,"ThisDN":"2001","PrivateMsgID":1,"Extensions":{"HOST_DN":"2001"}}"#
        ),
        Some(53)
    );
    assert_eq!(
        code(
            &mut t,
            r#"{"request":"RequestPrivateService","ReferenceID":6,"ThisDN":"2001","PrivateMsgID":3013}"#
        ),
        Some(51)
    );
    register(&mut t, 1, "3001", 7, &[]);
    // Connector refusal: mapped with the CSTAError extension
    let (tag, _) = service(
        &mut t,
        1,
        r#"{"request":"RequestPrivateService","ReferenceID":8,"ThisDN":"2001","PrivateMsgID":1,"Extensions":{"HOST_DN":"1001"}}"#,
    );
    let refuse = Message::CstaErrorCode(CstaErrorCode {
        error: CstaError::SystemResourceAvailability(SystemResourceAvailabilityError::ResourceBusy),
    });
    let ev = events(&t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: refuse,
    }));
    assert_eq!(ev[0].1.error_code.map(|c| c.0), Some(1172));
    assert_eq!(
        ev[0].1.extension_str("CSTAError"),
        Some("systemResourceAvailibility/resourceBusy")
    );
    // no answer: 57 after request-timeout; a second request for the same guest waited
    let (tag, _) = service(
        &mut t,
        1,
        r#"{"request":"RequestPrivateService","ReferenceID":9,"ThisDN":"2001","PrivateMsgID":2}"#,
    );
    assert!(requests(&t.text(
        1,
        r#"{"request":"RequestPrivateService","ReferenceID":10,"ThisDN":"2001","PrivateMsgID":2}"#
    ))
    .is_empty());
    let out = t.advance(5_001);
    let ev = events(&out);
    assert_eq!(ev[0].1.error_code.map(|c| c.0), Some(57));
    assert_eq!(ev[0].1.reference_id, Some(9));
    let next = requests(&out);
    assert_eq!(next.len(), 1, "the waiting request goes out now");
    assert!(
        events(&t.input(Input::CstaAnswer {
            invoke_id: tag,
            message: Message::EscapeResponse(EscapeResponse { extensions: None })
        }))
        .is_empty(),
        "late answer ignored"
    );
    // link lost while pending: 54
    let ev = events(&t.input(Input::LinkDown {
        reason: "test".into(),
    }));
    let codes: Vec<_> = ev
        .iter()
        .map(|(_, e)| (e.name, e.error_code.map(|c| c.0), e.reference_id))
        .collect();
    assert!(
        codes.contains(&(EventName::EventError, Some(54), Some(10))),
        "{codes:?}"
    );
    assert!(
        codes.contains(&(EventName::EventLinkDisconnected, Some(54), None)),
        "{codes:?}"
    );
}

#[test]
fn resync_reports_changes_before_link_connected() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.up(&[("2010", "1010")]);
    register(&mut t, 1, "2010", 1, &[("2010", "1010")]);
    register(&mut t, 1, "2003", 2, &[("2010", "1010")]);
    assert_eq!(t.e.host_of("2010"), Some("1010"));
    t.input(Input::LinkDown {
        reason: "drop".into(),
    });
    // while down: registration is answered from the table, queries still work
    let ev = register(&mut t, 1, "2004", 3, &[]);
    assert_eq!(ev[0].1.name, EventName::EventRegistered);
    // while the link was down 2010 left and 2003 sat down at 1003
    let ev = events(&t.up(&[("2003", "1003")]));
    let names: Vec<_> = ev
        .iter()
        .map(|(_, e)| (e.name, e.private_msg_id, e.this_dn.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (EventName::EventPrivateInfo, Some(1), Some("2003".into())),
            (EventName::EventPrivateInfo, Some(2), Some("2010".into())),
            (EventName::EventLinkConnected, None, None),
        ]
    );
    assert!(t.e.is_monitored("2004"));
}

#[test]
fn registration_rules() {
    let mut cfg = EngineConfig::default();
    cfg.dns.push(DnConfig {
        number: "3001".into(),
        dn_type: ctid_protocol::AddressType::Queue,
        register: RegisterFlag::True,
    });
    let mut t = T::new(cfg);
    for c in [1, 2] {
        t.input(Input::ClientConnected {
            client: c,
            peer: "p".into(),
        });
    }
    t.up(&[]);
    assert!(
        t.e.is_monitored("3001"),
        "register = true is monitored at link-up"
    );
    let code = |ev: &[(Vec<ClientId>, Event)]| ev[0].1.error_code.map(|c| c.0);
    let ev = events(&t.text(1, r#"{"request":"RequestRegisterAddress","ReferenceID":1,"ThisDN":"3001","AddressType":"AddressTypeDN"}"#));
    assert_eq!(code(&ev), Some(53));
    let ev = events(&t.text(1, r#"{"request":"RequestRegisterAddress","ReferenceID":2,"ThisDN":"T1","AddressType":"AddressTypeTrunk"}"#));
    assert_eq!(code(&ev), Some(59));
    register(&mut t, 1, "2001", 3, &[]);
    let ev = events(&t.text(2, r#"{"request":"RequestRegisterAddress","ReferenceID":4,"ThisDN":"2001","RegisterMode":"ModePrivate"}"#));
    assert_eq!(code(&ev), Some(42));
    let ev = events(&t.text(
        2,
        r#"{"request":"RequestUnregisterAddress","ReferenceID":5,"ThisDN":"2001"}"#,
    ));
    assert_eq!(code(&ev), Some(41));
    let ev = events(&t.text(
        2,
        r#"{"request":"RequestQueryAddress","ReferenceID":6,"ThisDN":"9999"}"#,
    ));
    assert_eq!(code(&ev), Some(53), "InfoType missing");
    let ev = events(&t.text(2, r#"{"request":"RequestQueryAddress","ReferenceID":6,"ThisDN":"9999","InfoType":"AddressInfoDNStatus"}"#));
    assert_eq!(code(&ev), Some(59));
    let ev = events(&t.text(
        2,
        r#"{"request":"RequestMakeCall","ReferenceID":7,"ThisDN":"2001","OtherDN":"1001"}"#,
    ));
    assert_eq!(code(&ev), Some(41), "not registered by this client");
    let ev = events(&t.text(2, r#"{"request":"RequestRegisterAll","ReferenceID":7}"#));
    assert_eq!(code(&ev), Some(51));
    let ev = events(&t.text(2, r#"{"request":"Nope","ReferenceID":8}"#));
    assert_eq!(code(&ev), Some(51));
    let ev = events(&t.text(2, "not json"));
    assert_eq!(code(&ev), Some(53));
    // the last registration releases the switch monitor
    let out = t.text(
        1,
        r#"{"request":"RequestUnregisterAddress","ReferenceID":9,"ThisDN":"2001"}"#,
    );
    assert!(requests(&out)
        .iter()
        .any(|(_, m)| matches!(m, Message::MonitorStop(_))));
    assert!(!t.e.is_monitored("2001"));
    // disconnecting releases too
    register(&mut t, 2, "2002", 10, &[]);
    assert!(t.e.is_monitored("2002"));
    let out = t.input(Input::ClientDisconnected { client: 2 });
    assert!(requests(&out)
        .iter()
        .any(|(_, m)| matches!(m, Message::MonitorStop(_))));
    let _ = Request::new(ctid_protocol::RequestName::RequestQueryServer);
}

fn ev_in(m: Message) -> Input {
    Input::CstaEvent {
        message: xml_answer(m),
    }
}

fn names(out: &[Output]) -> Vec<(Vec<ClientId>, EventName, Option<u32>)> {
    events(out)
        .into_iter()
        .map(|(to, e)| (to, e.name, e.reference_id))
        .collect()
}

#[test]
fn basic_call_make_answer_release() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.input(Input::ClientConnected {
        client: 2,
        peer: "b".into(),
    });
    t.up(&[]);
    register(&mut t, 1, "1001", 1, &[]);
    register(&mut t, 2, "1002", 1, &[]);
    let (tag, msg) = service(
        &mut t,
        1,
        r#"{"request":"RequestMakeCall","ReferenceID":5,"ThisDN":"1001","OtherDN":"1002"}"#,
    );
    assert!(
        matches!(msg, Message::MakeCall(ref m) if m.calling_device == "1001" && m.called_directory_number == "1002")
    );
    t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: Message::MakeCallResponse(MakeCallResponse {
            calling_device: ConnectionId::new("C1", "1001"),
            extensions: None,
        }),
    });
    let c = || ConnectionId::new("C1", "1001");
    let out = t.input(ev_in(Message::ServiceInitiatedEvent(
        ServiceInitiatedEvent {
            monitor_cross_ref_id: "1001".into(),
            initiated_connection: c(),
            initiating_device: Some(DeviceRef::id("1001")),
            called_device: None,
            local_connection_info: Some(LocalConnectionState::Initiated),
            correlator_data: None,
            cause: Some(EventCause::MakeCall),
            extensions: None,
        },
    )));
    assert!(
        names(&out).is_empty(),
        "no EventOffHook for a ctid MakeCall"
    );
    let out = t.input(ev_in(Message::OriginatedEvent(OriginatedEvent {
        monitor_cross_ref_id: "1001".into(),
        originated_connection: c(),
        calling_device: Some(DeviceRef::id("1001")),
        called_device: Some(DeviceRef::id("1002")),
        originating_device: None,
        local_connection_info: None,
        correlator_data: None,
        cause: Some(EventCause::NewCall),
        extensions: None,
    })));
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (
            ev[0].1.name,
            ev[0].1.reference_id,
            ev[0].1.other_dn.as_deref()
        ),
        (EventName::EventDialing, Some(5), Some("1002"))
    );
    assert_eq!(ev[0].1.call_type, Some(ctid_protocol::CallType::Internal));
    let conn = ev[0].1.conn_id.unwrap();
    let delivered = |x: &str| {
        Message::DeliveredEvent(DeliveredEvent {
            monitor_cross_ref_id: x.into(),
            connection: ConnectionId::new("C1", "1002"),
            alerting_device: Some(DeviceRef::id("1002")),
            calling_device: Some(DeviceRef::id("1001")),
            called_device: Some(DeviceRef::id("1002")),
            last_redirection_device: None,
            originating_nid_connection: None,
            local_connection_info: None,
            correlator_data: None,
            cause: Some(EventCause::NewCall),
            network_calling_device: None,
            network_called_device: None,
            associated_calling_device: None,
            associated_called_device: None,
            extensions: None,
        })
    };
    assert!(names(&t.input(ev_in(delivered("1001")))).is_empty());
    let ev = events(&t.input(ev_in(delivered("1002"))));
    assert_eq!(
        (
            ev[0].0.clone(),
            ev[0].1.name,
            ev[0].1.conn_id,
            ev[0].1.ani.as_deref()
        ),
        // An internal call: no ANI with the default ani-distribution (inbound-calls-only).
        (vec![2], EventName::EventRinging, Some(conn), None)
    );
    // Answer at 1002 through ctid.
    let (tag, msg) = service(
        &mut t,
        2,
        &format!(
            r#"{{"request":"RequestAnswerCall","ReferenceID":6,"ThisDN":"1002","ConnID":"{conn}"}}"#
        ),
    );
    assert!(
        matches!(msg, Message::AnswerCall(ref a) if a.call_to_be_answered == ConnectionId::new("C1", "1002"))
    );
    t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: Message::AnswerCallResponse(AnswerCallResponse { extensions: None }),
    });
    let est = |x: &str| {
        Message::EstablishedEvent(EstablishedEvent {
            monitor_cross_ref_id: x.into(),
            established_connection: ConnectionId::new("C1", "1002"),
            answering_device: Some(DeviceRef::id("1002")),
            calling_device: Some(DeviceRef::id("1001")),
            called_device: Some(DeviceRef::id("1002")),
            last_redirection_device: None,
            originatin_nid_connection: None,
            local_connection_info: None,
            correlator_data: None,
            cause: None,
            network_calling_device: None,
            network_called_device: None,
            associated_calling_device: None,
            associated_called_device: None,
            extensions: None,
        })
    };
    assert_eq!(
        names(&t.input(ev_in(est("1001")))),
        vec![(vec![1], EventName::EventEstablished, None)]
    );
    assert_eq!(
        names(&t.input(ev_in(est("1002")))),
        vec![(vec![2], EventName::EventEstablished, Some(6))]
    );
    let q = t.text(1, r#"{"request":"RequestQueryAddress","ReferenceID":7,"ThisDN":"1001","InfoType":"AddressInfoDNStatus"}"#);
    let q = &events(&q)[0].1;
    assert_eq!(q.extension_str("status"), Some("AddressStatusTalking"));
    assert_eq!(q.extension_str("conn-1"), Some(conn.to_string().as_str()));
    assert_eq!(q.extension_str("ps-1"), Some("Connected"));
    // User data is local and reaches both parties.
    let out = t.text(1, &format!(r#"{{"request":"RequestAttachUserData","ReferenceID":8,"ThisDN":"1001","ConnID":"{conn}","UserData":{{"Case":"42"}}}}"#));
    let ev = events(&out);
    assert_eq!(ev.len(), 2);
    assert!(ev
        .iter()
        .all(|(_, e)| e.name == EventName::EventAttachedDataChanged
            && e.user_data.as_ref().unwrap().get_str("Case") == Some("42")));
    // Release from 1001.
    let (tag, _) = service(
        &mut t,
        1,
        &format!(
            r#"{{"request":"RequestReleaseCall","ReferenceID":9,"ThisDN":"1001","ConnID":"{conn}"}}"#
        ),
    );
    t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: Message::ClearConnectionResponse(ClearConnectionResponse { extensions: None }),
    });
    let cleared = |x: &str, who: &str| {
        Message::ConnectionClearedEvent(ConnectionClearedEvent {
            monitor_cross_ref_id: x.into(),
            dropped_connection: ConnectionId::new("C1", who),
            releasing_device: Some(DeviceRef::id(who)),
            local_connection_info: None,
            correlator_data: None,
            cause: Some(EventCause::NormalClearing),
            extensions: None,
        })
    };
    assert_eq!(
        names(&t.input(ev_in(cleared("1001", "1001")))),
        vec![(vec![1], EventName::EventReleased, Some(9))]
    );
    assert!(names(&t.input(ev_in(cleared("1002", "1001")))).is_empty());
    assert_eq!(
        names(&t.input(ev_in(cleared("1002", "1002")))),
        vec![(vec![2], EventName::EventReleased, None)]
    );
    assert!(t.e.calls().iter().next().is_none(), "call forgotten");
    // Unknown ConnID: 56.
    let ev = events(&t.text(
        1,
        &format!(
            r#"{{"request":"RequestHoldCall","ReferenceID":10,"ThisDN":"1001","ConnID":"{conn}"}}"#
        ),
    ));
    assert_eq!(ev[0].1.error_code.map(|c| c.0), Some(56));
}

#[test]
fn reload_adds_and_removes_dns() {
    let mut cfg = EngineConfig::default();
    cfg.dns.push(DnConfig {
        number: "1001".into(),
        dn_type: ctid_protocol::AddressType::Dn,
        register: RegisterFlag::True,
    });
    let mut t = T::new(cfg.clone());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.up(&[]);
    register(&mut t, 1, "1001", 1, &[]);
    assert!(t.e.is_monitored("1001"));
    cfg.dns = vec![DnConfig {
        number: "1002".into(),
        dn_type: ctid_protocol::AddressType::Dn,
        register: RegisterFlag::True,
    }];
    let out = t.input(Input::Reconfigure(Box::new(cfg)));
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].0.clone(), ev[0].1.name, ev[0].1.this_dn.as_deref()),
        (vec![1], EventName::EventUnregistered, Some("1001"))
    );
    assert!(ev[0]
        .1
        .error_message
        .as_deref()
        .unwrap()
        .contains("removed"));
    let reqs = requests(&out);
    assert!(reqs
        .iter()
        .any(|(_, m)| matches!(m, Message::MonitorStop(_))));
    assert!(reqs.iter().any(|(_, m)| matches!(m, Message::MonitorStart(s) if s.monitor_object == MonitorObject::Device("1002".into()))));
    assert!(!t.e.is_monitored("1001"));
}

/// Take the MonitorStart of `dn` out of `out` (its invoke ID), leaving the rest.
fn take_monitor_start(out: &mut Vec<Output>, dn: &str) -> Option<InvokeId> {
    let i = out.iter().position(|o| {
        matches!(o, Output::CstaRequest { message: Message::MonitorStart(m), .. }
            if m.monitor_object == MonitorObject::Device(dn.into()))
    })?;
    match out.remove(i) {
        Output::CstaRequest { invoke_id, .. } => Some(invoke_id),
        _ => None,
    }
}

fn csta_error(e: CstaError) -> Message {
    xml_answer(Message::CstaErrorCode(CstaErrorCode { error: e }))
}

fn connector_stops(t: &mut T, xref: &str) -> Vec<Output> {
    t.input(Input::CstaRequest {
        invoke_id: InvokeId::new(17).unwrap(),
        message: xml_answer(Message::MonitorStop(MonitorStop {
            monitor_cross_ref_id: xref.into(),
            extensions: None,
        })),
    })
}

fn starts(out: &[Output], dn: &str) -> usize {
    requests(out)
        .iter()
        .filter(|(_, m)| matches!(m, Message::MonitorStart(s) if s.monitor_object == MonitorObject::Device(dn.into())))
        .count()
}

#[test]
fn resync_monitor_refusals_are_retried_with_backoff_until_the_device_is_gone() {
    let mut t = T::new(EngineConfig::default());
    for c in [1, 2] {
        t.input(Input::ClientConnected {
            client: c,
            peer: "a".into(),
        });
    }
    t.up(&[]);
    register(&mut t, 1, "2001", 1, &[]);
    register(&mut t, 2, "2001", 2, &[]);
    register(&mut t, 1, "2002", 3, &[]);
    t.input(Input::LinkDown {
        reason: "drop".into(),
    });
    assert_eq!(t.e.poll_timeout(), None);

    // Resync: the switch refuses 2001 (busy); nobody waits, so no EventError, and the link
    // still comes up. The retry is engine state reported through poll_timeout.
    let mut out = t.input(Input::LinkUp {
        name: "test".into(),
        priority: None,
        edition: None,
    });
    let tag = take_monitor_start(&mut out, "2001").expect("MonitorStart 2001");
    let busy = CstaError::SystemResourceAvailability(SystemResourceAvailabilityError::ResourceBusy);
    let mut out2 = t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: csta_error(busy.clone()),
    });
    assert!(events(&out2).is_empty(), "{out2:?}");
    out.append(&mut out2);
    let ev = events(&t.serve(out, &[]));
    assert_eq!(ev.last().unwrap().1.name, EventName::EventLinkConnected);
    assert!(ev.iter().all(|(_, e)| e.name != EventName::EventError));
    assert!(!t.e.is_monitored("2001"));
    assert!(t.e.is_monitored("2002"));
    let t0 = t.now.mono_ms;
    assert_eq!(t.e.poll_timeout(), Some(t0 + 1_000));

    // Not before its time; then retried, refused again: the next wait doubles.
    assert_eq!(starts(&t.advance(999), "2001"), 0);
    let mut out = t.advance(1);
    let tag = take_monitor_start(&mut out, "2001").expect("retry after 1 s");
    let out = t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: csta_error(busy),
    });
    assert!(events(&out).is_empty());
    assert_eq!(t.e.poll_timeout(), Some(t.now.mono_ms + 2_000));
    assert_eq!(starts(&t.advance(1_999), "2001"), 0);
    let mut out = t.advance(1);
    let tag = take_monitor_start(&mut out, "2001").expect("retry after 2 s");

    // The switch says the device is gone: every registered client is told, unsolicited.
    let out = t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: csta_error(CstaError::Operation(OperationError::InvalidDeviceID)),
    });
    let ev = events(&out);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let (to, e) = &ev[0];
    assert_eq!(to, &vec![1, 2]);
    assert_eq!(e.name, EventName::EventUnregistered);
    assert_eq!(e.this_dn.as_deref(), Some("2001"));
    assert_eq!(e.reference_id, None);
    assert_eq!(e.error_code.map(|c| c.0), Some(1151));
    assert!(e.error_message.as_deref().unwrap().contains("2001"));
    assert_eq!(
        e.extension_str("CSTAError"),
        Some("operation/invalidDeviceID")
    );
    // Nobody wants 2001 now: no more retries, and its registrations are gone.
    assert_eq!(t.e.poll_timeout(), None);
    let out = t.text(
        1,
        r#"{"request":"RequestUnregisterAddress","ReferenceID":9,"ThisDN":"2001"}"#,
    );
    assert_eq!(events(&out)[0].1.error_code.map(|c| c.0), Some(41));
}

#[test]
fn resync_monitor_timeout_is_retried() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.up(&[]);
    register(&mut t, 1, "2001", 1, &[]);
    t.input(Input::LinkDown {
        reason: "drop".into(),
    });
    let mut out = t.input(Input::LinkUp {
        name: "test".into(),
        priority: None,
        edition: None,
    });
    take_monitor_start(&mut out, "2001").expect("MonitorStart 2001");
    // No answer: after request-timeout the resync goes on and a retry is scheduled.
    let timeout = t.e.config().request_timeout_ms;
    let mut out = t.advance(timeout);
    assert_eq!(
        events(&out).last().unwrap().1.name,
        EventName::EventLinkConnected
    );
    assert!(take_monitor_start(&mut out, "2001").is_none());
    assert_eq!(t.e.poll_timeout(), Some(t.now.mono_ms + 1_000));
    let out = t.advance(1_000);
    assert_eq!(starts(&out, "2001"), 1);
    t.serve(out, &[]);
    assert!(t.e.is_monitored("2001"));
    assert_eq!(t.e.poll_timeout(), None);
}

#[test]
fn connector_monitor_stop_storm_backs_off() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.up(&[]);
    register(&mut t, 1, "2002", 1, &[]);
    // The first stop is re-monitored at once (the serve helper answers with xref = DN).
    let out = connector_stops(&mut t, "2002");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::CstaAnswer {
            message: Message::MonitorStopResponse(_),
            ..
        }
    )));
    assert_eq!(starts(&out, "2002"), 1);
    t.serve(out, &[]);
    assert!(t.e.is_monitored("2002"));
    // Stopped again at once: now 1 s, then 2 s, then 4 s — never a tight loop.
    for wait in [1_000, 2_000, 4_000] {
        let out = connector_stops(&mut t, "2002");
        assert_eq!(starts(&out, "2002"), 0, "wait {wait}");
        assert!(!t.e.is_monitored("2002"));
        assert_eq!(t.e.poll_timeout(), Some(t.now.mono_ms + wait));
        assert_eq!(starts(&t.advance(wait - 1), "2002"), 0);
        let out = t.advance(1);
        assert_eq!(starts(&out, "2002"), 1, "wait {wait}");
        t.serve(out, &[]);
        assert!(t.e.is_monitored("2002"));
    }
    // A monitor that stayed up for a minute starts over: re-monitored at once.
    t.advance(60_000);
    let out = connector_stops(&mut t, "2002");
    assert_eq!(starts(&out, "2002"), 1);
    t.serve(out, &[]);
    assert!(t.e.is_monitored("2002"));
    assert_eq!(t.e.poll_timeout(), None);
}

// ------------------------------------------------------------------------------ issue 12

fn delivered_at(xref: &str, call: &str, from: &str, to: &str) -> Input {
    ev_in(Message::DeliveredEvent(DeliveredEvent {
        monitor_cross_ref_id: xref.into(),
        connection: ConnectionId::new(call, to),
        alerting_device: Some(DeviceRef::id(to)),
        calling_device: Some(DeviceRef::id(from)),
        called_device: Some(DeviceRef::id(to)),
        last_redirection_device: None,
        originating_nid_connection: None,
        local_connection_info: None,
        correlator_data: None,
        cause: Some(EventCause::NewCall),
        network_calling_device: None,
        network_called_device: None,
        associated_calling_device: None,
        associated_called_device: None,
        extensions: None,
    }))
}

fn connected(t: &mut T, clients: &[ClientId]) {
    for c in clients {
        t.input(Input::ClientConnected {
            client: *c,
            peer: "p".into(),
        });
    }
}

#[test]
fn messages_lost_resyncs_on_the_same_link_without_link_events() {
    let mut t = T::new(EngineConfig::default());
    connected(&mut t, &[1]);
    t.up(&[]);
    register(&mut t, 1, "1001", 1, &[]);
    let ev = events(&t.input(delivered_at("1001", "C1", "0612345678", "1001")));
    assert_eq!(ev[0].1.name, EventName::EventRinging);
    let conn = ev[0].1.conn_id.unwrap();
    // A client request in flight at the switch, and a MonitorStart in flight.
    let (answer_id, _) = service(
        &mut t,
        1,
        &format!(
            r#"{{"request":"RequestAnswerCall","ReferenceID":7,"ThisDN":"1001","ConnID":"{conn}"}}"#
        ),
    );
    let out = t.text(
        1,
        r#"{"request":"RequestRegisterAddress","ReferenceID":8,"ThisDN":"1002"}"#,
    );
    let pending_monitor = requests(&out);
    assert_eq!(pending_monitor.len(), 1);
    let out = t.input(Input::Resync {
        reason: "messagesLost".into(),
    });
    assert!(events(&out).is_empty(), "no link events: {out:?}");
    let starts: Vec<_> = requests(&out)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::MonitorStart(m) => Some(m.monitor_object),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [MonitorObject::Device("1001".into())],
        "1002's MonitorStart in flight is not doubled"
    );
    assert_eq!(t.e.link_state(), LinkState::Up);
    assert!(!t.e.is_monitored("1001"));
    // The switch lost the call meanwhile: the snapshot releases it.
    let caught = t.serve(out, &[]);
    let ev = events(&caught);
    let released: Vec<_> = ev
        .iter()
        .filter(|(_, e)| e.name == EventName::EventReleased)
        .collect();
    assert_eq!(released.len(), 1, "{ev:?}");
    assert_eq!(
        released[0]
            .1
            .extensions
            .as_ref()
            .and_then(|k| k.get_str("ReleaseCause")),
        Some("resync")
    );
    assert!(
        ev.iter().all(|(_, e)| !matches!(
            e.name,
            EventName::EventLinkConnected
                | EventName::EventLinkDisconnected
                | EventName::EventError
        )),
        "{ev:?}"
    );
    assert!(t.e.is_monitored("1001"));
    // The MonitorStart in flight completes 1002's registration.
    let ev = events(&t.serve(
        vec![Output::CstaRequest {
            invoke_id: pending_monitor[0].0,
            message: pending_monitor[0].1.clone(),
        }],
        &[],
    ));
    assert!(ev
        .iter()
        .any(|(_, e)| e.name == EventName::EventRegistered && e.reference_id == Some(8)));
    assert!(t.e.is_monitored("1002"));
    // The client's request was not failed: the switch's answer still reaches it.
    t.input(Input::CstaAnswer {
        invoke_id: answer_id,
        message: Message::AnswerCallResponse(AnswerCallResponse { extensions: None }),
    });
    let ev = events(&t.advance(5_000));
    assert_eq!(
        ev.iter()
            .map(|(_, e)| (e.name, e.reference_id))
            .collect::<Vec<_>>(),
        [(EventName::EventACK, Some(7))]
    );
}

#[test]
fn overload_halves_the_request_window_until_relieved() {
    let mut t = T::new(EngineConfig {
        max_outstanding: 4,
        ..EngineConfig::default()
    });
    connected(&mut t, &[1]);
    t.up(&[]);
    assert_eq!(t.e.window_limit(), 4);
    t.input(Input::Overload { reached: true });
    assert_eq!(t.e.window_limit(), 2);
    // Registrations of eight DNs: two MonitorStarts in flight at once.
    let mut out = Vec::new();
    for (i, dn) in (2001..2009).enumerate() {
        out.extend(t.text(
            1,
            &format!(r#"{{"request":"RequestRegisterAddress","ReferenceID":{i},"ThisDN":"{dn}","AddressType":"AddressTypeQueue"}}"#),
        ));
    }
    assert_eq!(requests(&out).len(), 2);
    assert_eq!(t.e.outstanding(), 2);
    let out = t.input(Input::Overload { reached: false });
    assert_eq!(t.e.window_limit(), 4);
    assert_eq!(requests(&out).len(), 2, "two more go at once");
    assert_eq!(t.e.outstanding(), 4);
    // A new link starts without overload.
    t.input(Input::Overload { reached: true });
    t.input(Input::LinkDown { reason: "x".into() });
    assert_eq!(t.e.window_limit(), 4);
}

#[test]
fn the_active_links_engine_options_apply() {
    let mut cfg = EngineConfig::default();
    for (name, max) in [("a", 10), ("b", 3)] {
        cfg.links.push(ctid_engine::config::LinkOptions {
            name: name.into(),
            request_timeout_ms: 5_000,
            max_outstanding: max,
            resync_timeout_ms: 10_000,
            hotdesk_enabled: true,
            call_rq_gap_ms: 250,
            device_rq_gap_ms: 250,
        });
    }
    cfg.select_link("a");
    let mut t = T::new(cfg.clone());
    assert_eq!(t.e.window_limit(), 10);
    t.input(Input::LinkUp {
        name: "b".into(),
        priority: Some(2),
        edition: None,
    });
    assert_eq!(t.e.window_limit(), 3);
    // A reload keeps the options of the link in use.
    t.input(Input::Reconfigure(Box::new(cfg)));
    assert_eq!(t.e.window_limit(), 3);
    t.input(Input::LinkDown { reason: "x".into() });
    t.input(Input::LinkUp {
        name: "a".into(),
        priority: Some(1),
        edition: None,
    });
    assert_eq!(t.e.window_limit(), 10);
}

fn ringing_ani(cfg: EngineConfig, from: &str) -> (Option<String>, Option<ctid_protocol::CallType>) {
    let mut t = T::new(cfg);
    connected(&mut t, &[1]);
    t.up(&[]);
    register(&mut t, 1, "1001", 1, &[]);
    let ev = events(&t.input(delivered_at("1001", "C1", from, "1001")));
    assert_eq!(ev[0].1.name, EventName::EventRinging);
    (ev[0].1.ani.clone(), ev[0].1.call_type)
}

#[test]
fn ani_distribution_depends_on_the_call_type() {
    use ctid_engine::config::AniDistribution::*;
    use ctid_protocol::CallType::*;
    let with = |a| EngineConfig {
        ani_distribution: a,
        ..EngineConfig::default()
    };
    // Default inbound-calls-only: the external caller's number, not the internal one.
    assert_eq!(
        ringing_ani(with(InboundCallsOnly), "0612345678"),
        (Some("0612345678".into()), Some(Inbound))
    );
    assert_eq!(
        ringing_ani(with(InboundCallsOnly), "1002"),
        (None, Some(Internal))
    );
    assert_eq!(
        ringing_ani(with(AllCalls), "1002"),
        (Some("1002".into()), Some(Internal))
    );
    assert_eq!(
        ringing_ani(with(Suppressed), "0612345678"),
        (None, Some(Inbound))
    );
}

#[test]
fn internal_dn_pattern_decides_the_call_type() {
    use ctid_protocol::CallType::*;
    let cfg = EngineConfig {
        internal_dn_pattern: ctid_engine::config::DnPattern::new("^0[0-9]{9}$").unwrap(),
        ..EngineConfig::default()
    };
    // 0612345678 now internal (pattern), 1001 internal (registered: in the DN table).
    assert_eq!(
        ringing_ani(cfg.clone(), "0612345678"),
        (None, Some(Internal))
    );
    // 7001 matches neither the pattern nor the table: external.
    assert_eq!(
        ringing_ani(cfg, "7001"),
        (Some("7001".into()), Some(Inbound))
    );
}

#[test]
fn a_second_request_on_a_device_waits_for_the_first_or_the_gap() {
    let cfg = EngineConfig {
        device_rq_gap_ms: 300,
        ..EngineConfig::default()
    };
    let mut t = T::new(cfg);
    connected(&mut t, &[1]);
    t.up(&[]);
    register(&mut t, 1, "1001", 1, &[]);
    let dnd = r#"{"request":"RequestSetDNDOn","ReferenceID":2,"ThisDN":"1001"}"#;
    let (first, _) = service(&mut t, 1, dnd);
    let out = t.text(
        1,
        r#"{"request":"RequestMakeCall","ReferenceID":3,"ThisDN":"1001","OtherDN":"1002"}"#,
    );
    assert!(requests(&out).is_empty(), "waits for the first: {out:?}");
    assert_eq!(t.e.poll_timeout(), Some(t.now.mono_ms + 300));
    // The first is accepted: the second goes at once.
    let out = t.input(Input::CstaAnswer {
        invoke_id: first,
        message: Message::SetDoNotDisturbResponse(SetDoNotDisturbResponse { extensions: None }),
    });
    assert!(
        matches!(requests(&out)[..], [(_, Message::MakeCall(_))]),
        "{out:?}"
    );
    // Without an answer, the gap lets the next one go (once, without waiting again).
    let out = t.text(
        1,
        r#"{"request":"RequestSetDNDOff","ReferenceID":4,"ThisDN":"1001"}"#,
    );
    assert!(requests(&out).is_empty());
    let out = t.advance(299);
    assert!(requests(&out).is_empty());
    let out = t.advance(1);
    assert!(
        matches!(requests(&out)[..], [(_, Message::SetDoNotDisturb(_))]),
        "{out:?}"
    );
    // 0: not held back.
    let mut t = T::new(EngineConfig {
        device_rq_gap_ms: 0,
        ..EngineConfig::default()
    });
    connected(&mut t, &[1]);
    t.up(&[]);
    register(&mut t, 1, "1001", 1, &[]);
    service(&mut t, 1, dnd);
    service(
        &mut t,
        1,
        r#"{"request":"RequestSetDNDOff","ReferenceID":5,"ThisDN":"1001"}"#,
    );
}

#[test]
fn a_snapshot_saying_the_device_is_gone_releases_its_calls_and_unregisters_it() {
    let mut t = T::new(EngineConfig::default());
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    t.up(&[]);
    register(&mut t, 1, "1002", 1, &[]);
    let out = t.input(ev_in(Message::DeliveredEvent(DeliveredEvent {
        monitor_cross_ref_id: "1002".into(),
        connection: ConnectionId::new("C1", "1002"),
        alerting_device: Some(DeviceRef::id("1002")),
        calling_device: Some(DeviceRef::id("1001")),
        called_device: Some(DeviceRef::id("1002")),
        last_redirection_device: None,
        originating_nid_connection: None,
        local_connection_info: None,
        correlator_data: None,
        cause: Some(EventCause::NewCall),
        network_calling_device: None,
        network_called_device: None,
        associated_calling_device: None,
        associated_called_device: None,
        extensions: None,
    })));
    assert_eq!(names(&out), vec![(vec![1], EventName::EventRinging, None)]);
    t.input(Input::LinkDown {
        reason: "test".into(),
    });
    // back: MonitorStart is accepted, but the snapshot says the device is gone
    let out = t.input(Input::LinkUp {
        name: "test".into(),
        priority: None,
        edition: None,
    });
    let mut got = Vec::new();
    let mut pending = out;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for o in pending {
            match &o {
                Output::CstaRequest {
                    invoke_id,
                    message: Message::SnapshotDevice(_),
                } => next.extend(t.input(Input::CstaAnswer {
                    invoke_id: *invoke_id,
                    message: csta_error(CstaError::Operation(OperationError::InvalidDeviceID)),
                })),
                Output::CstaRequest {
                    invoke_id,
                    message: Message::MonitorStart(_),
                } => next.extend(t.input(Input::CstaAnswer {
                    invoke_id: *invoke_id,
                    message: xml_answer(Message::MonitorStartResponse(MonitorStartResponse {
                        monitor_cross_ref_id: "1002".into(),
                        monitor_existing_calls: None,
                        extensions: None,
                    })),
                })),
                Output::CstaRequest {
                    message: Message::MonitorStop(_),
                    ..
                } => got.push(o),
                Output::CstaRequest { .. } => got.extend(t.serve(vec![o], &[])),
                _ => got.push(o),
            }
        }
        pending = next;
    }
    let ev = events(&got);
    let rel = ev
        .iter()
        .find(|(_, e)| e.name == EventName::EventReleased)
        .expect("the call at the gone device is released");
    assert_eq!(rel.1.this_dn.as_deref(), Some("1002"));
    let unreg = ev
        .iter()
        .find(|(_, e)| e.name == EventName::EventUnregistered)
        .expect("its client is unregistered");
    assert_eq!(unreg.0, vec![1]);
    assert_eq!(
        unreg.1.extension_str("CSTAError"),
        Some("operation/invalidDeviceID")
    );
    assert!(
        requests(&got)
            .iter()
            .any(|(_, m)| matches!(m, Message::MonitorStop(_))),
        "the monitor nobody wants is stopped: {got:?}"
    );
}

#[test]
fn the_export_gets_every_event_of_a_monitored_dn_and_the_link_events() {
    let cfg = EngineConfig {
        export_events: true,
        dns: vec![DnConfig {
            number: "1002".into(),
            dn_type: ctid_protocol::AddressType::Dn,
            register: RegisterFlag::True,
        }],
        ..Default::default()
    };
    let mut t = T::new(cfg);
    let up = events(&t.up(&[]));
    // the link event, to the export although no client is connected
    assert!(up
        .iter()
        .any(|(to, e)| e.name == EventName::EventLinkConnected && to == &vec![io::EXPORT]));
    assert_eq!(t.e.client_count(), 0);
    // an event of 1002, which nobody registered: the export has it
    let out = t.input(ev_in(Message::DeliveredEvent(DeliveredEvent {
        monitor_cross_ref_id: "1002".into(),
        connection: ConnectionId::new("C1", "1002"),
        alerting_device: Some(DeviceRef::id("1002")),
        calling_device: Some(DeviceRef::id("1001")),
        called_device: Some(DeviceRef::id("1002")),
        last_redirection_device: None,
        originating_nid_connection: None,
        local_connection_info: None,
        correlator_data: None,
        cause: Some(EventCause::NewCall),
        network_calling_device: None,
        network_called_device: None,
        associated_calling_device: None,
        associated_called_device: None,
        extensions: None,
    })));
    assert_eq!(
        names(&out),
        vec![(vec![io::EXPORT], EventName::EventRinging, None)]
    );
    // a client's request answered by the event: the client has its ReferenceID, the export not
    t.input(Input::ClientConnected {
        client: 1,
        peer: "a".into(),
    });
    register(&mut t, 1, "1002", 1, &[]);
    let conn = t.e.calls().iter().next().unwrap().conn_id.to_string();
    let json = r#"{"request":"RequestAnswerCall","ReferenceID":7,"ThisDN":"1002","ConnID":"CONN"}"#
        .replace("CONN", &conn);
    let (tag, _) = service(&mut t, 1, &json);
    t.input(Input::CstaAnswer {
        invoke_id: tag,
        message: Message::AnswerCallResponse(AnswerCallResponse { extensions: None }),
    });
    let out = t.input(ev_in(Message::EstablishedEvent(EstablishedEvent {
        monitor_cross_ref_id: "1002".into(),
        established_connection: ConnectionId::new("C1", "1002"),
        answering_device: Some(DeviceRef::id("1002")),
        calling_device: Some(DeviceRef::id("1001")),
        called_device: Some(DeviceRef::id("1002")),
        last_redirection_device: None,
        originatin_nid_connection: None,
        local_connection_info: None,
        correlator_data: None,
        cause: Some(EventCause::NewCall),
        network_calling_device: None,
        network_called_device: None,
        associated_calling_device: None,
        associated_called_device: None,
        extensions: None,
    })));
    let n = names(&out);
    assert!(
        n.contains(&(vec![io::EXPORT], EventName::EventEstablished, None)),
        "{n:?}"
    );
    assert!(
        n.contains(&(vec![1], EventName::EventEstablished, Some(7))),
        "{n:?}"
    );
}
