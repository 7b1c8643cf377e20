//! Engine snapshots (hot standby, `docs/architecture.md`, "Snapshots"): [`Engine::snapshot`]
//! writes the engine's whole state as one JSON value, [`Engine::restore`] builds an engine
//! from it that behaves exactly as the one it was taken from, and
//! [`Engine::max_client_id`] tells a new primary where to number its connections from. A
//! hot-standby node restores the latest snapshot and applies the engine inputs recorded after
//! it; it then holds the same state, down to the next sequence number and invoke ID.
//!
//! What is in it: the configuration in force and every part (clients, DNs and monitors, hot
//! desks, calls, agents, features, answers, the CSTA request window with its queued and
//! in-flight requests and their deadlines, the link phase, the outbox, the sessions with the
//! events they keep) and the orchestrator's own fields (`now`, counters, overload). The parts'
//! state types derive `Serialize` / `Deserialize`, so a field added to a part is in the
//! snapshot without anyone remembering to add it; the orchestrator's struct is written by a
//! derive too and read back into a struct literal, which does not compile with a field left
//! out. Only two scratch buffers are left out; they are empty between [`Engine::handle`]
//! calls (see `Engine`). `tests/snapshot.rs` keeps the list of fields
//! (`tests/snapshot_fields.txt`): a new one must be listed and filled by its scenario, whose
//! every cut is restored and continued.
//!
//! The form: one JSON object, `{"ctid_snapshot": 1, "cfg": …, "clients": …, …}` — one key
//! per field of `Engine`. Deterministic: hash maps go out sorted by key, so two engines in the
//! same state give equal snapshots. Values of foreign types use those types' own JSON forms: a
//! CSTA message its [`ctid_csta::Message::to_json`] object, the configuration
//! [`EngineConfig::to_json`], and a client request or a KV list its JSON *text* (a KV list
//! keeps its order and repeated keys, which a `serde_json::Value` object would lose).
//!
//! A snapshot that cannot be read (not an object, another format, a part missing or
//! ill-typed, indexes that contradict each other) is a [`RecordError`] naming the part; never
//! a panic. So is one that does not read back as written (the restored engine's snapshot must
//! equal it): a field missing or unknown, or a value in another form, is another engine's
//! snapshot or a damaged one, not something to guess about.

use serde_json::Value;

use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::io::{ClientId, RecordError, EXPORT};

/// The snapshot format this engine writes and reads (`"ctid_snapshot": 1`).
pub const FORMAT: u64 = 1;

/// The key that carries [`FORMAT`].
pub const FORMAT_KEY: &str = "ctid_snapshot";

impl Engine {
    /// The engine's whole state as JSON (see the module documentation); [`Engine::restore`]
    /// reads it back. Two engines in the same state give equal values.
    pub fn snapshot(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => {
                m.insert(FORMAT_KEY.to_string(), Value::from(FORMAT));
                Value::Object(m)
            }
            // Cannot happen with the types here (every map key is a string or an integer);
            // said in the value, so that restoring it fails with the reason.
            Ok(other) => serde_json::json!({
                FORMAT_KEY: FORMAT,
                "error": format!("the engine serialized as {other}, not an object"),
            }),
            Err(e) => {
                tracing::error!(%e, "engine snapshot failed");
                serde_json::json!({ FORMAT_KEY: FORMAT, "error": e.to_string() })
            }
        }
    }

    /// An engine from a [`Engine::snapshot`] value. A value that is not a snapshot of this
    /// format, whose parts are missing, ill-typed or contradict each other, or that does not
    /// read back as written, is an error that names the place.
    pub fn restore(v: &Value) -> Result<Engine, RecordError> {
        let Some(m) = v.as_object() else {
            return Err(RecordError(format!(
                "snapshot: expected a JSON object, found {}",
                kind_of(v)
            )));
        };
        match m.get(FORMAT_KEY) {
            Some(f) if f.as_u64() == Some(FORMAT) => {}
            Some(f) => {
                return Err(RecordError(format!(
                    "snapshot: \"{FORMAT_KEY}\" is {f}, this engine reads format {FORMAT}"
                )))
            }
            None => {
                return Err(RecordError(format!(
                    "snapshot: no \"{FORMAT_KEY}\" key (not an engine snapshot)"
                )))
            }
        }
        if let Some(e) = m.get("error") {
            return Err(RecordError(format!(
                "snapshot: it was taken with an error: {e}"
            )));
        }
        let e = Engine::from_snapshot_parts(&Parts(m))?;
        e.check()
            .map_err(|e| RecordError(format!("snapshot: {e}")))?;
        // It must read back as written: a key missing (an optional field would read as
        // absent), one this engine does not know, or a value in another form (a number for a
        // string) is a snapshot of another engine or a damaged one.
        let again = e.snapshot();
        if &again != v {
            return Err(RecordError(format!(
                "snapshot: it does not read back as written (a field missing, unknown or in \
                 another form): {}",
                first_difference(v, &again)
            )));
        }
        Ok(e)
    }

    /// The highest client number the engine knows — connected clients, sessions (attached or
    /// detached), and every client a registration, a queued or awaited request or an agent
    /// login still names — not counting the event export ([`EXPORT`]); 0 when none. A new
    /// primary numbers its connections above it.
    pub fn max_client_id(&self) -> ClientId {
        let mut top = 0;
        self.client_ids(&mut |c| {
            if c != EXPORT {
                top = top.max(c);
            }
        });
        top
    }
}

