//! Client requests: one table of every request this server takes, naming the handler that
//! serves it and the guard it passes first. EventServerInfo's `SupportedRequests` is derived
//! from the table; the guard (link up, ThisDN present, registered by this client, not in
//! ModeMonitor) is written once here (`docs/protocol.md`, §6 and §9.2;
//! `docs/architecture.md`, "Client requests").

use ctid_protocol::{ErrorCode, RegisterMode, Request, RequestName};

use crate::outbox::Refusal;

/// Which part serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// RequestRegisterClient: the application's name.
    RegisterClient,
    /// RequestQueryServer: EventServerInfo.
    QueryServer,
    /// RequestRegisterAddress (DNs and monitors).
    Register,
    /// RequestUnregisterAddress.
    Unregister,
    /// RequestQueryAddress: EventAddressInfo.
    QueryAddress,
    /// RequestPrivateService: hot desking.
    PrivateService,
    /// A call-control request made a CSTA service (`call_control`).
    CallControl,
    /// RequestCallForwardSet/Cancel, RequestSetDNDOn/Off (`features`).
    Feature,
    /// RequestAgentLogin/Logout/Ready/NotReady (`agents`).
    Agent,
    /// RequestQueryCall: EventPartyInfo from the call model.
    QueryCall,
    /// User data requests (`userdata`).
    UserData,
}

/// What a request must pass before its handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing (the handler checks what it needs).
    None,
    /// ThisDN registered by this client, not in ModeMonitor; the link must be up.
    Switch,
    /// ThisDN registered by this client, not in ModeMonitor; served locally, also during an
    /// outage.
    Local,
}

/// One request of the table.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: RequestName,
    pub handler: Handler,
    pub guard: Guard,
}

const fn e(name: RequestName, handler: Handler, guard: Guard) -> Entry {
    Entry {
        name,
        handler,
        guard,
    }
}

use Guard as G;
use Handler as H;
use RequestName as R;

/// Every request this build serves, in the order EventServerInfo lists them.
pub const TABLE: &[Entry] = &[
    e(R::RequestRegisterClient, H::RegisterClient, G::None),
    e(R::RequestQueryServer, H::QueryServer, G::None),
    e(R::RequestQueryAddress, H::QueryAddress, G::None),
    e(R::RequestRegisterAddress, H::Register, G::None),
    e(R::RequestUnregisterAddress, H::Unregister, G::None),
    e(R::RequestPrivateService, H::PrivateService, G::None),
    e(R::RequestMakeCall, H::CallControl, G::Switch),
    e(R::RequestAnswerCall, H::CallControl, G::Switch),
    e(R::RequestReleaseCall, H::CallControl, G::Switch),
    e(R::RequestClearCall, H::CallControl, G::Switch),
    e(R::RequestHoldCall, H::CallControl, G::Switch),
    e(R::RequestRetrieveCall, H::CallControl, G::Switch),
    e(R::RequestInitiateTransfer, H::CallControl, G::Switch),
    e(R::RequestCompleteTransfer, H::CallControl, G::Switch),
    e(R::RequestInitiateConference, H::CallControl, G::Switch),
    e(R::RequestCompleteConference, H::CallControl, G::Switch),
    e(R::RequestMuteTransfer, H::CallControl, G::Switch),
    e(R::RequestSingleStepTransfer, H::CallControl, G::Switch),
    e(R::RequestDeleteFromConference, H::CallControl, G::Switch),
    e(R::RequestAlternateCall, H::CallControl, G::Switch),
    e(R::RequestReconnectCall, H::CallControl, G::Switch),
    e(R::RequestRedirectCall, H::CallControl, G::Switch),
    e(R::RequestRouteCall, H::CallControl, G::Switch),
    e(R::RequestSendDTMF, H::CallControl, G::Switch),
    e(R::RequestCallForwardSet, H::Feature, G::Switch),
    e(R::RequestCallForwardCancel, H::Feature, G::Switch),
    e(R::RequestSetDNDOn, H::Feature, G::Switch),
    e(R::RequestSetDNDOff, H::Feature, G::Switch),
    e(R::RequestQueryCall, H::QueryCall, G::Local),
    e(R::RequestAgentLogin, H::Agent, G::Switch),
    e(R::RequestAgentLogout, H::Agent, G::Switch),
    e(R::RequestAgentReady, H::Agent, G::Switch),
    e(R::RequestAgentNotReady, H::Agent, G::Switch),
    e(R::RequestAttachUserData, H::UserData, G::Local),
    e(R::RequestUpdateUserData, H::UserData, G::Local),
    e(R::RequestDeletePair, H::UserData, G::Local),
    e(R::RequestDeleteUserData, H::UserData, G::Local),
];

/// The table's entry for a request name.
pub fn lookup(name: RequestName) -> Option<&'static Entry> {
    TABLE.iter().find(|x| x.name == name)
}

/// EventServerInfo's `SupportedRequests`: the table's names, comma-separated.
pub fn supported() -> String {
    let names: Vec<&str> = TABLE.iter().map(|x| x.name.as_str()).collect();
    names.join(",")
}

/// "ThisDN missing" (53).
pub fn this_dn(req: &Request) -> Result<String, Refusal> {
    req.this_dn
        .clone()
        .ok_or_else(|| (ErrorCode::INVALID_ATTR, "ThisDN missing".into()))
}

/// The guard, in order: the link (54), ThisDN (53), registered by this client (41), not in
/// ModeMonitor (41). `mode`: the client's registration of ThisDN. Returns ThisDN.
pub fn check(
    req: &Request,
    link_up: bool,
    mode: impl FnOnce(&str) -> Option<RegisterMode>,
) -> Result<String, Refusal> {
    if !link_up {
        return Err((ErrorCode::NO_SWITCH, "no link to the CSTA Connector".into()));
    }
    let dn = this_dn(req)?;
    match mode(&dn) {
        None => Err((
            ErrorCode::NOT_REGISTERED,
            format!("ThisDN {dn} not registered"),
        )),
        Some(RegisterMode::Monitor) => Err((
            ErrorCode::NOT_REGISTERED,
            "ThisDN registered in ModeMonitor".into(),
        )),
        Some(_) => Ok(dn),
    }
}

/// OtherDN, present (53) and a valid number (71).
pub fn other_dn(req: &Request) -> Result<String, Refusal> {
    let Some(o) = req.other_dn.clone() else {
        return Err((ErrorCode::INVALID_ATTR, "OtherDN missing".into()));
    };
    if !ctid_protocol::is_valid_dn(&o) {
        return Err((
            ErrorCode::INV_CALD_DN,
            format!("OtherDN {o:?} is not a valid number"),
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_requests_come_from_the_table() {
        let s = supported();
        assert!(s.starts_with("RequestRegisterClient,RequestQueryServer,RequestQueryAddress,"));
        assert!(s.ends_with(",RequestDeletePair,RequestDeleteUserData"));
        assert_eq!(s.split(',').count(), TABLE.len());
        for x in TABLE {
            assert_eq!(lookup(x.name).map(|e| e.handler), Some(x.handler));
        }
    }
}
