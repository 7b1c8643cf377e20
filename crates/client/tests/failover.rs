//! A list of servers (docs/protocol.md §6.10), client side, over real sockets: ctid with the
//! csta-sim demo switch in-process on 127.0.0.1:0 is the primary; in front of it stand small
//! fakes written here:
//!
//! * a **backup** that accepts the WebSocket and closes it at once with 4010
//!   `not primary; primary=<URL>` or `not primary; primary unknown`, counting its connections;
//! * a **handing-over primary**: a WebSocket proxy to ctid that, when told, closes its client
//!   connections with 4010 naming another URL and drops its own connections to ctid (so ctid
//!   keeps the sessions detached, as after a switchover);
//! * the cutting TCP proxy of tests/common, also blocked (every connection dropped at once) as
//!   a dead node that counts the attempts;
//! * an HTTP stand-in for `/api/ha` and `/admin/ha/switchover` (the server side is not there
//!   yet) for `ctictl ha`.
//!
//! What they prove: a 4010 is followed at once (no backoff: the tests set a backoff of seconds
//! and finish in less), also to a URL not in the list; `primary unknown` and refusals move to the
//! next URL with the backoff; two backups naming each other are not followed for ever; a list of
//! dead URLs gives up after `give_up_after`; a session moved by a cut or a 4010 to another URL
//! sees exactly what a never-cut twin sees; ctictl finds the primary through the list.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ctid_client::{Client, Error, ResumeOptions, ResumingClient};
use ctid_protocol::{EventName, Request};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

// ------------------------------------------------------------------ the fakes

/// The close a node that is not primary sends.
fn not_primary(primary: Option<&str>) -> Message {
    let reason = match primary {
        Some(url) => format!("not primary; primary={url}"),
        None => "not primary; primary unknown".to_owned(),
    };
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(4010),
        reason: reason.into(),
    }))
}

/// A backup: every WebSocket is closed at once with 4010 naming `primary` (settable later).
struct Backup {
    addr: SocketAddr,
    primary: Arc<Mutex<Option<String>>>,
    accepted: Arc<AtomicU64>,
}

impl Backup {
    async fn start(primary: Option<&str>) -> Backup {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let names = Arc::new(Mutex::new(primary.map(str::to_owned)));
        let accepted = Arc::new(AtomicU64::new(0));
        let (n, a) = (names.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let primary = n.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let _ = ws.send(not_primary(primary.as_deref())).await;
                    // until the client answers the close or goes
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        Backup {
            addr,
            primary: names,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn name(&self, primary: Option<&str>) {
        *self.primary.lock().unwrap() = primary.map(str::to_owned);
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A primary in front of ctid (a WebSocket proxy) that can hand over: its client connections
/// are closed with 4010 naming another URL, its connections to ctid dropped without a close.
/// Connections after that are closed with 4010 at once, as a backup's.
struct HandingOver {
    addr: SocketAddr,
    to: tokio::sync::watch::Sender<Option<String>>,
}

impl HandingOver {
    async fn start(upstream: String) -> HandingOver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to, _) = tokio::sync::watch::channel(None::<String>);
        let tx = to.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mut handover = tx.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut down) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let already = handover.borrow().clone();
                    if let Some(to) = already {
                        let _ = down.send(not_primary(Some(&to))).await;
                        while let Some(Ok(_)) = down.next().await {}
                        return;
                    }
                    let Ok((mut up, _)) = tokio_tungstenite::connect_async(&upstream).await else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            m = down.next() => match m {
                                Some(Ok(m)) => if up.send(m).await.is_err() { return },
                                _ => return,
                            },
                            m = up.next() => match m {
                                Some(Ok(m)) => if down.send(m).await.is_err() { return },
                                _ => return,
                            },
                            _ = handover.changed() => {
                                let to = handover.borrow().clone();
                                drop(up); // no close frame: ctid keeps the session detached
                                let _ = down.send(not_primary(to.as_deref())).await;
                                while let Some(Ok(_)) = down.next().await {}
                                return;
                            }
                        }
                    }
                });
            }
        });
        HandingOver { addr, to }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn hand_over(&self, to: &str) {
        self.to.send_replace(Some(to.to_owned()));
    }
}

/// A URL nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("ws://{}/ws", l.local_addr().unwrap())
}

/// A node that drops every connection at once, counting them.
async fn dropping(d: &ctid_server::demo::Demo) -> Proxy {
    let p = Proxy::start(d.ctid.addr).await;
    p.block(true);
    p
}

fn opts(min_backoff_ms: u64, give_up_ms: u64) -> ResumeOptions {
    ResumeOptions {
        min_backoff: Duration::from_millis(min_backoff_ms),
        max_backoff: Duration::from_millis(min_backoff_ms.max(200)),
        give_up_after: Duration::from_millis(give_up_ms),
    }
}

