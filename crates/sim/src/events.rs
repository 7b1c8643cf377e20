//! Helpers for the events the switch emits: filling in the `monitorCrossRefID` of a copy for
//! one monitor, and small constructors for the common value types.

use ctid_csta::{ConnectionId, DeviceRef, Message, RedirectionDevice};

/// Set the `monitorCrossRefID` of an event (no-op for messages that carry none).
pub fn set_xref(msg: &mut Message, xref: &str) {
    macro_rules! x {
        ($($v:ident),*) => {
            match msg {
                $( Message::$v(e) => { e.monitor_cross_ref_id.clear(); e.monitor_cross_ref_id.push_str(xref); } )*
                _ => {}
            }
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

/// `ConnectionID` of `call` at `device`.
pub fn conn(call: &str, device: &str) -> ConnectionId {
    ConnectionId::new(call, device)
}

/// `ConnectionID` with the call only.
pub fn call_only(call: &str) -> ConnectionId {
    ConnectionId {
        call_id: Some(call.into()),
        device_id: None,
    }
}

/// `<deviceIdentifier>` choice.
pub fn dev(device: &str) -> Option<DeviceRef> {
    Some(DeviceRef::id(device))
}

/// `lastRedirectionDevice`: `numberDialed` when there was a redirection, else `notRequired`.
pub fn redirection(last: Option<&str>) -> Option<RedirectionDevice> {
    Some(match last {
        Some(d) => RedirectionDevice::NumberDialed(d.into()),
        None => RedirectionDevice::NotRequired,
    })
}
