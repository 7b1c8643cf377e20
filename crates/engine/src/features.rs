//! Forwarding, do-not-disturb and service state per DN: the switch's ForwardingEvent,
//! DoNotDisturbEvent and Out/BackInServiceEvent made T-Library events and DN-status keys, and
//! RequestCallForwardSet/Cancel and RequestSetDNDOn/Off made SetForwarding / SetDoNotDisturb
//! (`docs/call-model.md`, "CSTA event → T-Library event").

use std::collections::{BTreeMap, BTreeSet};

use ctid_csta::{
    ForwardingType, GetDoNotDisturb, GetForwarding, Message, SetDoNotDisturb, SetForwarding,
};
use ctid_protocol::{ErrorCode, Event, EventName, ForwardMode, KvList, Request, RequestName};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::outbox::Refusal;

/// The forwarding mode a CSTA forwarding type is reported as.
fn mode_of(t: Option<&ForwardingType>) -> ForwardMode {
    match t {
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
    }
}

/// The forwarding of one DN: each mode that is on, with its destination.
type Forwarding = BTreeMap<ForwardMode, String>;

/// Feature state by DN.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Features {
    forward: BTreeMap<String, Forwarding>,
    dnd: BTreeSet<String>,
    out_of_service: BTreeSet<String>,
}

fn forward_event(d: &str, on: bool, mode: ForwardMode, to: Option<String>) -> Event {
    let mut ev = Event::new(if on {
        EventName::EventForwardSet
    } else {
        EventName::EventForwardCancel
    })
    .with_this_dn(d);
    ev.forward_mode = Some(mode);
    ev.other_dn = to;
    ev
}

fn dnd_event(d: &str, on: bool) -> Event {
    Event::new(if on {
        EventName::EventDNDOn
    } else {
        EventName::EventDNDOff
    })
    .with_this_dn(d)
}

impl Features {
    /// The DN is forgotten: so are its features.
    pub fn forget(&mut self, dn: &str) {
        self.forward.remove(dn);
        self.dnd.remove(dn);
        self.out_of_service.remove(dn);
    }

    /// How `dn` forwards, as the DN status shows it: unconditional first, then send-all-calls,
    /// busy and no-answer together, busy, no answer (docs/protocol.md, forwarding).
    pub fn forward_of(&self, dn: &str) -> Option<(ForwardMode, &str)> {
        let f = self.forward.get(dn)?;
        let get = |m: ForwardMode| f.get(&m).map(String::as_str);
        if let Some(to) = get(ForwardMode::Unconditional) {
            return Some((ForwardMode::Unconditional, to));
        }
        if let Some(to) = get(ForwardMode::SendAllCalls) {
            return Some((ForwardMode::SendAllCalls, to));
        }
        match (get(ForwardMode::OnBusy), get(ForwardMode::OnNoAnswer)) {
            (Some(b), Some(n)) if b == n => Some((ForwardMode::OnBusyAndNoAnswer, b)),
            (Some(b), _) => Some((ForwardMode::OnBusy, b)),
            (None, Some(n)) => Some((ForwardMode::OnNoAnswer, n)),
            (None, None) => None,
        }
    }

    pub fn dnd(&self, dn: &str) -> bool {
        self.dnd.contains(dn)
    }

    fn set_forward(&mut self, d: &str, mode: ForwardMode, to: Option<String>) {
        match to {
            Some(to) => {
                self.forward
                    .entry(d.to_string())
                    .or_default()
                    .insert(mode, to);
            }
            None => {
                if let Some(f) = self.forward.get_mut(d) {
                    f.remove(&mode);
                    if f.is_empty() {
                        self.forward.remove(d);
                    }
                }
            }
        }
    }

