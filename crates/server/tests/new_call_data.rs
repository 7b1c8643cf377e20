//! End to end against csta-sim: UserData and MakeCallType on the requests that make a call
//! (RequestMakeCall, RequestInitiateTransfer, RequestInitiateConference); EventOnHook for a
//! phone put back without dialling; EventLinkConnected's LinkPriority and Edition;
//! `agent-logout-on-unregister` on RequestUnregisterAddress; and the second SetForwarding of
//! ForwardModeOnBusyAndNoAnswer reported.

use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{
    Event, EventName, ForwardMode, KvList, KvValue, MakeCallType, Request, RequestName,
};

mod common;
use common::*;

fn kv(pairs: &[(&str, &str)]) -> KvList {
    let mut k = KvList::new();
    for (key, v) in pairs {
        k.push(*key, KvValue::Str((*v).to_string()));
    }
    k
}

fn ud(ev: &Event) -> KvList {
    ev.user_data.clone().unwrap_or_default()
}

#[tokio::test]
async fn calls_made_by_request_carry_its_user_data() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1002"]).await;
    let mut c = r.client_on(&["1003"]).await;

    // RequestMakeCall: the requester's EventDialing and the called party's EventRinging carry
    // it, a repeated key included.
    let data = kv(&[("CaseID", "C-1"), ("Tag", "vip"), ("Tag", "fr")]);
    let mut mk = req(RequestName::RequestMakeCall, "1001").with_other_dn("1002");
    mk.user_data = Some(data.clone());
    mk.make_call_type = Some(MakeCallType::Regular);
    let dial = answer_ok(&mut a, mk, EventName::EventDialing).await;
    let conn = dial.conn_id.unwrap();
    assert_eq!(ud(&dial), data, "{dial:?}");
    let ring = until(&mut b, EventName::EventRinging, Some("1002")).await;
    assert_eq!(ring.conn_id, Some(conn));
    assert_eq!(ud(&ring), data, "{ring:?}");
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestAnswerCall, "1002"), conn),
        EventName::EventEstablished,
    )
    .await;
    until(&mut a, EventName::EventEstablished, Some("1001")).await;

    // RequestInitiateTransfer: the consultation starts with the original call's data, the
    // request's keys over it.
    let mut it =
        with_conn(req(RequestName::RequestInitiateTransfer, "1001"), conn).with_other_dn("1003");
    it.user_data = Some(kv(&[("CaseID", "C-2"), ("Lang", "de")]));
    let cdial = answer_ok(&mut a, it, EventName::EventDialing).await;
    let consult = cdial.conn_id.unwrap();
    assert_ne!(consult, conn);
    let want = kv(&[
        ("Tag", "vip"),
        ("Tag", "fr"),
        ("CaseID", "C-2"),
        ("Lang", "de"),
    ]);
    assert_eq!(ud(&cdial), want, "{cdial:?}");
    let cring = until(&mut c, EventName::EventRinging, Some("1003")).await;
    assert_eq!(ud(&cring), want, "{cring:?}");
    // The original call keeps its own.
    let q = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestQueryCall, "1001"), conn),
        EventName::EventPartyInfo,
    )
    .await;
    assert_eq!(ud(&q), data, "{q:?}");

    // Drop the consultation, take the original back, and consult for a conference.
    answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestReleaseCall, "1001"), consult),
        EventName::EventReleased,
    )
    .await;
    answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestRetrieveCall, "1001"), conn),
        EventName::EventRetrieved,
    )
    .await;
    let mut ic =
        with_conn(req(RequestName::RequestInitiateConference, "1001"), conn).with_other_dn("1003");
    ic.user_data = Some(kv(&[("Conf", "yes")]));
    let conf = answer_ok(&mut a, ic, EventName::EventDialing).await;
    let want = kv(&[
        ("CaseID", "C-1"),
        ("Tag", "vip"),
        ("Tag", "fr"),
        ("Conf", "yes"),
    ]);
    assert_eq!(ud(&conf), want, "{conf:?}");
    let ring = until(&mut c, EventName::EventRinging, Some("1003")).await;
    assert_eq!(ring.conn_id, conf.conn_id);
    assert_eq!(ud(&ring), want, "{ring:?}");
}

#[tokio::test]
async fn make_call_type_and_user_data_limits_are_refused_before_the_switch() {
    let r = rig().await;
    let mut a = r.client_on(&["1004"]).await;
    let mut mk = req(RequestName::RequestMakeCall, "1004").with_other_dn("1005");
    mk.make_call_type = Some(MakeCallType::DirectAgent);
    let e = a.request(mk, T).await.unwrap();
    assert_eq!(e.name, EventName::EventError, "{e:?}");
    assert_eq!(e.error_code.map(|c| c.0), Some(51), "{e:?}");
    assert_eq!(
        e.error_message.as_deref(),
        Some(
            "MakeCallType MakeCallDirectAgent is not supported by the switch; only MakeCallRegular"
        )
    );
    let mut mk = req(RequestName::RequestMakeCall, "1004").with_other_dn("1005");
    mk.user_data = Some(kv(&[("Blob", &"x".repeat(17_000))]));
    let e = a.request(mk, T).await.unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(53), "{e:?}");
    // Nothing reached the switch: 1004 has no call.
    let snap = r.sim.snapshot().await;
    let calls = snap["calls"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(calls, 0, "{snap}");
}

