//! The call model: calls with ctid-assigned ConnIDs, the switch CallID index (re-pointable:
//! transfers and conferences move connections between calls), parties with states and roles,
//! call type, ANI/DNIS, queue, user data, the calls of each DN; the mapping of CSTA call events
//! onto T-Library events for the clients of the monitored DN the event arrived for; transfer
//! and conference merges; and the resync of a DN's calls from SnapshotDevice
//! (`docs/call-model.md`).
//!
//! The same switch event arrives once per monitored device involved, each copy with that
//! device's monitorCrossRefID. Model updates are idempotent across copies; each copy produces the
//! events of its own DN only.

use std::collections::{BTreeMap, BTreeSet};

use ctid_csta::{
    ConnectionId, DeviceRef, EventCause, LocalCallState, LocalConnectionState, Message,
    SimpleCallState, SnapshotDevice, SnapshotDeviceResponseInfo, SnapshotResult,
};
use ctid_protocol::{
    AddressType, CallState, CallType, ConnId, DnRole, Event, EventName, KvList, KvValue, PartyState,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::answers::Answers;
use crate::det::Map;
use crate::dns::Dns;
use crate::outbox::Notice;

/// One party of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub dn: String,
    pub state: PartyState,
    pub role: DnRole,
    /// EventRinging / EventQueued was sent for it (an abandon is then reported).
    pub offered: bool,
}

/// A call as ctid knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub conn_id: ConnId,
    pub call_id: String,
    pub parties: Vec<Party>,
    pub call_type: CallType,
    pub ani: Option<String>,
    pub dnis: Option<String>,
    pub this_queue: Option<String>,
    #[serde(with = "crate::snapshot::with::kv")]
    pub user_data: KvList,
    /// The call this consultation was made from.
    pub consult_of: Option<ConnId>,
    /// The calling device (for abandon detection).
    pub caller: Option<String>,
    /// Parties removed recently: later copies of the same clearing event still know them.
    pub departed: Vec<String>,
    /// Every switch callID that points at this call (the current one included).
    pub aliases: Vec<String>,
}

impl Call {
    pub fn party(&self, dn: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.dn == dn)
    }
    fn party_mut(&mut self, dn: &str) -> Option<&mut Party> {
        self.parties.iter_mut().find(|p| p.dn == dn)
    }
    /// The first other party (for OtherDN).
    pub fn other(&self, dn: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.dn != dn)
    }
}

/// A transfer or conference already applied, so later copies of the same event find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Merge {
    pub surviving: ConnId,
    pub consult: ConnId,
    /// DNs that were on the consultation call before the merge.
    pub moved: Vec<String>,
}

/// The calls of one DN.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DnCalls {
    /// The calls the DN takes part in.
    calls: BTreeSet<ConnId>,
    /// The calls its clients were told of and not yet told the end of. The model may know a
    /// party from another DN's copy of an event (while the DN's own monitor is not back after
    /// an outage); the resync compares the switch with what the clients were told
    /// (`docs/call-model.md`, "Snapshot and resync").
    told: BTreeSet<ConnId>,
}

/// The call tables.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Calls {
    #[serde(with = "crate::snapshot::with::sorted")]
    calls: Map<ConnId, Call>,
    #[serde(with = "crate::snapshot::with::sorted")]
    by_call_id: Map<String, ConnId>,
    merges: BTreeMap<String, Merge>,
    /// DN → its calls (only for DNs in the DN table), one lookup per event.
    #[serde(with = "crate::snapshot::with::sorted")]
    by_dn: Map<String, DnCalls>,
    /// Consultation calls named by a ConsultationCall answer before the switch reported them:
    /// CallID → the original call.
    consult_origins: BTreeMap<String, ConnId>,
    /// CallIDs an answer said were renamed (old → new): an event that still names the old one
    /// as a call's current ID (it was made before the answer) does not turn the call back.
    renamed: BTreeMap<String, String>,
    /// Multi-segment snapshots in progress: serviceCrossRefID → (DN, items so far).
    #[serde(with = "crate::snapshot::with::segments")]
    snapshots: BTreeMap<String, (String, Vec<SnapshotDeviceResponseInfo>)>,
    next: u64,
    base: u64,
    /// The time of the input being handled (ConnID high bits).
    unix_micros: u64,
    /// Call events whose connection carries no callID (cannot be tracked; dropped).
    pub events_without_call_id: u64,
    /// `ani-distribution` (set by the orchestrator).
    pub ani_distribution: crate::config::AniDistribution,
}

impl Calls {
    /// The time of the input being handled.
    pub fn set_now(&mut self, unix_micros: u64) {
        self.unix_micros = unix_micros;
    }

    fn new_conn_id(&mut self) -> ConnId {
        if self.base == 0 {
            // High bits: server start (seconds); low bits: a counter. Unique, never reused.
            self.base = ((self.unix_micros / 1_000_000) & 0xFFFF_FFFF).max(1) << 32;
        }
        self.next += 1;
        ConnId(self.base | (self.next & 0xFFFF_FFFF))
    }

    /// The ConnID of a switch call ID.
    pub fn conn_of(&self, call_id: &str) -> Option<ConnId> {
        self.by_call_id.get(call_id).copied()
    }

    /// A call by ConnID.
    pub fn get(&self, conn: ConnId) -> Option<&Call> {
        self.calls.get(&conn)
    }

    /// Every call, by ConnID.
    pub fn iter(&self) -> impl Iterator<Item = &Call> {
        let mut v: Vec<&Call> = self.calls.values().collect();
        v.sort_unstable_by_key(|c| c.conn_id);
        v.into_iter()
    }

