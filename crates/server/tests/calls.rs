//! The call model end to end: ctid and csta-sim over real sockets. Basic call, hold/retrieve,
//! consultation + transfer, conference, agents (including the hot-desk agent login, the desk
//! controlling its guest's calls, and a login on an occupied DN), forwarding and DND, user data,
//! errors, and a call that ended while the link was down.

use std::time::Instant;

use ctid_client::Client;
use ctid_protocol::{ConnId, Event, EventName, KvList, Request, RequestName};

mod common;
use common::*;

#[tokio::test]
async fn basic_call_hold_retrieve_release() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1002"]).await;
    let dial = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
        EventName::EventDialing,
    )
    .await;
    let conn = dial.conn_id.expect("ConnID");
    assert_eq!(dial.other_dn.as_deref(), Some("1002"));
    assert_eq!(dial.call_type, Some(ctid_protocol::CallType::Internal));
    let ring = until(&mut b, EventName::EventRinging, Some("1002")).await;
    // An internal call: no ANI (ani-distribution inbound-calls-only); OtherDN is the caller.
    assert_eq!(
        (ring.conn_id, ring.ani.as_deref(), ring.other_dn.as_deref()),
        (Some(conn), None, Some("1001"))
    );
    let est = answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestAnswerCall, "1002"), conn),
        EventName::EventEstablished,
    )
    .await;
    assert_eq!(est.conn_id, Some(conn));
    let est_a = until(&mut a, EventName::EventEstablished, Some("1001")).await;
    assert_eq!(est_a.other_dn.as_deref(), Some("1002"));
    // DN status shows the call.
    let q = a
        .request(
            Request::query_address("1001", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.extension_str("status"), Some("AddressStatusTalking"));
    assert_eq!(q.extension_str("conn-1"), Some(conn.to_string().as_str()));
    answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestHoldCall, "1001"), conn),
        EventName::EventHeld,
    )
    .await;
    answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestRetrieveCall, "1001"), conn),
        EventName::EventRetrieved,
    )
    .await;
    // User data travels to both parties.
    let mut ud = KvList::new();
    ud.insert_str("CaseID", "C-77");
    let mut attach = with_conn(req(RequestName::RequestAttachUserData, "1001"), conn);
    attach.user_data = Some(ud);
    let changed = answer_ok(&mut a, attach, EventName::EventAttachedDataChanged).await;
    assert_eq!(changed.user_data.unwrap().get_str("CaseID"), Some("C-77"));
    let other = until(&mut b, EventName::EventAttachedDataChanged, None).await;
    assert_eq!(other.reference_id, None);
    // Release from A; both see EventReleased.
    let rel = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestReleaseCall, "1001"), conn),
        EventName::EventReleased,
    )
    .await;
    assert_eq!(rel.call_state, Some(ctid_protocol::CallState::Ok));
    until(&mut b, EventName::EventReleased, Some("1002")).await;
    // The call is gone: 56.
    let e = a
        .request(
            with_conn(req(RequestName::RequestHoldCall, "1001"), conn),
            T,
        )
        .await
        .unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(56), "{e:?}");
}

#[tokio::test]
async fn call_dialled_at_the_phone_and_abandoned() {
    let r = rig().await;
    let mut a = r.client_on(&["1004"]).await;
    let mut b = r.client_on(&["1005"]).await;
    r.sim.dial("1004", "1005").await.unwrap();
    until(&mut a, EventName::EventOffHook, Some("1004")).await;
    let d = until(&mut a, EventName::EventDialing, Some("1004")).await;
    assert_eq!(d.reference_id, None);
    let ring = until(&mut b, EventName::EventRinging, Some("1005")).await;
    r.sim.hangup("1004").await.unwrap();
    until(&mut a, EventName::EventReleased, Some("1004")).await;

    let ab = until(&mut b, EventName::EventAbandoned, Some("1005")).await;
    assert_eq!(ab.conn_id, ring.conn_id);
}

#[tokio::test]
async fn consultation_and_transfer_keep_the_original_connid() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1002"]).await;
    let mut c = r.client_on(&["1003"]).await;
    let conn = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut b, EventName::EventRinging, None).await;
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestAnswerCall, "1002"), conn),
        EventName::EventEstablished,
    )
    .await;
    until(&mut a, EventName::EventEstablished, None).await;
    let consult = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestInitiateTransfer, "1001"), conn).with_other_dn("1003"),
        EventName::EventDialing,
    )
    .await;
    let cconn = consult.conn_id.unwrap();
    assert_ne!(cconn, conn);
    assert_eq!(consult.call_type, Some(ctid_protocol::CallType::Consult));
    let ring = until(&mut c, EventName::EventRinging, Some("1003")).await;
    assert_eq!(ring.conn_id, Some(cconn));
    r.sim.answer("1003").await.unwrap();
    until(&mut c, EventName::EventEstablished, None).await;
    let mut complete = with_conn(req(RequestName::RequestCompleteTransfer, "1001"), cconn);
    complete.transfer_conn_id = Some(conn);
    let rel = answer_ok(&mut a, complete, EventName::EventReleased).await;
    assert_eq!(rel.call_state, Some(ctid_protocol::CallState::Transferred));
    let pb = until(&mut b, EventName::EventPartyChanged, Some("1002")).await;
    assert_eq!(pb.conn_id, Some(conn), "the original ConnID survives");
    let pc = until(&mut c, EventName::EventPartyChanged, Some("1003")).await;
    assert_eq!((pc.conn_id, pc.previous_conn_id), (Some(conn), Some(cconn)));
    // B and C now talk on the original ConnID: C can release it.
    answer_ok(
        &mut c,
        with_conn(req(RequestName::RequestReleaseCall, "1003"), conn),
        EventName::EventReleased,
    )
    .await;
    until(&mut b, EventName::EventReleased, Some("1002")).await;
}

