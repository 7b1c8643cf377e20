//! Server events: the typed [`Event`], constructors for the server, its encoding
//! ([`Event::to_json`]) and decoding for clients ([`parse_event`]).

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::attrs::{self, AttrResult};
use crate::enums::*;
use crate::error::{Error, ErrorCode, Result};
use crate::json::Value;
use crate::kv::{KvList, KvValue};
use crate::names::EventName;
use crate::request::Request;
use crate::types::{ConnId, InfoStatus};

/// A server event. JSON names are given per field; absent options are not sent.
/// `EventSequenceNumber` and `time` are always sent (the server stamps them, see
/// [`Event::stamp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event`: the message name.
    pub name: EventName,
    /// `ReferenceID`: only on the requester's copy of an answer.
    pub reference_id: Option<u32>,
    /// `ThisDN`.
    pub this_dn: Option<String>,
    /// `OtherDN`.
    pub other_dn: Option<String>,
    /// `ThirdPartyDN`.
    pub third_party_dn: Option<String>,
    /// `ConnID`.
    pub conn_id: Option<ConnId>,
    /// `PreviousConnID`.
    pub previous_conn_id: Option<ConnId>,
    /// `TransferConnID`.
    pub transfer_conn_id: Option<ConnId>,
    /// `CallID`: the switch's call identifier, unchanged.
    pub call_id: Option<String>,
    /// `CallType`.
    pub call_type: Option<CallType>,
    /// `CallState`.
    pub call_state: Option<CallState>,
    /// `ThisDNRole`.
    pub this_dn_role: Option<DnRole>,
    /// `OtherDNRole`.
    pub other_dn_role: Option<DnRole>,
    /// `ThirdPartyDNRole`.
    pub third_party_dn_role: Option<DnRole>,
    /// `ANI`.
    pub ani: Option<String>,
    /// `DNIS`.
    pub dnis: Option<String>,
    /// `ThisQueue`.
    pub this_queue: Option<String>,
    /// `OtherQueue`.
    pub other_queue: Option<String>,
    /// `AgentID`.
    pub agent_id: Option<String>,
    /// `AgentWorkMode`.
    pub agent_work_mode: Option<AgentWorkMode>,
    /// `ForwardMode` (EventForwardSet / EventForwardCancel).
    pub forward_mode: Option<ForwardMode>,
    /// `DTMFDigits` (EventDTMFSent).
    pub dtmf_digits: Option<String>,
    /// `InfoType` (EventRegistered, EventAddressInfo).
    pub info_type: Option<AddressInfoType>,
    /// `InfoStatus` (EventRegistered, EventAddressInfo).
    pub info_status: Option<InfoStatus>,
    /// `AddressType` (EventRegistered).
    pub address_type: Option<AddressType>,
    /// `PrivateMsgID` (EventPrivateInfo).
    pub private_msg_id: Option<u32>,
    /// `ErrorCode` (EventError; optional on EventUnregistered / EventLinkDisconnected).
    pub error_code: Option<ErrorCode>,
    /// `ErrorMessage`.
    pub error_message: Option<String>,
    /// `ApplicationName` (EventLinkConnected / EventLinkDisconnected: the link's name).
    pub application_name: Option<String>,
    /// `SessionID` (the first event of a connection, EventSessionResumed).
    pub session_id: Option<String>,
    /// `UserData`.
    pub user_data: Option<KvList>,
    /// `Reasons`.
    pub reasons: Option<KvList>,
    /// `Extensions`.
    pub extensions: Option<KvList>,
    /// `EventSequenceNumber`: server-wide, strictly increasing from 1.
    pub event_sequence_number: u64,
    /// `time`: RFC 3339 UTC with microseconds (see [`crate::format_time`]).
    pub time: String,
}

impl Event {
    /// An event with only its name set (sequence number 0, empty time: stamp it before sending).
    pub fn new(name: EventName) -> Self {
        Event {
            name,
            reference_id: None,
            this_dn: None,
            other_dn: None,
            third_party_dn: None,
            conn_id: None,
            previous_conn_id: None,
            transfer_conn_id: None,
            call_id: None,
            call_type: None,
            call_state: None,
            this_dn_role: None,
            other_dn_role: None,
            third_party_dn_role: None,
            ani: None,
            dnis: None,
            this_queue: None,
            other_queue: None,
            agent_id: None,
            agent_work_mode: None,
            forward_mode: None,
            dtmf_digits: None,
            info_type: None,
            info_status: None,
            address_type: None,
            private_msg_id: None,
            error_code: None,
            error_message: None,
            application_name: None,
            session_id: None,
            user_data: None,
            reasons: None,
            extensions: None,
            event_sequence_number: 0,
            time: String::new(),
        }
    }

