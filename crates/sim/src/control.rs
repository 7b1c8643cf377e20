//! The control API: HTTP + JSON on `--control`, every endpoint a thin wrapper over a [`Sim`]
//! method. Documented, with a curl example per endpoint, in `docs/csta-sim.md`.
//!
//! Answers: `200` with a JSON object on success; on refusal `{"error": text, "cstaError":
//! "family/value"}` with 404 (unknown device or call), 409 (the switch refuses: wrong state,
//! busy, …) or 400 (bad JSON or literal).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ctid_csta::SystemStatusValue;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{DeviceConfig, DeviceKind, Hoteling};
use crate::error::SimError;
use crate::{PhoneAction, Sim};

/// Bind the control API on `addr` and serve it until `cancel`.
pub async fn serve(
    sim: Sim,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("control listener {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = router(sim);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok((bound, task))
}

/// The routes.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/state", get(state))
        .route("/devices", post(add_device))
        .route("/devices/{device}", delete(remove_device))
        .route("/calls", post(dial))
        .route("/phones/{device}/{action}", post(phone))
        .route("/hotdesk/associate", post(associate))
        .route("/hotdesk/cancel", post(cancel))
        .route("/faults/drop", post(drop_all))
        .route("/faults/stall", post(stall))
        .route("/faults/delay", post(delay))
        .route("/faults/malformed", post(malformed))
        .route("/faults/fail-next", post(fail_next))
        .route("/faults/monitor-stop", post(monitor_stop))
        .route("/system-status", post(system_status))
        .route("/dual-primary", get(dual_primary))
        .route("/dual-primary/reset", post(reset_dual_primary))
        .with_state(sim)
}

type Reply = Result<Json<Value>, ApiError>;

/// A refusal as an HTTP answer.
pub struct ApiError(SimError);

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut body = json!({ "error": self.0.to_string() });
        if let SimError::Csta { error, .. } = &self.0 {
            body["cstaError"] = json!(error.to_string());
        }
        (status, Json(body)).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(SimError::BadRequest(msg.into()))
}

/// The body as a JSON object (an empty body is `{}`).
fn body(b: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(b) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(bad(format!("expected a JSON object, got {other}"))),
        Err(e) => Err(bad(format!("invalid JSON: {e}"))),
    }
}

fn opt_str<'a>(
    m: &'a serde_json::Map<String, Value>,
    keys: &[&str],
) -> Result<Option<&'a str>, ApiError> {
    for k in keys {
        match m.get(*k) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(Some(s.as_str())),
            Some(other) => return Err(bad(format!("{k}: expected a string, got {other}"))),
        }
    }
    Ok(None)
}

fn req_str<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    opt_str(m, &[key])?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("missing string {key:?}")))
}

fn req_bool(m: &serde_json::Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match m.get(key) {
        Some(Value::Bool(b)) => Ok(*b),
        None => Err(bad(format!("missing boolean {key:?}"))),
        Some(other) => Err(bad(format!("{key}: expected true or false, got {other}"))),
    }
}

fn ok() -> Reply {
    Ok(Json(json!({ "ok": true })))
}

async fn state(State(sim): State<Sim>) -> Json<Value> {
    Json(sim.snapshot().await)
}

async fn add_device(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let id = opt_str(&m, &["device", "id"])?
        .ok_or_else(|| bad("missing string \"device\""))?
        .to_string();
    let kind = match opt_str(&m, &["type"])? {
        None => DeviceKind::Extension,
        Some(s) => DeviceKind::parse(s).ok_or_else(|| {
            bad(format!(
                "type {s:?}: expected extension, acd or route-point"
            ))
        })?,
    };
    let hoteling = match opt_str(&m, &["hoteling"])? {
        None => None,
        Some(s) => Some(
            Hoteling::parse(s)
                .ok_or_else(|| bad(format!("hoteling {s:?}: expected host or guest")))?,
        ),
    };
    let agent_id = opt_str(&m, &["agentID", "agent_id"])?.map(str::to_string);
    let agents = match m.get("agents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("agents: expected an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("agents: expected an array of strings")),
    };
    sim.add_device(DeviceConfig {
        id: id.clone(),
        kind,
        hoteling,
        agent_id,
        agents,
    })
    .await?;
    Ok(Json(json!({ "ok": true, "device": id })))
}

async fn remove_device(State(sim): State<Sim>, Path(device): Path<String>) -> Reply {
    sim.remove_device(&device).await?;
    ok()
}

async fn dial(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let call = sim.dial(req_str(&m, "from")?, req_str(&m, "to")?).await?;
    Ok(Json(json!({ "ok": true, "callID": call })))
}