#[tokio::test]
async fn conference_adds_a_party() {
    let r = rig().await;
    let mut a = r.client_on(&["1006"]).await;
    let mut b = r.client_on(&["1007"]).await;
    let mut c = r.client_on(&["1008"]).await;
    let conn = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1006").with_other_dn("1007"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut b, EventName::EventRinging, None).await;
    r.sim.answer("1007").await.unwrap();
    until(&mut a, EventName::EventEstablished, None).await;
    let cconn = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestInitiateConference, "1006"), conn).with_other_dn("1008"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut c, EventName::EventRinging, None).await;
    r.sim.answer("1008").await.unwrap();
    until(&mut c, EventName::EventEstablished, None).await;
    let mut complete = with_conn(req(RequestName::RequestCompleteConference, "1006"), cconn);
    complete.conference_conn_id = Some(conn);
    let added = answer_ok(&mut a, complete, EventName::EventPartyAdded).await;
    assert_eq!(added.conn_id, Some(conn));
    assert_eq!(added.other_dn.as_deref(), Some("1008"));
    let pb = until(&mut b, EventName::EventPartyAdded, Some("1007")).await;
    assert_eq!(pb.conn_id, Some(conn));
    let pc = until(&mut c, EventName::EventPartyChanged, Some("1008")).await;
    assert_eq!((pc.conn_id, pc.previous_conn_id), (Some(conn), Some(cconn)));
    // A member leaves: the others see EventPartyDeleted.
    r.sim.hangup("1008").await.unwrap();
    let del = until(&mut a, EventName::EventPartyDeleted, Some("1006")).await;
    assert_eq!(del.other_dn.as_deref(), Some("1008"));
}

