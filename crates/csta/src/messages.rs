//! Every message root ctid and csta-sim speak, as typed structs, and the [`Message`] enum that
//! dispatches on the root's local name. Child order in each struct is the schema's (csta-xml.md
//! Appendix A); decoding accepts any order.

use crate::enums::*;
use crate::error::{EncodeError, Result};
use crate::json::{JsonError, JsonValue};
use crate::private::PrivateData;
use crate::types::*;
use crate::xml::{Elem, Parser, Writer, NS_354};
use compact_str::CompactString;
use serde_json::Value;

// ----------------------------------------------------------------------------- ECMA-354 sessions

xml_struct! {
    /// ECMA-354 StartApplicationSession (ctid → Connector).
    StartApplicationSession + extensions {
        application_info: req ApplicationInfo = "applicationInfo",
        requested_protocol_versions: list CompactString = "requestedProtocolVersions"; item "protocolVersion",
        requested_session_duration: opt u32 = "requestedSessionDuration",
    }
}
xml_struct! {
    StartApplicationSessionPosResponse + extensions {
        session_id: req CompactString = "sessionID",
        actual_protocol_version: opt CompactString = "actualProtocolVersion",
        actual_session_duration: opt u32 = "actualSessionDuration",
    }
}
xml_struct! {
    StartApplicationSessionNegResponse + extensions {
        error_code: opt SessionErrorCode = "errorCode",
    }
}
xml_struct! {
    ResetApplicationSessionTimer + extensions {
        session_id: req CompactString = "sessionID",
        requested_session_duration: opt u32 = "requestedSessionDuration",
    }
}
xml_struct! {
    ResetApplicationSessionTimerPosResponse + extensions {
        actual_session_duration: opt u32 = "actualSessionDuration",
    }
}
xml_struct! {
    ResetApplicationSessionTimerNegResponse + extensions {
        error_code: opt SessionErrorCode = "errorCode",
    }
}
xml_struct! {
    StopApplicationSession + extensions {
        session_id: req CompactString = "sessionID",
        session_end_reason: opt SessionEndReason = "sessionEndReason",
    }
}
xml_struct! {
    StopApplicationSessionPosResponse + extensions {}
}
xml_struct! {
    StopApplicationSessionNegResponse + extensions {
        error_code: opt SessionErrorCode = "errorCode",
    }
}
xml_struct! {
    /// The Connector ended the session (a link loss).
    ApplicationSessionTerminated + extensions {
        session_term_reason: opt SessionTermReasonChoice = "sessionTermReason",
    }
}

// ----------------------------------------------------------------------------- system services

xml_struct! {
    /// Unsolicited system status (either direction; always answered with SystemStatusResponse).
    SystemStatus + extensions {
        sys_stat_register_id: opt CompactString = "sysStatRegisterID",
        system_status: req SystemStatusValue = "systemStatus",
    }
}
xml_struct! { SystemStatusResponse + extensions {} }
xml_struct! {
    SystemRegister + extensions {
        request_types: opt RequestTypes = "requestTypes",
    }
}
xml_struct! {
    SystemRegisterResponse + extensions {
        sys_stat_register_id: opt CompactString = "sysStatRegisterID",
    }
}
xml_struct! {
    /// Polled system status; also ctid's keepalive.
    RequestSystemStatus + extensions {
        sys_stat_register_id: opt CompactString = "sysStatRegisterID",
    }
}
xml_struct! {
    RequestSystemStatusResponse + extensions {
        system_status: opt SystemStatusValue = "systemStatus",
    }
}

// ----------------------------------------------------------------------------- monitoring, snapshot

xml_struct! {
    MonitorStart + extensions {
        monitor_object: req MonitorObject = "monitorObject",
        monitor_type: opt MonitorType = "monitorType",
    }
}
xml_struct! {
    MonitorStartResponse + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        monitor_existing_calls: opt bool = "monitorExistingCalls",
    }
}
xml_struct! {
    MonitorStop + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
    }
}
xml_struct! { MonitorStopResponse + extensions {} }
xml_struct! {
    SnapshotDevice + extensions {
        snapshot_object: req CompactString = "snapshotObject",
    }
}
xml_struct! {
    SnapshotDeviceResponse + extensions {
        cross_ref_id_or_snapshot_data: req SnapshotResult = "crossRefIDorSnapshotData",
    }
}
xml_struct! {
    /// A segment of a snapshot answered by reference.
    SnapshotDeviceData + extensions {
        service_cross_ref_id: req CompactString = "serviceCrossRefID",
        segment_id: opt u32 = "segmentID",
        last_segment: opt bool = "lastSegment",
        snapshot_data: list SnapshotDeviceResponseInfo = "snapshotData"; item "snapshotDeviceResponseInfo",
    }
}