async fn phone(
    State(sim): State<Sim>,
    Path((device, action)): Path<(String, String)>,
    b: Bytes,
) -> Reply {
    let m = body(&b)?;
    let call = opt_str(&m, &["callID", "call"])?;
    if let Some(a) = PhoneAction::parse(&action) {
        let c = sim.phone(&device, a, call).await?;
        return Ok(Json(json!({ "ok": true, "callID": c })));
    }
    match action.as_str() {
        "dial" => {
            let c = sim.dial(&device, req_str(&m, "to")?).await?;
            Ok(Json(json!({ "ok": true, "callID": c })))
        }
        "consult" => {
            let c = sim.consult(&device, req_str(&m, "to")?).await?;
            Ok(Json(json!({ "ok": true, "callID": c })))
        }
        "transfer" => {
            let c = sim.transfer(&device).await?;
            Ok(Json(json!({ "ok": true, "callID": c })))
        }
        "conference" => {
            let c = sim.conference(&device).await?;
            Ok(Json(json!({ "ok": true, "callID": c })))
        }
        "dnd" => {
            sim.set_dnd(&device, req_bool(&m, "on")?).await?;
            ok()
        }
        "forward" => {
            let kind = opt_str(&m, &["type"])?.unwrap_or("forwardImmediate");
            sim.set_forwarding(&device, kind, opt_str(&m, &["to"])?)
                .await?;
            ok()
        }
        "agent" => {
            sim.agent_state(
                &device,
                req_str(&m, "state")?,
                opt_str(&m, &["agentID", "agent"])?,
                opt_str(&m, &["reason"])?,
            )
            .await?;
            ok()
        }
        "hotdesk" => {
            // the person at desk `device` (a host) logs in as guest `guest`, or out
            match opt_str(&m, &["guest"])? {
                Some(g) => sim.hotdesk_associate(g, &device).await?,
                None => {
                    let snap = sim.snapshot().await;
                    let guest = snap["associations"]
                        .as_array()
                        .and_then(|a| a.iter().find(|x| x["host"] == device.as_str()))
                        .and_then(|x| x["guest"].as_str().map(str::to_string))
                        .ok_or_else(|| {
                            ApiError(SimError::invalid_state(format!(
                                "host {device} has no guest"
                            )))
                        })?;
                    sim.hotdesk_cancel(&guest).await?
                }
            }
            ok()
        }
        other => Err(bad(format!(
            "unknown phone action {other:?}: expected offhook, answer, hangup, hold, retrieve, dial, consult, transfer, conference, dnd, forward, agent or hotdesk"
        ))),
    }
}

async fn associate(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    sim.hotdesk_associate(req_str(&m, "guest")?, req_str(&m, "host")?)
        .await?;
    ok()
}

async fn cancel(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    sim.hotdesk_cancel(req_str(&m, "guest")?).await?;
    ok()
}

async fn drop_all(State(sim): State<Sim>) -> Reply {
    sim.drop_connections().await;
    ok()
}

async fn stall(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let on = if m.contains_key("on") {
        req_bool(&m, "on")?
    } else {
        true
    };
    sim.set_stall(on).await;
    Ok(Json(json!({ "ok": true, "stall": on })))
}

async fn delay(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let ms = m
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("missing non-negative integer \"ms\""))?;
    sim.set_delay(ms).await;
    Ok(Json(json!({ "ok": true, "delayMs": ms })))
}

async fn malformed(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let kind = opt_str(&m, &["kind"])?.unwrap_or("xml");
    let n = sim.inject_malformed_kind(kind).await?;
    Ok(Json(json!({ "ok": true, "kind": kind, "connections": n })))
}

async fn fail_next(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let family = req_str(&m, "family")?;
    let value = opt_str(&m, &["value"])?.unwrap_or("");
    let service = opt_str(&m, &["service"])?;
    let skip = match m.get("skip") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("skip: expected a count, got {v}")))?,
    };
    sim.try_fail_after(family, value, service, skip).await?;
    ok()
}

async fn monitor_stop(State(sim): State<Sim>) -> Reply {
    let n = sim.stop_monitors().await;
    Ok(Json(json!({ "ok": true, "monitors": n })))
}

async fn system_status(State(sim): State<Sim>, b: Bytes) -> Reply {
    let m = body(&b)?;
    let s = req_str(&m, "status")?;
    if let SystemStatusValue::Other(x) = SystemStatusValue::parse(s) {
        return Err(bad(format!(
            "status {x:?}: expected one of {:?}",
            SystemStatusValue::LITERALS
        )));
    }
    sim.set_system_status(s).await;
    Ok(Json(json!({ "ok": true, "systemStatus": s })))
}

async fn dual_primary(State(sim): State<Sim>) -> Json<crate::DualPrimary> {
    Json(sim.dual_primary().await)
}

async fn reset_dual_primary(State(sim): State<Sim>) -> Reply {
    sim.reset_dual_primary().await;
    ok()
}
