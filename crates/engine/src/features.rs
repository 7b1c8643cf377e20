//! Forwarding, do-not-disturb and service state per DN: the switch's ForwardingEvent,
//! DoNotDisturbEvent and Out/BackInServiceEvent made T-Library events and DN-status keys, and
//! RequestCallForwardSet/Cancel and RequestSetDNDOn/Off made SetForwarding / SetDoNotDisturb
//! (`docs/call-model.md`, "CSTA event → T-Library event").

use std::collections::{BTreeMap, BTreeSet};

use ctid_csta::{ForwardingType, Message, SetDoNotDisturb, SetForwarding};
use ctid_protocol::{ErrorCode, Event, EventName, ForwardMode, KvList, Request, RequestName};

use crate::outbox::Refusal;

/// Feature state by DN.
#[derive(Debug, Default)]
pub struct Features {
    forward: BTreeMap<String, (ForwardMode, String)>,
    dnd: BTreeSet<String>,
    out_of_service: BTreeSet<String>,
}

impl Features {
    /// The DN is forgotten: so are its features.
    pub fn forget(&mut self, dn: &str) {
        self.forward.remove(dn);
        self.dnd.remove(dn);
        self.out_of_service.remove(dn);
    }

    /// Where `dn` forwards to.
    pub fn forward_of(&self, dn: &str) -> Option<&(ForwardMode, String)> {
        self.forward.get(dn)
    }

    pub fn dnd(&self, dn: &str) -> bool {
        self.dnd.contains(dn)
    }

    /// A switch feature event on monitored DN `d`: the event for its clients, or `None` when
    /// `msg` is not a feature event.
    pub fn event(&mut self, d: &str, msg: &Message) -> Option<Event> {
        Some(match msg {
            Message::ForwardingEvent(e) => {
                let on = e.forward_status.unwrap_or(false);
                let mode = match e.forwarding_type.as_ref() {
                    Some(ForwardingType::ForwardBusy)
                    | Some(ForwardingType::ForwardBusyInt)
                    | Some(ForwardingType::ForwardBusyExt) => ForwardMode::OnBusy,
                    Some(ForwardingType::ForwardNoAns)
                    | Some(ForwardingType::ForwardNoAnsInt)
                    | Some(ForwardingType::ForwardNoAnsExt) => ForwardMode::OnNoAnswer,
                    Some(ForwardingType::ForwardDND)
                    | Some(ForwardingType::ForwardDNDInt)
                    | Some(ForwardingType::ForwardDNDExt) => ForwardMode::SendAllCalls,
                    _ => ForwardMode::Unconditional,
                };
                if on {
                    let to = e.forward_to.clone().unwrap_or_default();
                    self.forward.insert(d.to_string(), (mode, to));
                } else {
                    self.forward.remove(d);
                }
                let mut ev = Event::new(if on {
                    EventName::EventForwardSet
                } else {
                    EventName::EventForwardCancel
                })
                .with_this_dn(d);
                ev.forward_mode = Some(mode);
                ev.other_dn = e.forward_to.clone();
                ev
            }
            Message::DoNotDisturbEvent(e) => {
                let on = e.do_not_disturb_on.unwrap_or(false);
                if on {
                    self.dnd.insert(d.to_string());
                } else {
                    self.dnd.remove(d);
                }
                Event::new(if on {
                    EventName::EventDNDOn
                } else {
                    EventName::EventDNDOff
                })
                .with_this_dn(d)
            }
            Message::OutOfServiceEvent(_) | Message::BackInServiceEvent(_) => {
                let oos = matches!(msg, Message::OutOfServiceEvent(_));
                if oos {
                    self.out_of_service.insert(d.to_string());
                } else {
                    self.out_of_service.remove(d);
                }
                Event::new(if oos {
                    EventName::EventDNOutOfService
                } else {
                    EventName::EventDNBackInService
                })
                .with_this_dn(d)
            }
            _ => return None,
        })
    }

    /// The DN-status keys `ForwardMode`, `ForwardDN`, `DND`, and `status` when out of service.
    pub fn status_keys(&self, dn: &str, k: &mut KvList) {
        if let Some((mode, to)) = self.forward.get(dn) {
            k.insert_str("ForwardMode", mode.as_str());
            k.insert_str("ForwardDN", to.clone());
        }
        if self.dnd.contains(dn) {
            k.insert_str("DND", "on");
        }
        if self.out_of_service.contains(dn) {
            k.insert_str("status", "AddressStatusMaintenance");
        }
    }
}

/// RequestCallForwardSet / Cancel made SetForwarding, one per forwarding type the mode needs,
/// the event that answers it and, when two are needed (ForwardModeOnBusyAndNoAnswer), the
/// ForwardMode of the event that answers: the second one's (`ForwardModeOnNoAnswer`). Every
/// one is tracked: a refusal of either is the request's EventError.
pub fn forward_request(
    req: &Request,
    dn: &str,
) -> Result<(Vec<Message>, EventName, Option<ForwardMode>), Refusal> {
    let set = req.name == RequestName::RequestCallForwardSet;
    let mode = req.forward_mode.unwrap_or(ForwardMode::Unconditional);
    let types: Vec<ForwardingType> = match mode {
        ForwardMode::Unconditional => vec![ForwardingType::ForwardImmediate],
        ForwardMode::OnBusy => vec![ForwardingType::ForwardBusy],
        ForwardMode::OnNoAnswer => vec![ForwardingType::ForwardNoAns],
        ForwardMode::OnBusyAndNoAnswer => {
            vec![ForwardingType::ForwardBusy, ForwardingType::ForwardNoAns]
        }
        ForwardMode::SendAllCalls => vec![ForwardingType::ForwardDND],
        ForwardMode::None if !set => vec![ForwardingType::ForwardImmediate],
        other => {
            return Err((
                ErrorCode::UNSUP_OPER,
                format!("ForwardMode {} is not supported", other.as_str()),
            ))
        }
    };
    let fdn = if set {
        Some(crate::requests::other_dn(req)?)
    } else {
        None
    };
    let want = if set {
        EventName::EventForwardSet
    } else {
        EventName::EventForwardCancel
    };
    let answered_by = (types.len() > 1).then_some(ForwardMode::OnNoAnswer);
    let msgs = types
        .into_iter()
        .map(|t| {
            Message::SetForwarding(SetForwarding {
                device: dn.to_string(),
                forwarding_type: Some(t),
                activate_forward: set,
                forward_dn: fdn.clone(),
                ring_count: None,
                ring_duration: None,
                extensions: None,
            })
        })
        .collect();
    Ok((msgs, want, answered_by))
}

/// RequestSetDNDOn / Off made SetDoNotDisturb, and the event that answers it.
pub fn dnd_request(req: &Request, dn: &str) -> (Message, EventName) {
    let on = req.name == RequestName::RequestSetDNDOn;
    let msg = Message::SetDoNotDisturb(SetDoNotDisturb {
        device: dn.to_string(),
        do_not_disturb_on: on,
        call_origination: None,
        extensions: None,
    });
    let want = if on {
        EventName::EventDNDOn
    } else {
        EventName::EventDNDOff
    };
    (msg, want)
}
