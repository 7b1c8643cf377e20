//! The live web monitor: a static page (HTML, CSS, a small script and the browser build of the
//! TypeScript client `@ctid/client`, all embedded in the binary, nothing from a CDN) served at
//! `/`, and its JSON `/api/state` (the engine's DN and call views, filtered and paged). The page
//! speaks the client protocol over `/ws` like any client, through `CtidClient` (served as
//! `/ctid-client.js`): it registers the DNs it shows in ModeMonitor and refreshes from
//! `/api/state` when events arrive. Its session survives a dropped connection: the client resumes
//! it (docs/protocol.md §6.9) and the page shows every session from `/api/state`, the detached
//! ones with how long and what they keep. With a pair of nodes (§6.10) the client follows a close
//! 4010 to the primary it names, the page gives it the other nodes from `/api/ha`, it tries them
//! in turn after a drop, and the header shows the node its WebSocket is connected to and that
//! node's role.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ctid_engine::{CallView, DnView};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::core::CoreMsg;
use crate::http::AppState;

const INDEX_HTML: &str = include_str!("index.html");
const MONITOR_JS: &str = include_str!("monitor.js");
/// The browser build of the TypeScript client `@ctid/client` (clients/typescript, built by its
/// `npm run build:browser`): the monitor speaks the client protocol through it.
const CTID_CLIENT_JS: &str = include_str!("ctid-client.js");
const MONITOR_CSS: &str = include_str!("monitor.css");

/// Largest page `/api/state` returns.
pub const MAX_LIMIT: usize = 1000;
/// Calls returned at most (those matching the filter first).
pub const MAX_CALLS: usize = 200;

/// The monitor's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { static_file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/monitor.js",
            get(|| async { static_file("text/javascript; charset=utf-8", MONITOR_JS) }),
        )
        .route(
            "/ctid-client.js",
            get(|| async { static_file("text/javascript; charset=utf-8", CTID_CLIENT_JS) }),
        )
        .route(
            "/monitor.css",
            get(|| async { static_file("text/css; charset=utf-8", MONITOR_CSS) }),
        )
        .route("/api/state", get(api_state))
}

fn static_file(ct: &'static str, body: &'static str) -> Response {
    ([("content-type", ct), ("cache-control", "no-cache")], body).into_response()
}

/// `/api/state` query: `?offset=0&limit=100&filter=10`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct StateQuery {
    pub offset: Option<usize>,
    pub limit: Option<usize>,
    /// Substring of the DN number, its agent, its hot-desk partner or a party of a call.
    pub filter: Option<String>,
}

fn dn_json(d: &DnView) -> Value {
    json!({
        "number": d.number,
        "type": d.dn_type,
        "configured": d.configured,
        "monitored": d.monitored,
        "registrations": d.registrations,
        "status": d.status,
        "calls": d.calls,
        "agent_id": d.agent_id,
        "agent_status": d.agent_status,
        "host": d.host,
        "guest": d.guest,
        "forward_to": d.forward_to,
        "dnd": d.dnd,
    })
}

fn call_json(c: &CallView) -> Value {
    json!({
        "conn_id": c.conn_id,
        "call_id": c.call_id,
        "type": c.call_type,
        "parties": c.parties.iter().map(|(dn, st)| json!({"dn": dn, "state": st})).collect::<Vec<_>>(),
    })
}

fn dn_matches(d: &DnView, f: &str) -> bool {
    d.number.contains(f)
        || [&d.agent_id, &d.host, &d.guest]
            .into_iter()
            .any(|o| o.as_deref().is_some_and(|s| s.contains(f)))
}

async fn api_state(State(st): State<AppState>, Query(q): Query<StateQuery>) -> Response {
    let (tx, rx) = oneshot::channel();
    if st.core.send(CoreMsg::Snapshot(tx)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "core stopped\n").into_response();
    }
    let snap = match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(s)) => s,
        _ => return (StatusCode::SERVICE_UNAVAILABLE, "core busy\n").into_response(),
    };
    let status = st.status.borrow().clone();
    let filter = q.filter.as_deref().map(str::trim).unwrap_or("");
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let matching: Vec<&DnView> = snap
        .dns
        .iter()
        .filter(|d| filter.is_empty() || dn_matches(d, filter))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| dn_json(d))
        .collect();
    let calls: Vec<&CallView> = snap
        .calls
        .iter()
        .filter(|c| filter.is_empty() || c.parties.iter().any(|(dn, _)| dn.contains(filter)))
        .collect();
    // A node of a pair: its role, the lease holder, replication lag, readiness (as /api/ha).
    let ha = match &st.ha_view {
        Some(v) => serde_json::to_value(&*v.borrow()).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let body = json!({
        "ha": ha,
        "link": { "name": status.link_name, "state": status.link.as_str() },
        "counts": {
            "dns": status.dns,
            "monitored": status.monitored,
            "clients": status.clients,
            "outstanding": status.outstanding,
            "calls": snap.calls.len(),
            "hotdesk": snap.hotdesk_pairs.len(),
            "sessions": snap.sessions.len(),
            "detached": snap.sessions.iter().filter(|s| s.detached_for_ms.is_some()).count(),
        },
        "sessions": snap.sessions.iter().map(|s| json!({
            "client": s.client,
            "peer": s.peer,
            "app": s.app,
            "token": s.owner,
            "dns": s.dns,
            "detached_for_ms": s.detached_for_ms,
            "kept_events": s.kept_events,
            "kept_bytes": s.kept_bytes,
        })).collect::<Vec<_>>(),
        "hotdesk": snap.hotdesk_pairs.iter().map(|(g, h)| json!({"guest": g, "host": h})).collect::<Vec<_>>(),
        "dns": {
            "total": matching.len(),
            "offset": offset,
            "limit": limit,
            "items": page,
        },
        "calls": {
            "total": calls.len(),
            "items": calls.iter().take(MAX_CALLS).map(|c| call_json(c)).collect::<Vec<_>>(),
        },
    });
    ([("cache-control", "no-cache")], Json(body)).into_response()
}
