//! The client port: WebSocket sessions at `/ws`; HTTP `/healthz`, `/readyz`, `/metrics`,
//! `POST /admin/reload` (bearer token from `CTID_ADMIN_TOKEN` or an `admin = true` client token),
//! and the web monitor at `/` with its `/api/state` ([`crate::web`]). With `auth = "token"`,
//! `/ws` and `/api/*` require a client token ([`crate::auth`]); the rest stays open. A session
//! opened with a token may send only the requests its permissions allow (the others are answered
//! with EventError 51 and the session goes on); at most `max-clients` sessions are served at once
//! (the upgrade beyond it is answered HTTP 503).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ctid_engine::{Input, LinkState};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::core::{CoreMsg, Outgoing, Status};
use crate::metrics::Metrics;
use crate::reload::{ReloadError, Reloader};

/// Shared by every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub core: mpsc::Sender<CoreMsg>,
    pub status: watch::Receiver<Status>,
    pub metrics: Metrics,
    pub next_id: Arc<AtomicU64>,
    pub max_frame: usize,
    pub queue: usize,
    /// Configuration reload (`POST /admin/reload`).
    pub reloader: Arc<Reloader>,
    /// Bearer token for `/admin/*` (`CTID_ADMIN_TOKEN`); `None`, and no `admin = true` client
    /// token, disables them.
    pub admin_token: Option<String>,
    /// Client authentication, swapped by a reload.
    pub auth: crate::auth::AuthStore,
    /// The configuration file (a reload re-reads the client tokens from it).
    pub config_path: Option<std::path::PathBuf>,
    /// The configured links (name, `host:port`, priority), best first, for `/readyz`.
    pub links: Vec<(String, String, i64)>,
    /// Client sessions: rate limit, ping/pong liveness ([`crate::session`]).
    pub client: crate::session::ClientPolicy,
    /// `[ha]`: whether this node serves, and the primary's URL for those it does not serve.
    pub ha: Option<crate::ha::Shared>,
    /// `[ha]`: what `/api/ha` shows.
    pub ha_view: Option<watch::Receiver<crate::ha::HaView>>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin_reload))
        .route("/admin/ha/switchover", post(admin_switchover))
        .route("/api/ha", get(api_ha))
        .merge(crate::web::routes())
        // Counted per router, i.e. per client port: `max-clients`.
        .layer(axum::Extension(crate::session::ClientSlots::default()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}

/// Paths that need a client token when `auth = "token"`: the client protocol and the data of
/// the monitor. The monitor's static page, the probes and `/admin/*` (own token) stay open.
fn needs_token(path: &str) -> bool {
    path == "/ws" || path.starts_with("/ws/") || path.starts_with("/api/")
}

/// The `auth = "token"` gate: 401 with a one-line reason, logged with the peer (never the token).
async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    if !needs_token(req.uri().path()) {
        return next.run(req).await;
    }
    let auth = st.auth.get();
    let presented = crate::auth::presented_token(req.headers(), req.uri().query());
    match crate::auth::check(&auth, presented.as_deref()) {
        Ok(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(reason) => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            warn!(%peer, path = req.uri().path(), reason, "client refused: authentication");
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                format!("{reason}\n"),
            )
                .into_response()
        }
    }
}

/// Constant-time comparison of the presented admin token: `CTID_ADMIN_TOKEN` or an
/// `admin = true` client token.
fn admin_ok(headers: &HeaderMap, env: Option<&str>, auth: &crate::auth::AuthConfig) -> bool {
    let Some(got) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    let by_env = env.is_some_and(|want| crate::auth::ct_eq(got.as_bytes(), want.as_bytes()));
    let by_token = auth.lookup(got).is_some_and(|t| t.admin);
    by_env | by_token
}

