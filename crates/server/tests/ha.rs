//! Hot standby (docs/operations.md §13) against a real nats-server and the demo switch: two ctid
//! nodes, one primary; the backup refuses clients with 4010 naming the primary; the primary dies
//! and the backup takes over; the client resumes its session there with every event it missed,
//! the call keeps its ConnID and the hot desk its host; a planned switchover hands over and the
//! old primary follows as a backup.

use std::time::{Duration, Instant};

use ctid_client::Client;
use ctid_protocol::{Event, EventName, Request, RequestName};
use ctid_server::demo::demo_config;
use ctid_server::export::NatsConfig;
use ctid_server::ha::{HaConfig, Role};
use ctid_server::Running;
use ctid_sim::{Sim, SimConfig};
use futures_util::StreamExt;

mod common;
use common::nats::{free_port, Nats};
use common::*;

fn ha_cfg(node: &str, nats: &str) -> HaConfig {
    HaConfig {
        cluster: "test".into(),
        node: node.into(),
        nats: NatsConfig::with_urls(vec![nats.to_string()]),
        advertise: String::new(),
        lease: Duration::from_millis(1000),
        renew_interval: Duration::from_millis(250),
        replicas: 1,
        max_bytes: 64 << 20,
        snapshot_every: 10_000,
    }
}

async fn node(name: &str, sim: &Sim, nats: &str) -> Running {
    node_with(name, sim, nats, 10_000).await
}

async fn node_with(name: &str, sim: &Sim, nats: &str, snapshot_every: u64) -> Running {
    let mut cfg = demo_config(any(), sim.csta_addr());
    for l in &mut cfg.links {
        l.reconnect_min = Duration::from_millis(100);
        l.reconnect_max = Duration::from_millis(300);
        l.connect_timeout = Duration::from_millis(800);
    }
    let mut h = ha_cfg(name, nats);
    h.snapshot_every = snapshot_every;
    cfg.ha = Some(h);
    ctid_server::start(cfg).await.unwrap()
}

/// Node "a", alone: primary with its link up.
async fn first_primary(sim: &Sim, nats: &str, snapshot_every: u64) -> Running {
    let a = node_with("a", sim, nats, snapshot_every).await;
    wait_for("a primary", Duration::from_secs(10), || {
        role(&a) == Role::Primary
    })
    .await;
    link_up(&a).await;
    a
}

fn role(r: &Running) -> Role {
    r.ha.as_ref().unwrap().borrow().role
}

async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn link_up(r: &Running) {
    let s = r.status.clone();
    wait_for("link up", Duration::from_secs(10), || {
        s.borrow().link.as_str() == "up"
    })
    .await;
}

/// The close frame a node that does not serve sends: (code, reason).
async fn refused(url: &str) -> (u16, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match tokio::time::timeout(T, ws.next()).await {
        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))))) => {
            (u16::from(f.code), f.reason.to_string())
        }
        Ok(Some(Ok(m))) => panic!("a backup sent {m:?}"),
        other => panic!("no close frame: {other:?}"),
    }
}

async fn next(c: &mut Client) -> Event {
    c.next_event(T).await.unwrap().expect("an event")
}

