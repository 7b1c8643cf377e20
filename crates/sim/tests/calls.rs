//! Call control over real sockets: the exact event sequences of each service, on every monitor
//! of every device involved, and the CSTAErrorCode of each error path.

mod common;
use common::*;
use ctid_csta::*;

/// One connection monitoring 1001 (xref 1), 1002 (2), 1003 (3), 3001 (4), 2001 (5).
async fn setup() -> (ctid_sim::Sim, Client) {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    for (d, x) in [
        ("1001", "1"),
        ("1002", "2"),
        ("1003", "3"),
        ("3001", "4"),
        ("2001", "5"),
    ] {
        assert_eq!(c.monitor(d).await, x);
    }
    (sim, c)
}

fn delivered(x: &str, call: &str, from: &str, to: &str, local: &str) -> String {
    format!("DeliveredEvent alertingDevice={to} calledDevice={to} callingDevice={from} cause=newCall connection={call}@{to} lastRedirectionDevice=notRequired localConnectionInfo={local} monitorCrossRefID={x}")
}
fn established(x: &str, call: &str, from: &str, to: &str) -> String {
    format!("EstablishedEvent answeringDevice={to} calledDevice={to} callingDevice={from} cause=newCall establishedConnection={call}@{to} lastRedirectionDevice=notRequired localConnectionInfo=connected monitorCrossRefID={x}")
}
fn cleared(x: &str, call: &str, dev: &str, local: &str) -> String {
    format!("ConnectionClearedEvent cause=normalClearing droppedConnection={call}@{dev} localConnectionInfo={local} monitorCrossRefID={x} releasingDevice={dev}")
}
fn held(x: &str, call: &str, dev: &str, local: &str, cause: &str) -> String {
    format!("HeldEvent cause={cause} heldConnection={call}@{dev} holdingDevice={dev} localConnectionInfo={local} monitorCrossRefID={x}")
}
fn retrieved(x: &str, call: &str, dev: &str, local: &str, cause: &str) -> String {
    format!("RetrievedEvent cause={cause} localConnectionInfo={local} monitorCrossRefID={x} retrievedConnection={call}@{dev} retrievingDevice={dev}")
}
fn si(x: &str, call: &str, dev: &str, cause: &str) -> String {
    format!("ServiceInitiatedEvent cause={cause} initiatedConnection={call}@{dev} initiatingDevice={dev} localConnectionInfo=initiated monitorCrossRefID={x}")
}
fn orig(x: &str, call: &str, from: &str, to: &str, cause: &str) -> String {
    format!("OriginatedEvent calledDevice={to} callingDevice={from} cause={cause} localConnectionInfo=connected monitorCrossRefID={x} originatedConnection={call}@{from}")
}

fn answer(call: &str, dev: &str) -> Message {
    Message::AnswerCall(AnswerCall {
        call_to_be_answered: conn(call, dev),
        correlator_data: None,
        extensions: None,
    })
}
fn clear(call: &str, dev: &str) -> Message {
    Message::ClearConnection(ClearConnection {
        connection_to_be_cleared: conn(call, dev),
        correlator_data: None,
        extensions: None,
    })
}
fn hold(call: &str, dev: &str) -> Message {
    Message::HoldCall(HoldCall {
        call_to_be_held: conn(call, dev),
        connection_reservation: None,
        extensions: None,
    })
}
fn retrieve(call: &str, dev: &str) -> Message {
    Message::RetrieveCall(RetrieveCall {
        call_to_be_retrieved: conn(call, dev),
        extensions: None,
    })
}
fn consult(call: &str, dev: &str, to: &str) -> Message {
    Message::ConsultationCall(ConsultationCall {
        existing_call: conn(call, dev),
        consulted_device: to.into(),
        connection_reservation: None,
        account_code: None,
        auth_code: None,
        correlator_data: None,
        extensions: None,
    })
}

/// 1001 calls 1002 and 1002 answers, via CSTA; returns after all events.
async fn connected_call(c: &mut Client) {
    assert_eq!(
        summary(&c.request(make_call("1001", "1002")).await),
        "MakeCallResponse callingDevice=C1@1001"
    );
    assert_eq!(
        summary(&c.request(answer("C1", "1002")).await),
        "AnswerCallResponse"
    );
    c.events(6).await;
}

