//! T-Library error codes (docs/protocol.md, §8) and this crate's error types.

use std::fmt;

/// A T-Library error code, the `ErrorCode` of EventError. Any number may travel; the constants
/// name the ones ctid uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

macro_rules! codes {
    ($($(#[$m:meta])* $name:ident = $n:expr, $sym:literal;)*) => {
        impl ErrorCode {
            $($(#[$m])* pub const $name: ErrorCode = ErrorCode($n);)*

            /// The symbol: `TERR_...` as in the T-Library error header; for the 11xx range (which that
            /// header does not name one by one) a descriptive `CSTA_...` name chosen by ctid.
            pub fn symbol(self) -> Option<&'static str> {
                match self.0 { $($n => Some($sym),)* _ => None }
            }
        }
    };
}

codes! {
    /// 40: no more licences.
    NOMORE_LICENSE = 40, "TERR_NOMORE_LICENSE";
    /// 41: client has not registered the DN (or only in ModeMonitor).
    NOT_REGISTERED = 41, "TERR_NOT_REGISTERED";
    /// 42: resource already seized (ModePrivate conflict, DN occupied by another agent).
    RESOURCE_SEIZED = 42, "TERR_RESOURCE_SEIZED";
    /// 43: object already in requested state.
    IN_SAME_STATE = 43, "TERR_IN_SAME_STATE";
    /// 50: unrecognised error.
    UNKNOWN_ERROR = 50, "TERR_UNKNOWN_ERROR";
    /// 51: unsupported operation (unknown request, unsupported InfoType / PrivateMsgID).
    UNSUP_OPER = 51, "TERR_UNSUP_OPER";
    /// 52: internal error.
    INTERNAL = 52, "TERR_INTERNAL";
    /// 53: invalid attribute value (bad JSON, missing/ill-typed attribute, bad ReferenceID).
    INVALID_ATTR = 53, "TERR_INVALID_ATTR";
    /// 54: no connection to the switch.
    NO_SWITCH = 54, "TERR_NO_SWITCH";
    /// 55: incorrect protocol version.
    PROTO_VERS = 55, "TERR_PROTO_VERS";
    /// 56: invalid connection ID.
    INV_CONNID = 56, "TERR_INV_CONNID";
    /// 57: timeout expired (no Connector answer within `request-timeout`).
    TIMEOUT = 57, "TERR_TIMEOUT";
    /// 58: out of service.
    OUT_OF_SERVICE = 58, "TERR_OUT_OF_SERVICE";
    /// 59: DN not configured (refused type; query of an unknown DN).
    NOT_CONFIGURED = 59, "TERR_NOT_CONFIGURED";
    /// 71: invalid called DN.
    INV_CALD_DN = 71, "TERR_INV_CALD_DN";
    /// 231: DN is busy.
    DN_BUSY = 231, "TERR_DN_BUSY";
    /// 232: no answer at DN.
    DN_NO_ANSWER = 232, "TERR_DN_NO_ANSWER";
    /// 233: call rejected.
    CALL_REJECTED = 233, "TERR_CALL_REJECTED";
    /// 1901 (ctid): RequestResumeSession of an unknown SessionID.
    SESSION_UNKNOWN = 1901, "CTID_SESSION_UNKNOWN";
    /// 1902 (ctid): the session expired (not resumed within `resume-window`).
    SESSION_EXPIRED = 1902, "CTID_SESSION_EXPIRED";
    /// 1903 (ctid): events the client needs were no longer kept (`resume-buffer-bytes`).
    SESSION_EVENTS_LOST = 1903, "CTID_SESSION_EVENTS_LOST";
    /// 1904 (ctid): the session belongs to another token.
    SESSION_OTHER_TOKEN = 1904, "CTID_SESSION_OTHER_TOKEN";
    /// 1905 (ctid): RequestResumeSession after other requests on the connection.
    SESSION_NOT_FIRST = 1905, "CTID_SESSION_NOT_FIRST";
    /// 1102: the Connector's answer is badly structured.
    CSTA_BADLY_STRUCTURED = 1102, "CSTA_BADLY_STRUCTURED_APDU";
    /// 1111: unrecognised operation.
    CSTA_UNRECOGNISED_OPERATION = 1111, "CSTA_UNRECOGNISED_OPERATION";
    /// 1121: result response unexpected.
    CSTA_RESULT_UNEXPECTED = 1121, "CSTA_RESULT_RESPONSE_UNEXPECTED";
    /// 1140: operation error, generic.
    CSTA_OPERATION_GENERIC = 1140, "CSTA_GENERIC_OPERATION";
    /// 1141: request incompatible with object.
    CSTA_REQUEST_INCOMPATIBLE = 1141, "CSTA_REQUEST_INCOMPATIBLE_WITH_OBJECT";
    /// 1142: value out of range.
    CSTA_VALUE_OUT_OF_RANGE = 1142, "CSTA_VALUE_OUT_OF_RANGE";
    /// 1143: object not known.
    CSTA_OBJECT_NOT_KNOWN = 1143, "CSTA_OBJECT_NOT_KNOWN";
    /// 1144: invalid calling device.
    CSTA_INVALID_CALLING_DEVICE = 1144, "CSTA_INVALID_CALLING_DEVICE";
    /// 1145: invalid called device.
    CSTA_INVALID_CALLED_DEVICE = 1145, "CSTA_INVALID_CALLED_DEVICE";
    /// 1146: invalid forwarding destination.
    CSTA_INVALID_FORWARDING_DESTINATION = 1146, "CSTA_INVALID_FORWARDING_DESTINATION";
    /// 1147: privilege violation on specified device.
    CSTA_PRIVILEGE_VIOLATION_SPECIFIED = 1147, "CSTA_PRIVILEGE_VIOLATION_ON_SPECIFIED_DEVICE";
    /// 1148: privilege violation on called device.
    CSTA_PRIVILEGE_VIOLATION_CALLED = 1148, "CSTA_PRIVILEGE_VIOLATION_ON_CALLED_DEVICE";
    /// 1149: privilege violation on calling device.
    CSTA_PRIVILEGE_VIOLATION_CALLING = 1149, "CSTA_PRIVILEGE_VIOLATION_ON_CALLING_DEVICE";
    /// 1150: invalid call identifier.
    CSTA_INVALID_CALL_ID = 1150, "CSTA_INVALID_CALL_IDENTIFIER";
    /// 1151: invalid device identifier (hot desking: unknown guest or host).
    CSTA_INVALID_DEVICE = 1151, "CSTA_INVALID_DEVICE_IDENTIFIER";
    /// 1152: invalid connection identifier.
    CSTA_INVALID_CONNECTION = 1152, "CSTA_INVALID_CONNECTION_IDENTIFIER";
    /// 1153: invalid destination.
    CSTA_INVALID_DESTINATION = 1153, "CSTA_INVALID_DESTINATION";
    /// 1154: invalid feature.
    CSTA_INVALID_FEATURE = 1154, "CSTA_INVALID_FEATURE";
    /// 1155: invalid allocation state.
    CSTA_INVALID_ALLOCATION_STATE = 1155, "CSTA_INVALID_ALLOCATION_STATE";
    /// 1156: invalid cross-reference ID.
    CSTA_INVALID_CROSS_REF_ID = 1156, "CSTA_INVALID_CROSS_REF_ID";
    /// 1157: invalid object type.
    CSTA_INVALID_OBJECT_TYPE = 1157, "CSTA_INVALID_OBJECT_TYPE";
    /// 1158: security violation.
    CSTA_SECURITY_VIOLATION = 1158, "CSTA_SECURITY_VIOLATION";
    /// 1160: state incompatibility, generic.
    CSTA_STATE_GENERIC = 1160, "CSTA_GENERIC_STATE_INCOMPATIBILITY";
    /// 1161: incorrect object state (hot desking: already / not associated).
    CSTA_INVALID_OBJECT_STATE = 1161, "CSTA_INVALID_OBJECT_STATE";
    /// 1162: invalid connection state.
    CSTA_INVALID_CONNECTION_STATE = 1162, "CSTA_INVALID_CONNECTION_ID_FOR_ACTIVE_CALL";
    /// 1163: no active call.
    CSTA_NO_ACTIVE_CALL = 1163, "CSTA_NO_ACTIVE_CALL";
    /// 1164: no held call.
    CSTA_NO_HELD_CALL = 1164, "CSTA_NO_HELD_CALL";
    /// 1165: no call to clear.
    CSTA_NO_CALL_TO_CLEAR = 1165, "CSTA_NO_CALL_TO_CLEAR";
    /// 1166: no connection to clear.
    CSTA_NO_CONNECTION_TO_CLEAR = 1166, "CSTA_NO_CONNECTION_TO_CLEAR";
    /// 1167: no call to answer.
    CSTA_NO_CALL_TO_ANSWER = 1167, "CSTA_NO_CALL_TO_ANSWER";
    /// 1168: no call to complete.
    CSTA_NO_CALL_TO_COMPLETE = 1168, "CSTA_NO_CALL_TO_COMPLETE";
    /// 1170: system resource availability, generic.
    CSTA_SYSTEM_RESOURCE_GENERIC = 1170, "CSTA_GENERIC_SYSTEM_RESOURCE_AVAILABILITY";
    /// 1171: service busy.
    CSTA_SERVICE_BUSY = 1171, "CSTA_SERVICE_BUSY";
    /// 1172: resource busy (hot desking: host in use by another guest).
    CSTA_RESOURCE_BUSY = 1172, "CSTA_RESOURCE_BUSY";
    /// 1173: resource out of service.
    CSTA_RESOURCE_OUT_OF_SERVICE = 1173, "CSTA_RESOURCE_OUT_OF_SERVICE";
    /// 1174: network busy.
    CSTA_NETWORK_BUSY = 1174, "CSTA_NETWORK_BUSY";
    /// 1175: network out of service.
    CSTA_NETWORK_OUT_OF_SERVICE = 1175, "CSTA_NETWORK_OUT_OF_SERVICE";
    /// 1176: overall monitor limit exceeded.
    CSTA_OVERALL_MONITOR_LIMIT = 1176, "CSTA_OVERALL_MONITOR_LIMIT_EXCEEDED";
    /// 1177: conference member limit exceeded.
    CSTA_CONFERENCE_MEMBER_LIMIT = 1177, "CSTA_CONFERENCE_MEMBER_LIMIT_EXCEEDED";
    /// 1180: subscribed resource availability, generic.
    CSTA_SUBSCRIBED_RESOURCE_GENERIC = 1180, "CSTA_GENERIC_SUBSCRIBED_RESOURCE_AVAILABILITY";
    /// 1181: object monitor limit exceeded.
    CSTA_OBJECT_MONITOR_LIMIT = 1181, "CSTA_OBJECT_MONITOR_LIMIT_EXCEEDED";
    /// 1182: external trunk limit exceeded.
    CSTA_TRUNK_LIMIT = 1182, "CSTA_EXTERNAL_TRUNK_LIMIT_EXCEEDED";
    /// 1183: outstanding request limit exceeded.
    CSTA_OUTSTANDING_REQUEST_LIMIT = 1183, "CSTA_OUTSTANDING_REQUEST_LIMIT_EXCEEDED";
    /// 1185: performance management, generic.
    CSTA_PERFORMANCE_GENERIC = 1185, "CSTA_GENERIC_PERFORMANCE_MANAGEMENT";
    /// 1186: performance limit exceeded.
    CSTA_PERFORMANCE_LIMIT = 1186, "CSTA_PERFORMANCE_LIMIT_EXCEEDED";
    /// 1190: security, unspecified.
    CSTA_SECURITY_GENERIC = 1190, "CSTA_UNSPECIFIED_SECURITY_ERROR";
    /// 1191: sequence number violated.
    CSTA_SEQUENCE_NUMBER_VIOLATED = 1191, "CSTA_SEQUENCE_NUMBER_VIOLATED";
    /// 1192: time stamp violated.
    CSTA_TIME_STAMP_VIOLATED = 1192, "CSTA_TIME_STAMP_VIOLATED";
    /// 1193: PAC violated.
    CSTA_PAC_VIOLATED = 1193, "CSTA_PAC_VIOLATED";
    /// 1194: seal violated.
    CSTA_SEAL_VIOLATED = 1194, "CSTA_SEAL_VIOLATED";
    /// 1199: unspecified CSTA error.
    CSTA_UNSPECIFIED = 1199, "CSTA_UNSPECIFIED_ERROR";
    /// 1703: emulated agent, wrong ID.
    SOFT_AGENT_WRONG_ID = 1703, "TERR_SOFT_AGENT_WRONG_ID";
    /// 1704: emulated agent, ID in use.
    SOFT_AGENT_ID_IN_USE = 1704, "TERR_SOFT_AGENT_ID_IN_USE";
    /// 1705: emulated agent, password mismatch.
    SOFT_AGENT_PSWD_DOESNT_MATCH = 1705, "TERR_SOFT_AGENT_PSWD_DOESNT_MATCH";
    /// 1706: emulated agent, already logged in.
    SOFT_AGENT_ALREADY_LOGGED_IN = 1706, "TERR_SOFT_AGENT_ALREADY_LOGGED_IN";
    /// 1707: emulated agent, not logged in.
    SOFT_AGENT_NOT_LOGGED_IN = 1707, "TERR_SOFT_AGENT_NOT_LOGGED_IN";
}

impl ErrorCode {
    /// True for codes returned by the CSTA Connector (1100–1199).
    pub fn is_csta(self) -> bool {
        (1100..=1199).contains(&self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u32> for ErrorCode {
    fn from(n: u32) -> Self {
        ErrorCode(n)
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

/// Why a client request could not be decoded. The server answers it with EventError carrying
/// `code`, `message` and `reference_id` (see [`RequestError::to_event`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct RequestError {
    /// 53 (invalid JSON, ill-typed or out-of-range attribute, missing/invalid ReferenceID) or
    /// 51 (unknown request name).
    pub code: ErrorCode,
    /// One line naming the attribute and what was expected.
    pub message: String,
    /// The request's ReferenceID when it could be read (it is absent when it was the problem).
    pub reference_id: Option<u32>,
}

impl RequestError {
    /// The EventError to send back (ReferenceID when known, ErrorCode, ErrorMessage); the caller
    /// stamps EventSequenceNumber and time.
    pub fn to_event(&self) -> crate::Event {
        let mut e = crate::Event::error(self.code, self.message.clone());
        e.reference_id = self.reference_id;
        e
    }
}

/// Errors of this crate outside request decoding (decoding events on the client side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON is not a valid event.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The JSON is not a valid request (client side; carries the message of [`RequestError`]).
    #[error("invalid request: {0}")]
    InvalidRequest(RequestError),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