// ----------------------------------------------------------------------------- call-control events

xml_struct! {
    ServiceInitiatedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        initiated_connection: req ConnectionId = "initiatedConnection",
        initiating_device: opt DeviceRef = "initiatingDevice",
        called_device: opt DeviceRef = "calledDevice",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    OriginatedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        originated_connection: req ConnectionId = "originatedConnection",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        originating_device: opt DeviceRef = "originatingDevice",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    DeliveredEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        connection: req ConnectionId = "connection",
        alerting_device: opt DeviceRef = "alertingDevice",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        last_redirection_device: opt RedirectionDevice = "lastRedirectionDevice",
        originating_nid_connection: opt ConnectionId = "originatingNIDConnection",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
        network_calling_device: opt DeviceRef = "networkCallingDevice",
        network_called_device: opt DeviceRef = "networkCalledDevice",
        associated_calling_device: opt DeviceRef = "associatedCallingDevice",
        associated_called_device: opt DeviceRef = "associatedCalledDevice",
    }
}
xml_struct! {
    EstablishedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        established_connection: req ConnectionId = "establishedConnection",
        answering_device: opt DeviceRef = "answeringDevice",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        last_redirection_device: opt RedirectionDevice = "lastRedirectionDevice",
        /// Spelt `originatinNIDConnection` in the standard (reproduced; the corrected spelling is
        /// also accepted).
        originatin_nid_connection: opt ConnectionId = "originatinNIDConnection" | "originatingNIDConnection",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
        network_calling_device: opt DeviceRef = "networkCallingDevice",
        network_called_device: opt DeviceRef = "networkCalledDevice",
        associated_calling_device: opt DeviceRef = "associatedCallingDevice",
        associated_called_device: opt DeviceRef = "associatedCalledDevice",
    }
}
xml_struct! {
    ConnectionClearedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        dropped_connection: req ConnectionId = "droppedConnection",
        releasing_device: opt DeviceRef = "releasingDevice",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    CallClearedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        cleared_call: req ConnectionId = "clearedCall",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    HeldEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        held_connection: req ConnectionId = "heldConnection",
        holding_device: opt DeviceRef = "holdingDevice",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    RetrievedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        retrieved_connection: req ConnectionId = "retrievedConnection",
        retrieving_device: opt DeviceRef = "retrievingDevice",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    /// The transfer event; the root is spelt `TransferedEvent` in the standard.
    TransferedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        primary_old_call: opt ConnectionId = "primaryOldCall",
        secondary_old_call: opt ConnectionId = "secondaryOldCall",
        transferring_device: opt DeviceRef = "transferringDevice",
        transferred_to_device: opt DeviceRef = "transferredToDevice",
        transferred_connections: list ConnectionListItem = "transferredConnections"; item "connectionListItem",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    ConferencedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        primary_old_call: opt ConnectionId = "primaryOldCall",
        secondary_old_call: opt ConnectionId = "secondaryOldCall",
        conferencing_device: opt DeviceRef = "conferencingDevice",
        added_party: opt DeviceRef = "addedParty",
        conference_connections: list ConnectionListItem = "conferenceConnections"; item "connectionListItem",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    DivertedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        connection: req ConnectionId = "connection",
        diverting_device: opt DeviceRef = "divertingDevice",
        new_destination: opt DeviceRef = "newDestination",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        last_redirection_device: opt RedirectionDevice = "lastRedirectionDevice",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    FailedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        failed_connection: req ConnectionId = "failedConnection",
        failing_device: opt DeviceRef = "failingDevice",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        last_redirection_device: opt RedirectionDevice = "lastRedirectionDevice",
        originating_nid_connection: opt ConnectionId = "originatingNIDConnection",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    QueuedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        queued_connection: req ConnectionId = "queuedConnection",
        queue: opt DeviceRef = "queue",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        last_redirection_device: opt RedirectionDevice = "lastRedirectionDevice",
        number_queued: opt u32 = "numberQueued",
        calls_in_front: opt u32 = "callsInFront",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    NetworkReachedEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        outbound_connection: req ConnectionId = "outboundConnection",
        network_interface_used: opt DeviceRef = "networkInterfaceUsed",
        calling_device: opt DeviceRef = "callingDevice",
        called_device: opt DeviceRef = "calledDevice",
        last_redirection_device: opt RedirectionDevice = "lastRedirectionDevice",
        originating_nid_connection: opt ConnectionId = "originatingNIDConnection",
        local_connection_info: opt LocalConnectionState = "localConnectionInfo",
        correlator_data: opt CompactString = "correlatorData",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    CallInformationEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        connection: req ConnectionId = "connection",
        device: opt DeviceRef = "device",
        calling_device: opt DeviceRef = "callingDevice",
        account_info: opt CompactString = "accountInfo",
        auth_code: opt CompactString = "authCode",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! {
    ServiceCompletionFailureEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        primary_call: opt ConnectionId = "primaryCall",
        secondary_call: opt ConnectionId = "secondaryCall",
        cause: opt EventCause = "cause",
    }
}

