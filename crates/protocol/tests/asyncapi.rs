//! docs/asyncapi.yaml against this crate (docs/protocol.md, "AsyncAPI document"): the document
//! must describe exactly what the crate serves and speaks, so a request, event, attribute,
//! enumeration value or error code added here without the document fails this test.
//!
//! * Messages: every request and event of the catalogue (`RequestName::ALL`, `EventName::ALL`)
//!   that ctid serves (scopes H, C and Ctid) is a message of the document, and the document has
//!   no other message.
//! * Attributes: a request and an event with every field set (written as full struct literals,
//!   so a new field does not compile until it is added here) are encoded; their attribute names
//!   must be exactly the properties of the document's request / event schemas (all messages
//!   together), the decoder must read them back unchanged, and every value the encoder wrote must
//!   match the document's schema of that attribute in every message that has it.
//! * Enumerations and error codes: the document's enums are the crate's, in order.
//!
//! The JSON Schema subset of the document (its header) is small enough to check here with a few
//! lines; `pattern` is left to the Node check (`.ci/asyncapi.sh`), which runs a full validator.

use std::collections::BTreeSet;

use ctid_protocol::enums::*;
use ctid_protocol::{
    parse_event, parse_request, ConnId, ErrorCode, Event, EventName, InfoStatus, KvList, KvValue,
    Request, RequestName, Scope,
};
use serde_json::Value as Json;
use yaml_rust2::{Yaml, YamlLoader};

fn document() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/asyncapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/asyncapi.yaml is readable");
    YamlLoader::load_from_str(&text)
        .expect("docs/asyncapi.yaml is YAML")
        .remove(0)
}

fn served(scope: Scope) -> bool {
    matches!(scope, Scope::H | Scope::C | Scope::Ctid)
}

fn keys(y: &Yaml) -> Vec<String> {
    match y.as_hash() {
        Some(h) => h
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        None => Vec::new(),
    }
}

fn schemas(doc: &Yaml) -> &Yaml {
    &doc["components"]["schemas"]
}

fn differences(what: &str, crate_side: &BTreeSet<String>, doc_side: &BTreeSet<String>) {
    let missing: Vec<_> = crate_side.difference(doc_side).collect();
    let extra: Vec<_> = doc_side.difference(crate_side).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: in the crate but not in docs/asyncapi.yaml: {missing:?}; in docs/asyncapi.yaml but not in the crate: {extra:?}"
    );
}

