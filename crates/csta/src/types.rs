//! Common data types of ECMA-323 (§8 of csta-xml.md): connection IDs, device-ID choices,
//! connection lists, snapshot entries, agent and forwarding lists, CSTAErrorCode.

use crate::enums::*;
use crate::error::{DecodeError, Result};
use crate::json::{JsonError, JsonValue};
use crate::private::PrivateData;
use crate::xml::{Elem, Parser, Writer, XmlValue};
use compact_str::CompactString;
use serde_json::Value;

/// Build a value from bare text (tolerance for peers that write text where a choice belongs).
pub trait FromText {
    fn from_text(s: &str) -> Self;
}

impl FromText for String {
    fn from_text(s: &str) -> Self {
        s.to_string()
    }
}

impl FromText for CompactString {
    fn from_text(s: &str) -> Self {
        CompactString::new(s)
    }
}

xml_struct! {
    /// `ConnectionID`: a call and a device (either may be absent).
    ConnectionId {
        call_id: opt CompactString = "callID",
        device_id: opt CompactString = "deviceID",
    }
}

impl ConnectionId {
    /// A connection of `call` at `device`.
    pub fn new(call: impl Into<CompactString>, device: impl Into<CompactString>) -> Self {
        ConnectionId {
            call_id: Some(call.into()),
            device_id: Some(device.into()),
        }
    }
    /// The call ID, or "" when absent.
    pub fn call(&self) -> &str {
        self.call_id.as_deref().unwrap_or("")
    }
    /// The device ID, or "" when absent.
    pub fn device(&self) -> &str {
        self.device_id.as_deref().unwrap_or("")
    }
}

impl FromText for ConnectionId {
    fn from_text(s: &str) -> Self {
        ConnectionId {
            call_id: None,
            device_id: Some(s.into()),
        }
    }
}

xml_choice! {
    /// `SubjectDeviceID`, `CallingDeviceID`, `CalledDeviceID`, `AlertingDevice`, …: a device or
    /// the reason there is none.
    DeviceRef {
        values: [Id(CompactString) = "deviceIdentifier"],
        markers: [NotKnown = "notKnown", Restricted = "restricted"],
    }
}

impl DeviceRef {
    /// A known device.
    pub fn id(s: impl Into<CompactString>) -> Self {
        DeviceRef::Id(s.into())
    }
    /// The device number, if known.
    pub fn as_id(&self) -> Option<&str> {
        match self {
            DeviceRef::Id(s) => Some(s),
            _ => None,
        }
    }
}

xml_choice! {
    /// `RedirectionDeviceID` (`lastRedirectionDevice`).
    RedirectionDevice {
        values: [NumberDialed(CompactString) = "numberDialed"],
        markers: [
            NotKnown = "notKnown",
            NotRequired = "notRequired",
            NotSpecified = "notSpecified",
            Restricted = "restricted",
        ],
    }
}

xml_choice! {
    /// `endpoint` of a connection-list item.
    Endpoint {
        values: [DeviceId(CompactString) = "deviceID"],
        markers: [NotKnown = "notKnown", Restricted = "restricted"],
    }
}

xml_struct! {
    /// `connectionListItem` (TransferedEvent, ConferencedEvent, the transfer/conference responses):
    /// how a party's connection moved between calls.
    ConnectionListItem {
        new_connection: opt ConnectionId = "newConnection",
        old_connection: opt ConnectionId = "oldConnection",
        endpoint: opt Endpoint = "endpoint",
        associated_nid: opt CompactString = "associatedNID",
    }
}

xml_choice! {
    /// `monitorObject`.
    MonitorObject {
        values: [Device(CompactString) = "deviceObject", Call(ConnectionId) = "callObject"],
        markers: [],
    }
}

/// `localCallState` of a snapshot entry: a list of connection states, a simple call state, or
/// `unknown`.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalCallState {
    Compound(Vec<LocalConnectionState>),
    Simple(SimpleCallState),
    Unknown,
}

