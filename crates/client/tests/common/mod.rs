//! The rig shared by the session tests (resume.rs, failover.rs): ctid and the csta-sim demo
//! switch in-process on 127.0.0.1:0, a TCP proxy that can cut every connection at once (no close
//! frame: a dropped network) and turn new ones away, a never-cut twin, and helpers that read
//! with deadlines.
#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctid_client::{Client, ResumeOptions, ResumingClient};
use ctid_protocol::{Event, EventName, Request};
use ctid_server::demo::{start_demo_with, Demo};
use ctid_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub const T: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ the proxy

/// A TCP proxy in front of ctid: accepts, connects to ctid, copies both ways.
pub struct Proxy {
    pub addr: SocketAddr,
    inner: Arc<ProxyInner>,
}

#[derive(Default)]
pub struct ProxyInner {
    conns: Mutex<Vec<AbortHandle>>,
    /// Connections accepted (also those turned away).
    accepted: AtomicU64,
    /// Bytes forwarded from clients to ctid.
    upstream_bytes: AtomicU64,
    /// Turn new connections away (closed at once).
    blocked: AtomicBool,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
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

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drops every proxied connection at once, both sides, without a close frame.
    pub fn cut(&self) {
        for h in self.inner.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn block(&self, on: bool) {
        self.inner.blocked.store(on, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    pub fn upstream_bytes(&self) -> u64 {
        self.inner.upstream_bytes.load(Ordering::SeqCst)
    }
}

pub async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: Option<&ProxyInner>) {
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

pub async fn demo_with(edit: impl FnOnce(&mut Config)) -> Demo {
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

pub fn fast() -> ResumeOptions {
    ResumeOptions {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        give_up_after: Duration::from_secs(20),
    }
}

/// Wait (with a deadline) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `/api/state` as JSON (a plain HTTP/1.0 GET).
pub async fn api_state(d: &Demo) -> serde_json::Value {
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
pub async fn detached(d: &Demo, n: u64) {
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
pub trait Source {
    async fn next(&mut self, wait: Duration) -> Option<Event>;
}

impl Source for Client {
    async fn next(&mut self, wait: Duration) -> Option<Event> {
        self.next_event(wait).await.unwrap()
    }
}

/// The resuming client, recording: `resumed` counts EventSessionResumed, which it leaves out.
pub struct Resuming {
    pub c: ResumingClient,
    pub resumed: u64,
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
pub async fn until_all(c: &mut impl Source, log: &mut Vec<Event>, want: &[(EventName, &str)]) {
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
pub async fn both(
    rc: &mut Resuming,
    rlog: &mut Vec<Event>,
    twin: &mut Client,
    tlog: &mut Vec<Event>,
    want: &[(EventName, &str)],
) {
    until_all(twin, tlog, want).await;
    until_all(rc, rlog, want).await;
}

pub fn texts(v: &[Event]) -> Vec<String> {
    v.iter().map(Event::to_json).collect()
}

pub async fn register_resuming(rc: &mut ResumingClient, dns: &[&str]) {
    for dn in dns {
        let ev = rc.request(Request::register_address(*dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
}

pub async fn twin_on(d: &Demo, dns: &[&str]) -> Client {
    let mut c = Client::connect(&d.ctid.ws_url()).await.unwrap();
    let first = c.next_event(T).await.unwrap().expect("first frame");
    assert!(first.session_id.is_some(), "{first:?}");
    for dn in dns {
        let ev = c.request(Request::register_address(*dn), T).await.unwrap();
        assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    }
    c
}