    /// EventError with `ErrorCode` and `ErrorMessage`.
    pub fn error(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        let mut e = Event::new(EventName::EventError);
        e.error_code = Some(code.into());
        e.error_message = Some(message.into());
        e
    }

    /// The answer `name` to `req`: carries its ReferenceID and ThisDN.
    pub fn reply(name: EventName, req: &Request) -> Self {
        let mut e = Event::new(name);
        e.reference_id = req.reference_id;
        e.this_dn = req.this_dn.clone();
        e
    }

    /// EventError answering `req`: its ReferenceID, ThisDN and ConnID, plus code and message.
    pub fn error_for(
        req: &Request,
        code: impl Into<ErrorCode>,
        message: impl Into<String>,
    ) -> Self {
        let mut e = Event::error(code, message);
        e.reference_id = req.reference_id;
        e.this_dn = req.this_dn.clone();
        e.conn_id = req.conn_id;
        e
    }

    /// EventPrivateInfo for hot desking (PrivateMsgID 1 established / 2 cancelled; ThisDN = guest,
    /// OtherDN = host).
    pub fn hot_desk(
        private_msg_id: u32,
        guest: impl Into<String>,
        host: impl Into<String>,
    ) -> Self {
        let mut e = Event::new(EventName::EventPrivateInfo);
        e.this_dn = Some(guest.into());
        e.other_dn = Some(host.into());
        e.private_msg_id = Some(private_msg_id);
        e
    }