impl XmlValue for LocalCallState {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        let mut out = LocalCallState::Unknown;
        p.children(el, |p, child| {
            match child.local() {
                b"compoundCallState" => {
                    let mut v = Vec::new();
                    crate::xml::decode_list(p, &child, "localConnectionState", &mut v)?;
                    out = LocalCallState::Compound(v);
                }
                b"simpleCallState" => {
                    out = LocalCallState::Simple(SimpleCallState::decode_xml(p, &child)?);
                }
                _ => p.skip(&child)?,
            }
            Ok(())
        })?;
        Ok(out)
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        let m = w.open(name);
        match self {
            LocalCallState::Compound(v) => {
                crate::xml::encode_list(w, "compoundCallState", "localConnectionState", v)
            }
            LocalCallState::Simple(s) => s.encode_xml(w, "simpleCallState"),
            LocalCallState::Unknown => w.empty_elem("unknown"),
        }
        w.close(name, m);
    }
}

impl JsonValue for LocalCallState {
    fn to_json(&self) -> Value {
        match self {
            LocalCallState::Compound(v) => serde_json::json!({
                "compoundCallState": v.iter().map(|s| s.as_str()).collect::<Vec<_>>()
            }),
            LocalCallState::Simple(s) => serde_json::json!({ "simpleCallState": s.as_str() }),
            LocalCallState::Unknown => serde_json::json!({ "unknown": true }),
        }
    }
    fn from_json(v: &Value, field: &str) -> std::result::Result<Self, JsonError> {
        if let Some(a) = v.get("compoundCallState") {
            let arr = a
                .as_array()
                .ok_or_else(|| JsonError::new("compoundCallState", "an array", a))?;
            return arr
                .iter()
                .map(|x| LocalConnectionState::from_json(x, "localConnectionState"))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(LocalCallState::Compound);
        }
        if let Some(s) = v.get("simpleCallState") {
            return SimpleCallState::from_json(s, "simpleCallState").map(LocalCallState::Simple);
        }
        if v.get("unknown").is_some() {
            return Ok(LocalCallState::Unknown);
        }
        Err(JsonError::new(
            field,
            "compoundCallState, simpleCallState or unknown",
            v,
        ))
    }
}

xml_struct! {
    /// `snapshotDeviceResponseInfo`: one call at the snapshotted device.
    SnapshotDeviceResponseInfo {
        connection_identifier: req ConnectionId = "connectionIdentifier",
        endpoint_device: opt DeviceRef = "endpointDevice",
        local_call_state: opt LocalCallState = "localCallState",
    }
}

/// `crossRefIDorSnapshotData`: the calls inline, or a reference to SnapshotDeviceData segments.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotResult {
    /// `serviceCrossRefID`: the data follows in SnapshotDeviceData messages.
    ServiceCrossRefId(CompactString),
    /// `snapshotData`: the calls (empty = none).
    Data(Vec<SnapshotDeviceResponseInfo>),
}

impl XmlValue for SnapshotResult {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        let mut out = None;
        p.children(el, |p, child| {
            match child.local() {
                b"serviceCrossRefID" => {
                    out = Some(SnapshotResult::ServiceCrossRefId(
                        CompactString::decode_xml(p, &child)?,
                    ))
                }
                b"snapshotData" => {
                    let mut v = Vec::new();
                    crate::xml::decode_list(p, &child, "snapshotDeviceResponseInfo", &mut v)?;
                    out = Some(SnapshotResult::Data(v));
                }
                _ => p.skip(&child)?,
            }
            Ok(())
        })?;
        out.ok_or_else(|| DecodeError::Invalid {
            field: "crossRefIDorSnapshotData".into(),
            expected: "serviceCrossRefID or snapshotData",
            found: String::new(),
        })
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        let m = w.open(name);
        match self {
            SnapshotResult::ServiceCrossRefId(s) => s.encode_xml(w, "serviceCrossRefID"),
            SnapshotResult::Data(v) => {
                crate::xml::encode_list(w, "snapshotData", "snapshotDeviceResponseInfo", v)
            }
        }
        w.close(name, m);
    }
}

