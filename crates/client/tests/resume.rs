//! Sessions that survive lost connections (docs/protocol.md §6.9), client side: ctid and the
//! csta-sim demo switch in-process on 127.0.0.1:0, the client going through a small TCP proxy in
//! this file that can cut every connection at once (no close frame: a dropped network) and turn
//! new ones away. A never-cut twin, connected to ctid directly and registered on the same DNs,
//! sees the same events: the resuming client's stream must equal it, event for event.
//!
//! Covers [`ResumingClient`] (cuts during a call, twice in a row, during agent changes and hot
//! desking, while a `request()` waits for an answer that arrives while the session is
//! detached), a refused resume (expired: fresh session, EventError handed out, registering again
//! works), giving up, and `ctictl watch` through the proxy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctid_client::{is_resume_refusal, Client, Error, ResumeOptions, ResumingClient};
use ctid_protocol::{ErrorCode, Event, EventName, Request};
use ctid_server::demo::{start_demo_with, Demo};
use ctid_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const T: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ the proxy

/// A TCP proxy in front of ctid: accepts, connects to ctid, copies both ways.
struct Proxy {
    addr: SocketAddr,
    inner: Arc<ProxyInner>,
}

#[derive(Default)]
struct ProxyInner {
    conns: Mutex<Vec<AbortHandle>>,
    /// Connections accepted (also those turned away).
    accepted: AtomicU64,
    /// Bytes forwarded from clients to ctid.
    upstream_bytes: AtomicU64,
    /// Turn new connections away (closed at once).
    blocked: AtomicBool,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(ProxyInner::default());
        let shared = inner.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.blocked.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let counter = shared.clone();
                let task = tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pipe(dr, uw, Some(&counter)), pipe(ur, dw, None));
                });
                shared.conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { addr, inner }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drops every proxied connection at once, both sides, without a close frame.
    fn cut(&self) {
        for h in self.inner.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn block(&self, on: bool) {
        self.inner.blocked.store(on, Ordering::SeqCst);
    }

    fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    fn upstream_bytes(&self) -> u64 {
        self.inner.upstream_bytes.load(Ordering::SeqCst)
    }
}

async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: Option<&ProxyInner>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(c) = count {
            c.upstream_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    let _ = to.shutdown().await;
}

// ------------------------------------------------------------------ the rig

async fn demo_with(edit: impl FnOnce(&mut Config)) -> Demo {
    let d = start_demo_with("127.0.0.1:0".parse().unwrap(), edit)
        .await
        .unwrap();
    let deadline = Instant::now() + T;
    let mut rx = d.ctid.status.clone();
    while rx.borrow().link.as_str() != "up" {
        assert!(Instant::now() < deadline, "the demo link never came up");
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
    d
}

fn fast() -> ResumeOptions {
    ResumeOptions {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        give_up_after: Duration::from_secs(20),
    }
}

/// Wait (with a deadline) until `cond` holds.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `/api/state` as JSON (a plain HTTP/1.0 GET).
async fn api_state(d: &Demo) -> serde_json::Value {
    let mut s = TcpStream::connect(d.ctid.addr).await.unwrap();
    s.write_all(b"GET /api/state HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// Wait until ctid counts `n` detached sessions.
async fn detached(d: &Demo, n: u64) {
    let deadline = Instant::now() + T;
    loop {
        let st = api_state(d).await;
        if st["counts"]["detached"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} detached: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Something either client reads events from.
trait Source {
    async fn next(&mut self, wait: Duration) -> Option<Event>;
}

impl Source for Client {
    async fn next(&mut self, wait: Duration) -> Option<Event> {
        self.next_event(wait).await.unwrap()
    }
}

/// The resuming client, recording: `resumed` counts EventSessionResumed, which it leaves out.
struct Resuming {
    c: ResumingClient,
    resumed: u64,
}

impl Source for Resuming {
    async fn next(&mut self, wait: Duration) -> Option<Event> {
        loop {
            let ev = self.c.next_event(wait).await.unwrap()?;
            if ev.name == EventName::EventSessionResumed {
                self.resumed += 1;
                continue;
            }
            return Some(ev);
        }
    }
}

/// Reads into `log` until every `(name, dn)` of `want` has been seen.
async fn until_all(c: &mut impl Source, log: &mut Vec<Event>, want: &[(EventName, &str)]) {
    let mut left: Vec<(EventName, &str)> = want.to_vec();
    let deadline = Instant::now() + T;
    while !left.is_empty() {
        let wait = deadline.saturating_duration_since(Instant::now());
        let ev = c
            .next(wait)
            .await
            .unwrap_or_else(|| panic!("still waiting for {left:?}; saw {log:#?}"));
        left.retain(|(n, dn)| !(ev.name == *n && ev.this_dn.as_deref() == Some(*dn)));
        log.push(ev);
    }
}

/// Reads both until every `(name, dn)` of `want` has been seen by each.
async fn both(
    rc: &mut Resuming,
    rlog: &mut Vec<Event>,
    twin: &mut Client,
    tlog: &mut Vec<Event>,
    want: &[(EventName, &str)],
) {
    until_all(twin, tlog, want).await;
    until_all(rc, rlog, want).await;
}

fn texts(v: &[Event]) -> Vec<String> {
    v.iter().map(Event::to_json).collect()
}

async fn register_resuming(rc: &mut ResumingClient, dns: &[&str]) {
    for dn in dns {
        let ev = rc.request(Request::register_address(*dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
}

async fn twin_on(d: &Demo, dns: &[&str]) -> Client {
    let mut c = Client::connect(&d.ctid.ws_url()).await.unwrap();
    let first = c.next_event(T).await.unwrap().expect("first frame");
    assert!(first.session_id.is_some(), "{first:?}");
    for dn in dns {
        let ev = c.request(Request::register_address(*dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
    c
}

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
