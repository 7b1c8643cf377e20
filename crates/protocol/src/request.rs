//! Client requests: the typed [`Request`], its decoding with T-Library error codes
//! ([`parse_request`]) and its encoding ([`Request::to_json`]).

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::attrs::{self, AttrResult};
use crate::enums::*;
use crate::error::{ErrorCode, RequestError};
use crate::json::Value;
use crate::kv::KvList;
use crate::names::RequestName;
use crate::types::ConnId;

/// A client request. Every attribute is optional at this level; which ones a request needs is
/// checked by the server (docs/protocol.md, §2.1). JSON names are given per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `request`: the message name.
    pub name: RequestName,
    /// `ReferenceID`: 1..=2^31−1. Required on the wire; `None` only while a client builds a
    /// request (the client library assigns one before sending).
    pub reference_id: Option<u32>,
    /// `ThisDN` (DN syntax checked when decoding).
    pub this_dn: Option<String>,
    /// `OtherDN`.
    pub other_dn: Option<String>,
    /// `ConnID`.
    pub conn_id: Option<ConnId>,
    /// `TransferConnID`.
    pub transfer_conn_id: Option<ConnId>,
    /// `ConferenceConnID`.
    pub conference_conn_id: Option<ConnId>,
    /// `RegisterMode` (RequestRegisterAddress).
    pub register_mode: Option<RegisterMode>,
    /// `ControlMode` (RequestRegisterAddress).
    pub control_mode: Option<ControlMode>,
    /// `AddressType` (RequestRegisterAddress, RequestQueryAddress).
    pub address_type: Option<AddressType>,
    /// `InfoType` (RequestQueryAddress).
    pub info_type: Option<AddressInfoType>,
    /// `ThisQueue`.
    pub this_queue: Option<String>,
    /// `AgentID`.
    pub agent_id: Option<String>,
    /// `AgentWorkMode`.
    pub agent_work_mode: Option<AgentWorkMode>,
    /// `Password` (RequestAgentLogin).
    pub password: Option<String>,
    /// `PrivateMsgID` (RequestPrivateService): 0..=2^31−1.
    pub private_msg_id: Option<u32>,
    /// `DTMFDigits` (RequestSendDTMF).
    pub dtmf_digits: Option<String>,
    /// `ForwardMode` (RequestCallForwardSet/Cancel).
    pub forward_mode: Option<ForwardMode>,
    /// `MakeCallType` (RequestMakeCall).
    pub make_call_type: Option<MakeCallType>,
    /// `RouteType` (RequestRouteCall).
    pub route_type: Option<RouteType>,
    /// `DataKey` (RequestDeletePair).
    pub data_key: Option<String>,
    /// `ApplicationName` (RequestRegisterClient).
    pub application_name: Option<String>,
    /// `SessionID` (RequestResumeSession).
    pub session_id: Option<String>,
    /// `EventSequenceNumber` (RequestResumeSession: the last one the client received).
    pub event_sequence_number: Option<u64>,
    /// `UserData`.
    pub user_data: Option<KvList>,
    /// `Reasons`.
    pub reasons: Option<KvList>,
    /// `Extensions`.
    pub extensions: Option<KvList>,
}

impl Request {
    /// A request with only its name set.
    pub fn new(name: RequestName) -> Self {
        Request {
            name,
            reference_id: None,
            this_dn: None,
            other_dn: None,
            conn_id: None,
            transfer_conn_id: None,
            conference_conn_id: None,
            register_mode: None,
            control_mode: None,
            address_type: None,
            info_type: None,
            this_queue: None,
            agent_id: None,
            agent_work_mode: None,
            password: None,
            private_msg_id: None,
            dtmf_digits: None,
            forward_mode: None,
            make_call_type: None,
            route_type: None,
            data_key: None,
            application_name: None,
            session_id: None,
            event_sequence_number: None,
            user_data: None,
            reasons: None,
            extensions: None,
        }
    }

    /// RequestResumeSession of `session_id`, the last event received being `last_seq`.
    pub fn resume_session(session_id: impl Into<String>, last_seq: u64) -> Self {
        let mut r = Request::new(RequestName::RequestResumeSession);
        r.session_id = Some(session_id.into());
        r.event_sequence_number = Some(last_seq);
        r
    }