async fn until_named(c: &mut Client, name: EventName, seen: &mut Vec<Event>) -> Event {
    loop {
        let e = next(c).await;
        seen.push(e.clone());
        if e.name == name {
            return e;
        }
        assert_ne!(e.name, EventName::EventError, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_takes_over_and_the_session_resumes_with_every_event_and_the_same_connid() {
    let dir = std::env::temp_dir().join(format!("ctid-ha-{}", std::process::id()));
    let Some(nats) = Nats::start(free_port(), &dir) else {
        return;
    };
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let a = first_primary(&sim, &nats.url(), 10_000).await;
    let b = node("b", &sim, &nats.url()).await;
    wait_for("b a ready backup", Duration::from_secs(10), || {
        let v = b.ha.as_ref().unwrap().borrow().clone();
        v.role == Role::Backup
            && v.ready
            && v.lease.as_ref().and_then(|l| l.holder.as_deref()) == Some("a")
    })
    .await;

    // The backup names the primary.
    let (code, reason) = refused(&b.ws_url()).await;
    assert_eq!(code, 4010);
    assert_eq!(reason, format!("not primary; primary={}", a.ws_url()));

    // A desk on a: a hot desk, a call with user data.
    let mut c = Client::connect(&a.ws_url()).await.unwrap();
    let first = next(&mut c).await;
    let session = first.session_id.clone().unwrap();
    let mut seen = vec![first];
    for dn in ["1001", "1002", "2010"] {
        let ev = c.request(Request::register_address(dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
        seen.push(ev);
    }
    assert_eq!(
        seen.last().unwrap().extension_str("HOST_DN"),
        Some("1010"),
        "{:?}",
        seen.last()
    );
    let mut mk = Request::new(RequestName::RequestMakeCall)
        .with_this_dn("1001")
        .with_other_dn("1002");
    let mut ud = ctid_protocol::KvList::default();
    ud.insert_str("CaseID", "C-42");
    mk.user_data = Some(ud);
    let dialing = c.request(mk, T).await.unwrap();
    assert_eq!(dialing.name, EventName::EventDialing, "{dialing:?}");
    let conn = dialing.conn_id.unwrap();
    seen.push(dialing);
    let ringing = until_named(&mut c, EventName::EventRinging, &mut seen).await;
    assert_eq!(ringing.conn_id.as_ref(), Some(&conn));
    let mut ans = Request::new(RequestName::RequestAnswerCall).with_this_dn("1002");
    ans.conn_id = Some(conn);
    c.send(&mut ans).await.unwrap();
    until_named(&mut c, EventName::EventEstablished, &mut seen).await;
    // Let both EventEstablished arrive.
    while let Ok(Some(e)) = c.next_event(Duration::from_millis(300)).await {
        seen.push(e);
    }
    let last = seen.iter().map(|e| e.event_sequence_number).max().unwrap();

    // The primary dies (its tasks and sockets go at once, the lease is not released).
    let killed = Instant::now();
    drop(a);
    drop(c);
    wait_for("b primary", Duration::from_secs(5), || {
        role(&b) == Role::Primary
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "took over too early: {took:?}"
    );
    link_up(&b).await;

    // The session resumes on b with the events it had not seen, none twice.
    let mut c = Client::connect(&b.ws_url()).await.unwrap();
    let fresh = next(&mut c).await;
    assert_ne!(fresh.session_id.as_deref(), Some(session.as_str()));
    let resumed = c
        .request(Request::resume_session(&session, last), T)
        .await
        .unwrap();
    assert_eq!(resumed.name, EventName::EventSessionResumed, "{resumed:?}");
    let mut after = Vec::new();
    while let Ok(Some(e)) = c.next_event(Duration::from_millis(500)).await {
        after.push(e);
    }
    let seqs: Vec<u64> = after.iter().map(|e| e.event_sequence_number).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]) && seqs.iter().all(|s| *s > last),
        "resumed stream not after {last} and increasing: {seqs:?}"
    );
    // The take-over shows as a link outage and its recovery.
    let names: Vec<_> = after.iter().map(|e| e.name).collect();
    assert!(
        names.contains(&EventName::EventLinkDisconnected)
            && names.contains(&EventName::EventLinkConnected),
        "{names:?}"
    );
    // Same hot desk, same call, same ConnID and user data.
    let q = Request::query_address("2010", ctid_protocol::AddressInfoType::DnStatus);
    let info = c.request(q, T).await.unwrap();
    assert_eq!(info.extension_str("HOST_DN"), Some("1010"), "{info:?}");
    let mut rel = Request::new(RequestName::RequestReleaseCall).with_this_dn("1001");
    rel.conn_id = Some(conn);
    let released = c.request(rel, T).await.unwrap();
    assert_eq!(released.name, EventName::EventReleased, "{released:?}");
    assert_eq!(released.conn_id.as_ref(), Some(&conn));
    assert_eq!(
        released
            .user_data
            .as_ref()
            .and_then(|u| u.get_str("CaseID")),
        Some("C-42"),
        "{released:?}"
    );

    // Only b holds monitors on the switch now (a's connection went with it).
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_switchover_hands_over_and_the_old_primary_follows() {
    let dir = std::env::temp_dir().join(format!("ctid-ha-sw-{}", std::process::id()));
    let Some(nats) = Nats::start(free_port(), &dir) else {
        return;
    };
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let a = first_primary(&sim, &nats.url(), 10_000).await;
    let b = node("b", &sim, &nats.url()).await;
    // a must see b's record as ready before it can hand over.
    wait_for("a sees b ready", Duration::from_secs(10), || {
        let v = a.ha.as_ref().unwrap().borrow().clone();
        v.nodes.iter().any(|n| n.node == "b" && n.ready)
    })
    .await;
    let mut c = Client::connect(&a.ws_url()).await.unwrap();
    let first = next(&mut c).await;
    let session = first.session_id.clone().unwrap();
    let ev = c
        .request(Request::register_address("1003"), T)
        .await
        .unwrap();
    let last = ev.event_sequence_number;

    let t0 = Instant::now();
    let r = a.switchover(None).await;
    assert!(r.is_ok(), "{r:?}");
    wait_for("b primary", Duration::from_secs(3), || {
        role(&b) == Role::Primary
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "a planned switchover took {took:?}"
    );
    assert_eq!(role(&a), Role::Backup);
    // a's client is told where to go.
    let deadline = Instant::now() + T;
    while let Ok(Some(_)) = c.next_event(T).await {
        assert!(Instant::now() < deadline, "a's client never closed");
    }
    link_up(&b).await;
    let mut c = Client::connect(&b.ws_url()).await.unwrap();
    next(&mut c).await;
    let resumed = c
        .request(Request::resume_session(&session, last), T)
        .await
        .unwrap();
    assert_eq!(resumed.name, EventName::EventSessionResumed, "{resumed:?}");
    // The old primary follows: it applies b's inputs.
    wait_for("a follows b", Duration::from_secs(5), || {
        let va = a.ha.as_ref().unwrap().borrow().clone();
        let vb = b.ha.as_ref().unwrap().borrow().clone();
        va.ready && va.applied_seq == vb.applied_seq
    })
    .await;
    let (code, reason) = refused(&a.ws_url()).await;
    assert_eq!(
        (code, reason),
        (4010, format!("not primary; primary={}", b.ws_url()))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_stored_by_the_backup_and_a_node_that_joins_late_starts_from_one() {
    let dir = std::env::temp_dir().join(format!("ctid-ha-snap-{}", std::process::id()));
    let Some(nats) = Nats::start(free_port(), &dir) else {
        return;
    };
    let sim = Sim::start(SimConfig::demo(), any(), None).await.unwrap();
    let a = first_primary(&sim, &nats.url(), 10).await;
    // A desk whose state must survive: registrations, a hot desk, then traffic (each request
    // is one input batch: one stream message).
    let mut c = Client::connect(&a.ws_url()).await.unwrap();
    let first = next(&mut c).await;
    let session = first.session_id.clone().unwrap();
    for dn in ["1001", "2010"] {
        let ev = c.request(Request::register_address(dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
    let mut last = 0;
    let mut queries = async |c: &mut Client, n: usize| {
        for _ in 0..n {
            let q = Request::query_address("1001", ctid_protocol::AddressInfoType::DnStatus);
            let info = c.request(q, T).await.unwrap();
            assert_eq!(info.name, EventName::EventAddressInfo, "{info:?}");
            last = info.event_sequence_number;
        }
    };
    // Alone, the primary stores one itself after four intervals.
    queries(&mut c, 45).await;
    wait_for(
        "the primary's own snapshot",
        Duration::from_secs(10),
        || a.metrics.ha_snapshots.get() == 1,
    )
    .await;

    // b joins from that snapshot, then stores the next ones: the primary pays nothing more.
    let b = node_with("b", &sim, &nats.url(), 10).await;
    wait_for("b a ready backup", Duration::from_secs(10), || {
        b.ha.as_ref().unwrap().borrow().ready
    })
    .await;
    assert!(b.ha.as_ref().unwrap().borrow().snapshot_seq >= 40);
    queries(&mut c, 20).await;
    wait_for("b stores two snapshots", Duration::from_secs(10), || {
        b.metrics.ha_snapshots.get() >= 2
    })
    .await;
    // The primary learns of them from b's node record (written every 500 ms)...
    wait_for("a sees b's snapshots", Duration::from_secs(10), || {
        let vb = b.ha.as_ref().unwrap().borrow().snapshot_seq;
        let va = a.ha.as_ref().unwrap().borrow().clone();
        va.nodes
            .iter()
            .any(|n| n.node == "b" && n.snapshot_seq == vb)
    })
    .await;
    // ...and stores none of its own while b does.
    queries(&mut c, 25).await;
    wait_for("b stores another", Duration::from_secs(10), || {
        b.metrics.ha_snapshots.get() >= 4
    })
    .await;
    assert_eq!(a.metrics.ha_snapshots.get(), 1);
    let stored = b.ha.as_ref().unwrap().borrow().snapshot_seq;

    // c joins now (the stream trimmed behind b's snapshots) and starts from the latest.
    let c_node = node_with("c", &sim, &nats.url(), 10).await;
    wait_for("c a ready backup", Duration::from_secs(10), || {
        let v = c_node.ha.as_ref().unwrap().borrow().clone();
        let va = a.ha.as_ref().unwrap().borrow().clone();
        v.ready && v.applied_seq == va.applied_seq
    })
    .await;
    let vc = c_node.ha.as_ref().unwrap().borrow().clone();
    assert!(
        vc.snapshot_seq >= stored,
        "c did not load the latest snapshot: {vc:?}"
    );
    assert_eq!(c_node.metrics.ha_snapshot_errors.get(), 0);

    // a and b go: c takes over from what it loaded and applied.
    drop(a);
    drop(b);
    drop(c);
    wait_for("c primary", Duration::from_secs(5), || {
        role(&c_node) == Role::Primary
    })
    .await;
    link_up(&c_node).await;
    let mut c = Client::connect(&c_node.ws_url()).await.unwrap();
    next(&mut c).await;
    let resumed = c
        .request(Request::resume_session(&session, last), T)
        .await
        .unwrap();
    assert_eq!(resumed.name, EventName::EventSessionResumed, "{resumed:?}");
    let q = Request::query_address("2010", ctid_protocol::AddressInfoType::DnStatus);
    let info = c.request(q, T).await.unwrap();
    assert_eq!(info.extension_str("HOST_DN"), Some("1010"), "{info:?}");
    assert!(info.event_sequence_number > last);
    let _ = std::fs::remove_dir_all(&dir);
}