    /// A switch feature event on monitored DN `d`: the event for its clients, or `None` when
    /// `msg` is not a feature event.
    pub fn event(&mut self, d: &str, msg: &Message) -> Option<Event> {
        Some(match msg {
            Message::ForwardingEvent(e) => {
                let on = e.forward_status.unwrap_or(false);
                let mode = mode_of(e.forwarding_type.as_ref());
                let to = on.then(|| e.forward_to.as_deref().unwrap_or_default().to_string());
                self.set_forward(d, mode, to);
                forward_event(d, on, mode, e.forward_to.as_deref().map(String::from))
            }
            Message::DoNotDisturbEvent(e) => {
                let on = e.do_not_disturb_on.unwrap_or(false);
                if on {
                    self.dnd.insert(d.to_string());
                } else {
                    self.dnd.remove(d);
                }
                dnd_event(d, on)
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

    /// GetForwarding and GetDoNotDisturb for `dn`: sent when it is monitored (at start and
    /// after every outage) so the DN status is the switch's.
    pub fn queries(dn: &str) -> [Message; 2] {
        [
            Message::GetForwarding(GetForwarding {
                device: dn.into(),
                extensions: None,
            }),
            Message::GetDoNotDisturb(GetDoNotDisturb {
                device: dn.into(),
                extensions: None,
            }),
        ]
    }

    /// The answer to GetForwarding or GetDoNotDisturb for `dn`: ctid's state becomes the
    /// switch's; with `resync` (after an outage) each difference is reported as the event a
    /// client watching the switch would have seen (docs/call-model.md, "Snapshot and resync").
    pub fn answer(&mut self, dn: &str, resync: bool, msg: Result<Message, String>) -> Vec<Event> {
        let mut events = Vec::new();
        match msg {
            Ok(Message::GetForwardingResponse(r)) => {
                let mut now = Forwarding::new();
                for item in r.forwarding_list {
                    if item.forward_status == Some(true) {
                        let mode = mode_of(item.forwarding_type.as_ref());
                        now.entry(mode).or_insert_with(|| {
                            item.forward_dn.as_deref().unwrap_or_default().to_string()
                        });
                    }
                }
                let before = self.forward.get(dn).cloned().unwrap_or_default();
                if resync {
                    for mode in before.keys() {
                        if !now.contains_key(mode) {
                            events.push(forward_event(dn, false, *mode, None));
                        }
                    }
                    for (mode, to_now) in &now {
                        if before.get(mode) != Some(to_now) {
                            let to = Some(to_now.clone()).filter(|t| !t.is_empty());
                            events.push(forward_event(dn, true, *mode, to));
                        }
                    }
                }
                if now.is_empty() {
                    self.forward.remove(dn);
                } else {
                    self.forward.insert(dn.to_string(), now);
                }
            }
            Ok(Message::GetDoNotDisturbResponse(r)) => {
                let on = r.do_not_disturb_on;
                if on != self.dnd.contains(dn) {
                    if on {
                        self.dnd.insert(dn.to_string());
                    } else {
                        self.dnd.remove(dn);
                    }
                    if resync {
                        events.push(dnd_event(dn, on));
                    }
                }
            }
            Ok(Message::CstaErrorCode(e)) => {
                debug!(%dn, error = %e.error, "forwarding / DND query refused");
            }
            Ok(other) => {
                debug!(%dn, answer = other.name(), "unexpected answer to a forwarding / DND query");
            }
            Err(reason) => warn!(%dn, %reason, "malformed answer to a forwarding / DND query"),
        }
        events
    }

    /// The DN-status keys `ForwardMode`, `ForwardDN`, `DND`, and `status` when out of service.
    pub fn status_keys(&self, dn: &str, k: &mut KvList) {
        if let Some((mode, to)) = self.forward_of(dn) {
            k.insert_str("ForwardMode", mode.as_str());
            k.insert_str("ForwardDN", to);
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
                device: dn.into(),
                forwarding_type: Some(t),
                activate_forward: set,
                forward_dn: fdn.as_deref().map(Into::into),
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
        device: dn.into(),
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
