//! Event export to NATS JetStream against a real nats-server (docs/operations.md "Event
//! export"): every event once, in order, through a nats-server restart, equal to what a client
//! registered on every DN received; a buffer too small drops visibly and clients do not notice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ctid_client::{Client, Received};
use ctid_protocol::{parse_event, EventName, Request};
use ctid_server::export::NatsConfig;
use futures_util::StreamExt;

mod common;
use common::nats::{free_port, Nats};
use common::*;

fn all_dns() -> Vec<String> {
    let mut v: Vec<String> = (1001..=1010)
        .chain(2001..=2010)
        .map(|n| n.to_string())
        .collect();
    v.push("3001".into());
    v.push("3101".into());
    v
}

fn export_cfg(url: String) -> NatsConfig {
    let mut n = NatsConfig::with_urls(vec![url]);
    n.retry_interval = Duration::from_millis(200);
    n
}

/// Wait (with a deadline) until the export holds nothing and is connected.
async fn drained(r: &Rig, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let m = &r.ctid.metrics;
        if m.export_lag.get() == 0 && m.export_connected.get() == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "export never drained: lag {}, connected {}, error {:?}",
            m.export_lag.get(),
            m.export_connected.get(),
            m.export_error()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message of the stream, in stream order: (Nats-Msg-Id, subject, payload).
async fn stream_messages(url: &str) -> Vec<(String, String, String)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("CTID").await.unwrap();
    let total = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < total {
        let m = tokio::time::timeout(T, msgs.next())
            .await
            .expect("a message in time")
            .expect("the stream goes on")
            .unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((
            id,
            m.subject.to_string(),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    out
}

/// Read everything that arrives for `quiet` without a new event.
async fn read_quiet(c: &mut Client, quiet: Duration) -> Vec<Received> {
    let mut v = Vec::new();
    while let Ok(Some(r)) = c.next_received(quiet).await {
        v.push(r);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_in_order_through_a_nats_restart() {
    let store = std::env::temp_dir().join(format!("ctid-nats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let Some(mut nats) = Nats::start(free_port(), &store) else {
        return;
    };
    let url = nats.url();
    let r = rig_with(|c| c.export = Some(export_cfg(url.clone()))).await;
    drained(&r, T).await;
    // A client on every DN, as a reporting application would be.
    let mut twin = r.client().await;
    let mut from = 0;
    for d in all_dns() {
        let ev = twin.request(Request::register_address(d), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered);
        from = from.max(ev.event_sequence_number);
    }
    // A storm: calls, hot desking, agents; nats-server is killed and restarted in the middle.
    let pairs = [
        ("1001", "1002"),
        ("1003", "1004"),
        ("1005", "1006"),
        ("1007", "1008"),
    ];
    for round in 0..12 {
        // nats-server goes away for rounds 5..=8 (events are held), then comes back with its
        // store; round 10 restarts it again while events are being published.
        if round == 5 {
            tokio::task::block_in_place(|| nats.kill());
        }
        if round == 9 {
            tokio::task::block_in_place(|| nats.restart());
        }
        if round == 10 {
            tokio::task::block_in_place(|| nats.restart());
        }
        for (a, b) in pairs {
            r.sim.dial(a, b).await.unwrap();
            r.sim.answer(b).await.unwrap();
            r.sim.hangup(a).await.unwrap();
        }
        if round % 3 == 0 {
            r.sim.hotdesk_associate("2004", "1009").await.unwrap();
            r.sim.hotdesk_cancel("2004").await.unwrap();
        }
        let st = if round % 2 == 0 {
            "loggedOn"
        } else {
            "loggedOff"
        };
        r.sim.agent_state("2002", st, None, None).await.unwrap();
    }
    let seen = read_quiet(&mut twin, Duration::from_millis(700)).await;
    drained(&r, Duration::from_secs(30)).await;
    let msgs = stream_messages(&url).await;

    // exactly once, in EventSequenceNumber order, each with its Nats-Msg-Id
    let mut last = 0;
    let mut lineage = None;
    let mut exported = BTreeMap::new();
    for (id, subject, payload) in &msgs {
        let ev = parse_event(payload).unwrap();
        let seq = ev.event_sequence_number;
        assert!(seq > last, "seq {seq} after {last}: out of order or twice");
        last = seq;
        let (lin, n) = id.split_once(':').expect("lineage:seq");
        assert_eq!(n, seq.to_string());
        assert_eq!(*lineage.get_or_insert(lin.to_string()), lin);
        let dn = ev.this_dn.clone().unwrap_or_else(|| "_".into());
        assert_eq!(subject, &format!("ctid.events.{dn}.{}", ev.name.as_str()));
        assert_eq!(ev.reference_id, None);
        exported.insert(seq, payload.clone());
    }
    // equal to what the client on every DN received
    let received: BTreeMap<u64, String> = seen
        .iter()
        .filter(|r| r.event.event_sequence_number > from)
        .map(|r| (r.event.event_sequence_number, r.raw.clone()))
        .collect();
    assert!(received.len() > 100, "a storm: {}", received.len());
    let exported_after: BTreeMap<u64, String> =
        exported.into_iter().filter(|(s, _)| *s > from).collect();
    let missing: Vec<_> = received
        .keys()
        .filter(|s| !exported_after.contains_key(s))
        .collect();
    let extra: Vec<_> = exported_after
        .keys()
        .filter(|s| !received.contains_key(s))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(received, exported_after);
    assert_eq!(r.ctid.metrics.export_dropped.get(), 0);
    // the outage was real: events were held, then published again
    assert!(
        r.ctid.metrics.export_published.get() >= msgs.len() as u64,
        "{} published",
        r.ctid.metrics.export_published.get()
    );
    let _ = std::fs::remove_dir_all(&store);
}

#[tokio::test]
async fn a_full_buffer_drops_counted_and_clients_do_not_notice() {
    // NATS never answers (nothing listens there); the buffer holds 1 KiB.
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let r = rig_with(|c| {
        let mut n = export_cfg(dead);
        n.max_buffer_bytes = 1024;
        c.export = Some(n);
    })
    .await;
    let mut a = r.client_on(&["1001", "1002"]).await;
    for _ in 0..5 {
        r.sim.dial("1001", "1002").await.unwrap();
        until(&mut a, EventName::EventRinging, Some("1002")).await;
        r.sim.answer("1002").await.unwrap();
        r.sim.hangup("1001").await.unwrap();
        until(&mut a, EventName::EventReleased, Some("1002")).await;
    }
    let m = &r.ctid.metrics;
    assert!(m.export_dropped.get() > 0, "nothing dropped");
    assert!(m.export_buffered_bytes.get() <= 1024);
    assert_eq!(m.export_connected.get(), 0);
    assert!(!m.export_error().is_empty());
    // /metrics says so
    let text = m.render();
    assert!(text.contains("ctid_export_dropped_total"), "{text}");
    // ctid stays ready: the export is reported, not a reason to refuse clients
    assert_eq!(r.ctid.status.borrow().link.as_str(), "up");
}