/// The admin token check of every `/admin/*` endpoint: `Some(refusal)` when the caller may not.
fn admin_refusal(
    peer: SocketAddr,
    st: &AppState,
    headers: &HeaderMap,
    what: &str,
) -> Option<Response> {
    let env = st.admin_token.as_deref().filter(|t| !t.is_empty());
    let auth = st.auth.get();
    if env.is_none() && !auth.tokens.iter().any(|t| t.admin) {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "admin endpoints are disabled: set CTID_ADMIN_TOKEN or give a [[client-token]] admin = true\n",
            )
                .into_response(),
        );
    }
    if !admin_ok(headers, env, &auth) {
        warn!(%peer, "POST {what}: missing or wrong admin token");
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                "missing or wrong admin token (Authorization: Bearer <token>)\n",
            )
                .into_response(),
        );
    }
    None
}

/// `POST /admin/ha/switchover[?to=NODE]` (docs/protocol.md §6.10).
async fn admin_switchover(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(st): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = admin_refusal(peer, &st, &headers, "/admin/ha/switchover") {
        return r;
    }
    if st.ha.is_none() {
        return (
            StatusCode::CONFLICT,
            "hot standby is not configured ([ha])\n",
        )
            .into_response();
    }
    let to = q.get("to").cloned();
    info!(%peer, to = to.as_deref().unwrap_or("any ready backup"), "planned switchover requested over HTTP");
    let (reply, rx) = tokio::sync::oneshot::channel();
    if st
        .core
        .send(CoreMsg::Switchover { to, reply })
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "ctid is stopping\n").into_response();
    }
    match tokio::time::timeout(std::time::Duration::from_secs(10), rx).await {
        Ok(Ok(Ok(v))) => (StatusCode::OK, Json(v)).into_response(),
        Ok(Ok(Err(e))) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the switchover did not finish in 10 s\n",
        )
            .into_response(),
    }
}

/// `GET /api/ha` (docs/protocol.md §6.10).
async fn api_ha(State(st): State<AppState>) -> Response {
    match &st.ha_view {
        Some(v) => Json(v.borrow().clone()).into_response(),
        None => Json(serde_json::json!({"enabled": false, "role": "standalone"})).into_response(),
    }
}