// ----------------------------------------------------------------------------- agent & feature events

xml_struct! {
    AgentLoggedOnEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        agent_device: opt DeviceRef = "agentDevice",
        agent_id: opt CompactString = "agentID",
        acd_group: opt CompactString = "acdGroup",
        agent_password: opt CompactString = "agentPassword",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    AgentLoggedOffEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        agent_device: opt DeviceRef = "agentDevice",
        agent_id: opt CompactString = "agentID",
        acd_group: opt CompactString = "acdGroup",
        agent_password: opt CompactString = "agentPassword",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    AgentReadyEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        agent_device: opt DeviceRef = "agentDevice",
        agent_id: opt CompactString = "agentID",
        acd_group: opt CompactString = "acdGroup",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    AgentNotReadyEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        agent_device: opt DeviceRef = "agentDevice",
        agent_id: opt CompactString = "agentID",
        acd_group: opt CompactString = "acdGroup",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    AgentWorkingAfterCallEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        agent_device: opt DeviceRef = "agentDevice",
        agent_id: opt CompactString = "agentID",
        acd_group: opt CompactString = "acdGroup",
        pending_agent_state: opt PendingAgentState = "pendingAgentState",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    AgentBusyEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        agent_device: opt DeviceRef = "agentDevice",
        agent_id: opt CompactString = "agentID",
        acd_group: opt CompactString = "acdGroup",
        pending_agent_state: opt PendingAgentState = "pendingAgentState",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    ForwardingEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        device: opt DeviceRef = "device",
        forwarding_type: opt ForwardingType = "forwardingType",
        forward_status: opt bool = "forwardStatus",
        forward_to: opt CompactString = "forwardTo",
        forward_default: opt CompactString = "forwardDefault",
        ring_count: opt u32 = "ringCount",
        ring_duration: opt u32 = "ringDuration",
    }
}
xml_struct! {
    DoNotDisturbEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        device: opt DeviceRef = "device",
        do_not_disturb_on: opt bool = "doNotDisturbOn",
    }
}
xml_struct! {
    BackInServiceEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        device: opt DeviceRef = "device",
        cause: opt EventCause = "cause",
    }
}
xml_struct! {
    OutOfServiceEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        device: opt DeviceRef = "device",
        cause: opt EventCause = "cause",
    }
}

// ----------------------------------------------------------------------------- call-control services

