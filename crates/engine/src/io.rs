//! What goes into the engine and what comes out: [`Now`], [`Input`], [`Output`], and their JSON
//! form, one object per input or output, which is what a recording holds
//! (`docs/architecture.md`, "Recording and replay"). Everything here is a value: no clock, no IO.

use std::sync::Arc;

use ctid_csta::{InvokeId, Message};
use ctid_protocol::{AddressType, ErrorCode, Event, Request};
use serde_json::{json, Map, Value};

use crate::config::{
    AgentLoginConfig, AniDistribution, DnConfig, DnPattern, EngineConfig, LinkOptions, RegisterFlag,
};

/// A client session, numbered by the server.
pub type ClientId = u64;
/// The engine's own handle on one CSTA request it queued (not the wire's invoke ID).
pub type Tag = u64;

/// The time, given by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Now {
    /// Monotonic milliseconds (deadlines).
    pub mono_ms: u64,
    /// Wall clock, microseconds since the Unix epoch (event `time`, ConnID high bits).
    pub unix_micros: u64,
}

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Input {
    /// A client session opened.
    ClientConnected { client: ClientId, peer: String },
    /// A client session closed (a clean close, 1000: the session ends).
    ClientDisconnected { client: ClientId },
    /// A client connected and was given a resumable session (docs/protocol.md §6.9):
    /// `session_id` is random (the server draws it), `owner` the token name ("" without
    /// authentication).
    SessionOpened {
        client: ClientId,
        peer: String,
        session_id: String,
        owner: String,
    },
    /// A client's connection went without a clean close: its session is kept for
    /// `resume-window` (a client without a resumable session is disconnected).
    ClientDetached { client: ClientId },
    /// A text frame from a client (one JSON request) that the server did not decode itself.
    ClientText { client: ClientId, text: String },
    /// A decoded request.
    ClientRequest { client: ClientId, request: Request },
    /// A client frame the server could not take (e.g. a binary frame): answer EventError.
    ClientInvalid {
        client: ClientId,
        code: ErrorCode,
        message: String,
        /// The request's ReferenceID, when the frame was a readable request.
        reference_id: Option<u32>,
    },
    /// The link is operational (session up, system status normal): its name, configured
    /// priority and CSTA edition (EventLinkConnected's `LinkPriority` and `Edition`; `None` in
    /// recordings made before they were recorded).
    LinkUp {
        name: String,
        priority: Option<i64>,
        edition: Option<String>,
    },
    /// The link is lost (or system status disabled).
    LinkDown { reason: String },
    /// The link stays operational but events may be missing (system status `messagesLost`):
    /// the session stopped the monitors it held; re-monitor and catch up without link events
    /// (`docs/configuration.md`, system status).
    Resync { reason: String },
    /// The Connector is overloaded (`overloadReached`: the request window is halved) or no
    /// longer (`overloadRelieved`).
    Overload { reached: bool },
    /// The answer (response or error) to the request sent with this invoke ID.
    CstaAnswer {
        invoke_id: InvokeId,
        message: Message,
    },
    /// The answer to this invoke ID was not well-formed XML (T-Library 1102).
    CstaAnswerMalformed { invoke_id: InvokeId, reason: String },
    /// An unsolicited event from the Connector.
    CstaEvent { message: Message },
    /// A request from the Connector (e.g. MonitorStop); answer with `invoke_id`.
    CstaRequest {
        invoke_id: InvokeId,
        message: Message,
    },
    /// Time passed: check deadlines (the server sends it when [`crate::Engine::poll_timeout`]
    /// says so).
    Tick,
    /// A new configuration (reload): added DNs are monitored, removed DNs are unregistered with
    /// an unsolicited EventUnregistered, options apply from now on.
    Reconfigure(Box<EngineConfig>),
}

/// The event export's addressee (`export-events`, docs/operations.md "Event export"): as if
/// registered on every DN without asking for a monitor, so every event of every monitored DN
/// and every link event is addressed to it too (the copy without ReferenceID).
pub const EXPORT: ClientId = ClientId::MAX;