async fn admin_reload(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin_refusal(peer, &st, &headers, "/admin/reload") {
        return r;
    }
    info!(%peer, "configuration reload requested over HTTP");
    match crate::reload_all(&st.reloader, st.config_path.as_deref(), &st.auth).await {
        Ok(summary) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Err(e @ ReloadError::Invalid(_)) => {
            (StatusCode::BAD_REQUEST, format!("rejected: {e}\n")).into_response()
        }
        Err(e @ ReloadError::NoFile) => {
            (StatusCode::CONFLICT, format!("rejected: {e}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    let s = st.status.borrow().clone();
    let ready = s.link == LinkState::Up;
    // Every configured link; the active one carries the state (standbys are not reported here).
    let links: Vec<_> = st
        .links
        .iter()
        .map(|(name, addr, priority)| {
            let active = ready || s.link != LinkState::Down;
            let active = active && *name == s.link_name;
            serde_json::json!({
                "name": name,
                "address": addr,
                "priority": priority,
                "active": active,
                "state": if active { s.link.as_str() } else { "standby or down" },
            })
        })
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "link": { "name": s.link_name, "state": s.link.as_str() },
        "links": links,
        "monitors": { "monitored": s.monitored, "dns": s.dns, "outstanding": s.outstanding },
        "clients": s.clients,
    });
    // The event export is reported, never a reason to be not ready (docs/operations.md).
    let mut body = body;
    if st.metrics.export_enabled.get() == 1 {
        body["export"] = serde_json::json!({
            "connected": st.metrics.export_connected.get() == 1,
            "lag": st.metrics.export_lag.get(),
            "buffered_bytes": st.metrics.export_buffered_bytes.get(),
            "dropped": st.metrics.export_dropped.get(),
            "error": st.metrics.export_error(),
        });
    }
    // A node of a pair is ready only while it serves (a load balancer sends clients to it).
    let mut ready = ready;
    if let Some(v) = &st.ha_view {
        let v = v.borrow().clone();
        ready = ready && v.role == crate::ha::Role::Primary;
        body["ready"] = serde_json::json!(ready);
        body["ha"] = serde_json::json!({
            "role": v.role,
            "term": v.term,
            "lease_holder": v.lease.as_ref().and_then(|l| l.holder.clone()),
            "applied_seq": v.applied_seq,
            "lag": v.lag,
            "standby_ready": v.ready,
        });
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [("content-type", crate::metrics::CONTENT_TYPE)],
        st.metrics.render(),
    )
        .into_response()
}

async fn ws(
    upgrade: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    who: Option<axum::Extension<crate::auth::Identity>>,
    axum::Extension(slots): axum::Extension<crate::session::ClientSlots>,
    State(st): State<AppState>,
) -> Response {
    let who = who.map(|w| w.0).unwrap_or(crate::auth::Identity {
        name: None,
        permissions: crate::auth::Permissions::ALL,
    });
    // A node of a pair that does not serve answers with a close frame naming the primary.
    if let Some(h) = st.ha.as_ref().filter(|h| !h.serving()) {
        let reason = h.not_primary_reason();
        debug!(%peer, %reason, "client refused: not primary");
        return upgrade.on_upgrade(move |mut socket| async move {
            let _ = socket
                .send(close_frame(crate::session::CloseReason {
                    code: crate::ha::CLOSE_NOT_PRIMARY,
                    reason,
                }))
                .await;
        });
    }
    let slot = match slots.take(st.client.max_clients) {
        Ok(s) => s,
        Err(reason) => {
            warn!(%peer, token = who.name.as_deref().unwrap_or(""), max_clients = st.client.max_clients, "client refused: max-clients reached");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "5")],
                format!("{reason}\n"),
            )
                .into_response();
        }
    };
    let max = st.max_frame;
    upgrade
        // tungstenite zeroes its read buffer up to this size on every read: client requests
        // are small, so a small buffer saves most of the per-read cost (perf: 22 % of ctid's CPU
        // went to that memset with the 128 KiB default).
        .read_buffer_size(4096)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(socket, peer, who, slot, st))
}

fn close_frame(r: crate::session::CloseReason) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: r.code,
        reason: Utf8Bytes::from(r.reason),
    }))
}