/// The parts of a snapshot object, read by key.
pub(crate) struct Parts<'a>(&'a serde_json::Map<String, Value>);

impl Parts<'_> {
    /// Part `key`, read as a `T`; missing or ill-typed: an error naming it.
    pub(crate) fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, RecordError> {
        let v = self
            .0
            .get(key)
            .ok_or_else(|| RecordError(format!("snapshot: part \"{key}\" missing")))?;
        T::deserialize(v).map_err(|e| RecordError(format!("snapshot: part \"{key}\": {e}")))
    }

    /// The configuration (its own JSON form).
    pub(crate) fn config(&self, key: &str) -> Result<EngineConfig, RecordError> {
        let v = self
            .0
            .get(key)
            .ok_or_else(|| RecordError(format!("snapshot: part \"{key}\" missing")))?;
        EngineConfig::from_json(v)
            .map_err(|e| RecordError(format!("snapshot: part \"{key}\": {e}")))
    }
}

/// The first place two JSON values differ: the path, then the value in `a` and in `b` there
/// (`(absent)` for a missing key or item).
pub fn first_difference(a: &Value, b: &Value) -> String {
    fn show(v: Option<&Value>) -> String {
        let mut s = v.map_or_else(|| "(absent)".to_string(), Value::to_string);
        if s.len() > 200 {
            let mut at = 200;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
            s.push('…');
        }
        s
    }
    fn walk(a: &Value, b: &Value, path: &mut String) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    let found = match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(p, q, path),
                        (p, q) => Some(format!("{path}: {} / {}", show(p), show(q))),
                    };
                    if found.is_some() {
                        return found;
                    }
                    path.truncate(len);
                }
                None
            }
            (Value::Array(x), Value::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let found = match (x.get(i), y.get(i)) {
                        (Some(p), Some(q)) => walk(p, q, path),
                        (p, q) => Some(format!("{path}: {} / {}", show(p), show(q))),
                    };
                    if found.is_some() {
                        return found;
                    }
                    path.truncate(len);
                }
                None
            }
            _ if a == b => None,
            _ => Some(format!("{path}: {} / {}", show(Some(a)), show(Some(b)))),
        }
    }
    walk(a, b, &mut String::new()).unwrap_or_else(|| "(nowhere)".to_string())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `#[serde(with = …)]` adapters for the types that have a JSON form of their own.
pub(crate) mod with {
    use std::collections::{BTreeMap, HashMap, VecDeque};
    use std::hash::BuildHasher;

    use ctid_csta::json::JsonValue;
    use ctid_csta::{InvokeId, Message, SnapshotDeviceResponseInfo};
    use ctid_protocol::{KvList, Request};
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::answers::Lane;
    use crate::io::ClientId;