#[tokio::test]
async fn agents_forwarding_and_dnd() {
    let r = rig().await;
    let mut a = r.client_on(&["2002"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "2002");
    login.agent_id = Some("2002".into());
    login.this_queue = Some("3001".into());
    let ev = answer_ok(&mut a, login, EventName::EventAgentLogin).await;
    assert_eq!(ev.agent_id.as_deref(), Some("2002"));
    answer_ok(
        &mut a,
        req(RequestName::RequestAgentReady, "2002"),
        EventName::EventAgentReady,
    )
    .await;
    let mut nr = req(RequestName::RequestAgentNotReady, "2002");
    nr.agent_work_mode = Some(ctid_protocol::AgentWorkMode::AfterCallWork);
    let ev = answer_ok(&mut a, nr, EventName::EventAgentNotReady).await;
    assert_eq!(
        ev.agent_work_mode,
        Some(ctid_protocol::AgentWorkMode::AfterCallWork)
    );
    let q = a
        .request(
            Request::query_address("2002", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.agent_id.as_deref(), Some("2002"));
    assert_eq!(q.extension_str("AgentStatus"), Some("AgentAfterCallWork"));
    answer_ok(
        &mut a,
        req(RequestName::RequestAgentLogout, "2002"),
        EventName::EventAgentLogout,
    )
    .await;

    let mut fwd = req(RequestName::RequestCallForwardSet, "2002").with_other_dn("1009");
    fwd.forward_mode = Some(ctid_protocol::ForwardMode::Unconditional);
    let ev = answer_ok(&mut a, fwd, EventName::EventForwardSet).await;
    assert_eq!(ev.other_dn.as_deref(), Some("1009"));
    answer_ok(
        &mut a,
        req(RequestName::RequestCallForwardCancel, "2002"),
        EventName::EventForwardCancel,
    )
    .await;
    answer_ok(
        &mut a,
        req(RequestName::RequestSetDNDOn, "2002"),
        EventName::EventDNDOn,
    )
    .await;
    answer_ok(
        &mut a,
        req(RequestName::RequestSetDNDOff, "2002"),
        EventName::EventDNDOff,
    )
    .await;
}

#[tokio::test]
async fn hot_desk_agent_login_on_the_host() {
    let r = rig().await;
    let mut host = r.client_on(&["1003"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "1003");
    login.agent_id = Some("2003".into());
    let ev = answer_ok(&mut host, login, EventName::EventAgentLogin).await;
    assert_eq!(
        (ev.this_dn.as_deref(), ev.agent_id.as_deref()),
        (Some("1003"), Some("2003"))
    );
    let p = until(&mut host, EventName::EventPrivateInfo, None).await;
    assert_eq!(
        (
            p.private_msg_id,
            p.this_dn.as_deref(),
            p.other_dn.as_deref()
        ),
        (Some(1), Some("2003"), Some("1003"))
    );
    let mut logout = req(RequestName::RequestAgentLogout, "1003");
    logout.agent_id = Some("2003".into());
    answer_ok(&mut host, logout, EventName::EventAgentLogout).await;
    let p = until(&mut host, EventName::EventPrivateInfo, None).await;
    assert_eq!(p.private_msg_id, Some(2));
}

#[tokio::test]
async fn switch_refusals_are_mapped() {
    let r = rig().await;
    let mut a = r.client_on(&["1009"]).await;
    // Nothing to answer: a ConnID that is not on the DN is refused by ctid (56) ...
    let e = a
        .request(
            with_conn(req(RequestName::RequestAnswerCall, "1009"), ConnId(42)),
            T,
        )
        .await
        .unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(56));
    // ... a destination the switch does not know is refused by the switch (11xx).
    let e = a
        .request(
            req(RequestName::RequestMakeCall, "1009").with_other_dn("5555"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(e.name, EventName::EventError, "{e:?}");
    assert!(e.error_code.unwrap().0 >= 1100, "{e:?}");
    assert!(e.extension_str("CSTAError").is_some());
    // Missing OtherDN: 53.
    let e = a
        .request(req(RequestName::RequestMakeCall, "1009"), T)
        .await
        .unwrap();
    assert_eq!(e.error_code.map(|c| c.0), Some(53));
}

#[tokio::test]
async fn call_released_while_the_link_was_down_is_cleared_on_resync() {
    let r = rig().await;
    // (1010 is the demo's hoteling host: its endpoint belongs to guest 2010, so use 1009.)
    let mut a = r.client_on(&["1009"]).await;
    let conn = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1009").with_other_dn("1001"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    r.sim.answer("1001").await.unwrap();
    until(&mut a, EventName::EventEstablished, None).await;
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    until(&mut a, EventName::EventLinkDisconnected, None).await;
    r.sim.hangup("1001").await.unwrap();
    r.sim.set_stall(false).await;
    let rel = until(&mut a, EventName::EventReleased, Some("1009")).await;
    assert_eq!(rel.conn_id, Some(conn));
    assert_eq!(rel.call_state, Some(ctid_protocol::CallState::Dropped));
    assert_eq!(rel.extension_str("ReleaseCause"), Some("resync"));
    until(&mut a, EventName::EventLinkConnected, None).await;
}

#[tokio::test]
async fn route_point_route_request_and_route_call() {
    let r = rig().await;
    let mut rp = r.client_on(&["3101"]).await;
    let mut dest = r.client_on(&["1005"]).await;
    r.sim.dial("1004", "3101").await.unwrap();
    let req_ev = until(&mut rp, EventName::EventRouteRequest, Some("3101")).await;
    assert_eq!(req_ev.this_queue.as_deref(), Some("3101"));
    assert_eq!(req_ev.other_dn.as_deref(), Some("1004"));
    let conn = req_ev.conn_id.unwrap();
    let mut route =
        with_conn(req(RequestName::RequestRouteCall, "3101"), conn).with_other_dn("1005");
    route.route_type = None;
    answer_ok(&mut rp, route, EventName::EventRouteUsed).await;
    let ring = until(&mut dest, EventName::EventRinging, Some("1005")).await;
    assert_eq!(ring.other_dn.as_deref(), Some("1004"));
}

#[tokio::test]
async fn acd_queue_distributes_to_a_ready_agent() {
    let r = rig().await;
    let mut q = r.client_on(&["3001"]).await;
    let mut agent = r.client_on(&["2004"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "2004");
    login.agent_id = Some("2004".into());
    login.this_queue = Some("3001".into());
    answer_ok(&mut agent, login, EventName::EventAgentLogin).await;
    answer_ok(
        &mut agent,
        req(RequestName::RequestAgentReady, "2004"),
        EventName::EventAgentReady,
    )
    .await;
    r.sim.dial("1006", "3001").await.unwrap();
    let queued = until(&mut q, EventName::EventQueued, Some("3001")).await;
    assert_eq!(queued.this_queue.as_deref(), Some("3001"));
    let div = until(&mut q, EventName::EventDiverted, Some("3001")).await;
    assert_eq!(div.other_dn.as_deref(), Some("2004"));
    let ring = until(&mut agent, EventName::EventRinging, Some("2004")).await;
    assert_eq!(ring.conn_id, queued.conn_id);
    assert_eq!(ring.this_queue.as_deref(), Some("3001"));
}

/// A and B talking; returns the ConnID.
async fn talking(r: &Rig, a: &mut Client, b: &mut Client, da: &str, db: &str) -> ConnId {
    let conn = answer_ok(
        a,
        req(RequestName::RequestMakeCall, da).with_other_dn(db),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(b, EventName::EventRinging, Some(db)).await;
    r.sim.answer(db).await.unwrap();
    until(a, EventName::EventEstablished, Some(da)).await;
    until(b, EventName::EventEstablished, Some(db)).await;
    conn
}

#[tokio::test]
async fn single_step_and_mute_transfer_redirect_dtmf_clear() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1002"]).await;
    let mut c = r.client_on(&["1003"]).await;
    // Single-step transfer: A leaves, C rings.
    let conn = talking(&r, &mut a, &mut b, "1001", "1002").await;
    let mut dtmf = with_conn(req(RequestName::RequestSendDTMF, "1001"), conn);
    dtmf.dtmf_digits = Some("12#".into());
    let sent = answer_ok(&mut a, dtmf, EventName::EventDTMFSent).await;
    assert_eq!(sent.dtmf_digits.as_deref(), Some("12#"));
    let q = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestQueryCall, "1001"), conn),
        EventName::EventPartyInfo,
    )
    .await;
    assert_eq!(q.conn_id, Some(conn));
    let rel = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestSingleStepTransfer, "1001"), conn).with_other_dn("1003"),
        EventName::EventReleased,
    )
    .await;
    assert_eq!(rel.conn_id, Some(conn));
    let ring = until(&mut c, EventName::EventRinging, Some("1003")).await;
    // Redirect the ringing call at C to A.
    answer_ok(
        &mut c,
        with_conn(
            req(RequestName::RequestRedirectCall, "1003"),
            ring.conn_id.unwrap(),
        )
        .with_other_dn("1001"),
        EventName::EventReleased,
    )
    .await;
    let ring_a = until(&mut a, EventName::EventRinging, Some("1001")).await;
    // Clear the whole call from B.
    let bconn = ring_a.conn_id.unwrap();
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestClearCall, "1002"), bconn),
        EventName::EventReleased,
    )
    .await;
    // A was still ringing: the caller's clearing is an abandon there.
    until(&mut a, EventName::EventAbandoned, Some("1001")).await;

    // Mute transfer: A→B talking, A mute-transfers to C; A released, C rings.
    let conn = talking(&r, &mut a, &mut b, "1001", "1002").await;
    let rel = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestMuteTransfer, "1001"), conn).with_other_dn("1003"),
        EventName::EventReleased,
    )
    .await;
    assert_eq!(rel.call_state, Some(ctid_protocol::CallState::Transferred));
    until(&mut c, EventName::EventRinging, Some("1003")).await;
}

