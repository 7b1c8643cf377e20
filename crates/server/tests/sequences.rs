//! Exact event sequences each registered client sees, with ConnIDs consistent across clients:
//! basic call in both directions, registration in the middle of a call (snapshot), user data
//! through a transfer, conference and delete-from-conference.

use std::time::Duration;

use ctid_client::Client;
use ctid_protocol::{ConnId, Event, EventName, KvList, Request, RequestName};

mod common;
use common::*;

/// Every event until `quiet` of silence.
async fn drain(c: &mut Client, quiet: Duration) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = c.next_event(quiet).await.unwrap() {
        v.push(e);
    }
    v
}

fn names(v: &[Event]) -> Vec<EventName> {
    v.iter().map(|e| e.name).collect()
}

fn conns(v: &[Event]) -> Vec<Option<ConnId>> {
    v.iter().map(|e| e.conn_id).collect()
}

const Q: Duration = Duration::from_millis(400);

fn req(name: RequestName, dn: &str) -> Request {
    Request::new(name).with_this_dn(dn)
}

fn on(mut r: Request, c: ConnId) -> Request {
    r.conn_id = Some(c);
    r
}

#[tokio::test]
async fn basic_call_both_directions_exact_sequences() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let mut b = r.client_on(&["1002"]).await;
    let mut both = r.client_on(&["1001", "1002"]).await;

    // A calls B through ctid; B answers at the phone; B hangs up at the phone.
    let dial = a
        .request(
            req(RequestName::RequestMakeCall, "1001").with_other_dn("1002"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(dial.name, EventName::EventDialing);
    let conn = dial.conn_id.unwrap();
    tokio::time::sleep(Q).await;
    r.sim.answer("1002").await.unwrap();
    tokio::time::sleep(Q).await;
    r.sim.hangup("1002").await.unwrap();
    let ea = drain(&mut a, Q).await;
    let eb = drain(&mut b, Q).await;
    let e2 = drain(&mut both, Q).await;
    use EventName::*;
    assert_eq!(names(&ea), vec![EventEstablished, EventReleased], "A");
    assert_eq!(
        names(&eb),
        vec![EventRinging, EventEstablished, EventReleased],
        "B"
    );
    assert_eq!(
        names(&e2),
        vec![
            EventDialing,
            EventRinging,
            EventEstablished,
            EventEstablished,
            EventReleased,
            EventReleased
        ],
        "client on both"
    );
    for v in [&ea, &eb, &e2] {
        assert!(
            conns(v).iter().all(|c| *c == Some(conn)),
            "one ConnID: {:?}",
            conns(v)
        );
    }
    assert_eq!(
        e2[0].reference_id, None,
        "only the requester's copy carries the ReferenceID"
    );

    // B calls A at the phone; A answers through ctid; A releases through ctid.
    r.sim.dial("1002", "1001").await.unwrap();
    let eb = drain(&mut b, Q).await;
    assert_eq!(
        names(&eb),
        vec![EventOffHook, EventDialing],
        "B dials at the phone"
    );
    let ring = drain(&mut a, Q).await;
    assert_eq!(names(&ring), vec![EventRinging]);
    let conn2 = ring[0].conn_id.unwrap();
    assert_ne!(conn2, conn, "ConnIDs are never reused");
    assert_eq!(ring[0].call_type, Some(ctid_protocol::CallType::Internal));
    let est = a
        .request(on(req(RequestName::RequestAnswerCall, "1001"), conn2), T)
        .await
        .unwrap();
    assert_eq!((est.name, est.conn_id), (EventEstablished, Some(conn2)));
    let rel = a
        .request(on(req(RequestName::RequestReleaseCall, "1001"), conn2), T)
        .await
        .unwrap();
    assert_eq!((rel.name, rel.conn_id), (EventReleased, Some(conn2)));
    let eb = drain(&mut b, Q).await;
    assert_eq!(names(&eb), vec![EventEstablished, EventReleased]);
    assert!(conns(&eb).iter().all(|c| *c == Some(conn2)));
    let e2 = drain(&mut both, Q).await;
    assert_eq!(e2.len(), 7, "{:?}", names(&e2));
}

#[tokio::test]
async fn registration_in_the_middle_of_a_call_sees_the_call() {
    let r = rig_with(|c| {
        // 1003 and 1004 are monitored only while a client registers them.
        for d in &mut c.engine.dns {
            if d.number == "1003" || d.number == "1004" {
                d.register = ctid_engine::RegisterFlag::OnDemand;
            }
        }
    })
    .await;
    r.sim.dial("1003", "1004").await.unwrap();
    r.sim.answer("1004").await.unwrap();
    // The call is up before anybody registers 1003.
    let mut late = r.client().await;
    let reg = late
        .request(Request::register_address("1003"), T)
        .await
        .unwrap();
    assert_eq!(reg.name, EventName::EventRegistered);
    let ev = drain(&mut late, Q).await;
    assert_eq!(
        names(&ev),
        vec![EventName::EventEstablished],
        "the snapshot reports the call"
    );
    let conn = ev[0].conn_id.unwrap();
    let q = late
        .request(
            Request::query_address("1003", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.extension_str("status"), Some("AddressStatusTalking"));
    assert_eq!(q.extension_str("conn-1"), Some(conn.to_string().as_str()));
    // And it can be controlled.
    let rel = late
        .request(on(req(RequestName::RequestReleaseCall, "1003"), conn), T)
        .await
        .unwrap();
    assert_eq!(rel.name, EventName::EventReleased);
}

#[tokio::test]
async fn user_data_travels_through_a_transfer() {
    let r = rig().await;
    let mut a = r.client_on(&["1005"]).await;
    let mut b = r.client_on(&["1006"]).await;
    let mut c = r.client_on(&["1007"]).await;
    let conn = a
        .request(
            req(RequestName::RequestMakeCall, "1005").with_other_dn("1006"),
            T,
        )
        .await
        .unwrap()
        .conn_id
        .unwrap();
    tokio::time::sleep(Q).await;
    r.sim.answer("1006").await.unwrap();
    drain(&mut a, Q).await;
    drain(&mut b, Q).await;
    let mut ud = KvList::new();
    ud.insert_str("CustomerID", "K-1234");
    let mut attach = on(req(RequestName::RequestAttachUserData, "1005"), conn);
    attach.user_data = Some(ud);
    assert_eq!(
        a.request(attach, T).await.unwrap().name,
        EventName::EventAttachedDataChanged
    );
    let cons = a
        .request(
            on(req(RequestName::RequestInitiateTransfer, "1005"), conn).with_other_dn("1007"),
            T,
        )
        .await
        .unwrap();
    let cconn = cons.conn_id.unwrap();
    tokio::time::sleep(Q).await;
    r.sim.answer("1007").await.unwrap();
    tokio::time::sleep(Q).await;
    let mut complete = on(req(RequestName::RequestCompleteTransfer, "1005"), cconn);
    complete.transfer_conn_id = Some(conn);
    assert_eq!(
        a.request(complete, T).await.unwrap().name,
        EventName::EventReleased
    );
    let ec = drain(&mut c, Q).await;
    use EventName::*;
    assert_eq!(
        names(&ec),
        vec![EventRinging, EventEstablished, EventPartyChanged]
    );
    assert_eq!(ec[0].conn_id, Some(cconn));
    let changed = &ec[2];
    assert_eq!(
        (changed.conn_id, changed.previous_conn_id),
        (Some(conn), Some(cconn))
    );
    assert_eq!(
        changed
            .user_data
            .as_ref()
            .and_then(|u| u.get_str("CustomerID")),
        Some("K-1234"),
        "the surviving call keeps its user data"
    );
    let eb = drain(&mut b, Q).await;
    assert_eq!(
        names(&eb),
        vec![EventAttachedDataChanged, EventPartyChanged]
    );
    assert!(conns(&eb).iter().all(|x| *x == Some(conn)));
}

#[tokio::test]
async fn conference_and_delete_from_conference() {
    let r = rig().await;
    let mut a = r.client_on(&["1008"]).await;
    let mut b = r.client_on(&["1009"]).await;
    let mut c = r.client_on(&["1002"]).await;
    let conn = a
        .request(
            req(RequestName::RequestMakeCall, "1008").with_other_dn("1009"),
            T,
        )
        .await
        .unwrap()
        .conn_id
        .unwrap();
    tokio::time::sleep(Q).await;
    r.sim.answer("1009").await.unwrap();
    let cconn = a
        .request(
            on(req(RequestName::RequestInitiateConference, "1008"), conn).with_other_dn("1002"),
            T,
        )
        .await
        .unwrap()
        .conn_id
        .unwrap();
    tokio::time::sleep(Q).await;
    r.sim.answer("1002").await.unwrap();
    tokio::time::sleep(Q).await;
    let mut complete = on(req(RequestName::RequestCompleteConference, "1008"), cconn);
    complete.conference_conn_id = Some(conn);
    let added = a.request(complete, T).await.unwrap();
    assert_eq!(
        (added.name, added.conn_id),
        (EventName::EventPartyAdded, Some(conn))
    );
    // The consultation is gone from the conferencing DN: one call left on it.
    let q = a
        .request(
            Request::query_address("1008", ctid_protocol::AddressInfoType::DnStatus),
            T,
        )
        .await
        .unwrap();
    assert_eq!(q.extension_str("conn-1"), Some(conn.to_string().as_str()));
    assert_eq!(q.extension_str("conn-2"), None, "{q:?}");
    drain(&mut b, Q).await;
    drain(&mut c, Q).await;
    // A removes C from the conference.
    let del = a
        .request(
            on(req(RequestName::RequestDeleteFromConference, "1008"), conn).with_other_dn("1002"),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        (del.name, del.other_dn.as_deref()),
        (EventName::EventPartyDeleted, Some("1002"))
    );
    let ec = drain(&mut c, Q).await;
    assert_eq!(names(&ec), vec![EventName::EventReleased]);
    assert_eq!(ec[0].conn_id, Some(conn));
    let eb = drain(&mut b, Q).await;
    assert_eq!(names(&eb), vec![EventName::EventPartyDeleted]);
    assert_eq!(eb[0].other_dn.as_deref(), Some("1002"));
}
