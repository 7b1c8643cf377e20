//! Sessions that survive lost connections (docs/protocol.md §6.9), client side: ctid and the
//! csta-sim demo switch in-process on 127.0.0.1:0, the client going through a small TCP proxy
//! (tests/common) that can cut every connection at once (no close frame: a dropped network) and turn
//! new ones away. A never-cut twin, connected to ctid directly and registered on the same DNs,
//! sees the same events: the resuming client's stream must equal it, event for event.
//!
//! Covers [`ResumingClient`] (cuts during a call, twice in a row, during agent changes and hot
//! desking, while a `request()` waits for an answer that arrives while the session is
//! detached), a refused resume (expired: fresh session, EventError handed out, registering again
//! works), giving up, and `ctictl watch` through the proxy.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ctid_client::{is_resume_refusal, Client, Error, ResumeOptions, ResumingClient};
use ctid_protocol::{ErrorCode, EventName, Request};

// ------------------------------------------------------------------ the library

#[tokio::test]
async fn a_resuming_client_cut_again_and_again_sees_what_a_never_cut_twin_sees() {
    use EventName as E;
    let d = demo_with(|_| {}).await;
    let proxy = Proxy::start(d.ctid.addr).await;
    let dns = ["1001", "1002", "1003", "2001", "2002"];
    let mut twin = twin_on(&d, &dns).await;
    let c = ResumingClient::connect(&proxy.url(), fast()).await.unwrap();
    let session = c.session_id().to_owned();
    let mut rc = Resuming { c, resumed: 0 };
    let first = rc.c.next_event(T).await.unwrap().expect("first frame");
    assert_eq!(first.name, E::EventLinkConnected, "{first:?}");
    assert_eq!(first.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(rc.c.last_sequence(), first.event_sequence_number);
    register_resuming(&mut rc.c, &dns).await;

    // Start: a marker both see, after which the streams are compared.
    let (mut rlog, mut tlog) = (Vec::new(), Vec::new());
    d.sim.set_dnd("1003", true).await.unwrap();
    both(
        &mut rc,
        &mut rlog,
        &mut twin,
        &mut tlog,
        &[(E::EventDNDOn, "1003")],
    )
    .await;
    rlog.clear();
    tlog.clear();
    let mut answers = Vec::new();

    // 1. A call; the connection is cut while it rings, events still on their way.
    d.sim.dial("1001", "1002").await.unwrap();
    until_all(&mut twin, &mut tlog, &[(E::EventRinging, "1002")]).await;
    proxy.cut();
    d.sim.answer("1002").await.unwrap();
    d.sim.hangup("1001").await.unwrap();
    let released = [(E::EventReleased, "1001"), (E::EventReleased, "1002")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &released).await;

    // 2. Cut twice in a row: the second time while the client reconnects and resumes.
    let accepted = proxy.accepted();
    proxy.cut();
    d.sim.dial("1003", "1001").await.unwrap();
    wait_until("a reconnect", || proxy.accepted() > accepted).await;
    proxy.cut();
    d.sim.answer("1001").await.unwrap();
    d.sim.hangup("1003").await.unwrap();
    let released = [(E::EventReleased, "1001"), (E::EventReleased, "1003")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &released).await;

    // 3. Agent changes at the phone, a cut among them.
    d.sim
        .agent_state("2001", "loggedOn", None, None)
        .await
        .unwrap();
    proxy.cut();
    d.sim
        .agent_state("2001", "ready", None, None)
        .await
        .unwrap();
    d.sim
        .agent_state("2001", "notReady", None, None)
        .await
        .unwrap();
    let agent = [(E::EventAgentNotReady, "2001")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &agent).await;

    // 4. Hot desking by another client; cut as its answer comes back.
    let mut driver = twin_on(&d, &["2002"]).await;
    let hd = Request::private_service("2002", 1).with_extension("HOST_DN", "1002");
    let ev = driver.request(hd, T).await.unwrap();
    assert_eq!(ev.name, E::EventPrivateInfo, "{ev:?}");
    proxy.cut();
    let hd_seen = [(E::EventPrivateInfo, "2002")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &hd_seen).await;

    // 5. Cut while request() waits; its answer comes while the session is detached (the switch
    // answers slowly and new connections are turned away until the twin has seen the event).
    d.sim.set_delay(300).await;
    let before = proxy.upstream_bytes();
    let cancel = Request::private_service("2002", 2);
    let (answer, ()) = tokio::join!(rc.c.request(cancel, T), async {
        wait_until("the request reached ctid", || {
            proxy.upstream_bytes() > before
        })
        .await;
        proxy.block(true);
        proxy.cut();
        until_all(&mut twin, &mut tlog, &[(E::EventPrivateInfo, "2002")]).await;
        proxy.block(false);
    });
    d.sim.set_delay(0).await;
    let answer = answer.unwrap();
    assert_eq!(answer.name, E::EventPrivateInfo, "{answer:?}");
    assert_eq!(answer.private_msg_id, Some(2), "{answer:?}");
    assert!(answer.reference_id.is_some(), "{answer:?}");
    answers.push(answer);

    // End: a marker both see.
    d.sim.set_dnd("1003", false).await.unwrap();
    let end = [(E::EventDNDOff, "1003")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &end).await;

    // The resuming client's stream, its own answer in its place without the ReferenceID (the
    // twin's copy has none), equals the twin's.
    for mut a in answers {
        a.reference_id = None;
        rlog.push(a);
    }
    rlog.sort_by_key(|e| e.event_sequence_number);
    assert_eq!(texts(&rlog), texts(&tlog));
    let mut seqs: Vec<u64> = rlog.iter().map(|e| e.event_sequence_number).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), rlog.len(), "an event twice");
    assert!(!rlog.iter().any(is_resume_refusal), "{rlog:#?}");

    // Every cut was noticed and resumed, on the same session.
    assert!(rc.resumed >= 5, "{} resumes", rc.resumed);
    assert_eq!(rc.c.resumes(), rc.resumed);
    assert_eq!(rc.c.session_id(), session);
    assert_eq!(
        rc.c.last_sequence(),
        tlog.last().unwrap().event_sequence_number
    );
    // A clean close ends the session at once: its registrations go, nothing waits for a resume.
    // (A connection cut between its first frame and its RequestResumeSession leaves its own
    // fresh session detached, without DNs: that one may linger.)
    rc.c.close().await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        let st = api_state(&d).await;
        let regs = st["dns"]["items"]
            .as_array()
            .and_then(|v| v.iter().find(|x| x["number"] == "1001"))
            .and_then(|x| x["registrations"].as_u64());
        let waiting = st["sessions"].as_array().is_some_and(|v| {
            v.iter()
                .any(|s| !s["detached_for_ms"].is_null() && s["dns"].as_u64() != Some(0))
        });
        if regs == Some(1) && !waiting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session is still there: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refused_resume_goes_on_with_a_fresh_session() {
    let d = demo_with(|c| c.engine.resume_window_ms = 300).await;
    let proxy = Proxy::start(d.ctid.addr).await;
    let mut rc = ResumingClient::connect(&proxy.url(), fast()).await.unwrap();
    let old = rc.session_id().to_owned();
    register_resuming(&mut rc, &["1004"]).await;
    // The connection drops and stays away longer than the resume window.
    proxy.block(true);
    proxy.cut();
    detached(&d, 1).await;
    detached(&d, 0).await;
    proxy.block(false);
    // What comes: the events before, then the new connection's first frame and the refusal.
    let mut seen = Vec::new();
    let refusal = loop {
        let ev = rc
            .next_event(T)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no refusal; saw {seen:#?}"));
        if is_resume_refusal(&ev) {
            break ev;
        }
        seen.push(ev);
    };
    assert_eq!(
        refusal.error_code,
        Some(ErrorCode::SESSION_EXPIRED),
        "{refusal:?}"
    );
    let fresh = seen.last().expect("the new connection's first frame");
    assert_eq!(fresh.name, EventName::EventLinkConnected, "{fresh:?}");
    let new = fresh.session_id.clone().expect("SessionID");
    assert_ne!(new, old);
    assert_eq!(rc.session_id(), new);
    assert_eq!(rc.resumes(), 0);
    assert_eq!(rc.last_sequence(), refusal.event_sequence_number);
    // Registering again works, and events flow on the fresh session.
    register_resuming(&mut rc, &["1004"]).await;
    d.sim.dial("1005", "1004").await.unwrap();
    let mut log = Vec::new();
    let mut r = Resuming { c: rc, resumed: 0 };
    until_all(&mut r, &mut log, &[(EventName::EventRinging, "1004")]).await;
}

#[tokio::test]
async fn a_resuming_client_gives_up_after_its_time() {
    let d = demo_with(|_| {}).await;
    let proxy = Proxy::start(d.ctid.addr).await;
    let opts = ResumeOptions {
        give_up_after: Duration::from_millis(500),
        ..fast()
    };
    // One that is not read while it gives up: a request then fails with the reason.
    let mut idle = ResumingClient::connect(&proxy.url(), opts).await.unwrap();
    let mut rc = ResumingClient::connect(&proxy.url(), opts).await.unwrap();
    let first = rc.next_event(T).await.unwrap().expect("first frame");
    assert_eq!(first.name, EventName::EventLinkConnected);
    proxy.block(true);
    proxy.cut();
    let ev = rc.next_event(T).await.unwrap().expect("a disconnect");
    assert_eq!(ev.name, EventName::EventServerDisconnected, "{ev:?}");
    assert!(
        ev.error_message
            .as_deref()
            .is_some_and(|m| m.contains("not resumed")),
        "{ev:?}"
    );
    assert!(proxy.accepted() > 2, "it tried more than once");
    assert!(matches!(rc.next_event(T).await, Err(Error::GaveUp { .. })));
    let r = rc.request(Request::register_address("1001"), T).await;
    assert!(matches!(r, Err(Error::GaveUp { .. })), "{r:?}");
    let r = idle.request(Request::register_address("1001"), T).await;
    assert!(matches!(r, Err(Error::GaveUp { .. })), "{r:?}");
}

// ------------------------------------------------------------------ ctictl watch

/// `ctictl --json --timeout 60 watch DN...` through `url`; its stdout and stderr lines.
struct Watch {
    child: tokio::process::Child,
    out: tokio::sync::mpsc::UnboundedReceiver<String>,
    err: tokio::sync::mpsc::UnboundedReceiver<String>,
    err_seen: Vec<String>,
}

fn lines_of(
    r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::AsyncBufReadExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

impl Watch {
    fn start(url: &str, dns: &[&str]) -> Watch {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctictl"))
            .args(["--server", url, "--json", "--timeout", "60", "watch"])
            .args(dns)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Watch {
            child,
            out,
            err,
            err_seen: Vec::new(),
        }
    }

    /// Stdout lines until one is the event `name` on `dn`, it last.
    async fn until(&mut self, name: EventName, dn: &str) -> Vec<String> {
        let mut v = Vec::new();
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, self.out.recv()).await {
                Ok(Some(l)) => l,
                _ => panic!(
                    "ctictl: no {name:?} on {dn}; printed {v:#?}; stderr {:?}",
                    {
                        while let Ok(l) = self.err.try_recv() {
                            self.err_seen.push(l);
                        }
                        &self.err_seen
                    }
                ),
            };
            let ev = ctid_protocol::parse_event(&line)
                .unwrap_or_else(|e| panic!("ctictl printed {line:?}: {e}"));
            v.push(line);
            if ev.name == name && ev.this_dn.as_deref() == Some(dn) {
                return v;
            }
        }
    }

    /// Waits for a stderr line containing `text`.
    async fn said(&mut self, text: &str) {
        let deadline = Instant::now() + T;
        while !self.err_seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.err.recv()).await {
                Ok(Some(l)) => self.err_seen.push(l),
                _ => panic!("ctictl never said {text:?}: {:?}", self.err_seen),
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The twin's raw frames until the event `name` on `dn`, it last.
async fn raw_until(c: &mut Client, name: EventName, dn: &str) -> Vec<String> {
    let mut v = Vec::new();
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = c
            .next_received(left)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("twin: no {name:?} on {dn}; saw {v:#?}"));
        let hit = r.event.name == name && r.event.this_dn.as_deref() == Some(dn);
        v.push(r.raw);
        if hit {
            return v;
        }
    }
}