#[test]
fn the_messages_are_exactly_the_served_requests_and_events() {
    let doc = document();
    let messages = &doc["components"]["messages"];
    let in_doc: BTreeSet<String> = keys(messages).into_iter().collect();
    let mut in_crate: BTreeSet<String> = RequestName::ALL
        .iter()
        .filter(|r| served(r.scope()))
        .map(|r| r.as_str().to_owned())
        .collect();
    in_crate.extend(
        EventName::ALL
            .iter()
            .filter(|e| served(e.scope()))
            .map(|e| e.as_str().to_owned()),
    );
    differences("messages", &in_crate, &in_doc);

    for name in &in_doc {
        let m = &messages[name.as_str()];
        assert_eq!(m["name"].as_str(), Some(name.as_str()), "{name}: name");
        assert_eq!(
            m["payload"]["$ref"].as_str(),
            Some(format!("#/components/schemas/{name}").as_str()),
            "{name}: payload"
        );
        let key = if name.starts_with("Request") {
            "request"
        } else {
            "event"
        };
        let s = &schemas(&doc)[name.as_str()];
        assert_eq!(s["type"].as_str(), Some("object"), "{name}: type");
        assert_eq!(
            s["properties"][key]["const"].as_str(),
            Some(name.as_str()),
            "{name}: {key} const"
        );
        let required: Vec<&str> = s["required"]
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        assert!(required.contains(&key), "{name}: {key} not required");
        if key == "request" {
            assert!(
                required.contains(&"ReferenceID"),
                "{name}: ReferenceID not required"
            );
        } else {
            for a in ["EventSequenceNumber", "time"] {
                assert!(required.contains(&a), "{name}: {a} not required");
            }
        }
    }

    // the operations carry them: requests sent, events received
    for (op, prefix) in [("sendRequest", "Request"), ("receiveEvent", "Event")] {
        let listed: BTreeSet<String> = doc["operations"][op]["messages"]
            .as_vec()
            .expect("operation messages")
            .iter()
            .filter_map(|r| r["$ref"].as_str())
            .map(|r| r.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        let want: BTreeSet<String> = in_doc
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        differences(op, &want, &listed);
    }
}

fn kv_sample() -> KvList {
    let mut nested = KvList::new();
    nested.push("t", "a");
    nested.push("t", "b");
    let mut l = KvList::new();
    l.insert_str("s", "x");
    l.insert_int("n", -5);
    l.insert("bin", KvValue::Binary(vec![0, 1, 255]));
    l.insert("nested", nested);
    l
}

const CONN: ConnId = ConnId(0x6b05_fcb0_0000_0001);

/// A request with every field set. A full struct literal on purpose: a field added to `Request`
/// does not compile here until this test (and so the document) knows it.
fn full_request() -> Request {
    Request {
        name: RequestName::RequestMakeCall,
        reference_id: Some(7),
        this_dn: Some("1001".into()),
        other_dn: Some("1002".into()),
        conn_id: Some(CONN),
        transfer_conn_id: Some(CONN),
        conference_conn_id: Some(CONN),
        register_mode: Some(RegisterMode::Private),
        control_mode: Some(ControlMode::Force),
        address_type: Some(AddressType::Dn),
        info_type: Some(AddressInfoType::DnStatus),
        this_queue: Some("3001".into()),
        agent_id: Some("2001".into()),
        agent_work_mode: Some(AgentWorkMode::AfterCallWork),
        password: Some("pw".into()),
        private_msg_id: Some(1),
        dtmf_digits: Some("12#".into()),
        forward_mode: Some(ForwardMode::OnBusy),
        make_call_type: Some(MakeCallType::Regular),
        route_type: Some(RouteType::Default),
        data_key: Some("Lang".into()),
        application_name: Some("desk-42".into()),
        session_id: Some("5f0c2a9d41b7e83c06d5a1f9b2e4c7e1".into()),
        event_sequence_number: Some(118),
        user_data: Some(kv_sample()),
        reasons: Some(kv_sample()),
        extensions: Some(kv_sample()),
    }
}

/// An event with every field set (a full struct literal, as for [`full_request`]).
fn full_event(info_status: InfoStatus) -> Event {
    Event {
        name: EventName::EventReleased,
        reference_id: Some(7),
        this_dn: Some("1001".into()),
        other_dn: Some("1002".into()),
        third_party_dn: Some("1003".into()),
        conn_id: Some(CONN),
        previous_conn_id: Some(CONN),
        transfer_conn_id: Some(CONN),
        call_id: Some("C1".into()),
        call_type: Some(CallType::Internal),
        call_state: Some(CallState::Transferred),
        this_dn_role: Some(DnRole::Origination),
        other_dn_role: Some(DnRole::Destination),
        third_party_dn_role: Some(DnRole::TransferredBy),
        ani: Some("1001".into()),
        dnis: Some("1002".into()),
        this_queue: Some("3001".into()),
        other_queue: Some("3002".into()),
        agent_id: Some("2001".into()),
        agent_work_mode: Some(AgentWorkMode::ManualIn),
        forward_mode: Some(ForwardMode::Unconditional),
        dtmf_digits: Some("12#".into()),
        info_type: Some(AddressInfoType::AddressType),
        info_status: Some(info_status),
        address_type: Some(AddressType::Dn),
        private_msg_id: Some(2),
        error_code: Some(ErrorCode::INVALID_ATTR),
        error_message: Some("ThisDN missing".into()),
        application_name: Some("csta-sim".into()),
        session_id: Some("5f0c2a9d41b7e83c06d5a1f9b2e4c7e1".into()),
        user_data: Some(kv_sample()),
        reasons: Some(kv_sample()),
        extensions: Some(kv_sample()),
        event_sequence_number: 42,
        time: "2026-11-24T17:40:00.123456Z".into(),
    }
}

/// The attribute names (with their values) the crate wrote, in order.
fn encoded(json: &str, name_key: &str) -> Vec<(String, Json)> {
    let Json::Object(m) = serde_json::from_str::<Json>(json).expect("the crate writes JSON") else {
        panic!("not an object: {json}");
    };
    m.into_iter().filter(|(k, _)| k != name_key).collect()
}

/// Every (message, attribute, attribute schema) of the document's requests or events.
fn doc_attributes<'a>(
    doc: &'a Yaml,
    prefix: &str,
    name_key: &str,
) -> Vec<(String, String, &'a Yaml)> {
    let mut out = Vec::new();
    for name in keys(&doc["components"]["messages"]) {
        if !name.starts_with(prefix) {
            continue;
        }
        let props = &schemas(doc)[name.as_str()]["properties"];
        for a in keys(props) {
            if a != name_key {
                let s = &props[a.as_str()];
                out.push((name.clone(), a, s));
            }
        }
    }
    out
}

