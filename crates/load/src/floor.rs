//! The floor (`ctid-load --floor`, `--vs-floor`): the least a server in ctid's place must do for
//! the same load, run as its own process (`ctid-load --relay ADDR --relay-port PORT`) so its CPU
//! is measured like ctid's (docs/performance.md, "The tools").
//!
//! It opens a CSTA session with csta-sim (ECMA-354), monitors the DNs, and serves WebSocket
//! clients with the same stack as ctid (axum's WebSocket on tokio's multi-threaded runtime). Per
//! read of the CSTA link it cuts the frames, decodes each with ctid's codec, finds the DN by the
//! monitor's cross-reference, and queues one frame, encoded once per event and DN, to every
//! client registered for the DN; then it wakes each client's writer once for everything the read
//! gave it, and the writer writes the batch with one flush — ctid's write strategy
//! (docs/architecture.md, "The data path"). No call model, no sessions, no metrics: what is left
//! is the IO and the codec, which any server in ctid's place pays.
//!
//! A client registers a DN with RequestRegisterAddress and gets `{"event":"EventRegistered",…}`
//! back; nothing else is served. An event is told to a DN's clients when a T-Server would tell
//! them (the DN is the party the event is about), named as ctid names it and with the CSTA
//! callID as `CallID`, so the load tool matches it to the phone action as it does ctid's: the
//! same frames, counted and timed alike, without a call model behind them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, encode_message, FrameItem, MAX_FRAME_LEN};
use ctid_csta::{
    ApplicationInfo, CodecOptions, InvokeId, Message, MonitorObject, MonitorStart, MonitorType,
    StartApplicationSession,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Frames queued to one client's writer; one message per read of the CSTA link.
type Batch = Vec<Utf8Bytes>;

#[derive(Default)]
struct Registry {
    /// DN → the writers of the clients registered for it.
    by_dn: HashMap<String, Vec<(u64, mpsc::Sender<Batch>)>>,
    /// monitorCrossRefID → DN.
    xref: HashMap<String, String>,
}

struct Relay {
    reg: Mutex<Registry>,
    ready: AtomicBool,
    next_id: AtomicU64,
}

fn lock(r: &Relay) -> std::sync::MutexGuard<'_, Registry> {
    r.reg.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the relay until killed: monitor `numbers` at `csta`, serve clients on `port`.
pub async fn run(csta: SocketAddr, port: u16, numbers: Vec<String>) -> anyhow::Result<()> {
    let relay = Arc::new(Relay {
        reg: Mutex::new(Registry::default()),
        ready: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/ws", get(ws))
        .route("/readyz", get(readyz))
        .with_state(relay.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("relay: cannot listen on port {port}"))?;
    // As ctid's client port: TCP_NODELAY on every client socket.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let link = link(relay, csta, numbers);
    tokio::select! {
        r = link => r,
        r = server => r.context("relay: server task")?.context("relay: server"),
    }
}

async fn readyz(State(r): State<Arc<Relay>>) -> impl IntoResponse {
    if r.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "monitoring\n")
    }
}

async fn ws(upgrade: WebSocketUpgrade, State(r): State<Arc<Relay>>) -> axum::response::Response {
    // The same read buffer as ctid's client port.
    upgrade
        .read_buffer_size(4096)
        .on_upgrade(move |s| client(s, r))
}

async fn client(socket: WebSocket, relay: Arc<Relay>) {
    let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Batch>(1024);
    let (mut sink, mut stream) = socket.split();
    let writer = async move {
        while let Some(batch) = rx.recv().await {
            for f in batch {
                if sink.feed(WsMessage::Text(f)).await.is_err() {
                    return;
                }
            }
            while let Ok(batch) = rx.try_recv() {
                for f in batch {
                    if sink.feed(WsMessage::Text(f)).await.is_err() {
                        return;
                    }
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    };
    let reader = {
        let relay = relay.clone();
        let tx = tx.clone();
        async move {
            while let Some(Ok(m)) = stream.next().await {
                let WsMessage::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                let reference = v["ReferenceID"].as_u64().unwrap_or(0);
                let answer = match (v["request"].as_str(), v["ThisDN"].as_str()) {
                    (Some("RequestRegisterAddress"), Some(dn)) => {
                        lock(&relay)
                            .by_dn
                            .entry(dn.to_string())
                            .or_default()
                            .push((id, tx.clone()));
                        format!(
                            r#"{{"event":"EventRegistered","ThisDN":"{dn}","ReferenceID":{reference}}}"#
                        )
                    }
                    _ => format!(
                        r#"{{"event":"EventError","ErrorCode":51,"ErrorMessage":"the floor relay serves RequestRegisterAddress only","ReferenceID":{reference}}}"#
                    ),
                };
                if tx.send(vec![Utf8Bytes::from(answer)]).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    for v in lock(&relay).by_dn.values_mut() {
        v.retain(|(c, _)| *c != id);
    }
}

/// Does a T-Server tell `dn`'s clients of this event seen on `dn`'s monitor, and as which event
/// of which call? The same choice as ctid's call model for the events of the load's calls (the
/// party the event is about), so the floor delivers as many frames as ctid: a held, retrieved or
/// cleared connection of the other party, an originated call of another device and so on are
/// not told.
fn for_dn<'m>(msg: &'m Message, dn: &str) -> Option<(&'static str, &'m str)> {
    use ctid_csta::{ConnectionId, DeviceRef};
    fn about(d: &Option<DeviceRef>, c: &ConnectionId, dn: &str) -> bool {
        d.as_ref()
            .and_then(|d| d.as_id())
            .or(c.device_id.as_deref())
            == Some(dn)
    }
    let call = |c: &'m ConnectionId| c.call_id.as_deref().unwrap_or("");
    match msg {
        Message::ServiceInitiatedEvent(e) => (e.initiated_connection.device_id.as_deref()
            == Some(dn))
        .then(|| ("EventOffHook", call(&e.initiated_connection))),
        Message::OriginatedEvent(e) => about(&e.calling_device, &e.originated_connection, dn)
            .then(|| ("EventDialing", call(&e.originated_connection))),
        Message::DeliveredEvent(e) => about(&e.alerting_device, &e.connection, dn)
            .then(|| ("EventRinging", call(&e.connection))),
        Message::EstablishedEvent(e) => Some(("EventEstablished", call(&e.established_connection))),
        Message::HeldEvent(e) => about(&e.holding_device, &e.held_connection, dn)
            .then(|| ("EventHeld", call(&e.held_connection))),
        Message::RetrievedEvent(e) => about(&e.retrieving_device, &e.retrieved_connection, dn)
            .then(|| ("EventRetrieved", call(&e.retrieved_connection))),
        Message::ConnectionClearedEvent(e) => {
            (about(&e.releasing_device, &e.dropped_connection, dn)
                || e.dropped_connection.device_id.as_deref() == Some(dn))
            .then(|| ("EventReleased", call(&e.dropped_connection)))
        }
        _ => Some(("EventPartyChanged", "")),
    }
}

/// The CSTA side: session start, MonitorStarts, then the event loop.
async fn link(relay: Arc<Relay>, csta: SocketAddr, numbers: Vec<String>) -> anyhow::Result<()> {
    let mut s = tokio::net::TcpStream::connect(csta)
        .await
        .with_context(|| format!("relay: cannot connect to csta-sim at {csta}"))?;
    s.set_nodelay(true)?;
    let opts = CodecOptions::default();
    let mut wbuf = BytesMut::new();
    let start = Message::StartApplicationSession(StartApplicationSession {
        application_info: ApplicationInfo {
            application_id: "ctid-load-floor".into(),
            application_specific_info: None,
        },
        requested_protocol_versions: vec![opts.edition.namespace().into()],
        requested_session_duration: Some(3600),
        extensions: None,
    });
    // The session's own request takes 9000, as in ctid's link session; monitors 1–8999.
    let invoke = |n: usize| InvokeId::new((n % 8999 + 1) as u16).context("invoke id");
    encode_message(
        InvokeId::new(9000).context("invoke id")?,
        &start,
        &opts,
        &mut wbuf,
    )?;
    // MonitorStarts, at most WINDOW in flight (the invoke ID says which DN is answered).
    const WINDOW: usize = 1000;
    let mut sent = 0usize;
    let mut answered = 0usize;
    let mut by_invoke: HashMap<u16, String> = HashMap::new();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    // Per read: what each client gets, and its writer.
    let mut pending: HashMap<u64, (mpsc::Sender<Batch>, Batch)> = HashMap::new();
    loop {
        while sent < numbers.len() && sent - answered < WINDOW {
            let dn = &numbers[sent];
            let id = invoke(sent)?;
            by_invoke.insert(id.get(), dn.clone());
            let m = Message::MonitorStart(MonitorStart {
                monitor_object: MonitorObject::Device(dn.as_str().into()),
                monitor_type: Some(MonitorType::Device),
                extensions: None,
            });
            encode_message(id, &m, &opts, &mut wbuf)?;
            sent += 1;
        }
        if !wbuf.is_empty() {
            s.write_all(&wbuf).await.context("relay: write")?;
            wbuf.clear();
        }
        if s.read_buf(&mut rbuf).await.context("relay: read")? == 0 {
            anyhow::bail!("relay: csta-sim closed the link");
        }
        let mut reg = None;
        loop {
            let f = match decode_frame(&mut rbuf, MAX_FRAME_LEN) {
                Ok(Some(FrameItem::Frame(f))) => f,
                Ok(Some(FrameItem::Skipped { .. })) => continue,
                Ok(None) => break,
                Err(e) => anyhow::bail!("relay: framing lost: {e}"),
            };
            let Ok(msg) = ctid_csta::decode(&f.xml) else {
                continue;
            };
            if let Message::MonitorStartResponse(r) = &msg {
                if let Some(dn) = by_invoke.remove(&f.invoke_id.get()) {
                    lock(&relay)
                        .xref
                        .insert(r.monitor_cross_ref_id.to_string(), dn);
                    answered += 1;
                    if answered == numbers.len() {
                        relay.ready.store(true, Ordering::Relaxed);
                    }
                }
                continue;
            }
            let Some(x) = msg.monitor_cross_ref_id() else {
                continue;
            };
            let reg = reg.get_or_insert_with(|| lock(&relay));
            let Some(dn) = reg.xref.get(x) else { continue };
            let Some((name, call)) = for_dn(&msg, dn) else {
                continue;
            };
            let Some(watchers) = reg.by_dn.get(dn) else {
                continue;
            };
            // One text per event and DN, shared by its clients (as ctid encodes once).
            let text = Utf8Bytes::from(format!(
                r#"{{"event":"{name}","ThisDN":"{dn}","CallID":"{call}"}}"#
            ));
            for (c, tx) in watchers {
                pending
                    .entry(*c)
                    .or_insert_with(|| (tx.clone(), Vec::new()))
                    .1
                    .push(text.clone());
            }
        }
        drop(reg);
        // Wake each client's writer once for what this read gave it.
        for (_, (tx, batch)) in pending.drain() {
            let _ = tx.try_send(batch);
        }
    }
}
