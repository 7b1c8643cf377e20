//! The Connector's system status on a working link, and the call options of issue 12, end to
//! end: ctid and csta-sim over real sockets. `messagesLost` resynchronises on the same session
//! without link events and without failing the requests in flight; `overloadReached` halves
//! the CSTA request window until `overloadRelieved`; `partiallyDisabled` sets a gauge;
//! `ani-distribution`, `user-data-limit` and `device-rq-gap` as clients and the switch see them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ctid_client::Client;
use ctid_protocol::{Event, EventName, KvList, RequestName};
use ctid_server::Config;
use ctid_sim::DeviceConfig;

/// Events until one satisfies `stop` (returned last); any link event or EventError fails.
async fn until_no_link_event(
    c: &mut Client,
    what: &str,
    stop: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .next_event(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {what}; seen {:?}", names(&seen)));
        assert!(
            !matches!(
                ev.name,
                EventName::EventLinkDisconnected
                    | EventName::EventLinkConnected
                    | EventName::EventError
            ),
            "while waiting for {what}: {ev:?}"
        );
        let done = stop(&ev);
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

fn names(v: &[Event]) -> Vec<EventName> {
    v.iter().map(|e| e.name).collect()
}

/// Wait until `f` holds, polling (with a deadline).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The monitorCrossRefIDs the simulator holds for ctid.
async fn sim_monitors(r: &Rig) -> Vec<String> {
    let snap = r.sim.snapshot().await;
    let mut v: Vec<String> = snap["connections"][0]["monitors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m.to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn messages_lost_resyncs_on_the_same_session_without_link_events() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    r.sim.dial("1001", "1002").await.unwrap();
    r.sim.answer("1002").await.unwrap();
    let est = until(&mut a, EventName::EventEstablished, Some("1001")).await;
    let conn = est.conn_id.unwrap();
    // Answers are held back by the switch: the DTMF request is in flight during the resync.
    r.sim.set_delay(2_000).await;
    let mut dtmf = with_conn(req(RequestName::RequestSendDTMF, "1001"), conn);
    dtmf.dtmf_digits = Some("12".into());
    let rid = a.send(&mut dtmf).await.unwrap();
    let before = sim_monitors(&r).await;
    r.sim.set_system_status("messagesLost").await;
    // The session stops its monitors and the engine starts new ones on the same connection
    // (their answers are held back 2 s, so the engine cannot see events on them yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sim_monitors(&r).await;
        if now.len() == before.len() && now != before {
            break;
        }
        assert!(Instant::now() < deadline, "never re-monitored: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The call ends in the gap: the snapshot of the resync catches it up.
    r.sim.hangup("1002").await.unwrap();
    let mut seen = Vec::new();
    let mut released = None;
    let mut dtmf_sent = None;
    while released.is_none() || dtmf_sent.is_none() {
        let more = until_no_link_event(&mut a, "EventReleased and EventDTMFSent", |e| {
            matches!(e.name, EventName::EventReleased | EventName::EventDTMFSent)
        })
        .await;
        for e in &more {
            match e.name {
                EventName::EventReleased => released = Some(e.clone()),
                EventName::EventDTMFSent => dtmf_sent = Some(e.clone()),
                _ => {}
            }
        }
        seen.extend(more);
    }
    // The request in flight got its own answer, not EventError 54.
    assert_eq!(
        dtmf_sent.unwrap().reference_id,
        Some(rid),
        "{:?}",
        names(&seen)
    );
    let rel = released.unwrap();
    assert_eq!(rel.conn_id, Some(conn));
    assert_eq!(
        rel.extensions
            .as_ref()
            .and_then(|k| k.get_str("ReleaseCause")),
        Some("resync"),
        "{rel:?}"
    );
    // One monitor per DN on the switch, not two; the link never left "up".
    assert_eq!(r.ctid.status.borrow().link.as_str(), "up");
    assert_eq!(sim_monitors(&r).await.len(), before.len());
    // The DN still gets events.
    r.sim.set_delay(0).await;
    r.sim.dial("1003", "1001").await.unwrap();
    until_no_link_event(&mut a, "EventRinging", |e| {
        e.name == EventName::EventRinging
    })
    .await;
}

#[tokio::test]
async fn overload_halves_the_request_window_and_partially_disabled_sets_a_gauge() {
    let r = rig().await;
    let mut a = r.client_on(&["1001"]).await;
    let limit = || r.ctid.status.borrow().window_limit;
    assert_eq!(limit(), 100);
    r.sim.set_system_status("overloadReached").await;
    eventually("window halved", || limit() == 50).await;
    assert!(r
        .ctid
        .metrics
        .render()
        .contains("ctid_csta_window_limit 50"));
    r.sim.set_system_status("overloadRelieved").await;
    eventually("window restored", || limit() == 100).await;
    r.sim.set_system_status("partiallyDisabled").await;
    eventually("gauge set", || {
        r.ctid.metrics.partially_disabled("csta-sim") == 1
    })
    .await;
    assert!(r
        .ctid
        .metrics
        .render()
        .contains("ctid_link_partially_disabled{link=\"csta-sim\"} 1"));
    r.sim.set_system_status("normal").await;
    eventually("gauge cleared", || {
        r.ctid.metrics.partially_disabled("csta-sim") == 0
    })
    .await;
    // None of it was a link event for clients, and requests still work.
    let ev = a
        .request(req(RequestName::RequestSetDNDOn, "1001"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventDNDOn, "{ev:?}");
}

async fn ringing_ani(edit: impl FnOnce(&mut Config)) -> (Option<String>, Option<String>) {
    let r = rig_with(edit).await;
    // A number the switch has but ctid does not configure, and too long to be internal.
    r.sim
        .add_device(DeviceConfig::extension("0612345678"))
        .await
        .unwrap();
    let mut a = r.client_on(&["1001", "1003"]).await;
    r.sim.dial("0612345678", "1001").await.unwrap();
    let inbound = until(&mut a, EventName::EventRinging, Some("1001")).await;
    assert_eq!(inbound.call_type, Some(ctid_protocol::CallType::Inbound));
    r.sim.dial("1002", "1003").await.unwrap();
    let internal = until(&mut a, EventName::EventRinging, Some("1003")).await;
    assert_eq!(internal.call_type, Some(ctid_protocol::CallType::Internal));
    (inbound.ani, internal.ani)
}

#[tokio::test]
async fn ani_distribution_follows_the_call_type() {
    use ctid_engine::config::AniDistribution;
    assert_eq!(
        ringing_ani(|_| {}).await,
        (Some("0612345678".into()), None),
        "inbound-calls-only (default)"
    );
    assert_eq!(
        ringing_ani(|c| c.engine.ani_distribution = AniDistribution::AllCalls).await,
        (Some("0612345678".into()), Some("1002".into()))
    );
    assert_eq!(
        ringing_ani(|c| c.engine.ani_distribution = AniDistribution::Suppressed).await,
        (None, None)
    );
}

#[tokio::test]
async fn user_data_limit_refuses_a_change_that_would_exceed_it() {
    let r = rig_with(|c| c.engine.user_data_limit = 64).await;
    let mut a = r.client_on(&["1001"]).await;
    r.sim.dial("1001", "1002").await.unwrap();
    let d = until(&mut a, EventName::EventDialing, Some("1001")).await;
    let conn = d.conn_id.unwrap();
    let attach = |v: &str| {
        let mut ud = KvList::new();
        ud.insert_str("Case", v);
        let mut r = with_conn(req(RequestName::RequestAttachUserData, "1001"), conn);
        r.user_data = Some(ud);
        r
    };
    // {"Case":"…"} is 11 bytes plus the value.
    answer_ok(
        &mut a,
        attach(&"x".repeat(40)),
        EventName::EventAttachedDataChanged,
    )
    .await;
    let e = a.request(attach(&"y".repeat(20)), T).await.unwrap();
    assert_eq!(e.name, EventName::EventError, "{e:?}");
    assert_eq!(e.error_code.map(|c| c.0), Some(53), "{e:?}");
    // The data is unchanged.
    let q = a
        .request(
            with_conn(req(RequestName::RequestQueryCall, "1001"), conn),
            T,
        )
        .await
        .unwrap();
    let ud = q.user_data.unwrap();
    assert_eq!(ud.get_str("Case"), Some("x".repeat(40).as_str()));
    assert_eq!(ud.iter().count(), 1);
}

fn csta_out(r: &Rig, name: &str) -> u64 {
    r.ctid.metrics.csta_out.get(name)
}

#[tokio::test]
async fn device_rq_gap_holds_a_second_request_on_a_device_until_the_gap() {
    const GAP: Duration = Duration::from_millis(800);
    let r = rig_with(|c| {
        for l in &mut c.engine.links {
            l.device_rq_gap_ms = GAP.as_millis() as u64;
        }
    })
    .await;
    let mut a = r.client_on(&["1001"]).await;
    // The switch answers nothing: the first request stays in flight.
    r.sim.set_stall(true).await;
    let before = csta_out(&r, "SetDoNotDisturb");
    let mut on = req(RequestName::RequestSetDNDOn, "1001");
    let mut off = req(RequestName::RequestSetDNDOff, "1001");
    a.send(&mut on).await.unwrap();
    let sent = Instant::now();
    a.send(&mut off).await.unwrap();
    eventually("first request sent", || {
        csta_out(&r, "SetDoNotDisturb") == before + 1
    })
    .await;
    eventually("second request sent after the gap", || {
        csta_out(&r, "SetDoNotDisturb") == before + 2
    })
    .await;
    assert!(
        sent.elapsed() >= GAP - Duration::from_millis(50),
        "the second went after {:?}",
        sent.elapsed()
    );
    r.sim.set_stall(false).await;
}
