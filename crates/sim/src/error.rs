//! [`SimError`]: why the switch refused an operation. Every refusal carries the CSTAErrorCode a
//! CSTA client gets for it, so the control API and the CSTA side report the same thing.

use ctid_csta::{
    CstaError, OperationError, StateIncompatibilityError, SystemResourceAvailabilityError,
};

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The switch refused it; `error` is the CSTAErrorCode a CSTA client would get.
    #[error("{message} ({error})")]
    Csta { error: CstaError, message: String },
    /// The request itself is unusable (control API only: bad JSON, unknown literal).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The simulator has stopped.
    #[error("the simulator has stopped")]
    Stopped,
}

/// Result with [`SimError`].
pub type Result<T, E = SimError> = std::result::Result<T, E>;

impl SimError {
    /// A refusal with the given CSTA error.
    pub fn csta(error: CstaError, message: impl Into<String>) -> Self {
        SimError::Csta {
            error,
            message: message.into(),
        }
    }
    /// `operation/<value>`.
    pub fn op(value: OperationError, message: impl Into<String>) -> Self {
        Self::csta(CstaError::Operation(value), message)
    }
    /// `stateIncompatibility/<value>`.
    pub fn state(value: StateIncompatibilityError, message: impl Into<String>) -> Self {
        Self::csta(CstaError::StateIncompatibility(value), message)
    }
    /// `systemResourceAvailibility/<value>`.
    pub fn resource(value: SystemResourceAvailabilityError, message: impl Into<String>) -> Self {
        Self::csta(CstaError::SystemResourceAvailability(value), message)
    }
    /// `operation/invalidDeviceID` for an unknown device.
    pub fn unknown_device(device: &str) -> Self {
        Self::op(
            OperationError::InvalidDeviceID,
            format!("device {device:?} is unknown to the switch"),
        )
    }
    /// `operation/invalidCallID` for an unknown call.
    pub fn unknown_call(call: &str) -> Self {
        Self::op(
            OperationError::InvalidCallID,
            format!("call {call:?} does not exist"),
        )
    }
    /// `stateIncompatibility/invalidObjectState`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::state(StateIncompatibilityError::InvalidObjectState, message)
    }
    /// `operation/invalidParameterValue`.
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::op(OperationError::InvalidParameterValue, message)
    }
    /// The CSTA error to answer with (`operation/generic` for the non-CSTA variants).
    pub fn csta_error(&self) -> CstaError {
        match self {
            SimError::Csta { error, .. } => error.clone(),
            _ => CstaError::Operation(OperationError::Generic),
        }
    }
    /// HTTP status for the control API.
    pub fn http_status(&self) -> u16 {
        match self {
            SimError::Csta {
                error: CstaError::Operation(OperationError::InvalidDeviceID),
                ..
            }
            | SimError::Csta {
                error: CstaError::Operation(OperationError::InvalidCallID),
                ..
            } => 404,
            SimError::Csta { .. } => 409,
            SimError::BadRequest(_) => 400,
            SimError::Stopped => 503,
        }
    }
}