/// Checks `v` against `s` in the document's JSON Schema subset (`pattern` aside); the reason
/// when it does not match.
fn check(doc: &Yaml, s: &Yaml, v: &Json, path: &str) -> Result<(), String> {
    if let Some(r) = s["$ref"].as_str() {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{path}: $ref {r} outside components.schemas"))?;
        let target = &schemas(doc)[name];
        if target.is_badvalue() {
            return Err(format!("{path}: $ref to a missing schema {name}"));
        }
        check(doc, target, v, path)?;
    }
    if let Some(alts) = s["oneOf"].as_vec() {
        let ok = alts
            .iter()
            .filter(|a| check(doc, a, v, path).is_ok())
            .count();
        if ok != 1 {
            return Err(format!(
                "{path}: {v} matches {ok} of the oneOf alternatives, not 1"
            ));
        }
    }
    if let Some(t) = s["type"].as_str() {
        let ok = match t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            other => return Err(format!("{path}: type {other} outside the subset")),
        };
        if !ok {
            return Err(format!("{path}: {v} is not of type {t}"));
        }
    }
    let same = |y: &Yaml| match (y, v) {
        (Yaml::String(a), Json::String(b)) => a == b,
        (Yaml::Integer(a), Json::Number(b)) => b.as_i64() == Some(*a),
        _ => false,
    };
    if let Some(e) = s["enum"].as_vec() {
        if !e.iter().any(same) {
            return Err(format!("{path}: {v} is not one of the enum"));
        }
    }
    if !s["const"].is_badvalue() && !same(&s["const"]) {
        return Err(format!("{path}: {v} is not the const"));
    }
    if let (Some(min), Some(n)) = (s["minimum"].as_i64(), v.as_i64()) {
        if n < min {
            return Err(format!("{path}: {v} below {min}"));
        }
    }
    if let (Some(max), Some(n)) = (s["maximum"].as_i64(), v.as_i64()) {
        if n > max {
            return Err(format!("{path}: {v} above {max}"));
        }
    }
    if let Some(t) = v.as_str() {
        let len = t.chars().count() as i64;
        if s["minLength"].as_i64().is_some_and(|m| len < m)
            || s["maxLength"].as_i64().is_some_and(|m| len > m)
        {
            return Err(format!("{path}: {v} has the wrong length"));
        }
    }
    if let Some(items) = v.as_array() {
        if !s["items"].is_badvalue() {
            for (i, x) in items.iter().enumerate() {
                check(doc, &s["items"], x, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Some(m) = v.as_object() {
        let props = &s["properties"];
        for k in s["required"].as_vec().into_iter().flatten() {
            let k = k.as_str().unwrap_or_default();
            if !m.contains_key(k) {
                return Err(format!("{path}: required {k} missing"));
            }
        }
        for (k, x) in m {
            let p = &props[k.as_str()];
            if !p.is_badvalue() {
                check(doc, p, x, &format!("{path}.{k}"))?;
            } else {
                match &s["additionalProperties"] {
                    Yaml::Boolean(false) => return Err(format!("{path}: {k} not allowed")),
                    Yaml::Hash(_) => {
                        check(doc, &s["additionalProperties"], x, &format!("{path}.{k}"))?
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

const KV_LIST: &str = "#/components/schemas/KVList";
const KV_VALUE: &str = "#/components/schemas/KVValue";

fn is_kv_attribute(name: &str) -> bool {
    matches!(name, "UserData" | "Reasons" | "Extensions")
}

/// The crate's attribute names equal the document's, and each value the crate wrote matches
/// the document's schema of that attribute wherever the document has it.
fn hold(doc: &Yaml, prefix: &str, name_key: &str, samples: &[Vec<(String, Json)>]) {
    let doc_attrs = doc_attributes(doc, prefix, name_key);
    let in_doc: BTreeSet<String> = doc_attrs.iter().map(|(_, a, _)| a.clone()).collect();
    let in_crate: BTreeSet<String> = samples
        .iter()
        .flat_map(|s| s.iter().map(|(k, _)| k.clone()))
        .collect();
    differences(&format!("{name_key} attributes"), &in_crate, &in_doc);
    for sample in samples {
        for (k, v) in sample {
            for (msg, _, s) in doc_attrs.iter().filter(|(_, a, _)| a == k) {
                if is_kv_attribute(k) && s["$ref"].as_str() != Some(KV_LIST) {
                    // a message's own Extensions keys (DNStatus, ...): an object-form KV list
                    let t = &schemas(doc)[s["$ref"]
                        .as_str()
                        .unwrap_or_default()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()];
                    assert!(
                        t["type"].as_str() == Some("object")
                            && t["additionalProperties"]["$ref"].as_str() == Some(KV_VALUE),
                        "{msg}.{k}: neither the KVList nor an object of KVValues"
                    );
                    continue;
                }
                if let Err(e) = check(doc, s, v, &format!("{msg}.{k}")) {
                    panic!("the crate's {k} does not match docs/asyncapi.yaml: {e}");
                }
            }
        }
    }
}

#[test]
fn request_attributes_are_the_decoders() {
    let doc = document();
    let req = full_request();
    let json = req.to_json();
    assert_eq!(
        parse_request(&json),
        Ok(req),
        "the decoder reads back every attribute"
    );
    hold(&doc, "Request", "request", &[encoded(&json, "request")]);
}

#[test]
fn event_attributes_are_the_encoders() {
    let doc = document();
    let mut samples = Vec::new();
    for status in [
        InfoStatus::AddressType(AddressType::Dn),
        InfoStatus::Number(2),
    ] {
        let ev = full_event(status);
        let json = ev.to_json();
        assert_eq!(
            parse_event(&json),
            Ok(ev),
            "the client decoder reads back every attribute"
        );
        samples.push(encoded(&json, "event"));
    }
    hold(&doc, "Event", "event", &samples);
}

fn doc_enum(doc: &Yaml, schema: &str) -> Vec<String> {
    schemas(doc)[schema]["enum"]
        .as_vec()
        .unwrap_or_else(|| panic!("docs/asyncapi.yaml has no enum {schema}"))
        .iter()
        .map(|y| match y {
            Yaml::String(s) => s.clone(),
            Yaml::Integer(i) => i.to_string(),
            other => panic!("{schema}: enum value {other:?}"),
        })
        .collect()
}

#[test]
fn enumerations_are_the_crates() {
    let doc = document();
    fn names<T: Copy>(all: &[T], f: fn(T) -> &'static str) -> Vec<String> {
        all.iter().map(|x| f(*x).to_owned()).collect()
    }
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "RegisterMode",
            names(RegisterMode::ALL, RegisterMode::as_str),
        ),
        ("ControlMode", names(ControlMode::ALL, ControlMode::as_str)),
        ("AddressType", names(AddressType::ALL, AddressType::as_str)),
        (
            "AddressInfoType",
            names(AddressInfoType::ALL, AddressInfoType::as_str),
        ),
        (
            "AddressStatus",
            names(AddressStatus::ALL, AddressStatus::as_str),
        ),
        (
            "AgentWorkMode",
            names(AgentWorkMode::ALL, AgentWorkMode::as_str),
        ),
        ("CallType", names(CallType::ALL, CallType::as_str)),
        ("DNRole", names(DnRole::ALL, DnRole::as_str)),
        ("ForwardMode", names(ForwardMode::ALL, ForwardMode::as_str)),
        (
            "MakeCallType",
            names(MakeCallType::ALL, MakeCallType::as_str),
        ),
        ("RouteType", names(RouteType::ALL, RouteType::as_str)),
        ("CallState", names(CallState::ALL, CallState::as_str)),
        ("PartyState", names(PartyState::ALL, PartyState::as_str)),
    ];
    for (schema, want) in cases {
        assert_eq!(doc_enum(&doc, schema), want, "enum {schema}");
    }
}

#[test]
fn error_codes_are_the_crates() {
    let doc = document();
    let want: Vec<String> = (0..=u16::MAX as u32)
        .filter(|n| ErrorCode(*n).symbol().is_some())
        .map(|n| n.to_string())
        .collect();
    assert_eq!(doc_enum(&doc, "ErrorCode"), want, "enum ErrorCode");
    // each code is named in the description with its symbol
    let desc = schemas(&doc)["ErrorCode"]["description"]
        .as_str()
        .unwrap_or_default();
    for n in &want {
        let sym = ErrorCode(n.parse().unwrap()).symbol().unwrap();
        assert!(
            desc.contains(&format!("{n} {sym}")),
            "ErrorCode description lacks {n} {sym}"
        );
    }
}

/// The checks above can fail: a document without one message, attribute or enum value is
/// caught (guards against a test that passes whatever the document says).
#[test]
fn the_checks_catch_a_gap() {
    let doc = document();
    let attrs = doc_attributes(&doc, "Request", "request");
    assert!(attrs
        .iter()
        .any(|(m, a, _)| m == "RequestPrivateService" && a == "PrivateMsgID"));
    let s = &schemas(&doc)["RequestRegisterAddress"]["properties"]["RegisterMode"];
    assert!(check(&doc, s, &Json::String("ModeShare".into()), "x").is_ok());
    assert!(check(&doc, s, &Json::String("Share".into()), "x").is_err());
    let kv = &schemas(&doc)["KVList"];
    assert!(check(
        &doc,
        kv,
        &serde_json::json!({"a": [["b", 1]], "c": {"$binary": "AAE="}}),
        "x"
    )
    .is_ok());
    assert!(check(&doc, kv, &serde_json::json!({"a": true}), "x").is_err());
    assert!(check(&doc, kv, &serde_json::json!({"a": 1.5}), "x").is_err());
    let rid = &schemas(&doc)["ReferenceID"];
    assert!(check(&doc, rid, &serde_json::json!(0), "x").is_err());
    assert!(check(&doc, rid, &serde_json::json!(2147483648u64), "x").is_err());
}