#[tokio::test]
async fn alternate_reconnect_and_user_data_rules() {
    let r = rig().await;
    let mut a = r.client_on(&["1006"]).await;
    let mut b = r.client_on(&["1007"]).await;
    let mut c = r.client_on(&["1008"]).await;
    let conn = talking(&r, &mut a, &mut b, "1006", "1007").await;
    let mut ud = KvList::new();
    ud.insert_str("k", "v1");
    let mut up = with_conn(req(RequestName::RequestUpdateUserData, "1006"), conn);
    up.user_data = Some(ud.clone());
    answer_ok(&mut a, up, EventName::EventAttachedDataChanged).await;
    // The consultation starts with a copy of the user data.
    let cons = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestInitiateTransfer, "1006"), conn).with_other_dn("1008"),
        EventName::EventDialing,
    )
    .await;
    let cconn = cons.conn_id.unwrap();
    assert_eq!(
        cons.user_data.as_ref().and_then(|u| u.get_str("k")),
        Some("v1")
    );
    until(&mut c, EventName::EventRinging, None).await;
    r.sim.answer("1008").await.unwrap();
    until(&mut c, EventName::EventEstablished, None).await;
    // Alternate: back to B (consultation held, original retrieved).
    let mut alt = with_conn(req(RequestName::RequestAlternateCall, "1006"), cconn);
    alt.transfer_conn_id = Some(conn);
    let ev = a.request(alt, T).await.unwrap();
    assert!(
        matches!(ev.name, EventName::EventHeld | EventName::EventRetrieved),
        "{ev:?}"
    );
    // Reconnect: drop the active (original) call, retrieve the held consultation.
    let mut rec = with_conn(req(RequestName::RequestReconnectCall, "1006"), conn);
    rec.transfer_conn_id = Some(cconn);
    let ev = a.request(rec, T).await.unwrap();
    assert!(
        matches!(
            ev.name,
            EventName::EventReleased | EventName::EventRetrieved
        ),
        "{ev:?}"
    );
    // User data: DeletePair of a missing key is 53; over the limit is 53 and nothing changes.
    let mut del = with_conn(req(RequestName::RequestDeletePair, "1006"), cconn);
    del.data_key = Some("nope".into());
    assert_eq!(
        a.request(del, T).await.unwrap().error_code.map(|c| c.0),
        Some(53)
    );
    let mut big = KvList::new();
    big.insert_str("blob", "x".repeat(20_000));
    let mut att = with_conn(req(RequestName::RequestAttachUserData, "1006"), cconn);
    att.user_data = Some(big);
    assert_eq!(
        a.request(att, T).await.unwrap().error_code.map(|c| c.0),
        Some(53)
    );
    let all = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestDeleteUserData, "1006"), cconn),
        EventName::EventAttachedDataChanged,
    )
    .await;
    assert!(all.user_data.is_none_or(|u| u.is_empty()));
}