/// Something to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this event to each client listed (shared: the same event is kept for a resume).
    Event {
        to: Vec<ClientId>,
        event: Arc<Event>,
        /// The event's JSON, written once by the outbox: the text that is sent, kept for a
        /// resume and exported (docs/architecture.md, "The data path").
        text: Arc<str>,
    },
    /// The connection opened as client `connection` now carries session `session` (a resume):
    /// route its frames as `session`'s and `session`'s events to it; a connection that carried
    /// `session` until now is closed (4001).
    Rebind {
        connection: ClientId,
        session: ClientId,
    },
    /// Close the connection carrying `client` with this WebSocket close code and reason.
    Close {
        client: ClientId,
        code: u16,
        reason: String,
    },
    /// Send a CSTA request with this invoke ID (from the engine's range, see
    /// [`crate::window::ENGINE_INVOKE_IDS`]); its answer comes back as [`Input::CstaAnswer`].
    CstaRequest {
        invoke_id: InvokeId,
        message: Message,
    },
    /// Answer a Connector request.
    CstaAnswer {
        invoke_id: InvokeId,
        message: Message,
    },
}

/// A recording line, an input or an output that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

fn bad(what: &str, v: &Value) -> RecordError {
    let mut s = v.to_string();
    if s.len() > 120 {
        s.truncate(120);
        s.push('…');
    }
    RecordError(format!("expected {what}, found {s}"))
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, RecordError> {
    v.get(key)
        .ok_or_else(|| RecordError(format!("key \"{key}\" missing in {v}")))
}

fn u64_of(v: &Value, key: &str) -> Result<u64, RecordError> {
    let x = field(v, key)?;
    x.as_u64()
        .ok_or_else(|| bad(&format!("\"{key}\" an integer"), x))
}

fn str_of(v: &Value, key: &str) -> Result<String, RecordError> {
    let x = field(v, key)?;
    x.as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(&format!("\"{key}\" a string"), x))
}

fn invoke_of(v: &Value) -> Result<InvokeId, RecordError> {
    let n = u64_of(v, "invoke_id")?;
    u16::try_from(n)
        .ok()
        .and_then(InvokeId::new)
        .ok_or_else(|| RecordError(format!("invoke_id {n} is not 0..=9999")))
}

fn message_of(v: &Value) -> Result<Message, RecordError> {
    ctid_csta::json::from_json(field(v, "message")?).map_err(|e| RecordError(e.to_string()))
}

fn text_json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

impl Now {
    /// `[mono_ms, unix_micros]`.
    pub fn to_json(self) -> Value {
        json!([self.mono_ms, self.unix_micros])
    }
    /// From `[mono_ms, unix_micros]`.
    pub fn from_json(v: &Value) -> Result<Now, RecordError> {
        match v.as_array().map(Vec::as_slice) {
            Some([m, u]) => match (m.as_u64(), u.as_u64()) {
                (Some(mono_ms), Some(unix_micros)) => Ok(Now {
                    mono_ms,
                    unix_micros,
                }),
                _ => Err(bad("[mono_ms, unix_micros]", v)),
            },
            _ => Err(bad("[mono_ms, unix_micros]", v)),
        }
    }
}