/// The client has a live session: its first frame names it, and a registration is answered.
async fn serves(rc: &mut ResumingClient) {
    let first = rc.next_event(T).await.unwrap().expect("the first frame");
    assert_eq!(first.name, EventName::EventLinkConnected, "{first:?}");
    assert_eq!(first.session_id.as_deref(), Some(rc.session_id()));
    let ev = rc
        .request(Request::register_address("1010"), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
}

// ------------------------------------------------------------------ finding the primary

#[tokio::test]
async fn a_4010_naming_the_primary_is_followed_at_once_also_out_of_the_list() {
    let d = demo_with(|_| {}).await;
    let real = d.ctid.ws_url();
    let backup = Backup::start(Some(&real)).await;
    // A backoff of 3 s: a redirect that waited for it would show.
    let slow = opts(3000, 20_000);

    let t = Instant::now();
    let mut rc = ResumingClient::connect_any(&[backup.url(), real.clone()], slow)
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(rc.current_url(), real);
    assert_eq!(backup.accepted(), 1);
    serves(&mut rc).await;

    // The primary is not in the list: followed anyway.
    let t = Instant::now();
    let mut rc = ResumingClient::connect_any(&[backup.url()], slow)
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(rc.current_url(), real);
    assert_eq!(backup.accepted(), 2);
    serves(&mut rc).await;

    // The plain client too.
    let mut c = Client::connect_any(&[backup.url()], slow).await.unwrap();
    assert_eq!(c.url(), real);
    let first = c.next_event(T).await.unwrap().expect("the first frame");
    assert_eq!(first.name, EventName::EventLinkConnected, "{first:?}");
    assert_eq!(backup.accepted(), 3);
}

#[tokio::test]
async fn primary_unknown_and_a_dead_node_move_on_to_the_next_url_after_the_backoff() {
    let d = demo_with(|_| {}).await;
    let real = d.ctid.ws_url();
    let unknown = Backup::start(None).await;
    let dead = dropping(&d).await;
    let t = Instant::now();
    let mut rc = ResumingClient::connect_any(
        &[unknown.url(), dead.url(), real.clone()],
        opts(300, 20_000),
    )
    .await
    .unwrap();
    // 300 ms after the backup, 300 ms (the most, here) after the dead node.
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!((unknown.accepted(), dead.accepted()), (1, 1));
    assert_eq!(rc.current_url(), real);
    serves(&mut rc).await;
}

#[tokio::test]
async fn a_list_of_dead_urls_gives_up_after_give_up_after() {
    let urls = [dead_url(), dead_url()];
    let t = Instant::now();
    let err = ResumingClient::connect_any(&urls, opts(50, 700))
        .await
        .err()
        .expect("no server serves");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(matches!(err, Error::NoServer { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot connect to {}, {}: ", urls[0], urls[1])),
        "{msg}"
    );
    assert!(msg.contains("no server served within 700ms"), "{msg}");
    assert!(msg.contains("refused"), "{msg}");

    // One URL: the same search.
    let err = Client::connect_any(&urls[..1], opts(50, 300))
        .await
        .err()
        .expect("no server serves");
    assert!(matches!(err, Error::NoServer { .. }), "{err:?}");
    // A URL that cannot work (HTTP 401 to the upgrade) ends the search at once.
    let refusing = HaNode::start(serde_json::Value::Null, (404, "")).await;
    let t = Instant::now();
    let err = ResumingClient::connect(&refusing.ws_url(), opts(50, 20_000))
        .await
        .err()
        .expect("401");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(refusing.heads().len(), 1);
}

#[tokio::test]
async fn two_backups_naming_each_other_are_not_followed_for_ever() {
    let a = Backup::start(None).await;
    let b = Backup::start(Some(&a.url())).await;
    a.name(Some(&b.url()));
    let t = Instant::now();
    let err = ResumingClient::connect_any(&[a.url(), b.url()], opts(100, 1000))
        .await
        .err()
        .expect("nobody serves");
    assert!(t.elapsed() >= Duration::from_millis(1000));
    let msg = err.to_string();
    assert!(msg.contains("not primary"), "{msg}");
    // Three connections a round (a → b → a), some five rounds in a second: without the bound
    // on redirects they would be hundreds.
    let n = a.accepted() + b.accepted();
    assert!((3..=30).contains(&n), "{n} connections");
}

// ------------------------------------------------------------------ moving a session

#[tokio::test]
async fn a_cut_with_a_dead_url_in_the_list_resumes_and_misses_nothing() {
    use EventName as E;
    let d = demo_with(|_| {}).await;
    let proxy = Proxy::start(d.ctid.addr).await;
    let dead = dropping(&d).await;
    let dns = ["1001", "1002", "1003"];
    let mut twin = twin_on(&d, &dns).await;
    let c = ResumingClient::connect_any(&[dead.url(), proxy.url()], fast())
        .await
        .unwrap();
    assert_eq!(c.current_url(), proxy.url());
    assert_eq!(dead.accepted(), 1);
    let mut rc = Resuming { c, resumed: 0 };
    register_resuming(&mut rc.c, &dns).await;
    let (mut rlog, mut tlog) = (Vec::new(), Vec::new());
    d.sim.set_dnd("1003", true).await.unwrap();
    let start = [(E::EventDNDOn, "1003")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &start).await;
    rlog.clear();
    tlog.clear();

    // Cut while a call rings: the next URL is the dead one, then the proxy again.
    d.sim.dial("1001", "1002").await.unwrap();
    until_all(&mut twin, &mut tlog, &[(E::EventRinging, "1002")]).await;
    proxy.cut();
    d.sim.answer("1002").await.unwrap();
    d.sim.hangup("1001").await.unwrap();
    let released = [(E::EventReleased, "1001"), (E::EventReleased, "1002")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &released).await;
    assert!(dead.accepted() >= 2, "the dead URL was not tried");

    // Cut again, while nothing happens.
    proxy.cut();
    d.sim.set_dnd("1003", false).await.unwrap();
    let end = [(E::EventDNDOff, "1003")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &end).await;

    assert_eq!(texts(&rlog), texts(&tlog));
    assert!(rc.resumed >= 2, "{} resumes", rc.resumed);
    assert_eq!(rc.c.resumes(), rc.resumed);
    assert_eq!(rc.c.current_url(), proxy.url());
}

#[tokio::test]
async fn a_primary_handing_over_with_4010_sends_the_session_to_the_named_node_at_once() {
    use EventName as E;
    let d = demo_with(|_| {}).await;
    let real = d.ctid.ws_url();
    let old = HandingOver::start(real.clone()).await;
    let dns = ["1004", "1005", "1006"];
    let mut twin = twin_on(&d, &dns).await;
    // A backoff of 3 s: moving after it would show.
    let c = ResumingClient::connect_any(&[old.url()], opts(3000, 20_000))
        .await
        .unwrap();
    assert_eq!(c.current_url(), old.url());
    let session = c.session_id().to_owned();
    let mut rc = Resuming { c, resumed: 0 };
    register_resuming(&mut rc.c, &dns).await;
    let (mut rlog, mut tlog) = (Vec::new(), Vec::new());
    d.sim.set_dnd("1006", true).await.unwrap();
    let start = [(E::EventDNDOn, "1006")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &start).await;
    rlog.clear();
    tlog.clear();

    d.sim.dial("1004", "1005").await.unwrap();
    until_all(&mut twin, &mut tlog, &[(E::EventRinging, "1005")]).await;
    let t = Instant::now();
    old.hand_over(&real);
    d.sim.answer("1005").await.unwrap();
    d.sim.hangup("1004").await.unwrap();
    let released = [(E::EventReleased, "1004"), (E::EventReleased, "1005")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &released).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    d.sim.set_dnd("1006", false).await.unwrap();
    let end = [(E::EventDNDOff, "1006")];
    both(&mut rc, &mut rlog, &mut twin, &mut tlog, &end).await;

    assert_eq!(texts(&rlog), texts(&tlog));
    assert_eq!(rc.resumed, 1);
    assert_eq!(rc.c.session_id(), session);
    assert_eq!(rc.c.current_url(), real);
}

// ------------------------------------------------------------------ ctictl

async fn ctictl(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctictl"))
        .args(args)
        .env_remove("CTID_TOKEN")
        .env_remove("CTID_ADMIN_TOKEN")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctictl_finds_the_primary_through_the_list() {
    let d = demo_with(|_| {}).await;
    let real = d.ctid.ws_url();
    let backup = Backup::start(Some(&real)).await;
    let list = format!("{},{real}", backup.url());
    let (rc, out, err) = ctictl(&["--server", &list, "register", "2010"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.starts_with("EventRegistered ThisDN=2010 "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(backup.accepted(), 1);

    // A dead node first, spaces around the comma.
    let list = format!("{} , {real}", dead_url());
    let (rc, out, err) = ctictl(&["--server", &list, "query", "2010"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.starts_with("EventAddressInfo ThisDN=2010 "), "{out}");

    // watch, through a backup naming the primary.
    let (rc, out, err) = ctictl(&[
        "--server",
        &backup.url(),
        "--timeout",
        "0.5",
        "watch",
        "2010",
    ])
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("EventRegistered ThisDN=2010 "), "{out}");

    // Nobody serves: exit 2, one line naming the list.
    let list = format!("{},{}", dead_url(), dead_url());
    let (rc, _, err) = ctictl(&["--server", &list, "--timeout", "1", "register", "2010"]).await;
    assert_eq!(rc, 2);
    assert!(
        err.starts_with(&format!(
            "ctictl: cannot connect to {}",
            list.replace(',', ", ")
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// An HTTP stand-in: answers `GET /api/ha` with `ha`, `POST /admin/ha/switchover…` with
/// `switchover` (status, body) and `GET /ws` with 401 (a WebSocket without a valid token);
/// records each request head.
struct HaNode {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl HaNode {
    async fn start(ha: serde_json::Value, switchover: (u16, &str)) -> HaNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let (code, answer) = (switchover.0, switchover.1.to_owned());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                seen.lock().unwrap().push(head.clone());
                let (status, body) = if head.starts_with("GET /api/ha ") {
                    (200, ha.to_string())
                } else if head.starts_with("POST /admin/ha/switchover") {
                    (code, answer.clone())
                } else if head.starts_with("GET /ws ") {
                    (401, "invalid token\n".to_owned())
                } else {
                    (404, "not found\n".to_owned())
                };
                // chunked, as a streaming server may answer
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        HaNode { addr, heads }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn ha_view(node: &str, role: &str, lease_url: &str) -> serde_json::Value {
    serde_json::json!({
        "enabled": true, "cluster": "cc1", "node": node, "role": role, "term": 7,
        "lease": {"holder": "a", "url": lease_url, "term": 7, "age_ms": 120},
        "applied_seq": 1234, "stream_last_seq": 1236, "lag": 2, "ready": role == "backup",
        "nodes": []
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctictl_ha_status_and_switchover() {
    // b is a backup; a (listed second) is the primary: the lease names it.
    let a = HaNode::start(
        ha_view("a", "primary", ""),
        (200, r#"{"from":"a","to":"b","term":8}"#),
    )
    .await;
    let b = HaNode::start(ha_view("b", "backup", &a.ws_url()), (409, "not primary")).await;
    let dead = dead_url();
    let list = format!("{},{},{dead}", b.ws_url(), a.ws_url());

    let (rc, out, err) = ctictl(&["--server", &list, "ha", "status"]).await;
    assert_eq!(rc, 1, "a dead node: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(lines[0]),
        [
            "SERVER",
            "NODE",
            "ROLE",
            "TERM",
            "LEASE",
            "HOLDER",
            "APPLIED_SEQ",
            "LAG",
            "READY"
        ]
    );
    let b_http = format!("http://{}", b.addr);
    let a_http = format!("http://{}", a.addr);
    assert_eq!(
        words(lines[1]),
        [b_http.as_str(), "b", "backup", "7", "a", "1234", "2", "yes"]
    );
    assert_eq!(
        words(lines[2]),
        [a_http.as_str(), "a", "primary", "7", "a", "1234", "2", "no"]
    );
    assert!(lines[3].contains("error: cannot connect"), "{out}");

    let (rc, out, _) = ctictl(&["--server", &list, "--json", "ha", "status"]).await;
    assert_eq!(rc, 1);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["server"], b_http.as_str());
    assert_eq!(first["ha"], ha_view("b", "backup", &a.ws_url()));

    // No admin token: usage.
    let (rc, _, err) = ctictl(&["--server", &list, "ha", "switchover"]).await;
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("admin token"), "{err}");

    // The switchover goes to the primary only, with the admin token.
    let (rc, out, err) = ctictl(&[
        "--server",
        &list,
        "ha",
        "switchover",
        "--to",
        "b 2",
        "--admin-token",
        "s3cret",
    ])
    .await;
    assert_eq!(
        (rc, out.as_str()),
        (0, "{\"from\":\"a\",\"to\":\"b\",\"term\":8}\n"),
        "{err}"
    );
    let posts: Vec<String> = a
        .heads()
        .into_iter()
        .filter(|h| h.starts_with("POST "))
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0].starts_with("POST /admin/ha/switchover?to=b%202 HTTP/1.1\r\n"),
        "{posts:?}"
    );
    assert!(
        posts[0].contains("\r\nAuthorization: Bearer s3cret\r\n"),
        "{posts:?}"
    );
    assert!(!b.heads().iter().any(|h| h.starts_with("POST ")));

    // A refusal: exit 1, the reason on stderr.
    let c = HaNode::start(ha_view("c", "primary", ""), (409, "no ready backup")).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctictl"))
        .args(["--server", &c.ws_url(), "ha", "switchover"])
        .env("CTID_ADMIN_TOKEN", "s3cret")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("HTTP 409") && err.contains("no ready backup"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