#[tokio::test]
async fn agent_login_hot_desk_reports_the_guests_calls_on_the_host() {
    let r = rig().await;
    // Desktops register the host only; the guest 2003 is nobody's DN here.
    let mut host = r.client_on(&["1003"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "1003");
    login.agent_id = Some("2003".into());
    answer_ok(&mut host, login, EventName::EventAgentLogin).await;
    until(&mut host, EventName::EventPrivateInfo, None).await;
    // A call to the guest rings at the host's desk and is reported to the host's clients.
    r.sim.dial("1005", "2003").await.unwrap();
    let ring = until(&mut host, EventName::EventRinging, Some("1003")).await;
    assert_eq!(ring.other_dn.as_deref(), Some("1005"));
    let conn = ring.conn_id.unwrap();
    r.sim.answer("1003").await.unwrap();
    let est = until(&mut host, EventName::EventEstablished, Some("1003")).await;
    assert_eq!(est.conn_id, Some(conn));
    r.sim.hangup("1005").await.unwrap();
    until(&mut host, EventName::EventReleased, Some("1003")).await;
    // Logout ends it: the guest is no longer monitored for the host.
    let mut logout = req(RequestName::RequestAgentLogout, "1003");
    logout.agent_id = Some("2003".into());
    answer_ok(&mut host, logout, EventName::EventAgentLogout).await;
    until(&mut host, EventName::EventPrivateInfo, None).await;
}

/// Wait until the switch has a monitor on `dev` (ctid's internal monitor of an agent-login
/// guest), polling its state with a deadline.
async fn wait_monitored(r: &Rig, dev: &str) {
    let deadline = Instant::now() + T;
    loop {
        let snap = r.sim.snapshot().await;
        let n = snap["devices"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["device"] == dev))
            .and_then(|d| d["monitors"].as_u64())
            .unwrap_or(0);
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{dev} never monitored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The events left for `c` until it has been quiet for a moment.
async fn drain(c: &mut Client) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(ev) = c
        .next_event(std::time::Duration::from_millis(300))
        .await
        .unwrap()
    {
        v.push(ev);
    }
    v
}

async fn desk_status(c: &mut Client, dn: &str) -> Event {
    let q = c
        .request(
            Request::query_address(dn, ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.name, EventName::EventAddressInfo, "{q:?}");
    q
}

#[tokio::test]
async fn agent_login_desk_answers_holds_retrieves_and_releases_the_guests_call() {
    let r = rig().await;
    // A desktop registered only on the host; the agent signs in at the desk phone (the switch
    // runs the hoteling sequence: association 2003 → 1003, agent 2003 logged on at 1003).
    let mut desk = r.client_on(&["1003"]).await;
    r.sim
        .agent_state("1003", "loggedOn", Some("2003"), None)
        .await
        .unwrap();
    let login = until(&mut desk, EventName::EventAgentLogin, Some("1003")).await;
    assert_eq!(login.agent_id.as_deref(), Some("2003"));
    wait_monitored(&r, "2003").await;

    r.sim.dial("1005", "2003").await.unwrap();
    let ring = until(&mut desk, EventName::EventRinging, Some("1003")).await;
    let conn = ring.conn_id.expect("ConnID");
    assert_eq!(ring.other_dn.as_deref(), Some("1005"));
    let q = desk_status(&mut desk, "1003").await;
    assert_eq!(
        (
            q.extension_str("status"),
            q.extension_str("conn-1"),
            q.extension_str("ps-1"),
            q.agent_id.as_deref()
        ),
        (
            Some("AddressStatusRinging"),
            Some(conn.to_string().as_str()),
            Some("Alerting"),
            Some("2003")
        ),
        "{q:?}"
    );

    // Every request names the host; it acts on the guest's connection at the switch.
    let est = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestAnswerCall, "1003"), conn),
        EventName::EventEstablished,
    )
    .await;
    assert_eq!(
        (est.this_dn.as_deref(), est.conn_id, est.other_dn.as_deref()),
        (Some("1003"), Some(conn), Some("1005"))
    );
    let q = desk_status(&mut desk, "1003").await;
    assert_eq!(
        (q.extension_str("status"), q.extension_str("ps-1")),
        (Some("AddressStatusTalking"), Some("Connected"))
    );
    let held = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestHoldCall, "1003"), conn),
        EventName::EventHeld,
    )
    .await;
    assert_eq!(
        (held.this_dn.as_deref(), held.conn_id),
        (Some("1003"), Some(conn))
    );
    let q = desk_status(&mut desk, "1003").await;
    assert_eq!(
        (q.extension_str("status"), q.extension_str("ps-1")),
        (Some("AddressStatusHeld"), Some("Held"))
    );
    let info = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestQueryCall, "1003"), conn),
        EventName::EventPartyInfo,
    )
    .await;
    assert_eq!(info.this_dn.as_deref(), Some("1003"));
    let mut data = KvList::new();
    data.insert_str("CaseID", "C-77");
    let mut attach = with_conn(req(RequestName::RequestAttachUserData, "1003"), conn);
    attach.user_data = Some(data);
    let ud = answer_ok(&mut desk, attach, EventName::EventAttachedDataChanged).await;
    assert_eq!(ud.this_dn.as_deref(), Some("1003"));
    assert_eq!(ud.user_data.unwrap().get_str("CaseID"), Some("C-77"));
    let ret = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestRetrieveCall, "1003"), conn),
        EventName::EventRetrieved,
    )
    .await;
    assert_eq!(
        (ret.this_dn.as_deref(), ret.conn_id),
        (Some("1003"), Some(conn))
    );
    let rel = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestReleaseCall, "1003"), conn),
        EventName::EventReleased,
    )
    .await;
    assert_eq!(
        (rel.this_dn.as_deref(), rel.conn_id),
        (Some("1003"), Some(conn))
    );
    let q = desk_status(&mut desk, "1003").await;
    assert_eq!(
        (q.extension_str("status"), q.extension_str("conn-1")),
        (Some("AddressStatusIdle"), None)
    );
    // Each answer came once, on the desk's copy: no second copy, no error.
    for ev in drain(&mut desk).await {
        assert!(
            !matches!(
                ev.name,
                EventName::EventEstablished
                    | EventName::EventHeld
                    | EventName::EventRetrieved
                    | EventName::EventReleased
                    | EventName::EventError
            ),
            "{ev:?}"
        );
        assert_eq!(ev.this_dn.as_deref(), Some("1003"), "{ev:?}");
    }
    // The switch agrees: the call is gone.
    let snap = r.sim.snapshot().await;
    assert_eq!(snap["calls"].as_array().map(Vec::len), Some(0), "{snap}");
}