async fn session(
    socket: WebSocket,
    peer: SocketAddr,
    who: crate::auth::Identity,
    // Held for the session's life: its place under `max-clients`.
    _slot: crate::session::ClientSlot,
    st: AppState,
) {
    let id = st.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(token) = &who.name {
        info!(client = id, %peer, token = %token, permissions = ?who.permissions, "client authenticated by token");
    }
    // A token without every permission: a request it may not send is answered with EventError
    // 51 without reaching the engine's request handling.
    let restricted = (!who.permissions.is_all()).then(|| {
        (
            who.permissions,
            who.name.clone().unwrap_or_else(|| "-".into()),
        )
    });
    let (tx, mut rx) = mpsc::channel::<Outgoing>(st.queue.max(1));
    let queued = Arc::new(crate::core::QueueLoad::default());
    let dequeued = queued.clone();
    let Some(session_id) = new_session_id() else {
        warn!(client = id, %peer, "no randomness for a SessionID: connection refused");
        return;
    };
    if st
        .core
        .send(CoreMsg::ClientOpen {
            id,
            peer: peer.to_string(),
            tx,
            queued,
            session_id,
            owner: who.name.clone().unwrap_or_default(),
        })
        .await
        .is_err()
    {
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let metrics = st.metrics.clone();
    // Liveness and the rate limit (crate::session): the reader notes every frame and may ask
    // the writer to close with a reason; the writer pings and closes a silent client.
    let live = Arc::new(crate::session::Liveness::default());
    let (close_tx, mut close_rx) = tokio::sync::oneshot::channel::<crate::session::CloseReason>();
    let policy = st.client.clone();
    let mut pinger = crate::session::ping_timer(&policy);
    let mut limiter = crate::session::RateLimiter::new(&policy);
    let heard = live.clone();
    let mut close_tx = Some(close_tx);
    let max_frame = st.max_frame;
    let writer = async move {
        // Arrival times of the CSTA events behind the frames of this batch.
        let mut stamps: Vec<Instant> = Vec::new();
        loop {
            let first = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => break },
                _ = crate::session::tick(&mut pinger) => {
                    let frame = match live.check(&policy) {
                        Ok(()) => WsMessage::Ping(Default::default()),
                        Err(r) => {
                            info!(client = id, %peer, reason = %r.reason, "client dropped: no answer to ping");
                            close_frame(r)
                        }
                    };
                    let closing = matches!(frame, WsMessage::Close(_));
                    if sink.send(frame).await.is_err() || closing {
                        return;
                    }
                    continue;
                }
                r = &mut close_rx => {
                    let Ok(r) = r else { return };
                    let _ = sink.send(close_frame(r)).await;
                    // The reader drains the client's last frames, then ends the session.
                    return std::future::pending().await;
                }
            };
            // The core's batch of one turn, and whatever else is already queued: one flush.
            let mut next = Some(first);
            while let Some(batch) = next.take() {
                dequeued.taken(&batch.frames);
                stamps.extend(batch.since);
                for f in batch.frames {
                    if sink.feed(WsMessage::Text(f)).await.is_err() {
                        return;
                    }
                }
                if let Some(r) = batch.close {
                    // The core closes this connection (its session moved on, or ended).
                    let _ = sink.flush().await;
                    let _ = sink.send(close_frame(r)).await;
                    return std::future::pending().await;
                }
                next = rx.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                return;
            }
            for t in stamps.drain(..) {
                metrics.switch_to_client_latency.observe(t.elapsed());
            }
        }
        // The core dropped us: ctid is shutting down, or the send queue overflowed.
        let (code, reason) = if crate::core::shutting_down() {
            (1001, "ctid is shutting down")
        } else {
            (1008, "send queue full: client too slow")
        };
        let _ = sink
            .send(WsMessage::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    };
    let core = st.core.clone();
    let metrics = st.metrics.clone();
    let reader = async move {
        while let Some(msg) = stream.next().await {
            heard.heard();
            let input = match msg {
                Ok(WsMessage::Text(t)) => {
                    if let Err(r) = crate::session::allow(&mut limiter) {
                        metrics.clients_dropped_protocol.inc();
                        info!(client = id, %peer, reason = %r.reason, "client dropped: request rate limit");
                        if let Some(tx) = close_tx.take() {
                            let _ = tx.send(r);
                        }
                        // The writer sends the close frame; what the client still sends is
                        // read and dropped (closing on unread data would reset the connection
                        // before the client reads the reason). Closed for abuse: the session
                        // ends.
                        crate::session::drain(&mut stream).await;
                        return true;
                    }
                    // Parsed here, once, on the connection's task (not on the core's); a frame
                    // that does not parse goes to the engine as it came, for its EventError.
                    match ctid_protocol::parse_request(t.as_str()) {
                        Ok(request) => {
                            let refused = restricted.as_ref().and_then(|(perms, token)| {
                                let message = perms.refusal(token, request.name)?;
                                info!(client = id, %peer, token = %token, request = %request.name, "request refused: token lacks the permission");
                                Some(message)
                            });
                            match refused {
                                Some(message) => Input::ClientInvalid {
                                    client: id,
                                    code: ctid_protocol::ErrorCode::UNSUP_OPER,
                                    message,
                                    reference_id: request.reference_id,
                                },
                                None => Input::ClientRequest {
                                    client: id,
                                    request,
                                },
                            }
                        }
                        Err(_) => Input::ClientText {
                            client: id,
                            text: t.to_string(),
                        },
                    }
                }
                Ok(WsMessage::Binary(_)) => Input::ClientInvalid {
                    client: id,
                    code: ctid_protocol::ErrorCode::INVALID_ATTR,
                    message: "binary frames are not accepted; send one JSON object per text frame"
                        .into(),
                    reference_id: None,
                },
                // Only a normal close (1000) ends the session; any other keeps it for a
                // resume (docs/protocol.md §6.9).
                Ok(WsMessage::Close(frame)) => {
                    return frame.is_some_and(|f| f.code == 1000);
                }
                Ok(_) => continue,
                Err(e) => {
                    let kind = ReadError::of(e);
                    let e = kind.1;
                    if kind.0 == ReadErrorKind::TooLarge {
                        metrics.clients_dropped_protocol.inc();
                        info!(client = id, %peer, error = %e, "client dropped: frame larger than max-client-frame");
                        if let Some(tx) = close_tx.take() {
                            let _ = tx.send(crate::session::CloseReason {
                                code: 1009,
                                reason: format!(
                                    "frame larger than max-client-frame ({max_frame} bytes)"
                                ),
                            });
                            // Give the writer time to send the close frame.
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        return true;
                    } else if kind.0 == ReadErrorKind::Protocol {
                        metrics.clients_dropped_protocol.inc();
                        info!(client = id, %peer, error = %e, "client dropped: WebSocket protocol error");
                        return true;
                    }
                    debug!(client = id, error = %e, "websocket read error");
                    return false;
                }
            };
            if core.send(CoreMsg::Client(input)).await.is_err() {
                return false;
            }
        }
        false
    };
    // The writer ends on a ping timeout, a failed write or when the core drops the connection
    // (too slow): the session is kept. The reader says whether the client closed cleanly.
    let clean = tokio::select! {
        _ = writer => false,
        clean = reader => clean,
    };
    let _ = st.core.send(CoreMsg::ClientClose { id, clean }).await;
}

/// A new SessionID: 128 random bits as 32 lower-case hex digits (docs/protocol.md §6.9).
fn new_session_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// What went wrong reading a client's WebSocket, told by the error's type (not its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadErrorKind {
    /// A frame or message over `max-client-frame` (tungstenite's capacity error).
    TooLarge,
    /// A WebSocket protocol violation (other than a reset without closing handshake).
    Protocol,
    /// Anything else: the connection went away.
    Other,
}