impl JsonValue for SnapshotResult {
    fn to_json(&self) -> Value {
        match self {
            SnapshotResult::ServiceCrossRefId(s) => {
                serde_json::json!({ "serviceCrossRefID": s.as_str() })
            }
            SnapshotResult::Data(v) => serde_json::json!({
                "snapshotData": v.iter().map(JsonValue::to_json).collect::<Vec<_>>()
            }),
        }
    }
    fn from_json(v: &Value, field: &str) -> std::result::Result<Self, JsonError> {
        if let Some(s) = v.get("serviceCrossRefID") {
            return CompactString::from_json(s, "serviceCrossRefID")
                .map(SnapshotResult::ServiceCrossRefId);
        }
        if let Some(a) = v.get("snapshotData") {
            let arr = a
                .as_array()
                .ok_or_else(|| JsonError::new("snapshotData", "an array", a))?;
            return arr
                .iter()
                .map(|x| SnapshotDeviceResponseInfo::from_json(x, "snapshotDeviceResponseInfo"))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(SnapshotResult::Data);
        }
        Err(JsonError::new(
            field,
            "serviceCrossRefID or snapshotData",
            v,
        ))
    }
}

xml_struct! {
    /// `agentInfoItem` of GetAgentStateResponse.
    AgentInfoItem {
        acd_group: opt CompactString = "acdGroup",
        agent_state: opt AgentState = "agentState",
        pending_agent_state: opt PendingAgentState = "pendingAgentState",
    }
}

xml_struct! {
    /// `agentStateEntry` of GetAgentStateResponse.
    AgentStateEntry {
        agent_id: opt CompactString = "agentID",
        logged_on_state: opt bool = "loggedOnState",
        agent_info: list AgentInfoItem = "agentInfo"; item "agentInfoItem",
    }
}

xml_struct! {
    /// `forwardListItem` of GetForwardingResponse.
    ForwardListItem {
        forwarding_type: opt ForwardingType = "forwardingType",
        forward_status: opt bool = "forwardStatus",
        forward_dn: opt CompactString = "forwardDN",
        forward_default: opt CompactString = "forwardDefault",
        ring_count: opt u32 = "ringCount",
        ring_duration: opt u32 = "ringDuration",
    }
}

xml_struct! {
    /// `requestTypes` of SystemRegister.
    RequestTypes {
        system_status: opt bool = "systemStatus",
        request_system_status: opt bool = "requestSystemStatus",
        switching_function_caps_changed: opt bool = "switchingFunctionCapsChanged",
        switching_function_devices_changed: opt bool = "switchingFunctionDevicesChanged",
    }
}

/// Any well-formed XML kept verbatim (e.g. `applicationSpecificInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawXml(pub String);

impl XmlValue for RawXml {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        Ok(RawXml(crate::xml::trim_xml(p.inner_span(el)?).to_string()))
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        let m = w.open(name);
        w.raw(&self.0);
        w.close(name, m);
    }
    fn is_blank(&self) -> bool {
        self.0.is_empty()
    }
}

impl JsonValue for RawXml {
    fn to_json(&self) -> Value {
        Value::String(self.0.clone())
    }
    fn from_json(v: &Value, field: &str) -> std::result::Result<Self, JsonError> {
        String::from_json(v, field).map(RawXml)
    }
}

xml_struct! {
    /// ECMA-354 `applicationInfo`.
    ApplicationInfo {
        application_id: req CompactString = "applicationID",
        application_specific_info: opt RawXml = "applicationSpecificInfo",
    }
}

xml_choice! {
    /// ECMA-354 NegResponse `errorCode`.
    SessionErrorCode {
        values: [Defined(SessionDefinedError) = "definedError", Application(CompactString) = "applError"],
        markers: [],
    }
}

xml_choice! {
    /// ECMA-354 StopApplicationSession `sessionEndReason`.
    SessionEndReason {
        values: [Defined(CompactString) = "definedEndReason", Application(CompactString) = "appEndReason"],
        markers: [],
    }
}

xml_choice! {
    /// ECMA-354 ApplicationSessionTerminated `sessionTermReason`.
    SessionTermReasonChoice {
        values: [Defined(SessionTermReason) = "definedTermReason", Application(CompactString) = "appTermReason"],
        markers: [],
    }
}

/// DeflectCall `newDestination`: a DeviceID in ED3–ED5, a list of `<device>` in ED6. Decoding
/// accepts both; encoding writes the writer's edition's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDestination(pub CompactString);