#[tokio::test]
async fn ctictl_watch_cut_twice_prints_what_a_never_cut_twin_sees() {
    use EventName as E;
    let d = demo_with(|_| {}).await;
    let proxy = Proxy::start(d.ctid.addr).await;
    let mut twin = twin_on(&d, &["1006", "1007"]).await;
    let mut w = Watch::start(&proxy.url(), &["1006", "1007"]);
    w.until(E::EventRegistered, "1007").await;
    d.sim.set_dnd("1006", true).await.unwrap();
    raw_until(&mut twin, E::EventDNDOn, "1006").await;
    w.until(E::EventDNDOn, "1006").await;

    d.sim.dial("1006", "1007").await.unwrap();
    let mut want = raw_until(&mut twin, E::EventRinging, "1007").await;
    proxy.cut();
    d.sim.answer("1007").await.unwrap();
    want.extend(raw_until(&mut twin, E::EventEstablished, "1007").await);
    // the second cut while nothing is read: the events wait on the server
    proxy.block(true);
    proxy.cut();
    d.sim.hangup("1006").await.unwrap();
    want.extend(raw_until(&mut twin, E::EventReleased, "1007").await);
    proxy.block(false);
    d.sim.set_dnd("1006", false).await.unwrap();
    want.extend(raw_until(&mut twin, E::EventDNDOff, "1006").await);

    let got = w.until(E::EventDNDOff, "1006").await;
    assert_eq!(got, want, "ctictl's --json lines and the twin's frames");
    w.said("session resumed").await;
    w.stop().await;
}

#[tokio::test]
async fn ctictl_watch_registers_again_when_the_session_is_not_resumed() {
    use EventName as E;
    let d = demo_with(|c| c.engine.resume_window_ms = 300).await;
    let proxy = Proxy::start(d.ctid.addr).await;
    let mut w = Watch::start(&proxy.url(), &["1008"]);
    w.until(E::EventRegistered, "1008").await;
    proxy.block(true);
    proxy.cut();
    detached(&d, 1).await;
    detached(&d, 0).await;
    proxy.block(false);
    w.said("registering 1008 again").await;
    w.until(E::EventRegistered, "1008").await;
    d.sim.dial("1009", "1008").await.unwrap();
    w.until(E::EventRinging, "1008").await;
    w.stop().await;
}