    /// RequestRegisterAddress for `dn` in ModeShare.
    pub fn register_address(dn: impl Into<String>) -> Self {
        let mut r = Request::new(RequestName::RequestRegisterAddress).with_this_dn(dn);
        r.register_mode = Some(RegisterMode::Share);
        r
    }

    /// RequestUnregisterAddress for `dn`.
    pub fn unregister_address(dn: impl Into<String>) -> Self {
        Request::new(RequestName::RequestUnregisterAddress).with_this_dn(dn)
    }

    /// RequestQueryAddress for `dn` with `info_type`.
    pub fn query_address(dn: impl Into<String>, info_type: AddressInfoType) -> Self {
        let mut r = Request::new(RequestName::RequestQueryAddress).with_this_dn(dn);
        r.info_type = Some(info_type);
        r
    }

    /// RequestPrivateService `private_msg_id` on `dn`.
    pub fn private_service(dn: impl Into<String>, private_msg_id: u32) -> Self {
        let mut r = Request::new(RequestName::RequestPrivateService).with_this_dn(dn);
        r.private_msg_id = Some(private_msg_id);
        r
    }

    /// Sets `ReferenceID`.
    pub fn with_reference_id(mut self, id: u32) -> Self {
        self.reference_id = Some(id);
        self
    }

    /// Sets `ThisDN`.
    pub fn with_this_dn(mut self, dn: impl Into<String>) -> Self {
        self.this_dn = Some(dn.into());
        self
    }

    /// Sets `OtherDN`.
    pub fn with_other_dn(mut self, dn: impl Into<String>) -> Self {
        self.other_dn = Some(dn.into());
        self
    }

    /// Sets one string key of `Extensions` (creating the list).
    pub fn with_extension(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extensions
            .get_or_insert_with(KvList::new)
            .insert_str(key, value);
        self
    }

    /// A string value of `Extensions`.
    pub fn extension_str(&self, key: &str) -> Option<&str> {
        self.extensions.as_ref().and_then(|e| e.get_str(key))
    }

    /// Compact JSON, `request` first, attributes in a fixed order, absent ones omitted.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

macro_rules! put {
    ($m:ident, $key:literal, $val:expr) => {
        if let Some(v) = &$val {
            $m.serialize_entry($key, v)?;
        }
    };
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("request", self.name.as_str())?;
        put!(m, "ReferenceID", self.reference_id);
        put!(m, "ThisDN", self.this_dn);
        put!(m, "OtherDN", self.other_dn);
        put!(m, "ConnID", self.conn_id);
        put!(m, "TransferConnID", self.transfer_conn_id);
        put!(m, "ConferenceConnID", self.conference_conn_id);
        put!(m, "RegisterMode", self.register_mode);
        put!(m, "ControlMode", self.control_mode);
        put!(m, "AddressType", self.address_type);
        put!(m, "InfoType", self.info_type);
        put!(m, "ThisQueue", self.this_queue);
        put!(m, "AgentID", self.agent_id);
        put!(m, "AgentWorkMode", self.agent_work_mode);
        put!(m, "Password", self.password);
        put!(m, "PrivateMsgID", self.private_msg_id);
        put!(m, "DTMFDigits", self.dtmf_digits);
        put!(m, "ForwardMode", self.forward_mode);
        put!(m, "MakeCallType", self.make_call_type);
        put!(m, "RouteType", self.route_type);
        put!(m, "DataKey", self.data_key);
        put!(m, "ApplicationName", self.application_name);
        put!(m, "SessionID", self.session_id);
        put!(m, "EventSequenceNumber", self.event_sequence_number);
        put!(m, "UserData", self.user_data);
        put!(m, "Reasons", self.reasons);
        put!(m, "Extensions", self.extensions);
        m.end()
    }
}

fn bad(message: String, reference_id: Option<u32>) -> RequestError {
    RequestError {
        code: ErrorCode::INVALID_ATTR,
        message,
        reference_id,
    }
}