/// A read error's kind and its text for the log.
struct ReadError(ReadErrorKind, String);

impl ReadError {
    fn of(e: axum::Error) -> ReadError {
        use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
        let text = e.to_string();
        let inner = e.into_inner();
        let kind = match inner.downcast_ref::<WsError>() {
            Some(WsError::Capacity(_)) => ReadErrorKind::TooLarge,
            Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                ReadErrorKind::Other
            }
            Some(WsError::Protocol(_)) => ReadErrorKind::Protocol,
            _ => ReadErrorKind::Other,
        };
        ReadError(kind, text)
    }
}

#[cfg(test)]
mod read_error_tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};

    #[test]
    fn read_errors_are_told_by_type() {
        let big = WsError::Capacity(CapacityError::MessageTooLong {
            size: 10,
            max_size: 5,
        });
        assert_eq!(
            ReadError::of(axum::Error::new(big)).0,
            ReadErrorKind::TooLarge
        );
        let bad = WsError::Protocol(ProtocolError::NonZeroReservedBits);
        assert_eq!(
            ReadError::of(axum::Error::new(bad)).0,
            ReadErrorKind::Protocol
        );
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(
            ReadError::of(axum::Error::new(reset)).0,
            ReadErrorKind::Other
        );
        let io = WsError::Io(std::io::Error::other("gone"));
        assert_eq!(ReadError::of(axum::Error::new(io)).0, ReadErrorKind::Other);
    }
}
