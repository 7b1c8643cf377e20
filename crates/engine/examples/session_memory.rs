//! Memory per detached session with a full resume buffer (docs/performance.md, "Client
//! sessions"): N sessions, each registered on its own DN, lose their connection; calls from an
//! outside number to each DN are fed until every session holds just under `resume-buffer-bytes`
//! of events (none shared with another session: the worst case). The process's resident memory
//! before and after, per session, and the kept JSON bytes it stands for.
//!
//! `cargo run --release -p ctid-engine --example session_memory -- [SESSIONS] [BUFFER_BYTES]`
//! (default 50 sessions, 4 MiB). Linux (reads /proc/self/statm).

use ctid_csta::*;
use ctid_engine::*;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn now(ms: u64) -> Now {
    testkit::now_at(ms)
}

/// Answer every CSTA request like an empty switch ([`testkit::serve_empty_switch`]).
fn serve(e: &mut Engine, out: &mut Vec<Output>, t: u64) {
    testkit::serve_empty_switch(e, out, now(t));
}

/// One inbound call from an outside number to `dn`: ringing, answered, released at both ends.
fn call(call: &str, dn: &str) -> Vec<Message> {
    let from = "0612345678";
    vec![
        testkit::delivered(dn, call, from, dn),
        testkit::established(dn, call, from, dn, Some(EventCause::NewCall)),
        testkit::cleared(dn, call, dn),
        // the caller's side ends too: the call is gone from the model
        testkit::cleared(dn, call, from),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let limit: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4 << 20);
    let cfg = EngineConfig {
        max_outstanding: 1_000_000,
        hotdesk_enabled: false,
        resume_window_ms: 3_600_000,
        resume_buffer_bytes: limit,
        ..Default::default()
    };
    let mut e = Engine::new(cfg);
    let mut out = Vec::new();
    let mut t = 1;
    e.handle(
        now(t),
        Input::LinkUp {
            name: "mem".into(),
            priority: None,
            edition: None,
        },
        &mut out,
    );
    serve(&mut e, &mut out, t);
    let dn = |c: u64| format!("{}", 100_000 + c);
    for c in 0..n {
        e.handle(
            now(t),
            Input::SessionOpened {
                client: c,
                peer: String::new(),
                session_id: format!("{c:032x}"),
                owner: String::new(),
            },
            &mut out,
        );
        let text = format!(
            r#"{{"request":"RequestRegisterAddress","ReferenceID":1,"ThisDN":"{}"}}"#,
            dn(c)
        );
        e.handle(now(t), Input::ClientText { client: c, text }, &mut out);
        serve(&mut e, &mut out, t);
    }
    for c in 0..n {
        e.handle(now(t), Input::ClientDetached { client: c }, &mut out);
    }
    out.clear();
    let before = rss_bytes();
    // Fill every buffer to just under the bound (one more call would overflow it).
    let mut calls = 0u64;
    let kept_json: usize;
    'fill: loop {
        for c in 0..n {
            t += 1;
            calls += 1;
            for m in call(&format!("C{calls}"), &dn(c)) {
                e.handle(now(t), Input::CstaEvent { message: m }, &mut out);
            }
            out.clear();
        }
        let views = e.session_views();
        let fullest = views.iter().map(|v| v.kept_bytes).max().unwrap_or(0);
        if fullest + 4096 > limit {
            kept_json = views.iter().map(|v| v.kept_bytes).sum();
            assert_eq!(views.len() as u64, n, "a session overflowed");
            break 'fill;
        }
    }
    let after = rss_bytes();
    let per = after.saturating_sub(before) / n;
    let json_per = kept_json as u64 / n;
    let events: usize = e.session_views().iter().map(|v| v.kept_events).sum();
    println!(
        "{n} detached sessions, resume-buffer-bytes {limit}: {} events kept ({} per session), \
         {:.2} MiB of JSON per session",
        events,
        events as u64 / n,
        json_per as f64 / 1048576.0
    );
    println!(
        "resident memory {:.1} MiB -> {:.1} MiB: {:.2} MiB per session ({:.2} bytes of memory per kept JSON byte)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per as f64 / 1048576.0,
        per as f64 / json_per.max(1) as f64
    );
}