#[tokio::test]
async fn basic_call() {
    let (sim, mut c) = setup().await;
    assert_eq!(
        summary(&c.request(make_call("1001", "1002")).await),
        "MakeCallResponse callingDevice=C1@1001"
    );
    assert_eq!(
        c.events(4).await,
        [
            si("1", "C1", "1001", "makeCall"),
            orig("1", "C1", "1001", "1002", "newCall"),
            delivered("1", "C1", "1001", "1002", "connected"),
            delivered("2", "C1", "1001", "1002", "alerting"),
        ]
    );
    assert_eq!(
        summary(&c.request(answer("C1", "1002")).await),
        "AnswerCallResponse"
    );
    assert_eq!(
        c.events(2).await,
        [
            established("1", "C1", "1001", "1002"),
            established("2", "C1", "1001", "1002")
        ]
    );
    // the caller hangs up: both see it, then the remaining party is cleared too
    assert_eq!(
        summary(&c.request(clear("C1", "1001")).await),
        "ClearConnectionResponse"
    );
    assert_eq!(
        c.events(3).await,
        [
            cleared("1", "C1", "1001", "null"),
            cleared("2", "C1", "1001", "connected"),
            cleared("2", "C1", "1002", "null")
        ]
    );
    c.quiet(100).await;
    assert_eq!(sim.snapshot().await["calls"], serde_json::json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn dialled_at_the_phone_is_not_a_makecall() {
    let (sim, mut c) = setup().await;
    let call = sim.dial("1001", "1002").await.unwrap();
    assert_eq!(c.event().await, si("1", &call, "1001", "newCall"));
    assert_eq!(c.event().await, orig("1", &call, "1001", "1002", "newCall"));
    sim.shutdown().await;
}

#[tokio::test]
async fn hold_retrieve() {
    let (sim, mut c) = setup().await;
    connected_call(&mut c).await;
    assert_eq!(
        summary(&c.request(hold("C1", "1001")).await),
        "HoldCallResponse"
    );
    assert_eq!(
        c.events(2).await,
        [
            held("1", "C1", "1001", "hold", "normal"),
            held("2", "C1", "1001", "connected", "normal")
        ]
    );
    // errors: hold again, retrieve at the wrong party, unknown call
    assert_eq!(
        summary(&c.request(hold("C1", "1001")).await),
        "CSTAErrorCode stateIncompatibility=invalidConnectionState"
    );
    assert_eq!(
        summary(&c.request(retrieve("C1", "1002")).await),
        "CSTAErrorCode stateIncompatibility=invalidConnectionState"
    );
    assert_eq!(
        summary(&c.request(retrieve("C9", "1001")).await),
        "CSTAErrorCode operation=invalidCallID"
    );
    assert_eq!(
        summary(&c.request(retrieve("C1", "1003")).await),
        "CSTAErrorCode operation=invalidConnectionID"
    );
    assert_eq!(
        summary(&c.request(retrieve("C1", "1001")).await),
        "RetrieveCallResponse"
    );
    assert_eq!(
        c.events(2).await,
        [
            retrieved("1", "C1", "1001", "connected", "normal"),
            retrieved("2", "C1", "1001", "connected", "normal")
        ]
    );
    // the same at the phone
    sim.hold("1002").await.unwrap();
    assert_eq!(
        c.events(2).await,
        [
            held("1", "C1", "1002", "connected", "normal"),
            held("2", "C1", "1002", "hold", "normal")
        ]
    );
    sim.retrieve("1002").await.unwrap();
    assert_eq!(
        c.events(2).await,
        [
            retrieved("1", "C1", "1002", "connected", "normal"),
            retrieved("2", "C1", "1002", "connected", "normal")
        ]
    );
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn consultation_and_transfer() {
    let (sim, mut c) = setup().await;
    connected_call(&mut c).await;
    assert_eq!(
        summary(&c.request(consult("C1", "1001", "1003")).await),
        "ConsultationCallResponse initiatedCall=C2@1001"
    );
    assert_eq!(
        c.events(6).await,
        [
            held("1", "C1", "1001", "hold", "consultation"),
            held("2", "C1", "1001", "connected", "consultation"),
            si("1", "C2", "1001", "consultation"),
            orig("1", "C2", "1001", "1003", "consultation"),
            delivered("1", "C2", "1001", "1003", "connected"),
            delivered("3", "C2", "1001", "1003", "alerting"),
        ]
    );
    sim.answer("1003").await.unwrap();
    assert_eq!(
        c.events(2).await,
        [
            established("1", "C2", "1001", "1003"),
            established("3", "C2", "1001", "1003")
        ]
    );
    let tr = |h: &str, a: &str| {
        Message::TransferCall(TransferCall {
            held_call: conn(h, "1001"),
            active_call: conn(a, "1001"),
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(tr("C2", "C1")).await),
        "CSTAErrorCode stateIncompatibility=invalidConnectionState"
    );
    let list = "transferredConnections=[{endpoint=1002 newConnection=C2@1002 oldConnection=C1@1002} {endpoint=1003 newConnection=C2@1003 oldConnection=C2@1003}]";
    assert_eq!(
        summary(&c.request(tr("C1", "C2")).await),
        format!("TransferCallResponse connections=[{{endpoint=1002 newConnection=C2@1002 oldConnection=C1@1002}} {{endpoint=1003 newConnection=C2@1003 oldConnection=C2@1003}}] transferredCall=C2")
    );
    let ev = |x: &str, local: &str| {
        format!("TransferedEvent cause=transfer localConnectionInfo={local} monitorCrossRefID={x} primaryOldCall=C1@1001 secondaryOldCall=C2@1001 {list} transferredToDevice=1003 transferringDevice=1001")
    };
    assert_eq!(
        c.events(3).await,
        [ev("1", "null"), ev("2", "connected"), ev("3", "connected")]
    );
    let st = sim.snapshot().await;
    assert_eq!(
        st["calls"],
        serde_json::json!([{"callID": "C2", "calling": "1002", "called": "1003", "lastRedirection": null,
            "connections": [{"device": "1003", "state": "connected"}, {"device": "1002", "state": "connected"}]}])
    );
    sim.hangup("1002").await.unwrap();
    assert_eq!(
        c.events(3).await,
        [
            cleared("3", "C2", "1002", "connected"),
            cleared("2", "C2", "1002", "null"),
            cleared("3", "C2", "1003", "null")
        ]
    );
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn conference_then_parties_leave() {
    let (sim, mut c) = setup().await;
    connected_call(&mut c).await;
    c.request(consult("C1", "1001", "1003")).await;
    c.events(6).await;
    let conf = |h: &str, a: &str| {
        Message::ConferenceCall(ConferenceCall {
            held_call: conn(h, "1001"),
            active_call: conn(a, "1001"),
            extensions: None,
        })
    };
    // not answered yet
    assert_eq!(
        summary(&c.request(conf("C1", "C2")).await),
        "CSTAErrorCode stateIncompatibility=invalidConnectionState"
    );
    sim.answer("1003").await.unwrap();
    c.events(2).await;
    let list = "[{endpoint=1001 newConnection=C1@1001 oldConnection=C1@1001} {endpoint=1002 newConnection=C1@1002 oldConnection=C1@1002} {endpoint=1003 newConnection=C1@1003 oldConnection=C2@1003}]";
    assert_eq!(
        summary(&c.request(conf("C1", "C2")).await),
        format!("ConferenceCallResponse conferenceCall=C1 connections={list}")
    );
    let ev = |x: &str| {
        format!("ConferencedEvent addedParty=1003 cause=conference conferenceConnections={list} conferencingDevice=1001 localConnectionInfo=connected monitorCrossRefID={x} primaryOldCall=C1@1001 secondaryOldCall=C2@1001")
    };
    assert_eq!(c.events(3).await, [ev("1"), ev("2"), ev("3")]);
    // a party leaves a 3-party call: the others stay
    sim.hangup("1003").await.unwrap();
    assert_eq!(
        c.events(3).await,
        [
            cleared("1", "C1", "1003", "connected"),
            cleared("2", "C1", "1003", "connected"),
            cleared("3", "C1", "1003", "null")
        ]
    );
    sim.hangup("1002").await.unwrap();
    assert_eq!(
        c.events(3).await,
        [
            cleared("1", "C1", "1002", "connected"),
            cleared("2", "C1", "1002", "null"),
            cleared("1", "C1", "1001", "null")
        ]
    );
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn alternate_and_reconnect() {
    let (sim, mut c) = setup().await;
    connected_call(&mut c).await;
    c.request(consult("C1", "1001", "1003")).await;
    c.events(6).await;
    sim.answer("1003").await.unwrap();
    c.events(2).await;
    let r = c
        .request(Message::AlternateCall(AlternateCall {
            held_call: conn("C1", "1001"),
            active_call: conn("C2", "1001"),
            connection_reservation: None,
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "AlternateCallResponse");
    assert_eq!(
        c.events(4).await,
        [
            held("1", "C2", "1001", "hold", "alternate"),
            held("3", "C2", "1001", "connected", "alternate"),
            retrieved("1", "C1", "1001", "connected", "alternate"),
            retrieved("2", "C1", "1001", "connected", "alternate"),
        ]
    );
    // reconnect: clear the active (now C1), retrieve the held (C2)
    let r = c
        .request(Message::ReconnectCall(ReconnectCall {
            active_call: conn("C1", "1001"),
            held_call: conn("C2", "1001"),
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "ReconnectCallResponse");
    assert_eq!(
        c.events(5).await,
        [
            cleared("1", "C1", "1001", "null"),
            cleared("2", "C1", "1001", "connected"),
            cleared("2", "C1", "1002", "null"),
            retrieved("1", "C2", "1001", "connected", "normal"),
            retrieved("3", "C2", "1001", "connected", "normal"),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn single_step_transfer_and_deflect() {
    let (sim, mut c) = setup().await;
    connected_call(&mut c).await;
    let sst = |d: &str, to: &str| {
        Message::SingleStepTransferCall(SingleStepTransferCall {
            active_call: conn("C1", d),
            transferred_to: to.into(),
            account_code: None,
            auth_code: None,
            correlator_data: None,
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(sst("1002", "4711")).await),
        "CSTAErrorCode operation=invalidCalledDeviceID"
    );
    assert_eq!(
        summary(&c.request(sst("1002", "1003")).await),
        "SingleStepTransferCallResponse transferredCall=C1@1003"
    );
    let ev = |x: &str, local: &str| {
        format!("TransferedEvent cause=singleStepTransfer localConnectionInfo={local} monitorCrossRefID={x} primaryOldCall=C1@1002 transferredConnections=[{{endpoint=1001 newConnection=C1@1001 oldConnection=C1@1001}}] transferredToDevice=1003 transferringDevice=1002")
    };
    let dl = |x: &str, local: &str| {
        format!("DeliveredEvent alertingDevice=1003 calledDevice=1003 callingDevice=1001 cause=singleStepTransfer connection=C1@1003 lastRedirectionDevice=numberDialed:1002 localConnectionInfo={local} monitorCrossRefID={x}")
    };
    assert_eq!(
        c.events(4).await,
        [
            ev("2", "null"),
            ev("1", "connected"),
            dl("1", "connected"),
            dl("3", "alerting")
        ]
    );
    // deflect the ringing call to 2001
    let defl = |d: &str, to: &str| {
        Message::DeflectCall(DeflectCall {
            call_to_be_diverted: conn("C1", d),
            new_destination: NewDestination(to.into()),
            correlator_data: None,
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(defl("1001", "2001")).await),
        "CSTAErrorCode stateIncompatibility=invalidConnectionState"
    );
    assert_eq!(
        summary(&c.request(defl("1003", "2001")).await),
        "DeflectCallResponse"
    );
    let dv = |x: &str, local: &str| {
        format!("DivertedEvent calledDevice=1003 callingDevice=1001 cause=redirected connection=C1@1003 divertingDevice=1003 lastRedirectionDevice=numberDialed:1002 localConnectionInfo={local} monitorCrossRefID={x} newDestination=2001")
    };
    let dl = |x: &str, local: &str| {
        format!("DeliveredEvent alertingDevice=2001 calledDevice=1003 callingDevice=1001 cause=redirected connection=C1@2001 lastRedirectionDevice=numberDialed:1003 localConnectionInfo={local} monitorCrossRefID={x}")
    };
    assert_eq!(
        c.events(4).await,
        [
            dv("1", "connected"),
            dv("3", "null"),
            dl("1", "connected"),
            dl("5", "alerting")
        ]
    );
    // ClearCall: every connection, then CallCleared
    let r = c
        .request(Message::ClearCall(ClearCall {
            call_to_be_cleared: conn("C1", "1001"),
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "ClearCallResponse");
    assert_eq!(
        c.events(6).await,
        [
            cleared("1", "C1", "1001", "null"),
            cleared("5", "C1", "1001", "alerting"),
            cleared("1", "C1", "2001", "null"),
            cleared("5", "C1", "2001", "null"),
            "CallClearedEvent cause=normalClearing clearedCall=C1 monitorCrossRefID=1".to_string(),
            "CallClearedEvent cause=normalClearing clearedCall=C1 monitorCrossRefID=5".to_string(),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn busy_dnd_and_makecall_errors() {
    let (sim, mut c) = setup().await;
    connected_call(&mut c).await;
    // 1003 calls 1002 (busy on a single-line phone): Failed cause busy to the caller only
    assert_eq!(
        summary(&c.request(make_call("1003", "1002")).await),
        "MakeCallResponse callingDevice=C2@1003"
    );
    assert_eq!(
        c.events(3).await,
        [
            si("3", "C2", "1003", "makeCall"),
            orig("3", "C2", "1003", "1002", "newCall"),
            "FailedEvent calledDevice=1002 callingDevice=1003 cause=busy failedConnection=C2@1002 failingDevice=1002 localConnectionInfo=connected monitorCrossRefID=3".to_string(),
        ]
    );
    sim.hangup("1003").await.unwrap();
    assert_eq!(c.event().await, cleared("3", "C2", "1003", "null"));
    // DND
    let dnd = |on: bool| {
        Message::SetDoNotDisturb(SetDoNotDisturb {
            device: "1003".into(),
            do_not_disturb_on: on,
            call_origination: None,
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(dnd(true)).await),
        "SetDoNotDisturbResponse"
    );
    assert_eq!(
        c.event().await,
        "DoNotDisturbEvent device=1003 doNotDisturbOn=true monitorCrossRefID=3"
    );
    let call = sim.dial("2001", "1003").await.unwrap();
    assert_eq!(
        c.events(3).await,
        [
            si("5", &call, "2001", "newCall"),
            orig("5", &call, "2001", "1003", "newCall"),
            format!("FailedEvent calledDevice=1003 callingDevice=2001 cause=busy failedConnection={call}@1003 failingDevice=1003 localConnectionInfo=connected monitorCrossRefID=5"),
        ]
    );
    sim.hangup("2001").await.unwrap();
    c.event().await;
    assert_eq!(
        summary(&c.request(dnd(false)).await),
        "SetDoNotDisturbResponse"
    );
    assert_eq!(
        c.event().await,
        "DoNotDisturbEvent device=1003 doNotDisturbOn=false monitorCrossRefID=3"
    );
    // MakeCall errors
    for (from, to, err) in [
        ("4711", "1002", "operation=invalidCallingDeviceID"),
        ("1003", "4711", "operation=invalidCalledDeviceID"),
        ("1003", "1003", "operation=notDifferentDevices"),
        (
            "1001",
            "1003",
            "stateIncompatibility=invalidCallingDeviceState",
        ), // 1001 is talking
        (
            "3001",
            "1003",
            "operation=requestIncompatibleWithCallingDevice",
        ),
        (
            "1010",
            "1003",
            "stateIncompatibility=invalidCallingDeviceState",
        ), // host taken by guest 2010
    ] {
        assert_eq!(
            summary(&c.request(make_call(from, to)).await),
            format!("CSTAErrorCode {err}"),
            "{from} -> {to}"
        );
    }
    // other error paths
    assert_eq!(
        summary(&c.request(answer("C1", "1002")).await),
        "CSTAErrorCode stateIncompatibility=invalidConnectionState"
    );
    assert_eq!(
        summary(&c.request(answer("C77", "1002")).await),
        "CSTAErrorCode operation=invalidCallID"
    );
    assert_eq!(
        summary(&c.request(clear("C1", "1003")).await),
        "CSTAErrorCode operation=invalidConnectionID"
    );
    assert_eq!(
        summary(&c.request(consult("C1", "1001", "4711")).await),
        "CSTAErrorCode operation=invalidCalledDeviceID"
    );
    let r = c
        .request(Message::ClearCall(ClearCall {
            call_to_be_cleared: conn("C99", "1001"),
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "CSTAErrorCode operation=invalidCallID");
    let r = c
        .request(Message::SetDoNotDisturb(SetDoNotDisturb {
            device: "4711".into(),
            do_not_disturb_on: true,
            call_origination: None,
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "CSTAErrorCode operation=invalidDeviceID");
    // and the calls are as they were
    c.quiet(100).await;
    assert_eq!(sim.snapshot().await["calls"].as_array().unwrap().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn forwarding() {
    let (sim, mut c) = setup().await;
    let setf = |on: bool, t: ForwardingType, dn: Option<&str>| {
        Message::SetForwarding(SetForwarding {
            device: "1002".into(),
            forwarding_type: Some(t),
            activate_forward: on,
            forward_dn: dn.map(Into::into),
            ring_count: None,
            ring_duration: None,
            extensions: None,
        })
    };
    assert_eq!(
        summary(
            &c.request(setf(true, ForwardingType::ForwardImmediate, None))
                .await
        ),
        "CSTAErrorCode operation=invalidForwardingDestination"
    );
    assert_eq!(
        summary(
            &c.request(setf(true, ForwardingType::ForwardImmediate, Some("4711")))
                .await
        ),
        "CSTAErrorCode operation=invalidForwardingDestination"
    );
    assert_eq!(
        summary(
            &c.request(setf(true, ForwardingType::ForwardImmediate, Some("1003")))
                .await
        ),
        "SetForwardingResponse"
    );
    assert_eq!(c.event().await, "ForwardingEvent device=1002 forwardStatus=true forwardTo=1003 forwardingType=forwardImmediate monitorCrossRefID=2");
    let r = c
        .request(Message::GetForwarding(GetForwarding {
            device: "1002".into(),
            extensions: None,
        }))
        .await;
    assert_eq!(
        summary(&r),
        "GetForwardingResponse forwardingList=[{forwardDN=1003 forwardStatus=true forwardingType=forwardImmediate} {forwardStatus=false forwardingType=forwardBusy} {forwardStatus=false forwardingType=forwardNoAns}]"
    );
    // a call to 1002 is diverted to 1003
    let call = sim.dial("1001", "1002").await.unwrap();
    let dv = |x: &str, local: &str| {
        format!("DivertedEvent calledDevice=1002 callingDevice=1001 cause=callForwardImmediate connection={call}@1002 divertingDevice=1002 lastRedirectionDevice=notRequired localConnectionInfo={local} monitorCrossRefID={x} newDestination=1003")
    };
    let dl = |x: &str, local: &str| {
        format!("DeliveredEvent alertingDevice=1003 calledDevice=1002 callingDevice=1001 cause=callForwardImmediate connection={call}@1003 lastRedirectionDevice=numberDialed:1002 localConnectionInfo={local} monitorCrossRefID={x}")
    };
    assert_eq!(
        c.events(6).await,
        [
            si("1", &call, "1001", "newCall"),
            orig("1", &call, "1001", "1002", "newCall"),
            dv("1", "connected"),
            dv("2", "null"),
            dl("1", "connected"),
            dl("3", "alerting"),
        ]
    );
    sim.hangup("1001").await.unwrap();
    c.events(3).await;
    assert_eq!(
        summary(
            &c.request(setf(false, ForwardingType::ForwardImmediate, None))
                .await
        ),
        "SetForwardingResponse"
    );
    assert_eq!(c.event().await, "ForwardingEvent device=1002 forwardStatus=false forwardingType=forwardImmediate monitorCrossRefID=2");
    // forward on busy
    assert_eq!(
        summary(
            &c.request(setf(true, ForwardingType::ForwardBusy, Some("2001")))
                .await
        ),
        "SetForwardingResponse"
    );
    assert_eq!(c.event().await, "ForwardingEvent device=1002 forwardStatus=true forwardTo=2001 forwardingType=forwardBusy monitorCrossRefID=2");
    sim.dial("1002", "1003").await.unwrap(); // 1002 now busy
    c.events(4).await;
    let call = sim.dial("1001", "1002").await.unwrap();
    let ev = c.events(6).await;
    assert_eq!(ev[2], format!("DivertedEvent calledDevice=1002 callingDevice=1001 cause=callForwardBusy connection={call}@1002 divertingDevice=1002 lastRedirectionDevice=notRequired localConnectionInfo=connected monitorCrossRefID=1 newDestination=2001"));
    assert_eq!(ev[5], format!("DeliveredEvent alertingDevice=2001 calledDevice=1002 callingDevice=1001 cause=callForwardBusy connection={call}@2001 lastRedirectionDevice=numberDialed:1002 localConnectionInfo=alerting monitorCrossRefID=5"));
    sim.shutdown().await;
}

#[tokio::test]
async fn agent_states_and_acd_distribution() {
    let (sim, mut c) = setup().await;
    let get = || {
        Message::GetAgentState(GetAgentState {
            device: "2001".into(),
            acd_group: None,
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(get()).await),
        "GetAgentStateResponse agentStateList=[{agentID=2001 agentInfo=[{acdGroup=3001 agentState=agentNull}] loggedOnState=false}]"
    );
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::Ready, None))
                .await
        ),
        "CSTAErrorCode stateIncompatibility=invalidObjectState"
    );
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::LoggedOn, Some("2002")))
                .await
        ),
        "CSTAErrorCode operation=invalidAgentIdentifier"
    );
    assert_eq!(
        summary(
            &c.request(set_agent("3001", ReqAgentState::LoggedOn, None))
                .await
        ),
        "CSTAErrorCode operation=requestIncompatibleWithDevice"
    );
    let ag =
        |ev: &str| format!("{ev} acdGroup=3001 agentDevice=2001 agentID=2001 monitorCrossRefID=5");
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::LoggedOn, None))
                .await
        ),
        "SetAgentStateResponse"
    );
    assert_eq!(
        c.events(2).await,
        [ag("AgentLoggedOnEvent"), ag("AgentNotReadyEvent")]
    );
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::LoggedOn, None))
                .await
        ),
        "CSTAErrorCode stateIncompatibility=invalidObjectState"
    );
    // a call to the queue waits: nobody is ready
    let call = sim.dial("1001", "3001").await.unwrap();
    let q = |x: &str, local: &str| {
        format!("QueuedEvent calledDevice=3001 callingDevice=1001 callsInFront=0 cause=enteringDistribution lastRedirectionDevice=notRequired localConnectionInfo={local} monitorCrossRefID={x} numberQueued=1 queue=3001 queuedConnection={call}@3001")
    };
    assert_eq!(
        c.events(4).await,
        [
            si("1", &call, "1001", "newCall"),
            orig("1", &call, "1001", "3001", "newCall"),
            q("1", "connected"),
            q("4", "queued")
        ]
    );
    c.quiet(100).await;
    // ready: the call is distributed at once
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::Ready, Some("2001")))
                .await
        ),
        "SetAgentStateResponse"
    );
    let dv = |x: &str, local: &str| {
        format!("DivertedEvent calledDevice=3001 callingDevice=1001 cause=distributed connection={call}@3001 divertingDevice=3001 lastRedirectionDevice=notRequired localConnectionInfo={local} monitorCrossRefID={x} newDestination=2001")
    };
    let dl = |x: &str, local: &str| {
        format!("DeliveredEvent alertingDevice=2001 calledDevice=3001 callingDevice=1001 cause=distributed connection={call}@2001 lastRedirectionDevice=numberDialed:3001 localConnectionInfo={local} monitorCrossRefID={x}")
    };
    assert_eq!(
        c.events(5).await,
        [
            ag("AgentReadyEvent"),
            dv("1", "connected"),
            dv("4", "null"),
            dl("1", "connected"),
            dl("5", "alerting")
        ]
    );
    assert_eq!(
        summary(&c.request(get()).await),
        "GetAgentStateResponse agentStateList=[{agentID=2001 agentInfo=[{acdGroup=3001 agentState=agentBusy}] loggedOnState=true}]"
    );
    sim.answer("2001").await.unwrap();
    c.events(2).await;
    sim.hangup("2001").await.unwrap();
    c.events(3).await;
    for (st, ev, reported) in [
        (
            ReqAgentState::NotReady,
            "AgentNotReadyEvent",
            "agentNotReady",
        ),
        (
            ReqAgentState::WorkingAfterCall,
            "AgentWorkingAfterCallEvent",
            "agentWorkingAfterCall",
        ),
        (ReqAgentState::Ready, "AgentReadyEvent", "agentReady"),
    ] {
        assert_eq!(
            summary(&c.request(set_agent("2001", st, None)).await),
            "SetAgentStateResponse"
        );
        assert_eq!(c.event().await, ag(ev));
        assert_eq!(
            summary(&c.request(get()).await),
            format!("GetAgentStateResponse agentStateList=[{{agentID=2001 agentInfo=[{{acdGroup=3001 agentState={reported}}}] loggedOnState=true}}]")
        );
    }
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::LoggedOff, None))
                .await
        ),
        "SetAgentStateResponse"
    );
    assert_eq!(c.event().await, ag("AgentLoggedOffEvent"));
    assert_eq!(
        summary(
            &c.request(set_agent("2001", ReqAgentState::LoggedOff, None))
                .await
        ),
        "CSTAErrorCode stateIncompatibility=invalidObjectState"
    );
    c.quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn caller_abandons_in_queue() {
    let (sim, mut c) = setup().await;
    let call = sim.dial("1001", "3001").await.unwrap();
    c.events(4).await;
    sim.hangup("1001").await.unwrap();
    assert_eq!(
        c.events(3).await,
        [
            cleared("1", &call, "1001", "null"),
            cleared("4", &call, "1001", "queued"),
            cleared("4", &call, "3001", "null")
        ]
    );
    assert_eq!(sim.snapshot().await["calls"], serde_json::json!([]));
    sim.shutdown().await;
}

#[tokio::test]
async fn route_point_holds_until_deflected() {
    let (sim, mut c) = setup().await;
    let rp = c.monitor("3101").await;
    let call = sim.dial("1001", "3101").await.unwrap();
    let ev = c.events(4).await;
    assert_eq!(ev[3], format!("QueuedEvent calledDevice=3101 callingDevice=1001 callsInFront=0 cause=enteringDistribution lastRedirectionDevice=notRequired localConnectionInfo=queued monitorCrossRefID={rp} numberQueued=1 queue=3101 queuedConnection={call}@3101"));
    let r = c
        .request(Message::DeflectCall(DeflectCall {
            call_to_be_diverted: conn(&call, "3101"),
            new_destination: NewDestination("1002".into()),
            correlator_data: None,
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&r), "DeflectCallResponse");
    let ev = c.events(4).await;
    assert_eq!(ev[1], format!("DivertedEvent calledDevice=3101 callingDevice=1001 cause=redirected connection={call}@3101 divertingDevice=3101 lastRedirectionDevice=notRequired localConnectionInfo=null monitorCrossRefID={rp} newDestination=1002"));
    assert_eq!(ev[3], format!("DeliveredEvent alertingDevice=1002 calledDevice=3101 callingDevice=1001 cause=redirected connection={call}@1002 lastRedirectionDevice=numberDialed:3101 localConnectionInfo=alerting monitorCrossRefID=2"));
    sim.shutdown().await;
}

#[tokio::test]
async fn dnd_is_read_back_and_a_removed_device_has_no_snapshot() {
    let sim = start(demo_none()).await;
    let mut c = Client::connect(sim.csta_addr()).await;
    let get = || {
        Message::GetDoNotDisturb(GetDoNotDisturb {
            device: "1004".into(),
            extensions: None,
        })
    };
    assert_eq!(
        summary(&c.request(get()).await),
        "GetDoNotDisturbResponse doNotDisturbOn=false"
    );
    sim.set_dnd("1004", true).await.unwrap();
    assert_eq!(
        summary(&c.request(get()).await),
        "GetDoNotDisturbResponse doNotDisturbOn=true"
    );
    // a device the switch no longer has: its snapshot is refused as an unknown device
    sim.remove_device("1004").await.unwrap();
    let snap = c
        .request(Message::SnapshotDevice(SnapshotDevice {
            snapshot_object: "1004".into(),
            extensions: None,
        }))
        .await;
    assert_eq!(summary(&snap), "CSTAErrorCode operation=invalidDeviceID");
    assert_eq!(
        summary(&c.request(get()).await),
        "CSTAErrorCode operation=invalidDeviceID"
    );
    sim.shutdown().await;
}