    /// The calls a DN takes part in, by ConnID (its DN-table view).
    pub fn conns_of_dn(&self, dn: &str) -> Vec<ConnId> {
        self.by_dn
            .get(dn)
            .map(|s| s.calls.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The DN is forgotten: so is its call list.
    pub fn forget_dn(&mut self, dn: &str) {
        self.by_dn.remove(dn);
    }

    /// Note what the notices tell each DN's clients: a call event makes the call known on the
    /// DN, EventReleased / EventAbandoned / EventDiverted end it there, a PartyChanged from a
    /// consultation replaces the consultation; EventOnHook ends the off-hook call.
    fn track(&mut self, dn: &str, notes: &[Notice]) {
        for n in notes {
            let event = n.event();
            let Some(conn) = event.conn_id else { continue };
            let ends = matches!(
                event.name,
                EventName::EventReleased
                    | EventName::EventAbandoned
                    | EventName::EventDiverted
                    | EventName::EventOnHook
            );
            if let Some(x) = self.by_dn.get_mut(dn) {
                if ends {
                    x.told.remove(&conn);
                } else {
                    if let Some(p) = event.previous_conn_id {
                        x.told.remove(&p);
                    }
                    x.told.insert(conn);
                }
            } else if !ends {
                let x = DnCalls {
                    calls: BTreeSet::new(),
                    told: BTreeSet::from([conn]),
                };
                self.by_dn.insert(dn.to_string(), x);
            }
        }
    }

    fn was_told(&self, dn: &str, conn: ConnId) -> bool {
        self.by_dn.get(dn).is_some_and(|t| t.told.contains(&conn))
    }

    /// Replace a call's user data.
    pub fn set_user_data(&mut self, conn: ConnId, data: KvList) {
        if let Some(c) = self.calls.get_mut(&conn) {
            c.user_data = data;
        }
    }

    /// Add the pairs of `data` to a call's user data, replacing the values of keys it has
    /// (RequestUpdateUserData's rule): a request's `UserData` given to the call it made, over
    /// what a consultation copied from its original call.
    pub fn add_user_data(&mut self, conn: ConnId, data: &KvList) {
        if let Some(c) = self.calls.get_mut(&conn) {
            c.user_data = merged(&c.user_data, data);
        }
    }

    /// The link is gone: snapshots in progress are abandoned.
    pub fn link_lost(&mut self) {
        self.snapshots.clear();
    }

    /// Calls a DN takes part in.
    pub fn of_dn(&self, dn: &str) -> Vec<&Call> {
        let mut v: Vec<&Call> = self
            .calls
            .values()
            .filter(|c| c.party(dn).is_some())
            .collect();
        v.sort_by_key(|c| c.conn_id);
        v
    }
}

/// `base` with every key of `top` replaced by `top`'s pairs (a key repeated in `top` stays
/// repeated).
fn merged(base: &KvList, top: &KvList) -> KvList {
    let mut m = base.clone();
    for (k, _) in top.iter() {
        m.remove(k);
    }
    for (k, v) in top.iter() {
        m.push(k, v.clone());
    }
    m
}

fn dev(d: &Option<DeviceRef>) -> Option<String> {
    d.as_ref().and_then(|d| d.as_id()).map(str::to_string)
}

/// CSTA cause → T-Library CallState (docs/call-model.md).
pub fn call_state(cause: Option<&EventCause>) -> (CallState, Option<String>) {
    match cause {
        None | Some(EventCause::Normal) | Some(EventCause::NormalClearing) => (CallState::Ok, None),
        Some(EventCause::Transfer) | Some(EventCause::SingleStepTransfer) => {
            (CallState::Transferred, None)
        }
        Some(EventCause::Conference) => (CallState::Conferenced, None),
        Some(EventCause::Busy) => (CallState::Busy, None),
        Some(EventCause::CallNotAnswered) => (CallState::NoAnswer, None),
        Some(EventCause::Redirected) => (CallState::Redirected, None),
        Some(
            EventCause::CallForward
            | EventCause::CallForwardImmediate
            | EventCause::CallForwardBusy
            | EventCause::CallForwardNoAnswer,
        ) => (CallState::Forwarded, None),
        Some(EventCause::CallPickup) => (CallState::Pickedup, None),
        Some(other) => (CallState::Ok, Some(other.as_str().to_string())),
    }
}

impl Calls {
    /// The call of a switch call ID, created if new.
    pub fn call_for(&mut self, call_id: &str) -> ConnId {
        if let Some(c) = self.conn_of(call_id) {
            return c;
        }
        let conn_id = self.new_conn_id();
        let consult_of = self.take_consult_origin(call_id);
        debug!(%call_id, conn = %conn_id, "new call");
        self.calls.insert(
            conn_id,
            Call {
                conn_id,
                call_id: call_id.to_string(),
                parties: Vec::new(),
                call_type: if consult_of.is_some() {
                    CallType::Consult
                } else {
                    CallType::Unknown
                },
                ani: None,
                dnis: None,
                this_queue: None,
                user_data: consult_of
                    .and_then(|o| self.calls.get(&o).map(|c| c.user_data.clone()))
                    .unwrap_or_default(),
                consult_of,
                caller: None,
                departed: Vec::new(),
                aliases: vec![call_id.to_string()],
            },
        );
        self.by_call_id.insert(call_id.to_string(), conn_id);
        conn_id
    }

    /// `new` is another callID of call `conn` (the CallID changed mid-call): events and
    /// snapshots naming it find the call, requests use it from now on.
    fn alias(&mut self, new: &str, conn: ConnId) {
        if let Some(c) = self.calls.get_mut(&conn) {
            debug!(call_id = %new, %conn, "callID changed: re-pointed");
            if !c.aliases.iter().any(|a| a == new) {
                c.aliases.push(new.to_string());
            }
            c.call_id = new.to_string();
            self.by_call_id.insert(new.to_string(), conn);
        }
    }

    /// The answer to TransferCall / ConferenceCall / SingleStepTransferCall: the callIDs it
    /// names for the resulting call (`connections` old → new pairs, then the resulting
    /// `transferredCall` / `conferenceCall`, which belongs to `acted_on`, the call the request
    /// acted on) re-point ctid's call instead of making a new one (docs/call-model.md, "ConnID
    /// and CallID"). Only unknown callIDs are taken: merging two known calls is the events' job.
    pub fn remap_from_answer(&mut self, msg: &Message, acted_on: Option<ConnId>) {
        let (result, list) = match msg {
            Message::TransferCallResponse(r) => (r.transferred_call.as_ref(), &r.connections),
            Message::ConferenceCallResponse(r) => (r.conference_call.as_ref(), &r.connections),
            Message::SingleStepTransferCallResponse(r) => {
                (r.transferred_call.as_ref(), &r.connections)
            }
            _ => return,
        };
        let id = |c: Option<&ConnectionId>| {
            c.and_then(|c| c.call_id.as_deref().map(String::from))
                .filter(|s| !s.is_empty())
        };
        let mut target = None;
        for item in list {
            let (Some(old), Some(new)) = (
                id(item.old_connection.as_ref()),
                id(item.new_connection.as_ref()),
            ) else {
                continue;
            };
            if old != new {
                self.renamed.insert(old.clone(), new.clone());
            }
            let Some(conn) = self.conn_of(&old) else {
                continue;
            };
            target.get_or_insert(conn);
            if old != new && self.conn_of(&new).is_none() {
                self.alias(&new, conn);
            }
        }
        if let (Some(r), Some(conn)) = (id(result), target.or(acted_on)) {
            if self.conn_of(&r).is_none() {
                if let Some(c) = self.calls.get(&conn) {
                    self.renamed.insert(c.call_id.clone(), r.clone());
                    self.alias(&r, conn);
                }
            }
        }
    }

    fn set_party(&mut self, conn: ConnId, dn: &str, state: PartyState, role: Option<DnRole>) {
        let Some(call) = self.calls.get_mut(&conn) else {
            return;
        };
        match call.party_mut(dn) {
            Some(p) => {
                p.state = state;
                if let Some(r) = role {
                    if p.role == DnRole::Unknown {
                        p.role = r;
                    }
                }
            }
            None => call.parties.push(Party {
                dn: dn.to_string(),
                state,
                role: role.unwrap_or(DnRole::Unknown),
                offered: false,
            }),
        }
    }

    fn classify(&mut self, dns: &Dns, conn: ConnId, calling: Option<&str>, called: Option<&str>) {
        let internal = |n: &str| dns.is_internal(n);
        let (ci, cd) = (calling.map(internal), called.map(internal));
        let Some(call) = self.calls.get_mut(&conn) else {
            return;
        };
        if call.call_type == CallType::Unknown {
            call.call_type = match (ci, cd) {
                (Some(true), Some(true)) => CallType::Internal,
                (Some(false), _) => CallType::Inbound,
                (Some(true), Some(false)) => CallType::Outbound,
                _ => CallType::Unknown,
            };
        }
        if call.ani.is_none() {
            call.ani = calling.map(str::to_string);
        }
        if call.caller.is_none() {
            call.caller = calling.map(str::to_string);
        }
        if call.dnis.is_none() {
            call.dnis = called.map(str::to_string);
        }
    }

    /// Remove a party; forget the call when nobody is left.
    fn drop_party(&mut self, conn: ConnId, dn: &str) {
        let empty = match self.calls.get_mut(&conn) {
            Some(c) => {
                if c.party(dn).is_some() {
                    c.parties.retain(|p| p.dn != dn);
                    c.departed.push(dn.to_string());
                    if c.departed.len() > 8 {
                        c.departed.remove(0);
                    }
                }
                c.parties.is_empty()
            }
            None => return,
        };
        if empty {
            self.forget_call(conn);
        }
    }

    pub fn forget_call(&mut self, conn: ConnId) {
        if let Some(c) = self.calls.remove(&conn) {
            debug!(conn = %conn, call_id = %c.call_id, "call ended");
            for a in &c.aliases {
                if self.by_call_id.get(a) == Some(&conn) {
                    self.by_call_id.remove(a);
                }
                self.renamed.remove(a);
            }
            self.merges
                .retain(|_, m| m.surviving != conn && m.consult != conn);
        }
    }

    /// A call event for clients of `dn`, with the call's common attributes.
    pub fn call_event(&self, name: EventName, dn: &str, conn: ConnId) -> Event {
        let mut ev = Event::new(name).with_this_dn(dn);
        ev.conn_id = Some(conn);
        if let Some(c) = self.calls.get(&conn) {
            ev.call_id = Some(c.call_id.clone());
            ev.call_type = Some(c.call_type);
            if let Some(p) = c.party(dn) {
                ev.this_dn_role = Some(p.role);
            }
            if let Some(o) = c.other(dn) {
                ev.other_dn = Some(o.dn.clone());
                ev.other_dn_role = Some(o.role);
            }
            if self.ani_distribution.shows(
                c.call_type,
                matches!(
                    ev.name,
                    EventName::EventRinging | EventName::EventRouteRequest
                ),
            ) {
                ev.ani = c.ani.clone();
            }
            ev.dnis = c.dnis.clone();
            ev.this_queue = c.this_queue.clone();
            if !c.user_data.is_empty() {
                ev.user_data = Some(c.user_data.clone());
            }
        }
        ev
    }

    fn conn_call(&mut self, c: &ConnectionId) -> Option<ConnId> {
        match c.call_id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => Some(self.call_for(id)),
            None => {
                // A call cannot be tracked without its callID: say so, count it, drop it.
                self.events_without_call_id += 1;
                if self.events_without_call_id == 1 {
                    tracing::warn!(device = c.device(), "call event without a callID dropped (counted in events_without_call_id; logged once)");
                } else {
                    debug!(device = c.device(), "call event without a callID dropped");
                }
                None
            }
        }
    }

    /// A CSTA call, agent or device event for monitored DN `d`.
    /// Returns false when `msg` is not a call event.
    pub fn event(
        &mut self,
        d: &str,
        msg: &Message,
        dns: &Dns,
        answers: &Answers,
        notes: &mut Vec<Notice>,
    ) -> bool {
        let start = notes.len();
        let handled = self.event_inner(d, msg, dns, answers, notes);
        self.track(d, &notes[start..]);
        handled
    }

    fn event_inner(
        &mut self,
        d: &str,
        msg: &Message,
        dns: &Dns,
        answers: &Answers,
        notes: &mut Vec<Notice>,
    ) -> bool {
        match msg {
            Message::ServiceInitiatedEvent(e) => {
                let Some(conn) = self.conn_call(&e.initiated_connection) else {
                    return true;
                };
                let who = e
                    .initiated_connection
                    .device_id
                    .as_deref()
                    .map(String::from)
                    .unwrap_or_else(|| d.to_string());
                self.set_party(conn, &who, PartyState::Initiated, Some(DnRole::Origination));
                self.add_dn_call(dns, &who, conn);
                if let Some(c) = self.calls.get_mut(&conn) {
                    c.caller.get_or_insert_with(|| who.clone());
                }
                let by_ctid = e.cause == Some(EventCause::MakeCall) || answers.dialing(&who);
                if who == d && !by_ctid {
                    let mut ev = Event::new(EventName::EventOffHook).with_this_dn(d);
                    ev.conn_id = Some(conn);
                    ev.call_id = Some(e.initiated_connection.call().to_string());
                    notes.push(Notice::Deliver(ev));
                }
            }
            Message::OriginatedEvent(e) => {
                let Some(conn) = self.conn_call(&e.originated_connection) else {
                    return true;
                };
                let calling = dev(&e.calling_device)
                    .or_else(|| {
                        e.originated_connection
                            .device_id
                            .as_deref()
                            .map(String::from)
                    })
                    .unwrap_or_default();
                let called = dev(&e.called_device);
                self.set_party(
                    conn,
                    &calling,
                    PartyState::Initiated,
                    Some(DnRole::Origination),
                );
                self.add_dn_call(dns, &calling, conn);
                self.classify(dns, conn, Some(&calling), called.as_deref());
                if calling == d {
                    // The call a RequestMakeCall / InitiateTransfer / InitiateConference asked
                    // for: it takes the request's UserData before its first event goes out.
                    if let Some(ud) = answers
                        .dialing_request(d)
                        .and_then(|r| r.user_data.as_ref())
                    {
                        self.add_user_data(conn, ud);
                    }
                    let mut ev = self.call_event(EventName::EventDialing, d, conn);
                    if let Some(c) = &called {
                        ev.other_dn = Some(c.clone());
                        ev.other_dn_role = Some(DnRole::Destination);
                    }
                    notes.push(Notice::Deliver(ev));
                }
            }
            Message::DeliveredEvent(e) => {
                let Some(conn) = self.conn_call(&e.connection) else {
                    return true;
                };
                let alerting = dev(&e.alerting_device)
                    .or_else(|| e.connection.device_id.as_deref().map(String::from))
                    .unwrap_or_default();
                let calling = dev(&e.calling_device);
                let called = dev(&e.called_device);
                self.caller_joins(conn, calling.as_deref());
                // The caller as the switch sees it now (it changes with transfers).
                if let (Some(c), Some(call)) = (&calling, self.calls.get_mut(&conn)) {
                    call.caller = Some(c.clone());
                }
                self.set_party(
                    conn,
                    &alerting,
                    PartyState::Alerting,
                    Some(DnRole::Destination),
                );
                self.add_dn_call(dns, &alerting, conn);
                self.classify(dns, conn, calling.as_deref(), called.as_deref());
                if alerting == d {
                    let mut ev = self.offer(dns, d, conn, EventName::EventRinging);
                    if let Some(c) = &calling {
                        ev.other_dn = Some(c.clone());
                        ev.other_dn_role = Some(DnRole::Origination);
                        if ev.ani.is_some() {
                            ev.ani = Some(c.clone());
                        }
                    }
                    notes.push(Notice::Deliver(ev));
                }
            }
            Message::EstablishedEvent(e) => {
                let Some(conn) = self.conn_call(&e.established_connection) else {
                    return true;
                };
                let answering = dev(&e.answering_device)
                    .or_else(|| {
                        e.established_connection
                            .device_id
                            .as_deref()
                            .map(String::from)
                    })
                    .unwrap_or_default();
                let calling = dev(&e.calling_device);
                self.set_party(
                    conn,
                    &answering,
                    PartyState::Connected,
                    Some(DnRole::Destination),
                );
                self.add_dn_call(dns, &answering, conn);
                if let Some(c) = &calling {
                    self.set_party(conn, c, PartyState::Connected, Some(DnRole::Origination));
                }
                if self.calls.get(&conn).is_some_and(|c| c.party(d).is_some()) {
                    let mut ev = self.call_event(EventName::EventEstablished, d, conn);
                    if answering != d {
                        ev.other_dn = Some(answering.clone());
                    } else if let Some(c) = &calling {
                        ev.other_dn = Some(c.clone());
                    }
                    notes.push(Notice::Deliver(ev));
                }
            }
            Message::HeldEvent(e) => self.hold_state(
                d,
                &e.held_connection,
                &e.holding_device,
                PartyState::Held,
                EventName::EventHeld,
                notes,
            ),
            Message::RetrievedEvent(e) => self.hold_state(
                d,
                &e.retrieved_connection,
                &e.retrieving_device,
                PartyState::Connected,
                EventName::EventRetrieved,
                notes,
            ),
            Message::ConnectionClearedEvent(e) => {
                let Some(call_id) = e.dropped_connection.call_id.as_deref() else {
                    return true;
                };
                let Some(conn) = self.conn_of(call_id) else {
                    return true;
                };
                let dropped = e
                    .dropped_connection
                    .device_id
                    .as_deref()
                    .map(String::from)
                    .or_else(|| dev(&e.releasing_device))
                    .unwrap_or_default();
                self.connection_cleared(d, conn, &dropped, e.cause.as_ref(), dns, notes);
            }
            Message::CallClearedEvent(e) => {
                let Some(conn) = e
                    .cleared_call
                    .call_id
                    .as_deref()
                    .and_then(|c| self.conn_of(c))
                else {
                    return true;
                };
                self.connection_cleared(d, conn, d, e.cause.as_ref(), dns, notes);
            }
            Message::TransferedEvent(e) => self.merged(
                d,
                msg,
                e.primary_old_call.as_ref(),
                e.secondary_old_call.as_ref(),
                &e.transferred_connections,
                dev(&e.transferring_device),
                None,
                dns,
                notes,
            ),
            Message::ConferencedEvent(e) => self.merged(
                d,
                msg,
                e.primary_old_call.as_ref(),
                e.secondary_old_call.as_ref(),
                &e.conference_connections,
                dev(&e.conferencing_device),
                dev(&e.added_party),
                dns,
                notes,
            ),
            Message::DivertedEvent(e) => {
                let Some(conn) = self.conn_call(&e.connection) else {
                    return true;
                };
                let diverting = dev(&e.diverting_device)
                    .or_else(|| e.connection.device_id.as_deref().map(String::from))
                    .unwrap_or_default();
                let new_dest = dev(&e.new_destination);
                let was_queue = dns.get(&diverting).is_some_and(|x| {
                    matches!(x.dn_type, AddressType::Queue | AddressType::RouteDn)
                });
                if was_queue {
                    if let Some(c) = self.calls.get_mut(&conn) {
                        c.this_queue = Some(diverting.clone());
                    }
                }
                if diverting == d {
                    if was_queue {
                        let mut ev = self.call_event(EventName::EventDiverted, d, conn);
                        ev.other_dn = new_dest.clone();
                        ev.this_queue = Some(d.to_string());
                        notes.push(Notice::Deliver(ev));
                    } else {
                        let mut ev = self.call_event(EventName::EventReleased, d, conn);
                        let (mut cs, _) = call_state(e.cause.as_ref());
                        if cs == CallState::Ok {
                            cs = CallState::Redirected;
                        }
                        ev.call_state = Some(cs);
                        ev.other_dn = new_dest.clone();
                        notes.push(Notice::Deliver(ev));
                    }
                }
                self.drop_party(conn, &diverting);
                self.remove_dn_call(&diverting, conn);
            }
            Message::FailedEvent(e) => {
                let Some(conn) = self.conn_call(&e.failed_connection) else {
                    return true;
                };
                let failing = dev(&e.failing_device)
                    .or_else(|| e.failed_connection.device_id.as_deref().map(String::from))
                    .unwrap_or_default();
                let calling = dev(&e.calling_device);
                self.set_party(
                    conn,
                    &failing,
                    PartyState::Failed,
                    Some(DnRole::Destination),
                );
                if calling.as_deref() == Some(d)
                    || (failing != d && self.calls.get(&conn).is_some_and(|c| c.party(d).is_some()))
                {
                    let mut ev = self.call_event(EventName::EventDestinationBusy, d, conn);
                    ev.other_dn = Some(failing.clone());
                    ev.call_state = Some(call_state(e.cause.as_ref()).0);
                    notes.push(Notice::Deliver(ev));
                }
            }
            Message::QueuedEvent(e) => {
                let Some(conn) = self.conn_call(&e.queued_connection) else {
                    return true;
                };
                let queue = dev(&e.queue)
                    .or_else(|| e.queued_connection.device_id.as_deref().map(String::from))
                    .unwrap_or_default();
                let calling = dev(&e.calling_device);
                let called = dev(&e.called_device);
                self.classify(dns, conn, calling.as_deref(), called.as_deref());
                self.caller_joins(conn, calling.as_deref());
                self.set_party(conn, &queue, PartyState::Queued, Some(DnRole::Destination));
                self.add_dn_call(dns, &queue, conn);
                if let Some(c) = self.calls.get_mut(&conn) {
                    c.this_queue = Some(queue.clone());
                }
                if queue == d {
                    let mut ev = self.offer(dns, d, conn, EventName::EventQueued);
                    ev.this_queue = Some(d.to_string());
                    ev.other_dn = calling.clone();
                    notes.push(Notice::Deliver(ev));
                }
            }
            Message::NetworkReachedEvent(e) => {
                let Some(conn) = self.conn_call(&e.outbound_connection) else {
                    return true;
                };
                let calling = dev(&e.calling_device);
                let called = dev(&e.called_device);
                self.classify(dns, conn, calling.as_deref(), called.as_deref());
                if calling.as_deref() == Some(d) {
                    let mut ev = self.call_event(EventName::EventNetworkReached, d, conn);
                    ev.other_dn = called;
                    notes.push(Notice::Deliver(ev));
                }
            }
            _ => return false,
        }
        true
    }

    /// The calling party joins the model (connected) if the call does not have it yet.
    fn caller_joins(&mut self, conn: ConnId, calling: Option<&str>) {
        let Some(c) = calling else { return };
        if self.calls.get(&conn).is_some_and(|x| x.party(c).is_none()) {
            self.set_party(conn, c, PartyState::Connected, Some(DnRole::Origination));
        }
    }

    /// The call is offered to D (ringing or queued there): D's party is marked offered (an abandon
    /// is then reported) and the event is `name` — or EventRouteRequest (ThisQueue = D) when D is
    /// a routing point, which asks for a route (docs/call-model.md).
    fn offer(&mut self, dns: &Dns, d: &str, conn: ConnId, name: EventName) -> Event {
        if let Some(p) = self.calls.get_mut(&conn).and_then(|c| c.party_mut(d)) {
            p.offered = true;
        }
        let rp = dns
            .get(d)
            .is_some_and(|x| x.dn_type == AddressType::RouteDn);
        let mut ev = self.call_event(
            if rp {
                EventName::EventRouteRequest
            } else {
                name
            },
            d,
            conn,
        );
        if rp {
            ev.this_queue = Some(d.to_string());
        }
        ev
    }

    /// HeldEvent / RetrievedEvent: the acting device's party changes state; its clients get the
    /// event.
    fn hold_state(
        &mut self,
        d: &str,
        c: &ConnectionId,
        acting: &Option<DeviceRef>,
        state: PartyState,
        name: EventName,
        notes: &mut Vec<Notice>,
    ) {
        let Some(conn) = self.conn_call(c) else {
            return;
        };
        let who = dev(acting)
            .or_else(|| c.device_id.as_deref().map(String::from))
            .unwrap_or_default();
        self.set_party(conn, &who, state, None);
        if who == d {
            let ev = self.call_event(name, d, conn);
            notes.push(Notice::Deliver(ev));
        }
    }

    fn connection_cleared(
        &mut self,
        d: &str,
        conn: ConnId,
        dropped: &str,
        cause: Option<&EventCause>,
        dns: &Dns,
        notes: &mut Vec<Notice>,
    ) {
        let Some(call) = self.calls.get(&conn) else {
            return;
        };
        let present = call.party(dropped).is_some();
        let departed = !present && call.departed.iter().any(|x| x == dropped);
        let parties_before = call.parties.len() + usize::from(departed);
        let d_party = call.party(d).cloned();
        let dropped_was_caller = call.caller.as_deref() == Some(dropped)
            || call
                .party(dropped)
                .is_some_and(|p| p.role == DnRole::Origination);
        // The phone went off hook (EventOffHook) and back on without dialling: no call was
        // made, so EventOnHook rather than EventReleased.
        let never_dialled = call.dnis.is_none()
            && call.parties.len() == 1
            && call.departed.is_empty()
            && d_party
                .as_ref()
                .is_some_and(|p| p.state == PartyState::Initiated);
        if dropped == d && never_dialled {
            let mut ev = Event::new(EventName::EventOnHook).with_this_dn(d);
            ev.conn_id = Some(conn);
            ev.call_id = Some(call.call_id.clone());
            notes.push(Notice::Deliver(ev));
            self.drop_party(conn, d);
            self.remove_dn_call(d, conn);
            return;
        }
        if dropped == d {
            if d_party.is_some() {
                let mut ev = self.call_event(EventName::EventReleased, d, conn);
                let (cs, csta_cause) = call_state(cause);
                ev.call_state = Some(cs);
                if let Some(c) = csta_cause {
                    ev.extensions
                        .get_or_insert_with(KvList::new)
                        .insert_str("CSTACause", c);
                }
                notes.push(Notice::Deliver(ev));
            }
            self.drop_party(conn, d);
            self.remove_dn_call(d, conn);
            return;
        }
        match d_party {
            Some(p)
                if dropped_was_caller
                    && p.offered
                    && matches!(p.state, PartyState::Alerting | PartyState::Queued) =>
            {
                let mut ev = self.call_event(EventName::EventAbandoned, d, conn);
                ev.other_dn = Some(dropped.to_string());
                ev.call_state = Some(CallState::Abandoned);
                notes.push(Notice::Deliver(ev));
                if !dns.is_monitored(dropped) {
                    self.drop_party(conn, dropped);
                }
                self.drop_party(conn, d);
                self.remove_dn_call(d, conn);
                return;
            }
            Some(_) if parties_before >= 3 && (present || departed) => {
                let mut ev = self.call_event(EventName::EventPartyDeleted, d, conn);
                ev.other_dn = Some(dropped.to_string());
                ev.other_dn_role = Some(DnRole::DeletedParty);
                notes.push(Notice::Deliver(ev));
            }
            _ => {}
        }
        // A monitored party leaves the model on its own monitor's copy (which reports its
        // EventReleased); an unmonitored one on the first copy that names it.
        if !dns.is_monitored(dropped) {
            self.drop_party(conn, dropped);
            self.remove_dn_call(dropped, conn);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn merged(
        &mut self,
        d: &str,
        msg: &Message,
        primary: Option<&ConnectionId>,
        secondary: Option<&ConnectionId>,
        list: &[ctid_csta::ConnectionListItem],
        by: Option<String>,
        added: Option<String>,
        dns: &Dns,
        notes: &mut Vec<Notice>,
    ) {
        let conference = matches!(msg, Message::ConferencedEvent(_));
        let p_id = primary.and_then(|c| c.call_id.as_deref().map(String::from));
        let s_id = secondary.and_then(|c| c.call_id.as_deref().map(String::from));
        let (p_id, s_id) = match (p_id, s_id) {
            (Some(p), Some(s)) if p != s => (p, s),
            (Some(p), _) if !conference => {
                // Single-step transfer: one call, the transferring party leaves it.
                self.single_step_transferred(d, &p, by, notes);
                return;
            }
            _ => return,
        };
        let key = format!("{p_id}/{s_id}");
        let merge = match self.merges.get(&key).cloned() {
            Some(m) => m,
            None => {
                let surviving = self.call_for(&p_id);
                let consult = self.call_for(&s_id);
                let moved: Vec<String> = self
                    .calls
                    .get(&consult)
                    .map(|c| c.parties.iter().map(|p| p.dn.clone()).collect())
                    .unwrap_or_default();
                // Move the consultation's parties into the surviving call (the original ConnID
                // survives; docs/call-model.md), and re-point every new callID at it.
                let consult_call = self.calls.remove(&consult);
                if let Some(cc) = &consult_call {
                    for a in &cc.aliases {
                        if self.by_call_id.get(a) == Some(&consult) {
                            self.by_call_id.remove(a);
                        }
                    }
                }
                if let Some(cc) = consult_call {
                    for p in cc.parties {
                        if Some(&p.dn) == by.as_ref() {
                            // The conferencing/transferring party leaves the consultation.
                            self.remove_dn_call(&p.dn, consult);
                            continue;
                        }
                        self.remove_dn_call(&p.dn, consult);
                        self.add_dn_call(dns, &p.dn, surviving);
                        if let Some(sc) = self.calls.get_mut(&surviving) {
                            if sc.party(&p.dn).is_none() {
                                sc.parties.push(Party {
                                    state: PartyState::Connected,
                                    role: if conference {
                                        DnRole::ConferenceMember
                                    } else {
                                        p.role
                                    },
                                    ..p
                                });
                            }
                        }
                    }
                }
                for item in list {
                    if let Some(n) = item
                        .new_connection
                        .as_ref()
                        .and_then(|c| c.call_id.as_deref().map(String::from))
                    {
                        self.by_call_id.insert(n.clone(), surviving);
                        // The CallID may change mid-call: follow it.
                        if let Some(sc) = self.calls.get_mut(&surviving) {
                            if !sc.aliases.contains(&n) {
                                sc.aliases.push(n.clone());
                            }
                            // …unless an answer already renamed it.
                            sc.call_id = self.renamed.get(&n).cloned().unwrap_or(n);
                        }
                    }
                }
                // Every endpoint the switch names is on the merged call, also one ctid did not
                // know of (calls begun while the link was down, before the resync's snapshots).
                for item in list {
                    let dev = item
                        .new_connection
                        .as_ref()
                        .and_then(|c| c.device_id.as_deref().map(String::from));
                    let Some(dev) = dev.filter(|x| Some(x) != by.as_ref()) else {
                        continue;
                    };
                    let role = if conference {
                        DnRole::ConferenceMember
                    } else {
                        DnRole::Unknown
                    };
                    if self
                        .calls
                        .get(&surviving)
                        .is_some_and(|c| c.party(&dev).is_none())
                    {
                        self.set_party(surviving, &dev, PartyState::Connected, Some(role));
                        self.add_dn_call(dns, &dev, surviving);
                    }
                }
                if let Some(by) = &by {
                    if !conference {
                        if let Some(sc) = self.calls.get_mut(&surviving) {
                            sc.parties.retain(|p| &p.dn != by);
                        }
                    } else {
                        self.set_party(surviving, by, PartyState::Connected, None);
                    }
                }
                if let Some(sc) = self.calls.get_mut(&surviving) {
                    for p in sc.parties.iter_mut() {
                        if p.state == PartyState::Held {
                            p.state = PartyState::Connected;
                        }
                    }
                }
                let m = Merge {
                    surviving,
                    consult,
                    moved,
                };
                self.merges.insert(key, m.clone());
                m
            }
        };
        let by_d = by.as_deref() == Some(d);
        if by_d {
            if conference {
                // Released on the consultation, then PartyAdded on the original.
                let mut ev = self.call_event(EventName::EventReleased, d, merge.consult);
                ev.conn_id = Some(merge.consult);
                ev.call_state = Some(CallState::Conferenced);
                notes.push(Notice::Registrants(ev));
                let mut ev = self.call_event(EventName::EventPartyAdded, d, merge.surviving);
                ev.other_dn = added.clone();
                ev.this_dn_role = Some(DnRole::ConferencedBy);
                ev.other_dn_role = Some(DnRole::NewParty);
                notes.push(Notice::Deliver(ev));
            } else {
                for conn in [merge.surviving, merge.consult] {
                    let mut ev = self.call_event(EventName::EventReleased, d, conn);
                    ev.conn_id = Some(conn);
                    ev.call_state = Some(CallState::Transferred);
                    notes.push(Notice::Deliver(ev));
                }
                self.remove_dn_call(d, merge.surviving);
                self.remove_dn_call(d, merge.consult);
            }
            return;
        }
        let was_consulted = merge.moved.iter().any(|x| x == d);
        let name = if conference && !was_consulted {
            EventName::EventPartyAdded
        } else {
            EventName::EventPartyChanged
        };
        let mut ev = self.call_event(name, d, merge.surviving);
        if was_consulted {
            ev.previous_conn_id = Some(merge.consult);
        }
        ev.third_party_dn = by.clone();
        ev.third_party_dn_role = Some(if conference {
            DnRole::ConferencedBy
        } else {
            DnRole::TransferredBy
        });
        if conference && !was_consulted {
            ev.other_dn = added;
            ev.other_dn_role = Some(DnRole::NewParty);
        }
        notes.push(Notice::Deliver(ev));
    }

    fn single_step_transferred(
        &mut self,
        d: &str,
        call_id: &str,
        by: Option<String>,
        notes: &mut Vec<Notice>,
    ) {
        let conn = self.call_for(call_id);
        if by.as_deref() == Some(d) {
            if self.calls.get(&conn).is_some_and(|c| c.party(d).is_some()) {
                let mut ev = self.call_event(EventName::EventReleased, d, conn);
                ev.call_state = Some(CallState::Transferred);
                notes.push(Notice::Deliver(ev));
            }
        } else if self.calls.get(&conn).is_some_and(|c| c.party(d).is_some()) {
            let mut ev = self.call_event(EventName::EventPartyChanged, d, conn);
            ev.third_party_dn = by.clone();
            ev.third_party_dn_role = Some(DnRole::TransferredBy);
            notes.push(Notice::Deliver(ev));
        }
        if let Some(by) = &by {
            self.drop_party(conn, by);
            self.remove_dn_call(by, conn);
        }
    }

    fn add_dn_call(&mut self, dns: &Dns, dn: &str, conn: ConnId) {
        if let Some(s) = self.by_dn.get_mut(dn) {
            s.calls.insert(conn);
        } else if dns.contains(dn) {
            let x = DnCalls {
                calls: BTreeSet::from([conn]),
                told: BTreeSet::new(),
            };
            self.by_dn.insert(dn.to_string(), x);
        }
    }

    fn remove_dn_call(&mut self, dn: &str, conn: ConnId) {
        if let Some(x) = self.by_dn.get_mut(dn) {
            x.calls.remove(&conn);
        }
    }

    /// The DN-status keys about calls: `status`, `conn-<n>`, `ps-<n>`. `guest`: an agent-login
    /// guest whose calls are shown at `dn` (its desk), after the desk's own.
    pub fn status_keys(&self, dn: &str, guest: Option<&str>, k: &mut KvList) -> usize {
        let mut n = 0;
        let mut status = "AddressStatusIdle";
        let own = self.by_dn.get(dn).into_iter().flat_map(|x| &x.calls);
        let shown = guest
            .and_then(|g| self.by_dn.get(g))
            .into_iter()
            .flat_map(|x| &x.calls)
            .filter(|c| !self.by_dn.get(dn).is_some_and(|x| x.calls.contains(c)));
        let parties = own
            .map(|c| (c, dn))
            .chain(shown.map(|c| (c, guest.unwrap_or(dn))));
        for (conn, at) in parties {
            let Some(c) = self.calls.get(conn) else {
                continue;
            };
            let Some(p) = c.party(at) else { continue };
            n += 1;
            k.insert_str(format!("conn-{n}"), conn.to_string());
            k.insert_str(format!("ps-{n}"), p.state.as_str());
            status = match (status, p.state) {
                (_, PartyState::Connected) => "AddressStatusTalking",
                ("AddressStatusIdle", PartyState::Alerting) => "AddressStatusRinging",
                ("AddressStatusIdle", PartyState::Initiated) => "AddressStatusDialing",
                ("AddressStatusIdle", PartyState::Held) => "AddressStatusHeld",
                (s, _) => s,
            };
        }
        k.insert_str("status", status);
        n
    }

    fn take_consult_origin(&mut self, call_id: &str) -> Option<ConnId> {
        self.consult_origins.remove(call_id)
    }

    /// Remember that the call `call_id` (from a ConsultationCall answer) consults `origin`.
    pub fn note_consultation(&mut self, call_id: &str, origin: ConnId) {
        match self.conn_of(call_id) {
            Some(conn) => {
                let ud = self.calls.get(&origin).map(|c| c.user_data.clone());
                if let Some(c) = self.calls.get_mut(&conn) {
                    c.consult_of = Some(origin);
                    c.call_type = CallType::Consult;
                    if let Some(u) = ud {
                        // The copy goes under what the call already has (the request's
                        // UserData, when the switch reported the call before answering).
                        c.user_data = merged(&u, &c.user_data);
                    }
                }
            }
            None => {
                self.consult_origins.insert(call_id.to_string(), origin);
            }
        }
    }
}

/// A CSTA connection state as a party state.
pub fn state_of(s: &LocalConnectionState) -> PartyState {
    match s {
        LocalConnectionState::Initiated => PartyState::Initiated,
        LocalConnectionState::Alerting => PartyState::Alerting,
        LocalConnectionState::Connected => PartyState::Connected,
        LocalConnectionState::Hold => PartyState::Held,
        LocalConnectionState::Queued => PartyState::Queued,
        LocalConnectionState::Fail => PartyState::Failed,
        _ => PartyState::Null,
    }
}

// ------------------------------------------------------------------------------ resync

impl Calls {
    /// SnapshotDevice for `dn` (at monitoring: the calls it has now).
    pub fn snapshot(dn: &str) -> Message {
        Message::SnapshotDevice(SnapshotDevice {
            snapshot_object: dn.into(),
            extensions: None,
        })
    }

    /// SnapshotDevice's answer: the calls of `dn` now, or the start of a segmented snapshot.
    /// Returns the switch's error when it says the device is gone: its calls are then released
    /// for its clients (the switch has none there any more).
    pub fn snapshot_answer(
        &mut self,
        dn: &str,
        msg: Result<Message, String>,
        dns: &Dns,
        notes: &mut Vec<Notice>,
    ) -> Option<ctid_csta::CstaError> {
        match msg {
            Ok(Message::CstaErrorCode(e)) if crate::dns::device_gone(&e.error) => {
                warn!(%dn, error = %e.error, "SnapshotDevice: the device is gone");
                self.reconcile(dn, &[], dns, notes);
                return Some(e.error);
            }
            Ok(Message::SnapshotDeviceResponse(r)) => match r.cross_ref_id_or_snapshot_data {
                SnapshotResult::Data(items) => self.reconcile(dn, &items, dns, notes),
                SnapshotResult::ServiceCrossRefId(x) => {
                    self.snapshots
                        .insert(x.into(), (dn.to_string(), Vec::new()));
                }
            },
            Ok(Message::CstaErrorCode(e)) => warn!(%dn, error = %e.error, "SnapshotDevice refused"),
            Ok(other) => warn!(%dn, answer = other.name(), "unexpected answer to SnapshotDevice"),
            Err(reason) => warn!(%dn, %reason, "malformed answer to SnapshotDevice"),
        }
        None
    }

    /// A segment of a segmented snapshot (SnapshotDeviceData); with the last one, the DN's calls
    /// are reconciled: returns that DN (the notices are its).
    pub fn snapshot_segment(
        &mut self,
        s: &ctid_csta::SnapshotDeviceData,
        dns: &Dns,
        notes: &mut Vec<Notice>,
    ) -> Option<String> {
        let Some((_, items)) = self.snapshots.get_mut(s.service_cross_ref_id.as_str()) else {
            debug!(xref = %s.service_cross_ref_id, "snapshot segment for no snapshot");
            return None;
        };
        items.extend(s.snapshot_data.iter().cloned());
        if s.last_segment.unwrap_or(true) {
            if let Some((dn, items)) = self.snapshots.remove(s.service_cross_ref_id.as_str()) {
                self.reconcile(&dn, &items, dns, notes);
                return Some(dn);
            }
        }
        None
    }

    /// Make ctid's calls on `dn` equal the switch's (`docs/call-model.md`, "Snapshot and resync"): calls it
    /// did not know are announced, calls gone are released with `ReleaseCause` = `resync`.
    fn reconcile(
        &mut self,
        dn: &str,
        items: &[SnapshotDeviceResponseInfo],
        dns: &Dns,
        notes: &mut Vec<Notice>,
    ) {
        let start = notes.len();
        let mut present = Vec::new();
        for it in items {
            let Some(call_id) = it
                .connection_identifier
                .call_id
                .as_deref()
                .map(String::from)
            else {
                continue;
            };
            let state = match &it.local_call_state {
                Some(LocalCallState::Compound(v)) => v
                    .first()
                    .cloned()
                    .unwrap_or(LocalConnectionState::Connected),
                Some(LocalCallState::Simple(s)) => match s {
                    SimpleCallState::CallDelivered | SimpleCallState::CallReceived => {
                        LocalConnectionState::Alerting
                    }
                    SimpleCallState::CallOriginated | SimpleCallState::CallPending => {
                        LocalConnectionState::Initiated
                    }
                    SimpleCallState::CallEstablishedHeld
                    | SimpleCallState::CallDeliveredHeld
                    | SimpleCallState::CallQueuedHeld => LocalConnectionState::Hold,
                    SimpleCallState::CallQueued => LocalConnectionState::Queued,
                    _ => LocalConnectionState::Connected,
                },
                _ => LocalConnectionState::Connected,
            };
            let known = self.conn_of(&call_id).is_some_and(|c| self.was_told(dn, c));
            let conn = self.call_for(&call_id);
            present.push(conn);
            let ps = state_of(&state);
            let (name, ps) = match ps {
                PartyState::Alerting => (EventName::EventRinging, ps),
                PartyState::Initiated => (EventName::EventDialing, ps),
                PartyState::Held => (EventName::EventHeld, ps),
                PartyState::Queued => (EventName::EventQueued, ps),
                PartyState::Null => continue,
                _ => (EventName::EventEstablished, PartyState::Connected),
            };
            if let Some(c) = self.calls.get_mut(&conn) {
                match c.parties.iter_mut().find(|p| p.dn == dn) {
                    Some(p) => p.state = ps,
                    None => c.parties.push(Party {
                        dn: dn.to_string(),
                        state: ps,
                        role: DnRole::Unknown,
                        offered: name == EventName::EventRinging,
                    }),
                }
            }
            self.add_dn_call(dns, dn, conn);
            if !known {
                let event = self.call_event(name, dn, conn);
                notes.push(Notice::Registrants(event));
            }
        }
        let mut held: BTreeSet<ConnId> = self.conns_of_dn(dn).into_iter().collect();
        held.extend(
            self.by_dn
                .get(dn)
                .into_iter()
                .flat_map(|x| &x.told)
                .copied(),
        );
        for conn in held {
            if present.contains(&conn) {
                continue;
            }
            let mut ev = self.call_event(EventName::EventReleased, dn, conn);
            ev.call_state = Some(CallState::Dropped);
            ev.extensions
                .get_or_insert_with(KvList::new)
                .insert_str("ReleaseCause", "resync");
            notes.push(Notice::Registrants(ev));
            if let Some(c) = self.calls.get_mut(&conn) {
                c.parties.retain(|p| p.dn != dn);
                if c.parties.is_empty() {
                    self.forget_call(conn);
                }
            }
            self.remove_dn_call(dn, conn);
        }
        self.track(dn, &notes[start..]);
    }

    /// RequestQueryCall's EventPartyInfo: the call as `dn` sees it, with every party's state.
    pub fn party_info(&self, dn: &str, conn: ConnId) -> Event {
        let mut e = self.call_event(EventName::EventPartyInfo, dn, conn);
        if let Some(call) = self.calls.get(&conn) {
            let mut parties = KvList::new();
            for p in &call.parties {
                parties.insert_str(p.dn.clone(), p.state.as_str());
            }
            e.extensions
                .get_or_insert_with(KvList::new)
                .insert("Parties", KvValue::List(parties));
        }
        e
    }
}
