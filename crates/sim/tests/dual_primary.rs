//! The dual-primary check (ctid's hot standby): a connection whose link another one took over
//! must not speak again — over real sockets, from Rust and over the control API.

mod common;
use std::time::{Duration, Instant};

use common::*;
use ctid_csta::*;
use ctid_sim::{DualPrimary, SessionMode, SimConfig};

fn ecma354() -> SimConfig {
    SimConfig {
        session: SessionMode::Ecma354,
        ..SimConfig::demo()
    }
}

/// StartApplicationSession, and the answer to the SystemStatus that follows; the session ID.
async fn session(c: &mut Client) -> String {
    let r = c
        .request(Message::StartApplicationSession(StartApplicationSession {
            application_info: ApplicationInfo {
                application_id: "ctid".into(),
                application_specific_info: None,
            },
            requested_protocol_versions: Vec::new(),
            requested_session_duration: Some(180),
            extensions: None,
        }))
        .await;
    let Message::StartApplicationSessionPosResponse(p) = r else {
        panic!("{}", summary(&r))
    };
    answer_system_status(c).await;
    p.session_id.into()
}

/// Answer the switch's SystemStatus request (events before it are skipped).
async fn answer_system_status(c: &mut Client) {
    let (inv, m) = loop {
        let (inv, m) = c.next().await;
        if !inv.is_event() {
            break (inv, m);
        }
    };
    assert_eq!(summary(&m), "SystemStatus systemStatus=normal");
    c.send(
        inv.get(),
        &Message::SystemStatusResponse(SystemStatusResponse { extensions: None }),
    )
    .await;
}

async fn keepalive(c: &mut Client, sid: &str) {
    let r = c
        .request(Message::ResetApplicationSessionTimer(
            ResetApplicationSessionTimer {
                session_id: sid.into(),
                requested_session_duration: None,
                extensions: None,
            },
        ))
        .await;
    assert!(
        matches!(r, Message::ResetApplicationSessionTimerPosResponse(_)),
        "{}",
        summary(&r)
    );
}

fn counts(d: &DualPrimary) -> (u64, u64, u64) {
    (d.violations, d.connections, d.owner_changes)
}

#[tokio::test]
async fn takeover_then_the_old_primary_speaks() {
    let sim = start(ecma354()).await;
    let ctl = sim.control_addr().unwrap();
    // A is the primary
    let mut a = Client::connect(sim.csta_addr()).await;
    let a_peer = a.stream.local_addr().unwrap();
    let a_sid = session(&mut a).await;
    a.monitor("1001").await;
    keepalive(&mut a, &a_sid).await;
    assert_eq!(sim.dual_primary().await, DualPrimary::default());
    // B takes over while A's connection is still open (a frozen A)
    let mut b = Client::connect(sim.csta_addr()).await;
    let b_peer = b.stream.local_addr().unwrap();
    let b_sid = session(&mut b).await;
    assert_eq!(counts(&sim.dual_primary().await), (0, 0, 1));
    b.monitor("1001").await;
    // A still holds its monitor and gets events: not a violation by itself
    let call = sim.dial("1002", "1001").await.unwrap();
    assert!(a.event().await.starts_with("DeliveredEvent"));
    assert!(b.event().await.starts_with("DeliveredEvent"));
    sim.with_model(move |m| m.clear_call(&call)).await.unwrap();
    assert_eq!(counts(&sim.dual_primary().await), (0, 0, 1));
    // A wakes up and sends its keepalive: a violation
    keepalive(&mut a, &a_sid).await;
    let d = sim.dual_primary().await;
    assert_eq!(counts(&d), (1, 1, 1));
    assert_eq!(d.recent.len(), 1);
    let want = format!("({a_peer}) sent ResetApplicationSessionTimer");
    assert!(d.recent[0].contains(&want), "{}", d.recent[0]);
    assert!(
        d.recent[0].ends_with(&format!("({b_peer})")),
        "{}",
        d.recent[0]
    );
    // B goes on: no new violation, and A's requests did not give it the link back
    keepalive(&mut b, &b_sid).await;
    b.monitor("1002").await;
    assert_eq!(counts(&sim.dual_primary().await), (1, 1, 1));
    // an answer to the switch's own request counts too; B's does not
    sim.set_system_status("normal").await;
    answer_system_status(&mut a).await;
    answer_system_status(&mut b).await;
    a.monitor("1003").await;
    let d = sim.dual_primary().await;
    assert_eq!(counts(&d), (3, 1, 1));
    assert!(d.recent[1].contains("sent SystemStatusResponse"), "{d:?}");
    assert!(d.recent[2].contains("sent MonitorStart"), "{d:?}");
    // the control API shows the same
    let (st, v) = http(ctl, "GET", "/dual-primary", None).await;
    assert_eq!(st, 200);
    assert_eq!(v, serde_json::to_value(&d).unwrap());
    assert_eq!(
        (&v["violations"], &v["connections"], &v["ownerChanges"]),
        (&3.into(), &1.into(), &1.into())
    );
    let (_, state) = http(ctl, "GET", "/state", None).await;
    let links: Vec<_> = state["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["link"].clone())
        .collect();
    assert_eq!(links, vec!["superseded", "owner"]);
    // reset: the counters go, the roles stay
    let (st, v) = http(ctl, "POST", "/dual-primary/reset", None).await;
    assert_eq!((st, v), (200, serde_json::json!({"ok": true})));
    assert_eq!(sim.dual_primary().await, DualPrimary::default());
    keepalive(&mut a, &a_sid).await;
    assert_eq!(counts(&sim.dual_primary().await), (1, 1, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reconnect_is_no_violation() {
    let sim = start(ecma354()).await;
    let mut a = Client::connect(sim.csta_addr()).await;
    let sid = session(&mut a).await;
    a.monitor("1001").await;
    keepalive(&mut a, &sid).await;
    drop(a);
    let deadline = Instant::now() + WAIT;
    while !sim.snapshot().await["connections"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the sim never noticed the close");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut a2 = Client::connect(sim.csta_addr()).await;
    let sid = session(&mut a2).await;
    a2.monitor("1001").await;
    keepalive(&mut a2, &sid).await;
    assert_eq!(
        sim.dual_primary().await,
        DualPrimary {
            owner_changes: 1,
            ..Default::default()
        }
    );
    sim.shutdown().await;
}