/// A desk registered only on host 1003 where agent 2003 logged in by agent login (its internal
/// monitor up), and a client on 1006.
async fn agent_login_desk(r: &Rig) -> (Client, Client) {
    let mut desk = r.client_on(&["1003"]).await;
    let target = r.client_on(&["1006"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "1003");
    login.agent_id = Some("2003".into());
    answer_ok(&mut desk, login, EventName::EventAgentLogin).await;
    wait_monitored(r, "2003").await;
    (desk, target)
}

/// 1005 calls the guest 2003; the desk answers it through ctid. The call's ConnID.
async fn desk_answers_a_guest_call(r: &Rig, desk: &mut Client) -> ConnId {
    r.sim.dial("1005", "2003").await.unwrap();
    let conn = until(desk, EventName::EventRinging, Some("1003"))
        .await
        .conn_id
        .unwrap();
    answer_ok(
        desk,
        with_conn(req(RequestName::RequestAnswerCall, "1003"), conn),
        EventName::EventEstablished,
    )
    .await;
    conn
}

#[tokio::test]
async fn agent_login_desk_transfers_the_guests_call() {
    let r = rig().await;
    let (mut desk, mut target) = agent_login_desk(&r).await;
    let conn = desk_answers_a_guest_call(&r, &mut desk).await;
    // Consultation to 1006, then the transfer completes: 1005 and 1006 talk.
    let dial = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestInitiateTransfer, "1003"), conn).with_other_dn("1006"),
        EventName::EventDialing,
    )
    .await;
    let consult = dial.conn_id.expect("consultation ConnID");
    assert_ne!(consult, conn);
    assert_eq!(dial.this_dn.as_deref(), Some("1003"));
    until(&mut target, EventName::EventRinging, Some("1006")).await;
    r.sim.answer("1006").await.unwrap();
    until(&mut desk, EventName::EventEstablished, Some("1003")).await;
    let mut complete = with_conn(req(RequestName::RequestCompleteTransfer, "1003"), consult);
    complete.transfer_conn_id = Some(conn);
    let rel = answer_ok(&mut desk, complete, EventName::EventReleased).await;
    assert_eq!(rel.this_dn.as_deref(), Some("1003"));
    until(&mut target, EventName::EventPartyChanged, Some("1006")).await;
    let snap = r.sim.snapshot().await;
    let calls = snap["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(calls.len(), 1, "{snap}");
}

#[tokio::test]
async fn hoteling_login_on_an_occupied_host_signs_the_other_agent_out() {
    let r = rig().await;
    let mut desk = r.client_on(&["1003"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "1003");
    login.agent_id = Some("2003".into());
    answer_ok(&mut desk, login, EventName::EventAgentLogin).await;
    until(&mut desk, EventName::EventAgentNotReady, Some("1003")).await;
    // Another guest logs in at the same desk: ctid sends it; the switch signs 2003 out first.
    let mut login = req(RequestName::RequestAgentLogin, "1003");
    login.agent_id = Some("2004".into());
    let id = desk.send(&mut login).await.unwrap();
    let out = until(&mut desk, EventName::EventAgentLogout, Some("1003")).await;
    assert_eq!(
        (out.agent_id.as_deref(), out.reference_id),
        (Some("2003"), None)
    );
    let p = until(&mut desk, EventName::EventPrivateInfo, None).await;
    assert_eq!(
        (
            p.private_msg_id,
            p.this_dn.as_deref(),
            p.other_dn.as_deref()
        ),
        (Some(2), Some("2003"), Some("1003"))
    );
    let p = until(&mut desk, EventName::EventPrivateInfo, None).await;
    assert_eq!(
        (
            p.private_msg_id,
            p.this_dn.as_deref(),
            p.other_dn.as_deref()
        ),
        (Some(1), Some("2004"), Some("1003"))
    );
    let ev = until(&mut desk, EventName::EventAgentLogin, Some("1003")).await;
    assert_eq!(
        (ev.agent_id.as_deref(), ev.reference_id),
        (Some("2004"), Some(id))
    );
    let q = desk_status(&mut desk, "1003").await;
    assert_eq!(q.agent_id.as_deref(), Some("2004"));
    // The new guest's calls now reach the desk.
    wait_monitored(&r, "2004").await;
    r.sim.dial("1005", "2004").await.unwrap();
    let ring = until(&mut desk, EventName::EventRinging, Some("1003")).await;
    assert_eq!(ring.other_dn.as_deref(), Some("1005"));
}

#[tokio::test]
async fn agent_login_on_an_occupied_dn_is_decided_by_the_switch() {
    let r = rig().await;
    let mut c = r.client_on(&["2005"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "2005");
    login.agent_id = Some("2005".into());
    answer_ok(&mut c, login, EventName::EventAgentLogin).await;
    // Another agent on the occupied DN: not refused by ctid (no 42); the switch refuses it.
    let mut login = req(RequestName::RequestAgentLogin, "2005");
    login.agent_id = Some("2006".into());
    let e = c.request(login, T).await.unwrap();
    assert_eq!(e.name, EventName::EventError, "{e:?}");
    assert_ne!(e.error_code.map(|c| c.0), Some(42), "{e:?}");
    assert_eq!(
        e.extension_str("CSTAError"),
        Some("operation/invalidAgentIdentifier"),
        "{e:?}"
    );
    let q = desk_status(&mut c, "2005").await;
    assert_eq!(q.agent_id.as_deref(), Some("2005"));
}

#[tokio::test]
async fn agent_login_desk_single_step_transfers_and_conferences_the_guests_calls() {
    let r = rig().await;
    let (mut desk, mut target) = agent_login_desk(&r).await;
    // Single-step transfer of an answered call to 1006.
    let conn = desk_answers_a_guest_call(&r, &mut desk).await;
    let rel = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestSingleStepTransfer, "1003"), conn).with_other_dn("1006"),
        EventName::EventReleased,
    )
    .await;
    assert_eq!(
        (rel.this_dn.as_deref(), rel.conn_id),
        (Some("1003"), Some(conn))
    );
    until(&mut target, EventName::EventRinging, Some("1006")).await;
    r.sim.hangup("1005").await.unwrap();
    until(&mut target, EventName::EventAbandoned, Some("1006")).await;
    // A conference: consult 1006 from the guest's call, then complete.
    let conn = desk_answers_a_guest_call(&r, &mut desk).await;
    let consult = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestInitiateConference, "1003"), conn).with_other_dn("1006"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut target, EventName::EventRinging, Some("1006")).await;
    r.sim.answer("1006").await.unwrap();
    until(&mut desk, EventName::EventEstablished, Some("1003")).await;
    let mut complete = with_conn(req(RequestName::RequestCompleteConference, "1003"), consult);
    complete.conference_conn_id = Some(conn);
    let added = answer_ok(&mut desk, complete, EventName::EventPartyAdded).await;
    assert_eq!(
        (added.this_dn.as_deref(), added.conn_id),
        (Some("1003"), Some(conn))
    );
    let info = answer_ok(
        &mut desk,
        with_conn(req(RequestName::RequestQueryCall, "1003"), conn),
        EventName::EventPartyInfo,
    )
    .await;
    let parties = info
        .extensions
        .as_ref()
        .and_then(|k| k.get("Parties"))
        .cloned();
    assert!(format!("{parties:?}").contains("1006"), "{info:?}");
}

