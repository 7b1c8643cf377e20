//! CSTAErrorCode → T-Library 11xx codes (docs/protocol.md, §8).

use ctid_csta::CstaError;

/// The T-Library error code for a Connector refusal.
pub fn tlib_code(e: &CstaError) -> u32 {
    match e {
        CstaError::Operation(v) => operation_code(v.as_str()),
        CstaError::StateIncompatibility(v) => match v.as_str() {
            "invalidObjectState"
            | "invalidDeviceState"
            | "connectedCallExists"
            | "invalidActiveDeviceState"
            | "invalidCalledDeviceState"
            | "invalidCallingDeviceState"
            | "invalidCallToParkDeviceState"
            | "invalidDestinationDeviceState"
            | "invalidDivertingDeviceState"
            | "invalidHeldDeviceState"
            | "invalidParkToDeviceState" => 1161,
            "invalidConnectionState"
            | "invalidActiveConnectionState"
            | "invalidHeldConnectionState"
            | "invalidConnectionIDForActiveCall" => 1162,
            "noActiveCall" => 1163,
            "noHeldCall" => 1164,
            "noCallToClear" => 1165,
            "noConnectionToClear" => 1166,
            "noCallToAnswer" => 1167,
            "noCallToComplete" => 1168,
            _ => 1160,
        },
        CstaError::SystemResourceAvailability(v) => match v.as_str() {
            "internalResourceBusy"
            | "classifierBusy"
            | "toneDetectorBusy"
            | "toneGeneratorBusy"
            | "noMediaChannelsAvailable" => 1171,
            "resourceBusy" => 1172,
            "networkBusy" => 1174,
            "networkOutOfService" => 1175,
            "overallMonitorLimitExceeded" => 1176,
            "conferenceMemberLimitExceeded" => 1177,
            s if s.ends_with("OutOfService") => 1173,
            _ => 1170,
        },
        CstaError::SubscribedResourceAvailability(v) => match v.as_str() {
            "objectMonitorLimitExceeded" => 1181,
            "trunkLimitExceeded" => 1182,
            "outstandingReqLimitExceeded" => 1183,
            _ => 1180,
        },
        CstaError::PerformanceManagement(v) => match v.as_str() {
            "performanceLimitExceeded" => 1186,
            _ => 1185,
        },
        CstaError::Security(v) => match v.as_str() {
            "sequenceNumberViolated" => 1191,
            "timeStampViolated" => 1192,
            _ => 1190,
        },
        CstaError::PrivateData(_) | CstaError::PrivateErrorCode(_) | CstaError::Unspecified => 1199,
    }
}

fn operation_code(v: &str) -> u32 {
    match v {
        "objectNotKnown" => 1143,
        "invalidCallingDeviceID" | "invalidCallingDeviceObjectType" => 1144,
        "invalidCalledDeviceID" | "invalidCalledDeviceObjectType" => 1145,
        "invalidForwardingDestination" => 1146,
        "privilegeViolationCalledDevice" => 1148,
        "privilegeViolationCallingDevice" => 1149,
        "invalidCallID" | "invalidActiveCallID" | "invalidHeldCallID" => 1150,
        "invalidConnectionID" | "invalidActiveConnectionID" | "invalidHeldConnectionID" => 1152,
        "invalidDestination" | "invalidDestinationDeviceObject" => 1153,
        "invalidFeature" => 1154,
        "invalidAllocationState" => 1155,
        "invalidCrossRefID" | "invalidMonitorCrossRefID" | "invalidEscapeCrossRefID" => 1156,
        "securityViolation" => 1158,
        s if s.starts_with("requestIncompatibleWith") => 1141,
        s if s.ends_with("OutOfRange") => 1142,
        s if s.starts_with("privilegeViolation") => 1147,
        s if s.starts_with("invalid") && s.ends_with("DeviceID") => 1151,
        s if s.ends_with("ObjectType") || s == "invalidObjectType" => 1157,
        _ => 1140,
    }
}

/// Is this the answer of a Connector that does not speak the hot-desking dialect?
pub fn is_dialect_unsupported(e: &CstaError) -> bool {
    matches!(e, CstaError::Operation(v) if v.as_str() == "serviceNotSupported" || v.as_str() == "privateDataNotSupported")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctid_csta::*;

    #[test]
    fn hot_desking_codes() {
        let c = |e| tlib_code(&e);
        assert_eq!(
            c(CstaError::StateIncompatibility(
                StateIncompatibilityError::InvalidObjectState
            )),
            1161
        );
        assert_eq!(
            c(CstaError::Operation(OperationError::InvalidDeviceID)),
            1151
        );
        assert_eq!(
            c(CstaError::SystemResourceAvailability(
                SystemResourceAvailabilityError::ResourceBusy
            )),
            1172
        );
        assert_eq!(
            c(CstaError::Operation(OperationError::InvalidParameterValue)),
            1140
        );
        assert_eq!(
            c(CstaError::Operation(OperationError::InvalidCalledDeviceID)),
            1145
        );
        assert_eq!(
            c(CstaError::Operation(
                OperationError::InvalidMonitorObjectType
            )),
            1157
        );
        assert_eq!(
            c(CstaError::Operation(OperationError::RingCountOutOfRange)),
            1142
        );
        assert_eq!(c(CstaError::Unspecified), 1199);
        assert_eq!(
            c(CstaError::SystemResourceAvailability(
                SystemResourceAvailabilityError::DeviceOutOfService
            )),
            1173
        );
    }
}
