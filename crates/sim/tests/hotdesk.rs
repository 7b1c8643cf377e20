//! Hot desking (csta-xml.md §12) over real sockets: the Escape private service (associate,
//! cancel, query and every failure of §12.5, in order), SetAgentState login/logout on a host,
//! and "the person at the desk" through the control API — each with its exact events (§12.6–7).

mod common;
use common::*;
use ctid_csta::*;

fn pe(xref: &str, state: &str, guest: &str, host: &str) -> String {
    format!("PrivateEvent monitorCrossRefID={xref} privateData=private:guestAssociatedEvent:{{guest={guest} host={host} state={state}}}")
}

fn fwd(xref: &str, host: &str, on: bool, to: Option<&str>) -> String {
    match to {
        Some(t) => format!("ForwardingEvent device={host} forwardStatus={on} forwardTo={t} forwardingType=forwardImmediate monitorCrossRefID={xref}"),
        None => format!("ForwardingEvent device={host} forwardStatus={on} forwardingType=forwardImmediate monitorCrossRefID={xref}"),
    }
}

async fn error_of(c: &mut Client, m: Message) -> String {
    match c.request(m).await {
        Message::CstaErrorCode(e) => e.error.to_string(),
        other => panic!("expected CSTAErrorCode, got {}", summary(&other)),
    }
}