    /// A client request as its JSON text ([`Request::to_json`] / `parse_request`).
    struct ReqRef<'a>(&'a Request);

    impl Serialize for ReqRef<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&self.0.to_json())
        }
    }

    struct ReqOwned(Request);

    impl<'de> Deserialize<'de> for ReqOwned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            parse_request(&text).map(ReqOwned).map_err(D::Error::custom)
        }
    }

    /// A request read back from its text. One made in-process without a ReferenceID (the
    /// wire's requests always have one) is read with a stand-in that is then taken off.
    fn parse_request(text: &str) -> Result<Request, String> {
        let first = match ctid_protocol::parse_request(text) {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        let without_id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.is_object() && v.get("ReferenceID").is_none());
        if without_id && text.starts_with('{') {
            let patched = format!("{{\"ReferenceID\":1,{}", &text[1..]);
            if let Ok(mut r) = ctid_protocol::parse_request(&patched) {
                r.reference_id = None;
                return Ok(r);
            }
        }
        Err(format!(
            "a client request that does not read back: {}",
            first.message
        ))
    }

    /// A [`Request`] field.
    pub mod request {
        use super::*;
        pub fn serialize<S: Serializer>(r: &Request, s: S) -> Result<S::Ok, S::Error> {
            ReqRef(r).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
            ReqOwned::deserialize(d).map(|r| r.0)
        }
    }

    /// `Vec<(ClientId, Request)>` (registrations waiting for a monitor).
    pub mod client_requests {
        use super::*;
        pub fn serialize<S: Serializer>(
            v: &[(ClientId, Request)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|(c, r)| (c, ReqRef(r))))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(ClientId, Request)>, D::Error> {
            let v = Vec::<(ClientId, ReqOwned)>::deserialize(d)?;
            Ok(v.into_iter().map(|(c, r)| (c, r.0)).collect())
        }
    }

    /// `BTreeMap<String, VecDeque<(ClientId, Request)>>` (private services queued per guest).
    pub mod queued_by_dn {
        use super::*;
        type T = BTreeMap<String, VecDeque<(ClientId, Request)>>;
        pub fn serialize<S: Serializer>(m: &T, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(m.iter().map(|(k, q)| {
                let q: Vec<_> = q.iter().map(|(c, r)| (c, ReqRef(r))).collect();
                (k, q)
            }))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
            let m = BTreeMap::<String, Vec<(ClientId, ReqOwned)>>::deserialize(d)?;
            Ok(m.into_iter()
                .map(|(k, q)| (k, q.into_iter().map(|(c, r)| (c, r.0)).collect()))
                .collect())
        }
    }

    /// `BTreeMap<Lane, VecDeque<(u64, ClientId, Request)>>` (requests waiting for a call or
    /// device): an array of `[lane, [[since, client, request], …]]`, by lane.
    pub mod lanes {
        use super::*;
        type T = BTreeMap<Lane, VecDeque<(u64, ClientId, Request)>>;
        pub fn serialize<S: Serializer>(m: &T, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(m.iter().map(|(l, q)| {
                let q: Vec<_> = q.iter().map(|(t, c, r)| (t, c, ReqRef(r))).collect();
                (l, q)
            }))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
            let v = Vec::<(Lane, Vec<(u64, ClientId, ReqOwned)>)>::deserialize(d)?;
            let mut m = T::new();
            for (l, q) in v {
                let q = q.into_iter().map(|(t, c, r)| (t, c, r.0)).collect();
                if m.insert(l.clone(), q).is_some() {
                    return Err(D::Error::custom(format!("lane {l:?} given twice")));
                }
            }
            Ok(m)
        }
    }

    /// A [`KvList`] as its JSON text (order and repeated keys kept).
    pub mod kv {
        use super::*;
        pub fn serialize<S: Serializer>(k: &KvList, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&k.to_json())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KvList, D::Error> {
            let text = String::deserialize(d)?;
            KvList::from_json(&text).map_err(D::Error::custom)
        }
    }

    /// An `Option<Message>` (or `Option<&Message>` to write), a CSTA message as its JSON
    /// object.
    pub mod opt_message {
        use super::*;
        pub fn serialize<S: Serializer, M: std::borrow::Borrow<Message>>(
            m: &Option<M>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            m.as_ref().map(|m| m.borrow().to_json()).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Message>, D::Error> {
            match Option::<serde_json::Value>::deserialize(d)? {
                None => Ok(None),
                Some(v) => Message::from_json(&v).map(Some).map_err(D::Error::custom),
            }
        }
    }

    /// `Option<(InvokeId, u64)>`: a sent request's invoke ID and deadline.
    pub mod sent {
        use super::*;
        pub fn serialize<S: Serializer>(
            v: &Option<(InvokeId, u64)>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            v.map(|(id, at)| (id.get(), at)).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<(InvokeId, u64)>, D::Error> {
            match Option::<(u16, u64)>::deserialize(d)? {
                None => Ok(None),
                Some((n, at)) => InvokeId::new(n)
                    .map(|id| Some((id, at)))
                    .ok_or_else(|| D::Error::custom(format!("invoke ID {n} is not 0..=9999"))),
            }
        }
    }

    /// The `internal-dn-pattern` as its text.
    pub mod pattern {
        use super::*;
        use crate::config::DnPattern;
        pub fn serialize<S: Serializer>(p: &DnPattern, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(p.as_str())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DnPattern, D::Error> {
            let text = String::deserialize(d)?;
            DnPattern::new(&text).map_err(D::Error::custom)
        }
    }

    /// The configuration in its own JSON form ([`crate::EngineConfig::to_json`]).
    pub mod config {
        use super::*;
        use crate::config::EngineConfig;
        pub fn serialize<S: Serializer>(c: &EngineConfig, s: S) -> Result<S::Ok, S::Error> {
            c.to_json().serialize(s)
        }
    }

    /// Multi-segment SnapshotDevice answers in progress: serviceCrossRefID → (DN, items), each
    /// item in the CSTA JSON form.
    pub mod segments {
        use super::*;
        type T = BTreeMap<String, (String, Vec<SnapshotDeviceResponseInfo>)>;
        const ITEM: &str = "snapshotDeviceResponseInfo";
        pub fn serialize<S: Serializer>(m: &T, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(m.iter().map(|(x, (dn, items))| {
                let items: Vec<_> = items.iter().map(JsonValue::to_json).collect();
                (x, (dn, items))
            }))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
            let m = BTreeMap::<String, (String, Vec<serde_json::Value>)>::deserialize(d)?;
            let mut out = T::new();
            for (x, (dn, items)) in m {
                let items = items
                    .iter()
                    .map(|v| SnapshotDeviceResponseInfo::from_json(v, ITEM))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(D::Error::custom)?;
                out.insert(x, (dn, items));
            }
            Ok(out)
        }
    }

    /// A hash map, written sorted by key (a hash map's own order depends on its history).
    pub mod sorted {
        use super::*;
        pub fn serialize<K, V, H, S>(m: &HashMap<K, V, H>, s: S) -> Result<S::Ok, S::Error>
        where
            K: Ord + Serialize,
            V: Serialize,
            S: Serializer,
        {
            let sorted: BTreeMap<&K, &V> = m.iter().collect();
            if sorted.len() != m.len() {
                return Err(S::Error::custom("a hash map with keys equal by Ord"));
            }
            sorted.serialize(s)
        }
        pub fn deserialize<'de, K, V, H, D>(d: D) -> Result<HashMap<K, V, H>, D::Error>
        where
            K: Ord + std::hash::Hash + Deserialize<'de>,
            V: Deserialize<'de>,
            H: BuildHasher + Default,
            D: Deserializer<'de>,
        {
            let m = BTreeMap::<K, V>::deserialize(d)?;
            let mut out = HashMap::with_capacity_and_hasher(m.len(), H::default());
            out.extend(m);
            Ok(out)
        }
    }
}