    /// Sets `ReferenceID`.
    pub fn with_reference_id(mut self, id: Option<u32>) -> Self {
        self.reference_id = id;
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

    /// Sets one key of `Extensions` (creating the list; replaces an existing key).
    pub fn with_extension(mut self, key: &str, value: impl Into<KvValue>) -> Self {
        self.extensions
            .get_or_insert_with(KvList::new)
            .insert(key, value);
        self
    }

    /// Sets `EventSequenceNumber` and `time`.
    pub fn stamp(&mut self, sequence_number: u64, time: impl Into<String>) {
        self.event_sequence_number = sequence_number;
        self.time = time.into();
    }

    /// True for EventError.
    pub fn is_error(&self) -> bool {
        self.name == EventName::EventError
    }

    /// A string value of `Extensions`.
    pub fn extension_str(&self, key: &str) -> Option<&str> {
        self.extensions.as_ref().and_then(|e| e.get_str(key))
    }

    /// Compact JSON, `event` first, attributes in a fixed order, `EventSequenceNumber` and `time`
    /// last.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// [`Event::to_json`] as bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

macro_rules! put {
    ($m:ident, $key:literal, $val:expr) => {
        if let Some(v) = &$val {
            $m.serialize_entry($key, v)?;
        }
    };
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event", self.name.as_str())?;
        put!(m, "ReferenceID", self.reference_id);
        put!(m, "ThisDN", self.this_dn);
        put!(m, "OtherDN", self.other_dn);
        put!(m, "ThirdPartyDN", self.third_party_dn);
        put!(m, "ConnID", self.conn_id);
        put!(m, "PreviousConnID", self.previous_conn_id);
        put!(m, "TransferConnID", self.transfer_conn_id);
        put!(m, "CallID", self.call_id);
        put!(m, "CallType", self.call_type);
        put!(m, "CallState", self.call_state);
        put!(m, "ThisDNRole", self.this_dn_role);
        put!(m, "OtherDNRole", self.other_dn_role);
        put!(m, "ThirdPartyDNRole", self.third_party_dn_role);
        put!(m, "ANI", self.ani);
        put!(m, "DNIS", self.dnis);
        put!(m, "ThisQueue", self.this_queue);
        put!(m, "OtherQueue", self.other_queue);
        put!(m, "AgentID", self.agent_id);
        put!(m, "AgentWorkMode", self.agent_work_mode);
        put!(m, "ForwardMode", self.forward_mode);
        put!(m, "DTMFDigits", self.dtmf_digits);
        put!(m, "InfoType", self.info_type);
        put!(m, "InfoStatus", self.info_status);
        put!(m, "AddressType", self.address_type);
        put!(m, "PrivateMsgID", self.private_msg_id);
        put!(m, "ErrorCode", self.error_code);
        put!(m, "ErrorMessage", self.error_message);
        put!(m, "ApplicationName", self.application_name);
        put!(m, "SessionID", self.session_id);
        put!(m, "UserData", self.user_data);
        put!(m, "Reasons", self.reasons);
        put!(m, "Extensions", self.extensions);
        m.serialize_entry("EventSequenceNumber", &self.event_sequence_number)?;
        m.serialize_entry("time", &self.time)?;
        m.end()
    }
}

/// Decodes one event frame (client side). Never panics. `event` must name an event of the
/// catalogue; known attributes must be well-typed; unknown attributes are ignored; a missing
/// `EventSequenceNumber` reads as 0 and a missing `time` as "".
pub fn parse_event(text: &str) -> Result<Event> {
    let value = Value::parse(text).map_err(|e| Error::Json(e.to_string()))?;
    let Value::Object(pairs) = value else {
        return Err(Error::InvalidEvent(format!(
            "an event must be a JSON object, got {}",
            value.describe()
        )));
    };
    let name = match pairs.iter().find(|(k, _)| k == "event") {
        None => return Err(Error::InvalidEvent("event missing".into())),
        Some((_, v)) => {
            let s = attrs::string("event", v).map_err(Error::InvalidEvent)?;
            EventName::from_name(&s).ok_or_else(|| {
                Error::InvalidEvent(format!("unknown event {}", crate::json::quoted(&s)))
            })?
        }
    };
    let mut e = Event::new(name);
    for (k, v) in &pairs {
        if *v != Value::Null {
            set_attr(&mut e, k, v).map_err(Error::InvalidEvent)?;
        }
    }
    Ok(e)
}

fn set_attr(e: &mut Event, k: &str, v: &Value) -> AttrResult<()> {
    use attrs::*;
    match k {
        "ReferenceID" => e.reference_id = Some(u32_attr(k, v)?),
        "ThisDN" => e.this_dn = Some(string(k, v)?),
        "OtherDN" => e.other_dn = Some(string(k, v)?),
        "ThirdPartyDN" => e.third_party_dn = Some(string(k, v)?),
        "ConnID" => e.conn_id = Some(conn_id(k, v)?),
        "PreviousConnID" => e.previous_conn_id = Some(conn_id(k, v)?),
        "TransferConnID" => e.transfer_conn_id = Some(conn_id(k, v)?),
        "CallID" => e.call_id = Some(string(k, v)?),
        "CallType" => e.call_type = Some(enumeration(k, v)?),
        "CallState" => e.call_state = Some(enumeration(k, v)?),
        "ThisDNRole" => e.this_dn_role = Some(enumeration(k, v)?),
        "OtherDNRole" => e.other_dn_role = Some(enumeration(k, v)?),
        "ThirdPartyDNRole" => e.third_party_dn_role = Some(enumeration(k, v)?),
        "ANI" => e.ani = Some(string(k, v)?),
        "DNIS" => e.dnis = Some(string(k, v)?),
        "ThisQueue" => e.this_queue = Some(string(k, v)?),
        "OtherQueue" => e.other_queue = Some(string(k, v)?),
        "AgentID" => e.agent_id = Some(string(k, v)?),
        "AgentWorkMode" => e.agent_work_mode = Some(enumeration(k, v)?),
        "ForwardMode" => e.forward_mode = Some(enumeration(k, v)?),
        "DTMFDigits" => e.dtmf_digits = Some(string(k, v)?),
        "InfoType" => e.info_type = Some(enumeration(k, v)?),
        "InfoStatus" => {
            e.info_status = Some(match v {
                Value::String(s) => match AddressType::from_name(s) {
                    Some(t) => InfoStatus::AddressType(t),
                    None => InfoStatus::Name(s.clone()),
                },
                _ => InfoStatus::Number(integer(k, v, i64::MIN, i64::MAX).map_err(|_| {
                    format!(
                        "InfoStatus: expected a string or an integer, got {}",
                        v.describe()
                    )
                })?),
            })
        }
        "AddressType" => e.address_type = Some(enumeration(k, v)?),
        "PrivateMsgID" => e.private_msg_id = Some(u32_attr(k, v)?),
        "ErrorCode" => e.error_code = Some(ErrorCode(u32_attr(k, v)?)),
        "ErrorMessage" => e.error_message = Some(string(k, v)?),
        "ApplicationName" => e.application_name = Some(string(k, v)?),
        "SessionID" => e.session_id = Some(string(k, v)?),
        "UserData" => e.user_data = Some(kv(k, v)?),
        "Reasons" => e.reasons = Some(kv(k, v)?),
        "Extensions" => e.extensions = Some(kv(k, v)?),
        "EventSequenceNumber" => e.event_sequence_number = u64_any(k, v)?,
        "time" => e.time = string(k, v)?,
        _ => {}
    }
    Ok(())
}