xml_struct! {
    MakeCall + extensions {
        calling_device: req CompactString = "callingDevice",
        called_directory_number: req CompactString = "calledDirectoryNumber",
        account_code: opt CompactString = "accountCode",
        auth_code: opt CompactString = "authCode",
        auto_originate: opt AutoOriginate = "autoOriginate",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! {
    MakeCallResponse + extensions {
        calling_device: req ConnectionId = "callingDevice",
    }
}
xml_struct! {
    AnswerCall + extensions {
        call_to_be_answered: req ConnectionId = "callToBeAnswered",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! { AnswerCallResponse + extensions {} }
xml_struct! {
    ClearConnection + extensions {
        connection_to_be_cleared: req ConnectionId = "connectionToBeCleared",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! { ClearConnectionResponse + extensions {} }
xml_struct! {
    ClearCall + extensions {
        call_to_be_cleared: req ConnectionId = "callToBeCleared",
    }
}
xml_struct! { ClearCallResponse + extensions {} }
xml_struct! {
    HoldCall + extensions {
        call_to_be_held: req ConnectionId = "callToBeHeld",
        connection_reservation: opt bool = "connectionReservation",
    }
}
xml_struct! { HoldCallResponse + extensions {} }
xml_struct! {
    RetrieveCall + extensions {
        call_to_be_retrieved: req ConnectionId = "callToBeRetrieved",
    }
}
xml_struct! { RetrieveCallResponse + extensions {} }
xml_struct! {
    ConsultationCall + extensions {
        existing_call: req ConnectionId = "existingCall",
        consulted_device: req CompactString = "consultedDevice",
        connection_reservation: opt bool = "connectionReservation",
        account_code: opt CompactString = "accountCode",
        auth_code: opt CompactString = "authCode",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! {
    ConsultationCallResponse + extensions {
        initiated_call: req ConnectionId = "initiatedCall",
    }
}
xml_struct! {
    TransferCall + extensions {
        held_call: req ConnectionId = "heldCall",
        active_call: req ConnectionId = "activeCall",
    }
}
xml_struct! {
    TransferCallResponse + extensions {
        transferred_call: opt ConnectionId = "transferredCall",
        connections: list ConnectionListItem = "connections"; item "connectionListItem",
    }
}
xml_struct! {
    ConferenceCall + extensions {
        held_call: req ConnectionId = "heldCall",
        active_call: req ConnectionId = "activeCall",
    }
}
xml_struct! {
    ConferenceCallResponse + extensions {
        conference_call: opt ConnectionId = "conferenceCall",
        connections: list ConnectionListItem = "connections"; item "connectionListItem",
    }
}
xml_struct! {
    SingleStepTransferCall + extensions {
        active_call: req ConnectionId = "activeCall",
        transferred_to: req CompactString = "transferredTo",
        account_code: opt CompactString = "accountCode",
        auth_code: opt CompactString = "authCode",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! {
    SingleStepTransferCallResponse + extensions {
        transferred_call: opt ConnectionId = "transferredCall",
        connections: list ConnectionListItem = "connections"; item "connectionListItem",
    }
}
xml_struct! {
    /// `newDestination` is written per edition (DeviceID in ED3–ED5, `<device>` list in ED6).
    DeflectCall + extensions {
        call_to_be_diverted: req ConnectionId = "callToBeDiverted",
        new_destination: req NewDestination = "newDestination",
        correlator_data: opt CompactString = "correlatorData",
    }
}
xml_struct! { DeflectCallResponse + extensions {} }
xml_struct! {
    AlternateCall + extensions {
        held_call: req ConnectionId = "heldCall",
        active_call: req ConnectionId = "activeCall",
        connection_reservation: opt bool = "connectionReservation",
    }
}
xml_struct! { AlternateCallResponse + extensions {} }
xml_struct! {
    /// Note the schema order: `activeCall` first.
    ReconnectCall + extensions {
        active_call: req ConnectionId = "activeCall",
        held_call: req ConnectionId = "heldCall",
    }
}
xml_struct! { ReconnectCallResponse + extensions {} }
xml_struct! {
    GenerateDigits + extensions {
        connection_to_send_digits: req ConnectionId = "connectionToSendDigits",
        digit_mode: opt CompactString = "digitMode",
        characters_to_send: req CompactString = "charactersToSend",
        tone_duration: opt u32 = "toneDuration",
        pulse_rate: opt u32 = "pulseRate",
        pause_duration: opt u32 = "pauseDuration",
    }
}
xml_struct! { GenerateDigitsResponse + extensions {} }

// ----------------------------------------------------------------------------- logical device features

xml_struct! {
    /// Empty `device`, `agentID` or `password` elements (sent by some clients) are absent.
    SetAgentState + extensions {
        device: req CompactString = "device",
        requested_agent_state: req ReqAgentState = "requestedAgentState",
        agent_id: opt CompactString = "agentID",
        /// hexBinary.
        password: opt CompactString = "password",
        group: opt CompactString = "group",
    }
}
xml_struct! {
    SetAgentStateResponse + extensions {
        pending_agent_state: opt PendingAgentState = "pendingAgentState",
    }
}
xml_struct! {
    GetAgentState + extensions {
        device: req CompactString = "device",
        acd_group: opt CompactString = "acdGroup",
    }
}
xml_struct! {
    GetAgentStateResponse + extensions {
        agent_state_list: list AgentStateEntry = "agentStateList"; item "agentStateEntry",
    }
}
xml_struct! {
    /// Decoded in any order: BroadWorks writes `device, activateForward, forwardingType, …`.
    SetForwarding + extensions {
        device: req CompactString = "device",
        forwarding_type: opt ForwardingType = "forwardingType",
        activate_forward: req bool = "activateForward",
        forward_dn: opt CompactString = "forwardDN",
        ring_count: opt u32 = "ringCount",
        ring_duration: opt u32 = "ringDuration",
    }
}
xml_struct! { SetForwardingResponse + extensions {} }
xml_struct! {
    GetForwarding + extensions {
        device: req CompactString = "device",
    }
}
xml_struct! {
    GetForwardingResponse + extensions {
        forwarding_list: list ForwardListItem = "forwardingList"; item "forwardListItem",
    }
}
xml_struct! {
    SetDoNotDisturb + extensions {
        device: req CompactString = "device",
        do_not_disturb_on: req bool = "doNotDisturbOn",
        call_origination: opt bool = "callOrigination",
    }
}
xml_struct! { SetDoNotDisturbResponse + extensions {} }
xml_struct! {
    GetDoNotDisturb + extensions {
        device: req CompactString = "device",
    }
}
xml_struct! {
    GetDoNotDisturbResponse + extensions {
        do_not_disturb_on: req bool = "doNotDisturbOn",
    }
}

// ----------------------------------------------------------------------------- escape, private event

xml_struct! {
    /// The escape service; `privateData` is a direct child (no `extensions` wrapper).
    Escape + extensions {
        escape_register_id: opt CompactString = "escapeRegisterID",
        private_data: opt PrivateData = "privateData",
    }
}
xml_struct! {
    /// Its only content is `extensions/privateData` (a hot-desking query answer).
    EscapeResponse + extensions {}
}
xml_struct! {
    /// A switch-originated private event; `privateData` is a direct child.
    PrivateEvent + extensions {
        monitor_cross_ref_id: req CompactString = "monitorCrossRefID",
        private_data: opt PrivateData = "privateData",
    }
}

impl EscapeResponse {
    /// The private data inside `extensions`.
    pub fn private_data(&self) -> Option<&PrivateData> {
        self.extensions.as_ref()?.private_data.as_ref()
    }
}

// ----------------------------------------------------------------------------- CSTAErrorCode

/// `CSTAErrorCode`: the negative answer to any service, with exactly one family child.
#[derive(Debug, Clone, PartialEq)]
pub struct CstaErrorCode {
    pub error: CstaError,
}

impl CstaErrorCode {
    pub(crate) fn decode_children<'a>(p: &mut Parser<'a>, el: &Elem<'a>) -> Result<Self> {
        Ok(CstaErrorCode {
            error: CstaError::decode_children(p, el)?,
        })
    }
    pub(crate) fn encode_children(&self, w: &mut Writer<'_>) {
        self.error.encode_children(w)
    }
    pub(crate) fn to_json_map(&self) -> serde_json::Map<String, Value> {
        match self.error.to_json() {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
    pub(crate) fn from_json_map(
        obj: &serde_json::Map<String, Value>,
    ) -> std::result::Result<Self, JsonError> {
        let mut o = obj.clone();
        o.remove("message");
        Ok(CstaErrorCode {
            error: CstaError::from_json(&Value::Object(o), "CSTAErrorCode")?,
        })
    }
}

impl From<CstaError> for CstaErrorCode {
    fn from(error: CstaError) -> Self {
        CstaErrorCode { error }
    }
}

// ----------------------------------------------------------------------------- the Message enum

/// A message whose root this codec does not know, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMessage {
    /// The root's local name.
    pub name: String,
    /// The whole document.
    pub xml: String,
}

/// How a message travels: what its invoke ID means (csta-xml.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A request (from either side); the answer carries its invoke ID.
    Request,
    /// A positive answer.
    Response,
    /// A negative answer (`CSTAErrorCode`, ECMA-354 NegResponses).
    Error,
    /// An unsolicited event (invoke ID 9999).
    Event,
    /// Unknown root.
    Unknown,
}

/// Which namespace a root is written in.
enum Ns {
    Csta,
    Session,
}

macro_rules! messages {
    ($( $var:ident = $root:literal $(| $alias:literal)* => $kind:ident $ns:ident ),* $(,)?) => {
        /// Every CSTA message ctid and csta-sim speak.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Message {
            $( #[doc = concat!("`", $root, "`")] $var($var), )*
            /// A root this codec does not know.
            Unknown(UnknownMessage),
        }

        impl Message {
            /// The XML root's local name.
            pub fn name(&self) -> &str {
                match self { $( Message::$var(_) => $root, )* Message::Unknown(u) => &u.name }
            }
            /// Request, response, error or event.
            pub fn kind(&self) -> MessageKind {
                match self { $( Message::$var(_) => MessageKind::$kind, )* Message::Unknown(_) => MessageKind::Unknown }
            }
            /// Every root name this codec knows.
            pub const ROOTS: &'static [&'static str] = &[$($root),*];

            pub(crate) fn decode_root<'a>(p: &mut Parser<'a>, el: &Elem<'a>, text: &str) -> Result<Self> {
                let local = el.local();
                $(
                    if local == $root.as_bytes() $(|| local == $alias.as_bytes())* {
                        return Ok(Message::$var($var::decode_children(p, el)?));
                    }
                )*
                p.skip(el)?;
                Ok(Message::Unknown(UnknownMessage { name: el.local_str(), xml: text.to_string() }))
            }

            pub(crate) fn encode_root(&self, w: &mut Writer<'_>) -> std::result::Result<(), EncodeError> {
                match self {
                    $( Message::$var(m) => {
                        let ns = match Ns::$ns { Ns::Csta => w.edition().namespace(), Ns::Session => NS_354 };
                        let mark = w.open_ns($root, ns);
                        m.encode_children(w);
                        w.close($root, mark);
                    } )*
                    Message::Unknown(u) => {
                        let body = strip_decl(&u.xml);
                        if body.is_empty() {
                            return Err(EncodeError::Invalid(format!("unknown message {} has no XML", u.name)));
                        }
                        w.raw(body);
                    }
                }
                Ok(())
            }

            /// The JSON object: `{"message": root, …children}`.
            pub fn to_json(&self) -> Value {
                let mut map = match self {
                    $( Message::$var(m) => m.to_json_map(), )*
                    Message::Unknown(u) => {
                        let mut m = serde_json::Map::new();
                        m.insert("unknown".into(), Value::Bool(true));
                        m.insert("xml".into(), Value::String(u.xml.clone()));
                        m
                    }
                };
                map.insert("message".into(), Value::String(self.name().to_string()));
                Value::Object(map)
            }

            /// Build a message from its JSON object.
            pub fn from_json(v: &Value) -> std::result::Result<Self, JsonError> {
                let obj = v.as_object().ok_or_else(|| JsonError::new("(document)", "a JSON object", v))?;
                let name = match obj.get("message") {
                    Some(Value::String(s)) => s.as_str(),
                    Some(other) => return Err(JsonError::new("message", "a string", other)),
                    None => return Err(JsonError("missing key \"message\" (the XML root name)".into())),
                };
                $( if name == $root $(|| name == $alias)* { return Ok(Message::$var($var::from_json_map(obj)?)); } )*
                match obj.get("xml").and_then(Value::as_str) {
                    Some(xml) => Ok(Message::Unknown(UnknownMessage { name: name.to_string(), xml: xml.to_string() })),
                    None => Err(JsonError(format!("unknown message {name:?} (and no \"xml\" to send verbatim)"))),
                }
            }
        }

        $( impl From<$var> for Message { fn from(m: $var) -> Self { Message::$var(m) } } )*
    };
}

fn strip_decl(xml: &str) -> &str {
    let t = xml.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with("<?xml") {
        if let Some(i) = t.find("?>") {
            return t[i + 2..].trim_start();
        }
    }
    t
}

messages! {
    StartApplicationSession = "StartApplicationSession" => Request Session,
    StartApplicationSessionPosResponse = "StartApplicationSessionPosResponse" => Response Session,
    StartApplicationSessionNegResponse = "StartApplicationSessionNegResponse" => Error Session,
    ResetApplicationSessionTimer = "ResetApplicationSessionTimer" => Request Session,
    ResetApplicationSessionTimerPosResponse = "ResetApplicationSessionTimerPosResponse" => Response Session,
    ResetApplicationSessionTimerNegResponse = "ResetApplicationSessionTimerNegResponse" => Error Session,
    StopApplicationSession = "StopApplicationSession" => Request Session,
    StopApplicationSessionPosResponse = "StopApplicationSessionPosResponse" => Response Session,
    StopApplicationSessionNegResponse = "StopApplicationSessionNegResponse" => Error Session,
    ApplicationSessionTerminated = "ApplicationSessionTerminated" => Event Session,

    SystemStatus = "SystemStatus" => Request Csta,
    SystemStatusResponse = "SystemStatusResponse" => Response Csta,
    SystemRegister = "SystemRegister" => Request Csta,
    SystemRegisterResponse = "SystemRegisterResponse" => Response Csta,
    RequestSystemStatus = "RequestSystemStatus" => Request Csta,
    RequestSystemStatusResponse = "RequestSystemStatusResponse" => Response Csta,

    MonitorStart = "MonitorStart" => Request Csta,
    MonitorStartResponse = "MonitorStartResponse" => Response Csta,
    MonitorStop = "MonitorStop" => Request Csta,
    MonitorStopResponse = "MonitorStopResponse" => Response Csta,
    SnapshotDevice = "SnapshotDevice" => Request Csta,
    SnapshotDeviceResponse = "SnapshotDeviceResponse" => Response Csta,
    SnapshotDeviceData = "SnapshotDeviceData" => Event Csta,

    ServiceInitiatedEvent = "ServiceInitiatedEvent" => Event Csta,
    OriginatedEvent = "OriginatedEvent" => Event Csta,
    DeliveredEvent = "DeliveredEvent" => Event Csta,
    EstablishedEvent = "EstablishedEvent" => Event Csta,
    ConnectionClearedEvent = "ConnectionClearedEvent" => Event Csta,
    CallClearedEvent = "CallClearedEvent" => Event Csta,
    HeldEvent = "HeldEvent" => Event Csta,
    RetrievedEvent = "RetrievedEvent" => Event Csta,
    TransferedEvent = "TransferedEvent" | "TransferredEvent" => Event Csta,
    ConferencedEvent = "ConferencedEvent" => Event Csta,
    DivertedEvent = "DivertedEvent" => Event Csta,
    FailedEvent = "FailedEvent" => Event Csta,
    QueuedEvent = "QueuedEvent" => Event Csta,
    NetworkReachedEvent = "NetworkReachedEvent" => Event Csta,
    CallInformationEvent = "CallInformationEvent" => Event Csta,
    ServiceCompletionFailureEvent = "ServiceCompletionFailureEvent" => Event Csta,

    AgentLoggedOnEvent = "AgentLoggedOnEvent" => Event Csta,
    AgentLoggedOffEvent = "AgentLoggedOffEvent" => Event Csta,
    AgentReadyEvent = "AgentReadyEvent" => Event Csta,
    AgentNotReadyEvent = "AgentNotReadyEvent" => Event Csta,
    AgentWorkingAfterCallEvent = "AgentWorkingAfterCallEvent" => Event Csta,
    AgentBusyEvent = "AgentBusyEvent" => Event Csta,
    ForwardingEvent = "ForwardingEvent" => Event Csta,
    DoNotDisturbEvent = "DoNotDisturbEvent" => Event Csta,
    BackInServiceEvent = "BackInServiceEvent" => Event Csta,
    OutOfServiceEvent = "OutOfServiceEvent" => Event Csta,

    MakeCall = "MakeCall" => Request Csta,
    MakeCallResponse = "MakeCallResponse" => Response Csta,
    AnswerCall = "AnswerCall" => Request Csta,
    AnswerCallResponse = "AnswerCallResponse" => Response Csta,
    ClearConnection = "ClearConnection" => Request Csta,
    ClearConnectionResponse = "ClearConnectionResponse" => Response Csta,
    ClearCall = "ClearCall" => Request Csta,
    ClearCallResponse = "ClearCallResponse" => Response Csta,
    HoldCall = "HoldCall" => Request Csta,
    HoldCallResponse = "HoldCallResponse" => Response Csta,
    RetrieveCall = "RetrieveCall" => Request Csta,
    RetrieveCallResponse = "RetrieveCallResponse" => Response Csta,
    ConsultationCall = "ConsultationCall" => Request Csta,
    ConsultationCallResponse = "ConsultationCallResponse" => Response Csta,
    TransferCall = "TransferCall" => Request Csta,
    TransferCallResponse = "TransferCallResponse" => Response Csta,
    ConferenceCall = "ConferenceCall" => Request Csta,
    ConferenceCallResponse = "ConferenceCallResponse" => Response Csta,
    SingleStepTransferCall = "SingleStepTransferCall" => Request Csta,
    SingleStepTransferCallResponse = "SingleStepTransferCallResponse" => Response Csta,
    DeflectCall = "DeflectCall" => Request Csta,
    DeflectCallResponse = "DeflectCallResponse" => Response Csta,
    AlternateCall = "AlternateCall" => Request Csta,
    AlternateCallResponse = "AlternateCallResponse" => Response Csta,
    ReconnectCall = "ReconnectCall" => Request Csta,
    ReconnectCallResponse = "ReconnectCallResponse" => Response Csta,
    GenerateDigits = "GenerateDigits" => Request Csta,
    GenerateDigitsResponse = "GenerateDigitsResponse" => Response Csta,

    SetAgentState = "SetAgentState" => Request Csta,
    SetAgentStateResponse = "SetAgentStateResponse" => Response Csta,
    GetAgentState = "GetAgentState" => Request Csta,
    GetAgentStateResponse = "GetAgentStateResponse" => Response Csta,
    SetForwarding = "SetForwarding" => Request Csta,
    SetForwardingResponse = "SetForwardingResponse" => Response Csta,
    GetForwarding = "GetForwarding" => Request Csta,
    GetForwardingResponse = "GetForwardingResponse" => Response Csta,
    SetDoNotDisturb = "SetDoNotDisturb" => Request Csta,
    SetDoNotDisturbResponse = "SetDoNotDisturbResponse" => Response Csta,
    GetDoNotDisturb = "GetDoNotDisturb" => Request Csta,
    GetDoNotDisturbResponse = "GetDoNotDisturbResponse" => Response Csta,

    Escape = "Escape" => Request Csta,
    EscapeResponse = "EscapeResponse" => Response Csta,
    PrivateEvent = "PrivateEvent" => Event Csta,
    CstaErrorCode = "CSTAErrorCode" => Error Csta,
}

impl Message {
    /// The `monitorCrossRefID` of an event that carries one.
    pub fn monitor_cross_ref_id(&self) -> Option<&str> {
        macro_rules! x {
            ($($v:ident),*) => {
                match self { $( Message::$v(e) => Some(e.monitor_cross_ref_id.as_str()), )* _ => None }
            };
        }
        x!(
            ServiceInitiatedEvent,
            OriginatedEvent,
            DeliveredEvent,
            EstablishedEvent,
            ConnectionClearedEvent,
            CallClearedEvent,
            HeldEvent,
            RetrievedEvent,
            TransferedEvent,
            ConferencedEvent,
            DivertedEvent,
            FailedEvent,
            QueuedEvent,
            NetworkReachedEvent,
            CallInformationEvent,
            ServiceCompletionFailureEvent,
            AgentLoggedOnEvent,
            AgentLoggedOffEvent,
            AgentReadyEvent,
            AgentNotReadyEvent,
            AgentWorkingAfterCallEvent,
            AgentBusyEvent,
            ForwardingEvent,
            DoNotDisturbEvent,
            BackInServiceEvent,
            OutOfServiceEvent,
            PrivateEvent
        )
    }
}