#[tokio::test]
async fn escape_associate_query_cancel() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let g = c.monitor("2001").await;
    let h = c.monitor("1001").await;
    // a second connection monitoring only the host gets the host's copies only
    let mut other = Client::connect(sim.csta_addr()).await;
    let oh = other.monitor("1001").await;
    // and a connection monitoring nothing relevant gets nothing
    let mut none = Client::connect(sim.csta_addr()).await;
    none.monitor("1005").await;

    let r = c.request(escape(HotDesk::associate("2001", "1001"))).await;
    assert_eq!(summary(&r), "EscapeResponse");
    assert_eq!(
        c.events(3).await,
        [
            fwd(&h, "1001", true, Some("2001")),
            pe(&g, "established", "2001", "1001"),
            pe(&h, "established", "2001", "1001")
        ]
    );
    assert_eq!(
        other.events(2).await,
        [
            fwd(&oh, "1001", true, Some("2001")),
            pe(&oh, "established", "2001", "1001")
        ]
    );

    // query by guest, by host; a host without guest answers an empty extension
    let q = c.request(escape(HotDesk::query_guest("2001"))).await;
    let Message::EscapeResponse(q) = q else {
        panic!()
    };
    assert_eq!(
        q.private_data().unwrap().hotdesk(),
        Some(&HotDesk::answer(Some(("2001", "1001"))))
    );
    let Message::EscapeResponse(q) = c.request(escape(HotDesk::query_host("1001"))).await else {
        panic!()
    };
    assert_eq!(
        q.private_data().unwrap().hotdesk(),
        Some(&HotDesk::answer(Some(("2001", "1001"))))
    );
    let Message::EscapeResponse(q) = c.request(escape(HotDesk::query_host("1003"))).await else {
        panic!()
    };
    assert_eq!(
        q.private_data().unwrap().hotdesk(),
        Some(&HotDesk::answer(None))
    );
    // the demo's pre-existing pair
    let Message::EscapeResponse(q) = c.request(escape(HotDesk::query_guest("2010"))).await else {
        panic!()
    };
    assert_eq!(
        q.private_data().unwrap().hotdesk(),
        Some(&HotDesk::answer(Some(("2010", "1010"))))
    );

    // while associated, the host is forwarded to the guest
    let Message::GetForwardingResponse(f) = c
        .request(Message::GetForwarding(GetForwarding {
            device: "1001".into(),
            extensions: None,
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(f.forwarding_list[0].forward_dn.as_deref(), Some("2001"));

    let r = c.request(escape(HotDesk::cancel("2001"))).await;
    assert_eq!(summary(&r), "EscapeResponse");
    assert_eq!(
        c.events(3).await,
        [
            fwd(&h, "1001", false, None),
            pe(&g, "cancelled", "2001", "1001"),
            pe(&h, "cancelled", "2001", "1001")
        ]
    );
    assert_eq!(
        other.events(2).await,
        [
            fwd(&oh, "1001", false, None),
            pe(&oh, "cancelled", "2001", "1001")
        ]
    );
    c.quiet(200).await;
    other.quiet(50).await;
    none.quiet(50).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn escape_failures_in_table_order() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let bad = |guest: Option<&str>, host: Option<&str>, action: Option<&str>| {
        escape(HotDesk::Extension {
            action: action.map(HotDeskAction::parse),
            guest: guest.map(Into::into),
            host: host.map(Into::into),
        })
    };
    let inv = "operation/invalidParameterValue";
    // row 1: malformed
    assert_eq!(
        error_of(&mut c, bad(Some("2001"), Some("1001"), None)).await,
        inv
    );
    assert_eq!(
        error_of(&mut c, bad(Some("2001"), Some("1001"), Some("frobnicate"))).await,
        inv
    );
    assert_eq!(
        error_of(&mut c, bad(Some("2001"), None, Some("associate"))).await,
        inv
    );
    assert_eq!(
        error_of(&mut c, bad(None, Some("1001"), Some("associate"))).await,
        inv
    );
    assert_eq!(
        error_of(&mut c, bad(None, Some("1001"), Some("cancel"))).await,
        inv
    );
    assert_eq!(
        error_of(&mut c, bad(Some("2001"), Some("1001"), Some("query"))).await,
        inv
    );
    assert_eq!(error_of(&mut c, bad(None, None, Some("query"))).await, inv);
    let no_pd = Message::Escape(Escape {
        escape_register_id: None,
        private_data: None,
        extensions: None,
    });
    assert_eq!(error_of(&mut c, no_pd).await, inv);
    // row 1 wins over row 2 and 3 (malformed with equal/unknown devices)
    assert_eq!(
        error_of(&mut c, bad(Some("9999"), Some("9999"), None)).await,
        inv
    );
    // row 2: same device, even when unknown
    assert_eq!(
        error_of(&mut c, escape(HotDesk::associate("2001", "2001"))).await,
        "operation/notDifferentDevices"
    );
    assert_eq!(
        error_of(&mut c, escape(HotDesk::associate("9999", "9999"))).await,
        "operation/notDifferentDevices"
    );
    // row 3: unknown device
    for m in [
        HotDesk::associate("9999", "1001"),
        HotDesk::associate("2001", "9999"),
        HotDesk::cancel("9999"),
        HotDesk::query_guest("9999"),
        HotDesk::query_host("9999"),
    ] {
        assert_eq!(
            error_of(&mut c, escape(m)).await,
            "operation/invalidDeviceID"
        );
    }
    // row 4: guest already associated (with any host, including this one): 2010 sits at 1010
    assert_eq!(
        error_of(&mut c, escape(HotDesk::associate("2010", "1010"))).await,
        "stateIncompatibility/invalidObjectState"
    );
    assert_eq!(
        error_of(&mut c, escape(HotDesk::associate("2010", "1002"))).await,
        "stateIncompatibility/invalidObjectState"
    );
    // row 4 before row 5: 2010 is associated and 1010 is taken
    // row 5: host taken by another guest
    assert_eq!(
        error_of(&mut c, escape(HotDesk::associate("2001", "1010"))).await,
        "systemResourceAvailibility/resourceBusy"
    );
    // row 6: cancel of a guest not associated
    assert_eq!(
        error_of(&mut c, escape(HotDesk::cancel("2001"))).await,
        "stateIncompatibility/invalidObjectState"
    );
    // private data of another dialect
    let opaque = Message::Escape(Escape {
        escape_register_id: None,
        private_data: Some(PrivateData::Private(PrivateContent::Opaque {
            xml: "<x:thing xmlns:x=\"urn:other\">1</x:thing>".into(),
            namespaces: vec![],
        })),
        extensions: None,
    });
    assert_eq!(
        error_of(&mut c, opaque).await,
        "operation/privateDataNotSupported"
    );
    // the exact bytes of §12.8 example E / F / G come out of the codec for these errors
    let raw = ctid_csta::encode(
        &Message::CstaErrorCode(CstaErrorCode {
            error: CstaError::SystemResourceAvailability(
                SystemResourceAvailabilityError::ResourceBusy,
            ),
        }),
        Edition::Ed3,
    )
    .unwrap();
    assert!(String::from_utf8(raw)
        .unwrap()
        .contains("<systemResourceAvailibility>resourceBusy</systemResourceAvailibility>"));
    // nothing changed
    let st = sim.snapshot().await;
    assert_eq!(
        st["associations"],
        serde_json::json!([{"guest": "2010", "host": "1010"}])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn move_between_hosts_is_cancel_then_establish() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let g = c.monitor("2010").await;
    assert_eq!(
        summary(&c.request(escape(HotDesk::cancel("2010"))).await),
        "EscapeResponse"
    );
    assert_eq!(c.event().await, pe(&g, "cancelled", "2010", "1010"));
    assert_eq!(
        summary(&c.request(escape(HotDesk::associate("2010", "1002"))).await),
        "EscapeResponse"
    );
    assert_eq!(c.event().await, pe(&g, "established", "2010", "1002"));
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn agent_login_on_host_makes_the_association() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let g = c.monitor("2003").await;
    let h = c.monitor("1003").await;
    let r = c
        .request(set_agent("1003", ReqAgentState::LoggedOn, Some("2003")))
        .await;
    assert_eq!(summary(&r), "SetAgentStateResponse");
    assert_eq!(
        c.events(5).await,
        [
            fwd(&h, "1003", true, Some("2003")),
            pe(&g, "established", "2003", "1003"),
            pe(&h, "established", "2003", "1003"),
            format!("AgentLoggedOnEvent acdGroup=3001 agentDevice=1003 agentID=2003 monitorCrossRefID={h}"),
            format!("AgentNotReadyEvent acdGroup=3001 agentDevice=1003 agentID=2003 monitorCrossRefID={h}"),
        ]
    );
    let Message::GetAgentStateResponse(a) = c
        .request(Message::GetAgentState(GetAgentState {
            device: "1003".into(),
            acd_group: None,
            extensions: None,
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(a.agent_state_list[0].agent_id.as_deref(), Some("2003"));
    assert_eq!(
        a.agent_state_list[0].agent_info[0].agent_state,
        Some(AgentState::AgentNotReady)
    );
    // ready, then an ACD call rings under the guest's ID (at the host's phone)
    assert_eq!(
        summary(
            &c.request(set_agent("1003", ReqAgentState::Ready, Some("2003")))
                .await
        ),
        "SetAgentStateResponse"
    );
    assert_eq!(
        c.event().await,
        format!(
            "AgentReadyEvent acdGroup=3001 agentDevice=1003 agentID=2003 monitorCrossRefID={h}"
        )
    );
    let call = sim.dial("1001", "3001").await.unwrap();
    assert_eq!(
        c.event().await,
        format!("DeliveredEvent alertingDevice=2003 calledDevice=3001 callingDevice=1001 cause=distributed connection={call}@2003 lastRedirectionDevice=numberDialed:3001 localConnectionInfo=alerting monitorCrossRefID={g}")
    );
    // answering at the host's phone answers the guest's call
    sim.answer("1003").await.unwrap();
    assert_eq!(
        c.event().await,
        format!("EstablishedEvent answeringDevice=2003 calledDevice=3001 callingDevice=1001 cause=newCall establishedConnection={call}@2003 lastRedirectionDevice=numberDialed:3001 localConnectionInfo=connected monitorCrossRefID={g}")
    );
    sim.hangup("1001").await.unwrap();
    c.events(2).await;
    // errors: the guest logged on elsewhere / a host taken
    assert_eq!(
        error_of(
            &mut c,
            set_agent("1004", ReqAgentState::LoggedOn, Some("2003"))
        )
        .await,
        "stateIncompatibility/invalidObjectState"
    );
    assert_eq!(
        error_of(
            &mut c,
            set_agent("1010", ReqAgentState::LoggedOn, Some("2004"))
        )
        .await,
        "systemResourceAvailibility/resourceBusy"
    );
    assert_eq!(
        error_of(
            &mut c,
            set_agent("1003", ReqAgentState::LoggedOff, Some("2004"))
        )
        .await,
        "stateIncompatibility/invalidObjectState"
    );
    assert_eq!(
        error_of(
            &mut c,
            set_agent("1003", ReqAgentState::LoggedOn, Some("nobody"))
        )
        .await,
        "operation/invalidAgentIdentifier"
    );
    // logout: agent off, CFA removed, association cancelled
    assert_eq!(
        summary(
            &c.request(set_agent("1003", ReqAgentState::LoggedOff, Some("2003")))
                .await
        ),
        "SetAgentStateResponse"
    );
    assert_eq!(
        c.events(4).await,
        [
            format!("AgentLoggedOffEvent acdGroup=3001 agentDevice=1003 agentID=2003 monitorCrossRefID={h}"),
            fwd(&h, "1003", false, None),
            pe(&g, "cancelled", "2003", "1003"),
            pe(&h, "cancelled", "2003", "1003"),
        ]
    );
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn agent_login_on_a_host_signs_the_previous_agent_out() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let g3 = c.monitor("2003").await;
    let g4 = c.monitor("2004").await;
    let h = c.monitor("1003").await;
    let r = c
        .request(set_agent("1003", ReqAgentState::LoggedOn, Some("2003")))
        .await;
    assert_eq!(summary(&r), "SetAgentStateResponse");
    c.events(5).await;
    // Another guest logs in at the same desk: the first is signed out (its association ends
    // with its login), then the second is associated and logged on.
    let r = c
        .request(set_agent("1003", ReqAgentState::LoggedOn, Some("2004")))
        .await;
    assert_eq!(summary(&r), "SetAgentStateResponse");
    assert_eq!(
        c.events(9).await,
        [
            format!("AgentLoggedOffEvent acdGroup=3001 agentDevice=1003 agentID=2003 monitorCrossRefID={h}"),
            fwd(&h, "1003", false, None),
            pe(&g3, "cancelled", "2003", "1003"),
            pe(&h, "cancelled", "2003", "1003"),
            fwd(&h, "1003", true, Some("2004")),
            pe(&g4, "established", "2004", "1003"),
            pe(&h, "established", "2004", "1003"),
            format!("AgentLoggedOnEvent acdGroup=3001 agentDevice=1003 agentID=2004 monitorCrossRefID={h}"),
            format!("AgentNotReadyEvent acdGroup=3001 agentDevice=1003 agentID=2004 monitorCrossRefID={h}"),
        ]
    );
    let hosts = sim
        .with_model(|m| {
            Ok((
                m.host_of("2003").map(str::to_string),
                m.host_of("2004").map(str::to_string),
            ))
        })
        .await
        .unwrap();
    assert_eq!(hosts, (None, Some("1003".to_string())));
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn person_at_the_desk_through_the_control_api() {
    let sim = start(demo_none()).await;
    let ctl = sim.control_addr().unwrap();
    let mut c = Client::connect(sim.csta_addr()).await;
    let g = c.monitor("2002").await;
    let h = c.monitor("1002").await;
    let (st, body) = http(
        ctl,
        "POST",
        "/hotdesk/associate",
        Some(r#"{"guest":"2002","host":"1002"}"#),
    )
    .await;
    assert_eq!((st, body), (200, serde_json::json!({"ok": true})));
    assert_eq!(
        c.events(3).await,
        [
            fwd(&h, "1002", true, Some("2002")),
            pe(&g, "established", "2002", "1002"),
            pe(&h, "established", "2002", "1002")
        ]
    );
    // errors are the same as on the CSTA side
    let (st, body) = http(
        ctl,
        "POST",
        "/hotdesk/associate",
        Some(r#"{"guest":"2003","host":"1002"}"#),
    )
    .await;
    assert_eq!(st, 409);
    assert_eq!(body["cstaError"], "systemResourceAvailibility/resourceBusy");
    let (st, body) = http(
        ctl,
        "POST",
        "/hotdesk/associate",
        Some(r#"{"guest":"2002","host":"1002"}"#),
    )
    .await;
    assert_eq!(
        (st, body["cstaError"].as_str()),
        (409, Some("stateIncompatibility/invalidObjectState"))
    );
    // row 3 (unknown device) comes before row 4 (guest already associated)
    let (st, body) = http(
        ctl,
        "POST",
        "/hotdesk/associate",
        Some(r#"{"guest":"2002","host":"nope"}"#),
    )
    .await;
    assert_eq!(
        (st, body["cstaError"].as_str()),
        (404, Some("operation/invalidDeviceID"))
    );
    // a call to the host is forwarded to the guest and rings at the desk
    let call = sim.dial("1005", "1002").await.unwrap();
    assert_eq!(
        c.events(2).await,
        [
            format!("DivertedEvent calledDevice=1002 callingDevice=1005 cause=callForwardImmediate connection={call}@1002 divertingDevice=1002 lastRedirectionDevice=notRequired localConnectionInfo=null monitorCrossRefID={h} newDestination=2002"),
            format!("DeliveredEvent alertingDevice=2002 calledDevice=1002 callingDevice=1005 cause=callForwardImmediate connection={call}@2002 lastRedirectionDevice=numberDialed:1002 localConnectionInfo=alerting monitorCrossRefID={g}"),
        ]
    );
    sim.hangup("1005").await.unwrap();
    c.events(2).await;
    let (st, _) = http(ctl, "POST", "/hotdesk/cancel", Some(r#"{"guest":"2002"}"#)).await;
    assert_eq!(st, 200);
    assert_eq!(
        c.events(3).await,
        [
            fwd(&h, "1002", false, None),
            pe(&g, "cancelled", "2002", "1002"),
            pe(&h, "cancelled", "2002", "1002")
        ]
    );
    let (st, body) = http(ctl, "POST", "/hotdesk/cancel", Some(r#"{"guest":"2002"}"#)).await;
    assert_eq!(
        (st, body["cstaError"].as_str()),
        (409, Some("stateIncompatibility/invalidObjectState"))
    );
    sim.shutdown().await;
}