impl XmlValue for NewDestination {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        let mut text = String::new();
        let mut device: Option<CompactString> = None;
        if el.empty {
            return Ok(NewDestination(CompactString::default()));
        }
        loop {
            match p.next_node()? {
                crate::xml::Next::Start(child) => {
                    if child.local() == b"device" && device.is_none() {
                        device = Some(CompactString::decode_xml(p, &child)?);
                    } else {
                        p.skip(&child)?;
                    }
                }
                crate::xml::Next::Text(t) => text.push_str(&t),
                crate::xml::Next::End => break,
                crate::xml::Next::Eof => {
                    return Err(DecodeError::Xml {
                        position: p.position(),
                        reason: "unexpected end".into(),
                    })
                }
            }
        }
        Ok(NewDestination(device.unwrap_or_else(|| {
            CompactString::new(crate::xml::trim_xml(&text))
        })))
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        if w.edition() >= crate::xml::Edition::Ed6 {
            let m = w.open(name);
            w.text_elem("device", &self.0);
            w.close(name, m);
        } else {
            w.text_elem(name, &self.0);
        }
    }
    fn is_blank(&self) -> bool {
        self.0.is_empty()
    }
}

impl JsonValue for NewDestination {
    fn to_json(&self) -> Value {
        Value::String(self.0.to_string())
    }
    fn from_json(v: &Value, field: &str) -> std::result::Result<Self, JsonError> {
        CompactString::from_json(v, field).map(NewDestination)
    }
}

/// `extensions`: the standard's carrier of private data (security is not used and skipped).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extensions {
    /// `privateData`.
    pub private_data: Option<PrivateData>,
}

impl Extensions {
    /// Extensions carrying `private_data`.
    pub fn private(private_data: PrivateData) -> Self {
        Extensions {
            private_data: Some(private_data),
        }
    }
}

impl XmlValue for Extensions {
    fn decode_xml<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        let mut out = Extensions::default();
        p.children(el, |p, child| {
            if child.local() == b"privateData" {
                out.private_data = PrivateData::decode_opt(p, &child)?;
                Ok(())
            } else {
                p.skip(&child)
            }
        })?;
        Ok(out)
    }
    fn encode_xml(&self, w: &mut Writer<'_>, name: &str) {
        let m = w.open(name);
        if let Some(pd) = &self.private_data {
            pd.encode_xml(w, "privateData");
        }
        w.close(name, m);
    }
    fn is_blank(&self) -> bool {
        self.private_data.is_none()
    }
}

impl JsonValue for Extensions {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(pd) = &self.private_data {
            m.insert("privateData".into(), pd.to_json());
        }
        Value::Object(m)
    }
    fn from_json(v: &Value, field: &str) -> std::result::Result<Self, JsonError> {
        let o = v
            .as_object()
            .ok_or_else(|| JsonError::new(field, "an object", v))?;
        Ok(Extensions {
            private_data: match o.get("privateData") {
                None | Some(Value::Null) => None,
                Some(x) => Some(PrivateData::from_json(x, "privateData")?),
            },
        })
    }
}

xml_choice! {
    /// The one child of `CSTAErrorCode`: the error family and its value.
    CstaError {
        values: [
            Operation(OperationError) = "operation",
            Security(SecurityError) = "security",
            StateIncompatibility(StateIncompatibilityError) = "stateIncompatibility",
            SystemResourceAvailability(SystemResourceAvailabilityError) = "systemResourceAvailibility" | "systemResourceAvailability",
            SubscribedResourceAvailability(SubscribedResourceAvailabilityError) = "subscribedResourceAvailability",
            PerformanceManagement(PerformanceManagementError) = "performanceManagement",
            PrivateData(PrivateDataInfoError) = "privateData",
            PrivateErrorCode(CompactString) = "privateErrorCode",
        ],
        markers: [Unspecified = "unspecified"],
    }
}

impl CstaError {
    /// The family element name (`operation`, `systemResourceAvailibility`, …).
    pub fn family(&self) -> &'static str {
        self.choice_name()
    }
    /// The value literal ("" for `unspecified`).
    pub fn value(&self) -> &str {
        match self {
            CstaError::Operation(v) => v.as_str(),
            CstaError::Security(v) => v.as_str(),
            CstaError::StateIncompatibility(v) => v.as_str(),
            CstaError::SystemResourceAvailability(v) => v.as_str(),
            CstaError::SubscribedResourceAvailability(v) => v.as_str(),
            CstaError::PerformanceManagement(v) => v.as_str(),
            CstaError::PrivateData(v) => v.as_str(),
            CstaError::PrivateErrorCode(v) => v,
            CstaError::Unspecified => "",
        }
    }
}

impl std::fmt::Display for CstaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.family(), self.value())
    }
}