/// The reason code of an agent event (`Extensions.ReasonCode`, also in `Reasons`).
fn reason_code(ev: &Event) -> Option<i64> {
    let e = ev.extensions.as_ref()?.get_int("ReasonCode");
    assert_eq!(e, ev.reasons.as_ref()?.get_int("ReasonCode"), "{ev:?}");
    e
}

#[tokio::test]
async fn not_ready_reasons_go_to_the_switch_and_come_back() {
    let r = rig().await;
    let mut a = r.client_on(&["2002"]).await;
    let mut login = req(RequestName::RequestAgentLogin, "2002");
    login.agent_id = Some("2002".into());
    answer_ok(&mut a, login, EventName::EventAgentLogin).await;
    // the switch leaves a new login not ready: AgentStatus is a work-mode name
    let nr = until(&mut a, EventName::EventAgentNotReady, Some("2002")).await;
    assert_eq!(reason_code(&nr), None);
    let q = a
        .request(
            Request::query_address("2002", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        q.extension_str("AgentStatus"),
        Some("AgentAuxWork"),
        "{q:?}"
    );

    // Extensions.ReasonCode travels as BroadSoft private data and comes back on the event
    let mut nr = req(RequestName::RequestAgentNotReady, "2002");
    let mut ext = KvList::default();
    ext.insert_int("ReasonCode", 3);
    nr.extensions = Some(ext);
    let ev = answer_ok(&mut a, nr, EventName::EventAgentNotReady).await;
    assert_eq!(
        ev.agent_work_mode,
        Some(ctid_protocol::AgentWorkMode::AuxWork)
    );
    assert_eq!(reason_code(&ev), Some(3));
    // Reasons.ReasonCode, as a string, too
    let mut nr = req(RequestName::RequestAgentNotReady, "2002");
    let mut reasons = KvList::default();
    reasons.insert_str("ReasonCode", "12");
    nr.reasons = Some(reasons);
    let ev = answer_ok(&mut a, nr, EventName::EventAgentNotReady).await;
    assert_eq!(reason_code(&ev), Some(12));
    // the agent changes it at the phone: the unsolicited event carries the new one
    r.sim
        .agent_state("2002", "notReady", None, Some("7"))
        .await
        .unwrap();
    let ev = until(&mut a, EventName::EventAgentNotReady, Some("2002")).await;
    assert_eq!((ev.reference_id, reason_code(&ev)), (None, Some(7)));
    // ready clears it
    let ev = answer_ok(
        &mut a,
        req(RequestName::RequestAgentReady, "2002"),
        EventName::EventAgentReady,
    )
    .await;
    assert_eq!(
        ev.extensions.as_ref().and_then(|e| e.get("ReasonCode")),
        None
    );
    // a reason code that is neither an integer nor a short string is refused, the session lives
    let mut nr = req(RequestName::RequestAgentNotReady, "2002");
    let mut ext = KvList::default();
    ext.insert_str("ReasonCode", "  ");
    nr.extensions = Some(ext);
    let ev = a.request(nr, T).await.unwrap();
    assert_eq!(ev.name, EventName::EventError, "{ev:?}");
    answer_ok(
        &mut a,
        req(RequestName::RequestAgentLogout, "2002"),
        EventName::EventAgentLogout,
    )
    .await;
}

/// No event names a ConnID other than `conn` (a phantom call), and the wanted one arrives.
async fn until_on(c: &mut Client, name: EventName, dn: &str, conn: ConnId) -> Event {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {name:?} on {dn}"));
        assert_ne!(ev.name, EventName::EventError, "{ev:?}");
        if let Some(x) = ev.conn_id {
            assert_eq!(x, conn, "an event on another call (phantom?): {ev:?}");
        }
        if ev.name == name && ev.this_dn.as_deref() == Some(dn) {
            return ev;
        }
    }
}