impl Input {
    /// The input's name (its `in` key in a recording).
    pub fn name(&self) -> &'static str {
        match self {
            Input::ClientConnected { .. } => "ClientConnected",
            Input::ClientDisconnected { .. } => "ClientDisconnected",
            Input::SessionOpened { .. } => "SessionOpened",
            Input::ClientDetached { .. } => "ClientDetached",
            Input::ClientText { .. } => "ClientText",
            Input::ClientRequest { .. } => "ClientRequest",
            Input::ClientInvalid { .. } => "ClientInvalid",
            Input::LinkUp { .. } => "LinkUp",
            Input::LinkDown { .. } => "LinkDown",
            Input::Resync { .. } => "Resync",
            Input::Overload { .. } => "Overload",
            Input::CstaAnswer { .. } => "CstaAnswer",
            Input::CstaAnswerMalformed { .. } => "CstaAnswerMalformed",
            Input::CstaEvent { .. } => "CstaEvent",
            Input::CstaRequest { .. } => "CstaRequest",
            Input::Tick => "Tick",
            Input::Reconfigure(_) => "Reconfigure",
        }
    }

    /// The JSON object of this input: `{"in": NAME, …its fields}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("in".into(), Value::from(self.name()));
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        match self {
            Input::ClientConnected { client, peer } => {
                put("client", json!(client));
                put("peer", json!(peer));
            }
            Input::ClientDisconnected { client } | Input::ClientDetached { client } => {
                put("client", json!(client))
            }
            Input::SessionOpened {
                client,
                peer,
                session_id,
                owner,
            } => {
                put("client", json!(client));
                put("peer", json!(peer));
                put("session_id", json!(session_id));
                put("owner", json!(owner));
            }
            Input::ClientText { client, text } => {
                put("client", json!(client));
                put("text", json!(text));
            }
            Input::ClientRequest { client, request } => {
                put("client", json!(client));
                // As text: a JSON object would lose a KV list's order and repeated keys.
                put("request", Value::String(request.to_json()));
            }
            Input::ClientInvalid {
                client,
                code,
                message,
                reference_id,
            } => {
                put("client", json!(client));
                put("code", json!(code.0));
                put("message", json!(message));
                if let Some(r) = reference_id {
                    put("reference_id", json!(r));
                }
            }
            Input::LinkUp {
                name,
                priority,
                edition,
            } => {
                put("name", json!(name));
                if let Some(p) = priority {
                    put("priority", json!(p));
                }
                if let Some(e) = edition {
                    put("edition", json!(e));
                }
            }
            Input::LinkDown { reason } | Input::Resync { reason } => put("reason", json!(reason)),
            Input::Overload { reached } => put("reached", json!(reached)),
            Input::CstaAnswer { invoke_id, message }
            | Input::CstaRequest { invoke_id, message } => {
                put("invoke_id", json!(invoke_id.get()));
                put("message", message.to_json());
            }
            Input::CstaAnswerMalformed { invoke_id, reason } => {
                put("invoke_id", json!(invoke_id.get()));
                put("reason", json!(reason));
            }
            Input::CstaEvent { message } => put("message", message.to_json()),
            Input::Tick => {}
            Input::Reconfigure(cfg) => put("config", cfg.to_json()),
        }
        Value::Object(m)
    }

    /// An input from its JSON object.
    pub fn from_json(v: &Value) -> Result<Input, RecordError> {
        let client = || u64_of(v, "client");
        Ok(match str_of(v, "in")?.as_str() {
            "ClientConnected" => Input::ClientConnected {
                client: client()?,
                peer: str_of(v, "peer")?,
            },
            "ClientDisconnected" => Input::ClientDisconnected { client: client()? },
            "ClientDetached" => Input::ClientDetached { client: client()? },
            "SessionOpened" => Input::SessionOpened {
                client: client()?,
                peer: str_of(v, "peer")?,
                session_id: str_of(v, "session_id")?,
                owner: str_of(v, "owner")?,
            },
            "ClientText" => Input::ClientText {
                client: client()?,
                text: str_of(v, "text")?,
            },
            "ClientRequest" => Input::ClientRequest {
                client: client()?,
                // Text since hot standby; an object in older recordings.
                request: ctid_protocol::parse_request(&match field(v, "request")? {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .map_err(|e| RecordError(format!("request: {}", e.message)))?,
            },
            "ClientInvalid" => Input::ClientInvalid {
                client: client()?,
                code: ErrorCode(
                    u32::try_from(u64_of(v, "code")?)
                        .map_err(|_| bad("a 32-bit code", field(v, "code").unwrap_or(v)))?,
                ),
                message: str_of(v, "message")?,
                reference_id: match v.get("reference_id") {
                    None | Some(Value::Null) => None,
                    Some(r) => Some(
                        r.as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| bad("a ReferenceID", r))?,
                    ),
                },
            },
            "LinkUp" => Input::LinkUp {
                name: str_of(v, "name")?,
                priority: match v.get("priority") {
                    None | Some(Value::Null) => None,
                    Some(p) => Some(p.as_i64().ok_or_else(|| bad("an integer priority", p))?),
                },
                edition: match v.get("edition") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(str_of(v, "edition")?),
                },
            },
            "LinkDown" => Input::LinkDown {
                reason: str_of(v, "reason")?,
            },
            "Resync" => Input::Resync {
                reason: str_of(v, "reason")?,
            },
            "Overload" => Input::Overload {
                reached: field(v, "reached")?
                    .as_bool()
                    .ok_or_else(|| bad("\"reached\" a boolean", v))?,
            },
            "CstaAnswer" => Input::CstaAnswer {
                invoke_id: invoke_of(v)?,
                message: message_of(v)?,
            },
            "CstaAnswerMalformed" => Input::CstaAnswerMalformed {
                invoke_id: invoke_of(v)?,
                reason: str_of(v, "reason")?,
            },
            "CstaEvent" => Input::CstaEvent {
                message: message_of(v)?,
            },
            "CstaRequest" => Input::CstaRequest {
                invoke_id: invoke_of(v)?,
                message: message_of(v)?,
            },
            "Tick" => Input::Tick,
            "Reconfigure" => {
                Input::Reconfigure(Box::new(EngineConfig::from_json(field(v, "config")?)?))
            }
            other => return Err(RecordError(format!("unknown input {other:?}"))),
        })
    }
}

