//! The size of an engine snapshot and the time to take and restore it (hot standby,
//! `ctid_engine::snapshot`): 1,000 DNs registered by 300 client sessions (each session 3 or 4
//! DNs), the link up with every DN monitored, and ~100 established calls between pairs of DNs,
//! each with user data. Sessions keep the events they were sent (`resume-keep-attached`), so
//! the snapshot holds them too; the figure without them is printed as well.
//!
//! `cargo run --release -p ctid-engine --example snapshot_size -- [DNS] [SESSIONS] [CALLS]`
//! (default 1000 300 100).

use std::time::{Duration, Instant};

use ctid_csta::*;
use ctid_engine::*;
use serde_json::Value;

fn now(ms: u64) -> Now {
    testkit::now_at(ms)
}

fn dr(d: &str) -> Option<DeviceRef> {
    Some(DeviceRef::id(d))
}

/// Answer every CSTA request like an empty switch ([`testkit::serve_empty_switch`]).
fn serve(e: &mut Engine, out: &mut Vec<Output>, t: u64) {
    testkit::serve_empty_switch(e, out, now(t));
}

/// An established call `call` from `a` to `b`, each event on both monitors.
fn call(e: &mut Engine, out: &mut Vec<Output>, t: u64, call: &str, a: &str, b: &str) {
    let ca = ConnectionId::new(call, a);
    for x in [a, b] {
        let evs = [
            Message::OriginatedEvent(OriginatedEvent {
                monitor_cross_ref_id: x.into(),
                originated_connection: ca.clone(),
                calling_device: dr(a),
                called_device: dr(b),
                originating_device: None,
                local_connection_info: None,
                correlator_data: None,
                cause: Some(EventCause::NewCall),
                extensions: None,
            }),
            testkit::delivered(x, call, a, b),
            testkit::established(x, call, a, b, Some(EventCause::NewCall)),
        ];
        for m in evs {
            e.handle(now(t), Input::CstaEvent { message: m }, out);
        }
    }
}

/// The median of `runs` timings of `f`.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    times.sort();
    (times[runs / 2], last.expect("at least one run"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let sessions: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let number = |i: usize| format!("{}", 100_000 + i);
    let cfg = EngineConfig {
        dns: (0..dns)
            .map(|i| DnConfig {
                number: number(i),
                dn_type: ctid_protocol::AddressType::Dn,
                register: RegisterFlag::OnDemand,
            })
            .collect(),
        max_outstanding: 1_000_000,
        ..Default::default()
    };
    let mut e = Engine::new(cfg);
    let mut out = Vec::new();
    let mut t = 1;
    e.handle(
        now(t),
        Input::LinkUp {
            name: "main".into(),
            priority: None,
            edition: None,
        },
        &mut out,
    );
    serve(&mut e, &mut out, t);
    for c in 0..sessions {
        e.handle(
            now(t),
            Input::SessionOpened {
                client: c + 1,
                peer: format!("10.0.{}.{}:50000", c / 256, c % 256),
                session_id: format!("{c:032x}"),
                owner: String::new(),
            },
            &mut out,
        );
    }
    // session c registers DNs c, c + sessions, c + 2 sessions, …
    for (i, rid) in (0..dns).zip(1u32..) {
        let client = (i as u64 % sessions) + 1;
        let text = format!(
            r#"{{"request":"RequestRegisterAddress","ReferenceID":{rid},"ThisDN":"{}"}}"#,
            number(i)
        );
        e.handle(now(t), Input::ClientText { client, text }, &mut out);
        serve(&mut e, &mut out, t);
    }
    for k in 0..calls {
        t += 1;
        let (a, b) = (number(2 * k % dns), number((2 * k + 1) % dns));
        call(&mut e, &mut out, t, &format!("C{k}"), &a, &b);
        let conn = e
            .calls()
            .iter()
            .last()
            .map(|c| c.conn_id.to_string())
            .unwrap_or_default();
        let client = ((2 * k % dns) as u64 % sessions) + 1;
        let text = format!(
            r#"{{"request":"RequestAttachUserData","ReferenceID":1,"ThisDN":"{a}","ConnID":"{conn}","UserData":{{"CaseID":"{k:08}","Segment":"gold","Language":"fr"}}}}"#
        );
        e.handle(now(t), Input::ClientText { client, text }, &mut out);
        out.clear();
    }
    let views = e.session_views();
    let kept_events: usize = views.iter().map(|v| v.kept_events).sum();
    let kept_bytes: usize = views.iter().map(|v| v.kept_bytes).sum();
    let with_data = e.calls().iter().filter(|c| !c.user_data.is_empty()).count();
    println!(
        "engine: {} DNs ({} monitored), {} sessions, {} calls ({with_data} with user data), \
         {} events kept by sessions ({:.2} MiB of JSON)",
        e.dn_count(),
        e.monitored_count(),
        views.len(),
        e.call_views().len(),
        kept_events,
        kept_bytes as f64 / 1048576.0
    );

    let runs = 11;
    let (take, snap) = time(runs, || e.snapshot());
    let (write, text) = time(runs, || snap.to_string());
    let (parse, parsed) = time(runs, || {
        serde_json::from_str::<Value>(&text).expect("the snapshot's own text")
    });
    let (restore, restored) = time(runs, || Engine::restore(&parsed).expect("its own snapshot"));
    assert_eq!(
        restored.snapshot(),
        snap,
        "restore(snapshot) is the snapshot"
    );
    let parts: Vec<(String, usize)> = snap
        .as_object()
        .map(|m| {
            let mut v: Vec<_> = m
                .iter()
                .map(|(k, x)| (k.clone(), x.to_string().len()))
                .collect();
            v.sort_by_key(|x| std::cmp::Reverse(x.1));
            v
        })
        .unwrap_or_default();
    println!(
        "snapshot: {} bytes of JSON ({:.2} MiB); largest parts: {}",
        text.len(),
        text.len() as f64 / 1048576.0,
        parts
            .iter()
            .take(5)
            .map(|(k, n)| format!("{k} {:.0} KiB", *n as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut without = snap.clone();
    if let Some(s) = without["sessions"]["by_client"].as_object_mut() {
        for v in s.values_mut() {
            v["kept"] = Value::Array(Vec::new());
        }
    }
    println!(
        "  without the sessions' kept events: {} bytes ({:.2} MiB)",
        without.to_string().len(),
        without.to_string().len() as f64 / 1048576.0
    );
    println!(
        "median of {runs}: snapshot() {:.1} ms, to text {:.1} ms, parse {:.1} ms, restore() {:.1} ms \
         (restore includes the read-back check, one more snapshot())",
        take.as_secs_f64() * 1e3,
        write.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e3
    );
}