#[tokio::test]
async fn a_callid_changed_by_a_transfer_answer_re_points_the_call() {
    // The switch gives the resulting call of every transfer a new callID and says so only in
    // the answer (old/new pairs); later events use the new one.
    let r = rig_with_sim(|s| s.renumber_transfers = true, |_| {}).await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1002"]).await;
    let mut c = r.client_on(&["1003"]).await;
    let conn = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut b, EventName::EventRinging, None).await;
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestAnswerCall, "1002"), conn),
        EventName::EventEstablished,
    )
    .await;
    let cconn = answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestInitiateTransfer, "1001"), conn).with_other_dn("1003"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut c, EventName::EventRinging, Some("1003")).await;
    r.sim.answer("1003").await.unwrap();
    until(&mut c, EventName::EventEstablished, None).await;
    let mut complete = with_conn(req(RequestName::RequestCompleteTransfer, "1001"), cconn);
    complete.transfer_conn_id = Some(conn);
    answer_ok(&mut a, complete, EventName::EventReleased).await;
    until_on(&mut b, EventName::EventPartyChanged, "1002", conn).await;
    // the call now has another callID at the switch: requests on the ConnID reach it
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestHoldCall, "1002"), conn),
        EventName::EventHeld,
    )
    .await;
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestRetrieveCall, "1002"), conn),
        EventName::EventRetrieved,
    )
    .await;
    // and events naming the new callID are the same call, not a phantom one
    r.sim.hangup("1003").await.unwrap();
    let rel = until_on(&mut b, EventName::EventReleased, "1002", conn).await;
    assert_eq!(rel.conn_id, Some(conn));
    until_on(&mut c, EventName::EventReleased, "1003", conn).await;

    // single-step transfer: 1001 → 1002, 1002 moves it to 1003, who answers through ctid
    let conn = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    until(&mut b, EventName::EventRinging, None).await;
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestAnswerCall, "1002"), conn),
        EventName::EventEstablished,
    )
    .await;
    answer_ok(
        &mut b,
        with_conn(req(RequestName::RequestSingleStepTransfer, "1002"), conn).with_other_dn("1003"),
        EventName::EventReleased,
    )
    .await;
    until_on(&mut c, EventName::EventRinging, "1003", conn).await;
    answer_ok(
        &mut c,
        with_conn(req(RequestName::RequestAnswerCall, "1003"), conn),
        EventName::EventEstablished,
    )
    .await;
    answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestReleaseCall, "1001"), conn),
        EventName::EventReleased,
    )
    .await;
    until_on(&mut c, EventName::EventReleased, "1003", conn).await;
}

#[tokio::test]
async fn no_answer_forwarding_takes_a_call_that_rings_too_long() {
    let r = rig_with_sim(|s| s.no_answer_secs = 1, |_| {}).await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1004"]).await;
    let mut c = r.client_on(&["1005"]).await;
    let mut fwd = req(RequestName::RequestCallForwardSet, "1004").with_other_dn("1005");
    fwd.forward_mode = Some(ctid_protocol::ForwardMode::OnNoAnswer);
    answer_ok(&mut b, fwd, EventName::EventForwardSet).await;
    let conn = answer_ok(
        &mut a,
        req(RequestName::RequestMakeCall, "1001").with_other_dn("1004"),
        EventName::EventDialing,
    )
    .await
    .conn_id
    .unwrap();
    let ring = until(&mut b, EventName::EventRinging, Some("1004")).await;
    assert_eq!(ring.conn_id, Some(conn));
    // nobody answers at 1004: after the ring timer the call leaves it and rings at 1005
    let gone = until(&mut b, EventName::EventReleased, Some("1004")).await;
    assert_eq!(gone.conn_id, Some(conn));
    assert_eq!(
        gone.call_state,
        Some(ctid_protocol::CallState::Forwarded),
        "{gone:?}"
    );
    let ring = until(&mut c, EventName::EventRinging, Some("1005")).await;
    assert_eq!(ring.conn_id, Some(conn), "the same call, forwarded");
    answer_ok(
        &mut c,
        with_conn(req(RequestName::RequestAnswerCall, "1005"), conn),
        EventName::EventEstablished,
    )
    .await;
    answer_ok(
        &mut a,
        with_conn(req(RequestName::RequestReleaseCall, "1001"), conn),
        EventName::EventReleased,
    )
    .await;
}