/// Decodes one request frame. Never panics.
///
/// Checks, first failure wins (docs/protocol.md §2.1):
/// 1. JSON syntax; the text must be one object → 53.
/// 2. `ReferenceID` present, an integer 1..=2^31−1 → 53 without ReferenceID.
/// 3. No attribute given twice → 53.
/// 4. `request` present and a string → 53.
/// 5. Every known attribute well-typed, in text order (`null` counts as absent; unknown
///    attributes are ignored) → 53.
/// 6. `request` names a request of the catalogue → 51.
pub fn parse_request(text: &str) -> Result<Request, RequestError> {
    let value = Value::parse(text).map_err(|e| bad(format!("invalid JSON: {e}"), None))?;
    let Value::Object(pairs) = value else {
        return Err(bad(
            format!("a request must be a JSON object, got {}", value.describe()),
            None,
        ));
    };
    let find = |key: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == key && *v != Value::Null)
            .map(|(_, v)| v)
    };

    let reference_id = match find("ReferenceID") {
        None => {
            return Err(bad(
                "ReferenceID missing: every request needs an integer ReferenceID 1..2147483647"
                    .into(),
                None,
            ))
        }
        Some(v) => attrs::reference_id(v).map_err(|m| bad(m, None))?,
    };
    let rid = Some(reference_id);
    if let Some(k) = attrs::first_repeated(&pairs) {
        return Err(bad(
            format!("attribute {} given more than once", crate::json::quoted(k)),
            rid,
        ));
    }
    let name_text = match find("request") {
        None => {
            return Err(bad(
                "request missing: expected \"request\":\"<request name>\"".into(),
                rid,
            ))
        }
        Some(v) => attrs::string("request", v).map_err(|m| bad(m, rid))?,
    };

    let mut req = Request::new(RequestName::RequestRegisterClient);
    req.reference_id = rid;
    for (k, v) in &pairs {
        if *v == Value::Null {
            continue;
        }
        set_attr(&mut req, k, v).map_err(|m| bad(m, rid))?;
    }

    req.name = RequestName::from_name(&name_text).ok_or_else(|| RequestError {
        code: ErrorCode::UNSUP_OPER,
        message: format!("unknown request {}", crate::json::quoted(&name_text)),
        reference_id: rid,
    })?;
    Ok(req)
}

fn set_attr(r: &mut Request, k: &str, v: &Value) -> AttrResult<()> {
    use attrs::*;
    match k {
        "ThisDN" => r.this_dn = Some(dn(k, v)?),
        "OtherDN" => r.other_dn = Some(string(k, v)?),
        "ConnID" => r.conn_id = Some(conn_id(k, v)?),
        "TransferConnID" => r.transfer_conn_id = Some(conn_id(k, v)?),
        "ConferenceConnID" => r.conference_conn_id = Some(conn_id(k, v)?),
        "RegisterMode" => r.register_mode = Some(enumeration(k, v)?),
        "ControlMode" => r.control_mode = Some(enumeration(k, v)?),
        "AddressType" => r.address_type = Some(enumeration(k, v)?),
        "InfoType" => r.info_type = Some(enumeration(k, v)?),
        "ThisQueue" => r.this_queue = Some(string(k, v)?),
        "AgentID" => r.agent_id = Some(string(k, v)?),
        "AgentWorkMode" => r.agent_work_mode = Some(enumeration(k, v)?),
        "Password" => r.password = Some(string(k, v)?),
        "PrivateMsgID" => r.private_msg_id = Some(u32_attr(k, v)?),
        "DTMFDigits" => r.dtmf_digits = Some(string(k, v)?),
        "ForwardMode" => r.forward_mode = Some(enumeration(k, v)?),
        "MakeCallType" => r.make_call_type = Some(enumeration(k, v)?),
        "RouteType" => r.route_type = Some(enumeration(k, v)?),
        "DataKey" => r.data_key = Some(string(k, v)?),
        "ApplicationName" => r.application_name = Some(string(k, v)?),
        "SessionID" => r.session_id = Some(string(k, v)?),
        "EventSequenceNumber" => r.event_sequence_number = Some(u64_any(k, v)?),
        "UserData" => r.user_data = Some(kv(k, v)?),
        "Reasons" => r.reasons = Some(kv(k, v)?),
        "Extensions" => r.extensions = Some(kv(k, v)?),
        _ => {} // request, ReferenceID (already read) and unknown attributes
    }
    Ok(())
}