#[tokio::test]
async fn a_phone_put_back_without_dialling_gets_event_on_hook() {
    let r = rig().await;
    let mut a = r.client_on(&["1006"]).await;
    let call = r.sim.off_hook("1006").await.unwrap();
    let off = until(&mut a, EventName::EventOffHook, Some("1006")).await;
    assert_eq!(off.call_id.as_deref(), Some(call.as_str()));
    r.sim.hangup("1006").await.unwrap();
    // The next event is EventOnHook (no EventReleased: no call was made).
    let on = a.next_event(T).await.unwrap().expect("EventOnHook");
    assert_eq!(on.name, EventName::EventOnHook, "{on:?}");
    assert_eq!(
        (on.this_dn.as_deref(), on.conn_id, on.call_id.as_deref()),
        (Some("1006"), off.conn_id, Some(call.as_str()))
    );
    let q = a
        .request(
            Request::query_address("1006", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        q.extension_str("status"),
        Some("AddressStatusIdle"),
        "{q:?}"
    );
    assert_eq!(q.extension_str("conn-1"), None, "{q:?}");
}

#[tokio::test]
async fn link_connected_names_the_link_priority_and_edition() {
    let r = rig_with(|c| c.links[0].priority = 7).await;
    let mut c = Client::connect(&r.ctid.ws_url()).await.unwrap();
    let ev = c.next_event(T).await.unwrap().expect("link status");
    assert_eq!(ev.name, EventName::EventLinkConnected, "{ev:?}");
    let k = ev.extensions.clone().expect("Extensions");
    assert_eq!(k.get_str("LinkName"), Some("csta-sim"), "{ev:?}");
    assert_eq!(k.get("LinkPriority"), Some(&KvValue::Int(7)), "{ev:?}");
    assert_eq!(k.get_str("Edition"), Some("ed3"), "{ev:?}");
    // After a link loss and restore, the same.
    r.sim.drop_connections().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c.next_event(left).await.unwrap().expect("link events");
        if ev.name == EventName::EventLinkConnected {
            break ev;
        }
        assert_eq!(ev.name, EventName::EventLinkDisconnected, "{ev:?}");
        assert_eq!(ev.extension_str("Edition"), None, "{ev:?}");
    };
    assert_eq!(back.extensions, ev.extensions);
}

#[tokio::test]
async fn unregistering_logs_out_the_agent_the_session_logged_in() {
    let r = rig_with(|c| c.engine.agent_logout_on_unregister = true).await;
    let mut desk = r.client_on(&["2003"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "2003");
    login.agent_id = Some("2003".into());
    answer_ok(&mut desk, login, EventName::EventAgentLogin).await;
    let mut obs = r.client_on(&["2003"]).await;
    answer_ok(
        &mut desk,
        Request::new(RequestName::RequestUnregisterAddress).with_this_dn("2003"),
        EventName::EventUnregistered,
    )
    .await;
    let out = until(&mut obs, EventName::EventAgentLogout, Some("2003")).await;
    assert_eq!(out.reference_id, None);
    let snap = r.sim.snapshot().await;
    let agent = snap["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "2003"))
        .cloned()
        .unwrap_or_default();
    assert!(agent["device"].is_null(), "{agent}");
}

#[tokio::test]
async fn busy_and_no_answer_forwarding_reports_a_refused_second_half() {
    let r = rig().await;
    let mut a = r.client_on(&["2004"]).await;
    // Both accepted: the answer is the second EventForwardSet (OnNoAnswer); the first
    // (OnBusy) goes out unsolicited.
    let mut fwd = req(RequestName::RequestCallForwardSet, "2004").with_other_dn("1009");
    fwd.forward_mode = Some(ForwardMode::OnBusyAndNoAnswer);
    let ev = answer_ok(&mut a, fwd.clone(), EventName::EventForwardSet).await;
    assert_eq!(ev.forward_mode, Some(ForwardMode::OnNoAnswer), "{ev:?}");
    let first = until(&mut a, EventName::EventForwardSet, Some("2004")).await;
    assert_eq!(
        (first.forward_mode, first.reference_id),
        (Some(ForwardMode::OnBusy), None)
    );
    let mut cancel = req(RequestName::RequestCallForwardCancel, "2004");
    cancel.forward_mode = Some(ForwardMode::OnBusyAndNoAnswer);
    let ev = answer_ok(&mut a, cancel, EventName::EventForwardCancel).await;
    assert_eq!(ev.forward_mode, Some(ForwardMode::OnNoAnswer), "{ev:?}");
    let first = until(&mut a, EventName::EventForwardCancel, Some("2004")).await;
    assert_eq!(
        (first.forward_mode, first.reference_id),
        (Some(ForwardMode::OnBusy), None)
    );
    // The switch refuses the second (forwardNoAns): that refusal is the answer.
    r.sim
        .try_fail_after(
            "operation",
            "invalidForwardingDestination",
            Some("SetForwarding"),
            1,
        )
        .await
        .unwrap();
    let e = a.request(fwd, T).await.unwrap();
    assert_eq!(e.name, EventName::EventError, "{e:?}");
    assert_eq!(e.error_code.map(|c| c.0), Some(1146), "{e:?}");
    assert_eq!(
        e.error_message.as_deref(),
        Some("RequestCallForwardSet refused by the switch: operation/invalidForwardingDestination")
    );
    // The first half was set at the switch, and clients hear of it.
    let busy = until(&mut a, EventName::EventForwardSet, Some("2004")).await;
    assert_eq!(
        (busy.forward_mode, busy.reference_id),
        (Some(ForwardMode::OnBusy), None)
    );
}