impl Output {
    /// The JSON object of this output: `{"out": NAME, …}`. Two outputs are the same exactly
    /// when their JSON texts are (this is what replay compares).
    pub fn to_json(&self) -> Value {
        match self {
            Output::Event { to, text, .. } => json!({
                "out": "Event",
                "to": to,
                "event": text_json(text.to_string()),
            }),
            Output::Rebind {
                connection,
                session,
            } => json!({
                "out": "Rebind",
                "connection": connection,
                "session": session,
            }),
            Output::Close {
                client,
                code,
                reason,
            } => json!({
                "out": "Close",
                "client": client,
                "code": code,
                "reason": reason,
            }),
            Output::CstaRequest { invoke_id, message } => json!({
                "out": "CstaRequest",
                "invoke_id": invoke_id.get(),
                "message": message.to_json(),
            }),
            Output::CstaAnswer { invoke_id, message } => json!({
                "out": "CstaAnswer",
                "invoke_id": invoke_id.get(),
                "message": message.to_json(),
            }),
        }
    }
}

/// The configuration as JSON: the header of a recording.
impl EngineConfig {
    /// The JSON object of the configuration (the header of a recording).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dns": self.dns.iter().map(|d| serde_json::json!([d.number, d.dn_type.as_str(), d.register.as_str()])).collect::<Vec<_>>(),
            "agent_logins": self.agent_logins.iter().map(|a| serde_json::json!([a.agent_id, a.password])).collect::<Vec<_>>(),
            "accept_dn_types": self.accept_dn_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "request_timeout_ms": self.request_timeout_ms,
            "max_outstanding": self.max_outstanding,
            "resync_timeout_ms": self.resync_timeout_ms,
            "hotdesk_enabled": self.hotdesk_enabled,
            "server_name": self.server_name,
            "call_rq_gap_ms": self.call_rq_gap_ms,
            "user_data_limit": self.user_data_limit,
            "agent_logout_on_unregister": self.agent_logout_on_unregister,
            "device_rq_gap_ms": self.device_rq_gap_ms,
            "ani_distribution": self.ani_distribution.as_str(),
            "internal_dn_pattern": self.internal_dn_pattern.as_str(),
            "background_processing": self.background_processing,
            "resume_window_ms": self.resume_window_ms,
            "resume_buffer_bytes": self.resume_buffer_bytes,
            "resume_keep_attached_ms": self.resume_keep_attached_ms,
            "export_events": self.export_events,
            "links": self.links.iter().map(|l| serde_json::json!({
                "name": l.name,
                "request_timeout_ms": l.request_timeout_ms,
                "max_outstanding": l.max_outstanding,
                "resync_timeout_ms": l.resync_timeout_ms,
                "hotdesk_enabled": l.hotdesk_enabled,
                "call_rq_gap_ms": l.call_rq_gap_ms,
                "device_rq_gap_ms": l.device_rq_gap_ms,
            })).collect::<Vec<_>>(),
        })
    }

    /// A configuration from [`EngineConfig::to_json`]'s object; missing keys take defaults.
    pub fn from_json(v: &serde_json::Value) -> Result<EngineConfig, RecordError> {
        let err = |k: &str| RecordError(format!("engine configuration: bad or missing \"{k}\""));
        let mut c = EngineConfig::default();
        let ty = |s: &serde_json::Value| s.as_str().and_then(AddressType::from_name);
        for d in v["dns"].as_array().ok_or_else(|| err("dns"))? {
            let (Some(n), Some(t), Some(r)) = (
                d[0].as_str(),
                ty(&d[1]),
                d[2].as_str().and_then(RegisterFlag::from_name),
            ) else {
                return Err(err("dns"));
            };
            c.dns.push(DnConfig {
                number: n.to_string(),
                dn_type: t,
                register: r,
            });
        }
        for a in v["agent_logins"]
            .as_array()
            .ok_or_else(|| err("agent_logins"))?
        {
            c.agent_logins.push(AgentLoginConfig {
                agent_id: a[0]
                    .as_str()
                    .ok_or_else(|| err("agent_logins"))?
                    .to_string(),
                password: a[1].as_str().map(str::to_string),
            });
        }
        if let Some(ts) = v.get("accept_dn_types") {
            c.accept_dn_types = ts
                .as_array()
                .ok_or_else(|| err("accept_dn_types"))?
                .iter()
                .map(|t| ty(t).ok_or_else(|| err("accept_dn_types")))
                .collect::<Result<_, _>>()?;
        }
        let num = |k: &str, d: u64| match v.get(k) {
            None => Ok(d),
            Some(x) => x.as_u64().ok_or_else(|| err(k)),
        };
        let flag = |k: &str, d: bool| match v.get(k) {
            None => Ok(d),
            Some(x) => x.as_bool().ok_or_else(|| err(k)),
        };
        c.request_timeout_ms = num("request_timeout_ms", c.request_timeout_ms)?;
        c.max_outstanding = num("max_outstanding", c.max_outstanding as u64)? as usize;
        c.resync_timeout_ms = num("resync_timeout_ms", c.resync_timeout_ms)?;
        c.hotdesk_enabled = flag("hotdesk_enabled", c.hotdesk_enabled)?;
        if let Some(s) = v.get("server_name") {
            c.server_name = s.as_str().ok_or_else(|| err("server_name"))?.to_string();
        }
        c.call_rq_gap_ms = num("call_rq_gap_ms", c.call_rq_gap_ms)?;
        c.user_data_limit = num("user_data_limit", c.user_data_limit as u64)? as usize;
        c.agent_logout_on_unregister =
            flag("agent_logout_on_unregister", c.agent_logout_on_unregister)?;
        // Recordings made before device-rq-gap existed did not hold requests back by device.
        c.device_rq_gap_ms = num("device_rq_gap_ms", 0)?;
        // Recordings made before ani-distribution existed: ANI as `all-calls` gives it.
        c.ani_distribution = AniDistribution::AllCalls;
        if let Some(a) = v.get("ani_distribution") {
            c.ani_distribution = a
                .as_str()
                .and_then(AniDistribution::from_name)
                .ok_or_else(|| err("ani_distribution"))?;
        }
        if let Some(p) = v.get("internal_dn_pattern") {
            c.internal_dn_pattern = p
                .as_str()
                .and_then(|p| DnPattern::new(p).ok())
                .ok_or_else(|| err("internal_dn_pattern"))?;
        }
        c.background_processing = flag("background_processing", c.background_processing)?;
        c.resume_window_ms = num("resume_window_ms", c.resume_window_ms)?;
        c.resume_buffer_bytes = num("resume_buffer_bytes", c.resume_buffer_bytes as u64)? as usize;
        c.resume_keep_attached_ms = num("resume_keep_attached_ms", c.resume_keep_attached_ms)?;
        c.export_events = flag("export_events", c.export_events)?;
        if let Some(ls) = v.get("links") {
            for l in ls.as_array().ok_or_else(|| err("links"))? {
                let n = |k: &str| {
                    l.get(k)
                        .and_then(|x| x.as_u64())
                        .ok_or_else(|| err("links"))
                };
                c.links.push(LinkOptions {
                    name: l
                        .get("name")
                        .and_then(|x| x.as_str())
                        .ok_or_else(|| err("links"))?
                        .to_string(),
                    request_timeout_ms: n("request_timeout_ms")?,
                    max_outstanding: n("max_outstanding")? as usize,
                    resync_timeout_ms: n("resync_timeout_ms")?,
                    hotdesk_enabled: l
                        .get("hotdesk_enabled")
                        .and_then(|x| x.as_bool())
                        .ok_or_else(|| err("links"))?,
                    call_rq_gap_ms: n("call_rq_gap_ms")?,
                    device_rq_gap_ms: n("device_rq_gap_ms")?,
                });
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_and_overload_round_trip() {
        let r = Input::Resync {
            reason: "messagesLost".into(),
        };
        let v = r.to_json();
        assert_eq!(v, json!({"in": "Resync", "reason": "messagesLost"}));
        assert!(
            matches!(Input::from_json(&v).unwrap(), Input::Resync { reason } if reason == "messagesLost")
        );
        let o = Input::Overload { reached: true };
        let v = o.to_json();
        assert_eq!(v, json!({"in": "Overload", "reached": true}));
        assert!(matches!(
            Input::from_json(&v).unwrap(),
            Input::Overload { reached: true }
        ));
        assert!(Input::from_json(&json!({"in": "Overload"})).is_err());
    }

    #[test]
    fn old_headers_hold_no_device_gap() {
        let old = json!({"dns": [], "agent_logins": []});
        let c = EngineConfig::from_json(&old).unwrap();
        assert_eq!(c.device_rq_gap_ms, 0);
        assert!(c.links.is_empty());
        assert_eq!(c.ani_distribution, AniDistribution::AllCalls);
    }

    #[test]
    fn link_up_keeps_priority_and_edition_and_reads_old_recordings() {
        let up = Input::LinkUp {
            name: "connector-1".into(),
            priority: Some(2),
            edition: Some("ed3".into()),
        };
        let v = up.to_json();
        assert_eq!(v["priority"], json!(2));
        assert_eq!(v["edition"], json!("ed3"));
        match Input::from_json(&v).unwrap() {
            Input::LinkUp {
                name,
                priority,
                edition,
            } => assert_eq!(
                (name.as_str(), priority, edition.as_deref()),
                ("connector-1", Some(2), Some("ed3"))
            ),
            other => panic!("{other:?}"),
        }
        // A recording made before the fields existed.
        let old = json!({"in": "LinkUp", "name": "csta-sim"});
        match Input::from_json(&old).unwrap() {
            Input::LinkUp {
                priority, edition, ..
            } => assert_eq!((priority, edition), (None, None)),
            other => panic!("{other:?}"),
        }
    }
}
