//! The client port: WebSocket sessions at `/ws`, and HTTP `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ctid_engine::Input;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::core::{CoreMsg, Status};
use crate::metrics::Metrics;

/// Shared by every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub core: mpsc::Sender<CoreMsg>,
    pub status: watch::Receiver<Status>,
    pub metrics: Metrics,
    pub next_id: Arc<AtomicU64>,
    pub max_frame: usize,
    pub queue: usize,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(st): State<AppState>) -> Response {
    let s = st.status.borrow().clone();
    let ready = s.link == "up";
    let body = serde_json::json!({
        "ready": ready,
        "link": { "name": s.link_name, "state": s.link },
        "monitors": { "monitored": s.monitored, "dns": s.dns, "outstanding": s.outstanding },
        "clients": s.clients,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

async fn ws(
    upgrade: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(st): State<AppState>,
) -> Response {
    let max = st.max_frame;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(socket, peer, st))
}

async fn session(socket: WebSocket, peer: SocketAddr, st: AppState) {
    let id = st.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(st.queue.max(1));
    if st
        .core
        .send(CoreMsg::ClientOpen {
            id,
            peer: peer.to_string(),
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let writer = async move {
        while let Some(text) = rx.recv().await {
            if sink.send(WsMessage::Text(text)).await.is_err() {
                return;
            }
            // Batch what is already queued.
            while let Ok(text) = rx.try_recv() {
                if sink.feed(WsMessage::Text(text)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        // The core dropped us: the send queue overflowed.
        let _ = sink
            .send(WsMessage::Close(Some(CloseFrame {
                code: 1008,
                reason: Utf8Bytes::from_static("send queue full: client too slow"),
            })))
            .await;
    };
    let core = st.core.clone();
    let reader = async move {
        while let Some(msg) = stream.next().await {
            let input = match msg {
                Ok(WsMessage::Text(t)) => Input::ClientText {
                    client: id,
                    text: t.to_string(),
                },
                Ok(WsMessage::Binary(_)) => Input::ClientInvalid {
                    client: id,
                    code: 53,
                    message: "binary frames are not accepted; send one JSON object per text frame"
                        .into(),
                },
                Ok(WsMessage::Close(_)) => return,
                Ok(_) => continue,
                Err(e) => {
                    debug!(client = id, error = %e, "websocket read error");
                    return;
                }
            };
            if core.send(CoreMsg::Client(input)).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    let _ = st.core.send(CoreMsg::ClientClose { id }).await;
}
