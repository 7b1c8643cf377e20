//! Engine cost per switch event, without IO: N DNs monitored, each registered by 3 clients
//! (fan-out 3), calls cycling through Originated → Delivered → Established → Held → Retrieved →
//! ConnectionCleared on random pairs. Run with `cargo bench -p ctid-engine`; the figures for 1k,
//! 10k and 50k DNs show whether the cost per event stays flat as the tables grow.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctid_csta::*;
use ctid_engine::*;

fn now() -> Now {
    Now {
        mono_ms: 1,
        unix_micros: 1_790_000_000_000_000,
    }
}

/// An engine with `n` DNs monitored (crossRefID = the DN) and 3 clients on each.
fn setup(n: usize) -> Engine {
    let cfg = EngineConfig {
        max_outstanding: 1_000_000,
        hotdesk_enabled: false,
        ..Default::default()
    };
    let mut e = Engine::new(cfg);
    let mut out = Vec::new();
    let clients = (n / 10).max(3) as u64;
    for c in 0..clients {
        e.handle(
            now(),
            Input::ClientConnected {
                client: c,
                peer: String::new(),
            },
            &mut out,
        );
    }
    e.handle(
        now(),
        Input::LinkUp {
            name: "bench".into(),
            priority: None,
            edition: None,
        },
        &mut out,
    );
    for i in 0..n {
        let dn = format!("{}", 100_000 + i);
        for j in 0..3u64 {
            let client = (i as u64 * 3 + j) % clients;
            let text = format!(
                r#"{{"request":"RequestRegisterAddress","ReferenceID":1,"ThisDN":"{dn}"}}"#
            );
            e.handle(now(), Input::ClientText { client, text }, &mut out);
        }
    }
    // Answer every request: MonitorStart with crossRefID = DN, snapshots empty.
    loop {
        let reqs: Vec<(InvokeId, Message)> = out
            .drain(..)
            .filter_map(|o| match o {
                Output::CstaRequest {
                    invoke_id: tag,
                    message,
                } => Some((tag, message)),
                _ => None,
            })
            .collect();
        if reqs.is_empty() {
            break;
        }
        for (tag, m) in reqs {
            let Some(answer) = testkit::empty_switch_answer(&m) else {
                continue;
            };
            e.handle(
                now(),
                Input::CstaAnswer {
                    invoke_id: tag,
                    message: answer,
                },
                &mut out,
            );
        }
    }
    assert_eq!(e.monitored_count(), n);
    e
}

fn dr(d: &str) -> Option<DeviceRef> {
    Some(DeviceRef::id(d))
}

/// The CSTA events of one call between a and b, each delivered on both monitors.
fn call_events(call: &str, a: &str, b: &str) -> Vec<Message> {
    let c = |d: &str| ConnectionId::new(call, d);
    let mut v = Vec::new();
    for x in [a, b] {
        v.push(testkit::delivered(x, call, a, b));
    }
    for x in [a, b] {
        v.push(testkit::established(x, call, a, b, None));
    }
    for x in [a, b] {
        v.push(Message::HeldEvent(HeldEvent {
            monitor_cross_ref_id: x.into(),
            held_connection: c(a),
            holding_device: dr(a),
            local_connection_info: None,
            correlator_data: None,
            cause: None,
            extensions: None,
        }));
    }
    for x in [a, b] {
        v.push(Message::RetrievedEvent(RetrievedEvent {
            monitor_cross_ref_id: x.into(),
            retrieved_connection: c(a),
            retrieving_device: dr(a),
            local_connection_info: None,
            correlator_data: None,
            cause: None,
            extensions: None,
        }));
    }
    for (x, who) in [(a, a), (b, a), (b, b)] {
        v.push(testkit::cleared(x, call, who));
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine: switch events with fan-out 3");
    for n in [1_000usize, 10_000, 50_000] {
        let mut e = setup(n);
        // 1,000 calls' worth of events on pseudo-random pairs.
        let mut events = Vec::new();
        let mut x: u64 = 12345;
        for k in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) as usize % (n / 2);
            let (a, b) = (
                format!("{}", 100_000 + 2 * i),
                format!("{}", 100_000 + 2 * i + 1),
            );
            events.extend(call_events(&format!("C{k}"), &a, &b));
        }
        let per_iter = events.len() as u64;
        g.throughput(Throughput::Elements(per_iter));
        let mut out = Vec::with_capacity(64);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bch, _| {
            bch.iter(|| {
                for m in &events {
                    e.handle(now(), Input::CstaEvent { message: m.clone() }, &mut out);
                    out.clear();
                }
            })
        });
        // A plain figure for the docs: µs per switch event.
        let t = Instant::now();
        let rounds = 5;
        for _ in 0..rounds {
            for m in &events {
                e.handle(now(), Input::CstaEvent { message: m.clone() }, &mut out);
                out.clear();
            }
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / (rounds * per_iter) as f64;
        println!(
            "engine: {n} DNs: {us:.2} µs per switch event (fan-out 3, including the event clone)"
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
