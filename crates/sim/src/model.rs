//! The switch model, sans-IO: devices (extensions, ACD queues, route points), calls with their
//! connections and states, agents, forwarding, do-not-disturb and BroadWorks-style hoteling.
//!
//! Every operation validates first (refusing with the CSTAErrorCode a real switch gives, see
//! [`SimError`]) and only then changes the model, appending the events the change causes to an
//! outbox as `(device, event)` pairs: one copy per device involved, with that device's
//! `localConnectionInfo` filled in and an empty `monitorCrossRefID` (the switch task fans each
//! copy out to every monitor of the device). Devices nobody monitors produce nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ctid_csta::*;
use serde_json::{json, Value};

use crate::config::{DeviceConfig, DeviceKind, Hoteling, SimConfig};
use crate::error::{Result, SimError};
use crate::events::{call_only, conn, dev, redirection};

/// An event for every monitor of `device`.
pub type Out = (String, Message);

/// How many forwarding hops a call follows before it fails.
const MAX_HOPS: u32 = 5;

/// A device of the switch.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    pub hoteling: Option<Hoteling>,
    pub agent_id: Option<String>,
    /// ACD queue: the agents that serve it.
    pub members: Vec<String>,
    pub dnd: bool,
    /// Active forwarding: type literal → destination.
    pub forwarding: BTreeMap<String, String>,
}

impl Device {
    fn from_config(c: &DeviceConfig) -> Self {
        Device {
            id: c.id.clone(),
            kind: c.kind,
            hoteling: c.hoteling,
            agent_id: c.agent_id.clone(),
            members: c.agents.clone(),
            dnd: false,
            forwarding: BTreeMap::new(),
        }
    }
    fn fwd(&self, t: &ForwardingType) -> Option<&str> {
        self.forwarding.get(t.as_str()).map(String::as_str)
    }
}

/// One party's connection to a call.
#[derive(Debug, Clone)]
pub struct Conn {
    pub device: String,
    pub state: LocalConnectionState,
    /// When the connection was made (`Model::now_ms`): a ringing one's ring timer.
    pub since_ms: u64,
}

/// A call.
#[derive(Debug, Clone)]
pub struct Call {
    pub id: String,
    /// Who placed it.
    pub calling: String,
    /// The number dialled (the DNIS).
    pub called: String,
    /// The last device that redirected it (forwarding, deflection, distribution).
    pub last_redirect: Option<String>,
    pub conns: Vec<Conn>,
}

impl Call {
    fn state_of(&self, device: &str) -> Option<LocalConnectionState> {
        self.conns
            .iter()
            .find(|c| c.device == device)
            .map(|c| c.state.clone())
    }
    fn parties(&self) -> Vec<String> {
        self.conns.iter().map(|c| c.device.clone()).collect()
    }
}

/// An agent's work mode while logged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    NotReady,
    Ready,
    WorkingAfterCall,
}

impl AgentMode {
    fn as_str(self) -> &'static str {
        match self {
            AgentMode::NotReady => "notReady",
            AgentMode::Ready => "ready",
            AgentMode::WorkingAfterCall => "workingAfterCall",
        }
    }
}

/// An ACD agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    /// The queues it serves.
    pub groups: Vec<String>,
    /// The device it is logged on at.
    pub device: Option<String>,
    pub mode: AgentMode,
    /// The not-ready reason code (BroadSoft `AgentNotReadyReasonValue`) while not ready.
    pub reason: Option<String>,
}

/// The switch.
#[derive(Debug, Default)]
pub struct Model {
    devices: BTreeMap<String, Device>,
    calls: BTreeMap<u64, Call>,
    agents: BTreeMap<String, Agent>,
    /// guest → host.
    assoc: BTreeMap<String, String>,
    /// queue → calls waiting, oldest first.
    waiting: HashMap<String, VecDeque<String>>,
    /// queue → round-robin position.
    rr: HashMap<String, usize>,
    next_call: u64,
    /// device → number of monitors on it (kept by the switch task).
    pub monitored: HashMap<String, usize>,
    /// Bumped whenever a device is removed (monitors on it must then be stopped).
    pub removals: u64,
    /// Milliseconds since the switch started, set by its task before every operation (the
    /// ring timer's clock).
    pub now_ms: u64,
    out: Vec<Out>,
}

fn call_key(id: &str) -> Option<u64> {
    id.strip_prefix('C')?.parse().ok()
}

impl Model {
    /// The switch of `cfg`: its devices, agents and initial associations (no events).
    pub fn new(cfg: &SimConfig) -> Result<Self> {
        let mut m = Model {
            next_call: 1,
            ..Model::default()
        };
        for d in &cfg.devices {
            m.add_device(d.clone())?;
        }
        for (g, h) in &cfg.associations {
            m.check_associate(g, h)?;
            m.assoc.insert(g.clone(), h.clone());
            if let Some(hd) = m.devices.get_mut(h) {
                hd.forwarding
                    .insert(ForwardingType::ForwardImmediate.as_str().into(), g.clone());
            }
        }
        m.out.clear();
        Ok(m)
    }

    /// Take the events produced so far.
    pub fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    /// Is `id` a device of the switch?
    pub fn has_device(&self, id: &str) -> bool {
        self.devices.contains_key(id)
    }

    /// Number of calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The guest associated with `host`, if any.
    pub fn guest_of(&self, host: &str) -> Option<&str> {
        self.assoc
            .iter()
            .find(|(_, h)| h.as_str() == host)
            .map(|(g, _)| g.as_str())
    }

    /// The host `guest` sits at, if any.
    pub fn host_of(&self, guest: &str) -> Option<&str> {
        self.assoc.get(guest).map(String::as_str)
    }

    /// The subscriber a phone acts for: a host's guest while associated, else the device itself.
    pub fn subscriber_at(&self, phone: &str) -> String {
        self.guest_of(phone).unwrap_or(phone).to_string()
    }

    // ------------------------------------------------------------------ emitting

    fn is_monitored(&self, d: &str) -> bool {
        self.monitored.get(d).is_some_and(|n| *n > 0)
    }

    /// One copy of `mk(local state)` for each monitored device in `to` (deduplicated).
    fn emit(
        &mut self,
        to: &[String],
        call: Option<&str>,
        mk: impl Fn(LocalConnectionState) -> Message,
    ) {
        for (i, d) in to.iter().enumerate() {
            if to[..i].contains(d) || !self.is_monitored(d) {
                continue;
            }
            let local = call
                .and_then(|c| self.find_call(c))
                .and_then(|c| c.state_of(d))
                .unwrap_or(LocalConnectionState::Null);
            let msg = mk(local);
            self.out.push((d.clone(), msg));
        }
    }

    fn emit_plain(&mut self, to: &[&str], msg: Message) {
        for (i, d) in to.iter().enumerate() {
            if to[..i].contains(d) || !self.is_monitored(d) {
                continue;
            }
            self.out.push((d.to_string(), msg.clone()));
        }
    }

    // ------------------------------------------------------------------ devices

    /// Add a device (control API / config).
    pub fn add_device(&mut self, c: DeviceConfig) -> Result<()> {
        if c.id.is_empty() || c.id.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            return Err(SimError::BadRequest(format!("device id {:?}", c.id)));
        }
        if self.devices.contains_key(&c.id) {
            return Err(SimError::op(
                OperationError::InvalidParameterValue,
                format!("device {} already exists", c.id),
            ));
        }
        if let Some(a) = &c.agent_id {
            self.agents.entry(a.clone()).or_insert_with(|| Agent {
                id: a.clone(),
                groups: Vec::new(),
                device: None,
                mode: AgentMode::NotReady,
                reason: None,
            });
        }
        if c.kind == DeviceKind::Acd {
            for a in &c.agents {
                let ag = self.agents.entry(a.clone()).or_insert_with(|| Agent {
                    id: a.clone(),
                    groups: Vec::new(),
                    device: None,
                    mode: AgentMode::NotReady,
                    reason: None,
                });
                if !ag.groups.contains(&c.id) {
                    ag.groups.push(c.id.clone());
                }
            }
        }
        self.devices.insert(c.id.clone(), Device::from_config(&c));
        Ok(())
    }

    /// Remove a device: its calls are cleared, its association cancelled, its agent logged off.
    pub fn remove_device(&mut self, id: &str) -> Result<()> {
        if !self.devices.contains_key(id) {
            return Err(SimError::unknown_device(id));
        }
        self.removals += 1;
        for cid in self.calls_of(id) {
            let _ = self.clear_connection(&cid, id);
        }
        if self.assoc.contains_key(id) {
            self.do_cancel(id);
        }
        if let Some(g) = self.guest_of(id).map(str::to_string) {
            self.do_cancel(&g);
        }
        let logged: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.device.as_deref() == Some(id))
            .map(|a| a.id.clone())
            .collect();
        for a in logged {
            self.agent_logoff(&a, id);
        }
        if let Some(q) = self.waiting.remove(id) {
            for cid in q {
                let _ = self.clear_call(&cid);
            }
        }
        for a in self.agents.values_mut() {
            a.groups.retain(|g| g != id);
        }
        self.devices.remove(id);
        Ok(())
    }

    pub(crate) fn device(&self, id: &str) -> Result<&Device> {
        self.devices
            .get(id)
            .ok_or_else(|| SimError::unknown_device(id))
    }

    // ------------------------------------------------------------------ calls: lookup

    fn find_call(&self, id: &str) -> Option<&Call> {
        self.calls.get(&call_key(id)?)
    }

    fn find_call_mut(&mut self, id: &str) -> Option<&mut Call> {
        self.calls.get_mut(&call_key(id)?)
    }

    fn call(&self, id: &str) -> Result<&Call> {
        self.find_call(id).ok_or_else(|| SimError::unknown_call(id))
    }

    fn parties(&self, id: &str) -> Vec<String> {
        self.find_call(id).map(Call::parties).unwrap_or_default()
    }

    /// The devices in call `id`.
    pub fn parties_of(&self, id: &str) -> Vec<String> {
        self.parties(id)
    }

    /// The state of `device`'s connection in `call`, validating both.
    fn conn_state(&self, c: &ConnectionId) -> Result<LocalConnectionState> {
        let call = self.call(c.call())?;
        if c.device().is_empty() {
            return Err(SimError::op(
                OperationError::InvalidConnectionID,
                format!("connection of call {} names no device", c.call()),
            ));
        }
        call.state_of(c.device()).ok_or_else(|| {
            SimError::op(
                OperationError::InvalidConnectionID,
                format!("device {} is not in call {}", c.device(), c.call()),
            )
        })
    }

    fn expect_state(
        &self,
        c: &ConnectionId,
        want: &[LocalConnectionState],
        what: &str,
    ) -> Result<()> {
        let s = self.conn_state(c)?;
        if want.contains(&s) {
            Ok(())
        } else {
            Err(SimError::state(
                StateIncompatibilityError::InvalidConnectionState,
                format!(
                    "{what}: {} is {} in call {}",
                    c.device(),
                    s.as_str(),
                    c.call()
                ),
            ))
        }
    }

    /// A connection given by device only (OpenScape style, e.g. pyssimist's ClearConnection):
    /// the device's call in the first of `prefer` states that it has.
    pub fn complete_connection(
        &self,
        c: &ConnectionId,
        prefer: &[LocalConnectionState],
    ) -> Result<ConnectionId> {
        if !c.call().is_empty() || c.device().is_empty() {
            return Ok(c.clone());
        }
        self.device(c.device())?;
        for s in prefer {
            if let Some(call) = self
                .calls_in_state(c.device(), std::slice::from_ref(s))
                .into_iter()
                .next()
            {
                return Ok(conn(&call, c.device()));
            }
        }
        Err(SimError::state(
            StateIncompatibilityError::InvalidConnectionState,
            format!("{} has no call for this request", c.device()),
        ))
    }

    /// Calls in which `device` has a connection, oldest first.
    pub fn calls_of(&self, device: &str) -> Vec<String> {
        self.calls
            .values()
            .filter(|c| c.conns.iter().any(|x| x.device == device))
            .map(|c| c.id.clone())
            .collect()
    }

    fn calls_in_state(&self, device: &str, states: &[LocalConnectionState]) -> Vec<String> {
        self.calls
            .values()
            .filter(|c| {
                c.conns
                    .iter()
                    .any(|x| x.device == device && states.contains(&x.state))
            })
            .map(|c| c.id.clone())
            .collect()
    }

    /// Has `device` a call that is not on hold (single-line phones)?
    fn is_busy(&self, device: &str) -> bool {
        use LocalConnectionState as S;
        !self
            .calls_in_state(device, &[S::Initiated, S::Alerting, S::Connected])
            .is_empty()
    }

    fn set_state(&mut self, call: &str, device: &str, s: LocalConnectionState) {
        if let Some(c) = self.find_call_mut(call) {
            if let Some(x) = c.conns.iter_mut().find(|x| x.device == device) {
                x.state = s;
            }
        }
    }

    fn add_conn(&mut self, call: &str, device: &str, s: LocalConnectionState) {
        let since_ms = self.now_ms;
        if let Some(c) = self.find_call_mut(call) {
            c.conns.push(Conn {
                device: device.to_string(),
                state: s,
                since_ms,
            });
        }
    }

    /// The ring timer: a call that has rung at a device for `secs` seconds (0 = never) is taken
    /// by the device's no-answer forwarding (Diverted with cause callForwardNoAnswer, then
    /// offered to the destination). Returns how many calls were forwarded.
    pub fn ring_timeouts(&mut self, secs: u32) -> usize {
        if secs == 0 {
            return 0;
        }
        let limit = u64::from(secs) * 1000;
        let mut due = Vec::new();
        for call in self.calls.values() {
            for c in &call.conns {
                if c.state != LocalConnectionState::Alerting
                    || self.now_ms.saturating_sub(c.since_ms) < limit
                {
                    continue;
                }
                let Some(d) = self.devices.get(&c.device) else {
                    continue;
                };
                let Some(f) = d.fwd(&ForwardingType::ForwardNoAns) else {
                    continue;
                };
                if f != c.device && self.devices.contains_key(f) && call.state_of(f).is_none() {
                    due.push((call.id.clone(), c.device.clone(), f.to_string()));
                }
            }
        }
        for (cid, b, to) in &due {
            let recips = self.parties(cid);
            self.remove_conn(cid, b);
            self.emit_diverted(cid, b, to, EventCause::CallForwardNoAnswer, &recips);
            if let Some(cm) = self.find_call_mut(cid) {
                cm.last_redirect = Some(b.clone());
            }
            self.route(cid, to, EventCause::CallForwardNoAnswer, 1);
        }
        if !due.is_empty() {
            self.after();
        }
        due.len()
    }

    fn remove_conn(&mut self, call: &str, device: &str) {
        if let Some(c) = self.find_call_mut(call) {
            c.conns.retain(|x| x.device != device);
        }
        if let Some(q) = self.waiting.get_mut(device) {
            q.retain(|c| c != call);
        }
    }

    fn drop_call(&mut self, call: &str) {
        if let Some(k) = call_key(call) {
            self.calls.remove(&k);
        }
        for q in self.waiting.values_mut() {
            q.retain(|c| c != call);
        }
    }

    /// The calling device as the other parties see it now.
    fn calling_of(&self, call: &Call, dest: &str) -> String {
        if call.conns.iter().any(|c| c.device == call.calling) && call.calling != dest {
            return call.calling.clone();
        }
        call.conns
            .iter()
            .find(|c| c.device != dest)
            .map(|c| c.device.clone())
            .unwrap_or_else(|| call.calling.clone())
    }

    // ------------------------------------------------------------------ calls: services

    fn check_originator(&self, from: &str) -> Result<()> {
        let d = self.devices.get(from).ok_or_else(|| {
            SimError::op(
                OperationError::InvalidCallingDeviceID,
                format!("calling device {from:?} is unknown to the switch"),
            )
        })?;
        if d.kind != DeviceKind::Extension {
            return Err(SimError::op(
                OperationError::RequestIncompatibleWithCallingDevice,
                format!("{from} is a {}, not an extension", d.kind.as_str()),
            ));
        }
        if let Some(g) = self.guest_of(from) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidCallingDeviceState,
                format!("host {from} has no endpoint while guest {g} sits at it"),
            ));
        }
        Ok(())
    }

    fn check_destination(&self, from: &str, to: &str) -> Result<()> {
        if !self.devices.contains_key(to) {
            return Err(SimError::op(
                OperationError::InvalidCalledDeviceID,
                format!("called device {to:?} is unknown to the switch"),
            ));
        }
        if from == to {
            return Err(SimError::op(
                OperationError::NotDifferentDevices,
                format!("{from} cannot call itself"),
            ));
        }
        Ok(())
    }

    /// MakeCall (`by_service`) or dialling at the phone: returns the call ID.
    pub fn make_call(&mut self, from: &str, to: &str, by_service: bool) -> Result<String> {
        self.check_originator(from)?;
        self.check_destination(from, to)?;
        if self.is_busy(from) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidCallingDeviceState,
                format!("{from} already has an active call"),
            ));
        }
        let cause = if by_service {
            EventCause::MakeCall
        } else {
            EventCause::NewCall
        };
        let cid = self.originate(from, to, cause, EventCause::NewCall);
        self.route(&cid, to, EventCause::NewCall, 0);
        self.after();
        Ok(cid)
    }

    /// A new call at `from`: ServiceInitiated then Originated.
    fn originate(
        &mut self,
        from: &str,
        to: &str,
        si_cause: EventCause,
        orig_cause: EventCause,
    ) -> String {
        let cid = format!("C{}", self.next_call);
        self.calls.insert(
            self.next_call,
            Call {
                id: cid.clone(),
                calling: from.into(),
                called: to.into(),
                last_redirect: None,
                conns: vec![Conn {
                    device: from.into(),
                    state: LocalConnectionState::Initiated,
                    since_ms: self.now_ms,
                }],
            },
        );
        self.next_call += 1;
        let me = vec![from.to_string()];
        self.emit(&me, Some(&cid), |local| {
            Message::ServiceInitiatedEvent(ServiceInitiatedEvent {
                monitor_cross_ref_id: Default::default(),
                initiated_connection: conn(&cid, from),
                initiating_device: dev(from),
                called_device: None,
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(si_cause.clone()),
                extensions: None,
            })
        });
        self.set_state(&cid, from, LocalConnectionState::Connected);
        self.emit(&me, Some(&cid), |local| {
            Message::OriginatedEvent(OriginatedEvent {
                monitor_cross_ref_id: Default::default(),
                originated_connection: conn(&cid, from),
                calling_device: dev(from),
                called_device: dev(to),
                originating_device: None,
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(orig_cause.clone()),
                extensions: None,
            })
        });
        cid
    }

    /// Offer `call` to `dest`: forwarding, DND, busy, queueing or alerting.
    fn route(&mut self, cid: &str, dest: &str, cause: EventCause, hops: u32) {
        let Some(d) = self.devices.get(dest).cloned() else {
            self.fail(cid, dest, EventCause::DestNotObtainable);
            return;
        };
        match d.kind {
            DeviceKind::Extension => {
                if let Some(f) = d.fwd(&ForwardingType::ForwardImmediate) {
                    if hops < MAX_HOPS && f != dest && self.devices.contains_key(f) {
                        let f = f.to_string();
                        self.divert_forward(cid, dest, &f, EventCause::CallForwardImmediate, hops);
                        return;
                    }
                }
                if d.dnd {
                    self.fail(cid, dest, EventCause::Busy);
                    return;
                }
                let in_call = self
                    .find_call(cid)
                    .is_some_and(|c| c.state_of(dest).is_some());
                if self.is_busy(dest) || in_call {
                    match d.fwd(&ForwardingType::ForwardBusy) {
                        Some(f) if hops < MAX_HOPS && f != dest && self.devices.contains_key(f) => {
                            let f = f.to_string();
                            self.divert_forward(cid, dest, &f, EventCause::CallForwardBusy, hops);
                        }
                        _ => self.fail(cid, dest, EventCause::Busy),
                    }
                    return;
                }
                self.add_conn(cid, dest, LocalConnectionState::Alerting);
                self.emit_delivered(cid, dest, cause);
            }
            DeviceKind::Acd | DeviceKind::RoutePoint => {
                self.add_conn(cid, dest, LocalConnectionState::Queued);
                let q = self.waiting.entry(dest.to_string()).or_default();
                q.push_back(cid.to_string());
                let n = q.len() as u32;
                let Ok(call) = self.call(cid).cloned() else {
                    tracing::warn!(call = cid, "call vanished while its events were built");
                    return;
                };
                let calling = self.calling_of(&call, dest);
                let parties = call.parties();
                self.emit(&parties, Some(cid), |local| {
                    Message::QueuedEvent(QueuedEvent {
                        monitor_cross_ref_id: Default::default(),
                        queued_connection: conn(cid, dest),
                        queue: dev(dest),
                        calling_device: dev(&calling),
                        called_device: dev(&call.called),
                        last_redirection_device: redirection(call.last_redirect.as_deref()),
                        number_queued: Some(n),
                        calls_in_front: Some(n - 1),
                        local_connection_info: Some(local),
                        correlator_data: None,
                        cause: Some(EventCause::EnteringDistribution),
                        extensions: None,
                    })
                });
            }
        }
    }

    fn emit_delivered(&mut self, cid: &str, dest: &str, cause: EventCause) {
        let Ok(call) = self.call(cid).cloned() else {
            tracing::warn!(call = cid, "call vanished while its events were built");
            return;
        };
        let calling = self.calling_of(&call, dest);
        let parties = call.parties();
        self.emit(&parties, Some(cid), |local| {
            Message::DeliveredEvent(DeliveredEvent {
                monitor_cross_ref_id: Default::default(),
                connection: conn(cid, dest),
                alerting_device: dev(dest),
                calling_device: dev(&calling),
                called_device: dev(&call.called),
                last_redirection_device: redirection(call.last_redirect.as_deref()),
                originating_nid_connection: None,
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(cause.clone()),
                network_calling_device: None,
                network_called_device: None,
                associated_calling_device: None,
                associated_called_device: None,
                extensions: None,
            })
        });
    }

    /// `from` is forwarded to `to`: Diverted (from never rings), then offer to `to`.
    fn divert_forward(&mut self, cid: &str, from: &str, to: &str, cause: EventCause, hops: u32) {
        let mut recips = self.parties(cid);
        recips.push(from.to_string());
        self.emit_diverted(cid, from, to, cause.clone(), &recips);
        if let Some(c) = self.find_call_mut(cid) {
            c.last_redirect = Some(from.to_string());
        }
        self.route(cid, to, cause, hops + 1);
    }

    fn emit_diverted(
        &mut self,
        cid: &str,
        from: &str,
        to: &str,
        cause: EventCause,
        recips: &[String],
    ) {
        let Ok(call) = self.call(cid).cloned() else {
            tracing::warn!(call = cid, "call vanished while its events were built");
            return;
        };
        let calling = self.calling_of(&call, from);
        let last = call.last_redirect.clone();
        self.emit(recips, Some(cid), |local| {
            Message::DivertedEvent(DivertedEvent {
                monitor_cross_ref_id: Default::default(),
                connection: conn(cid, from),
                diverting_device: dev(from),
                new_destination: dev(to),
                calling_device: dev(&calling),
                called_device: dev(&call.called),
                last_redirection_device: redirection(last.as_deref()),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(cause.clone()),
                extensions: None,
            })
        });
    }

    /// The offer to `dest` failed: FailedEvent to the parties; the caller stays connected.
    fn fail(&mut self, cid: &str, dest: &str, cause: EventCause) {
        let Ok(call) = self.call(cid).cloned() else {
            tracing::warn!(call = cid, "call vanished while its events were built");
            return;
        };
        let calling = self.calling_of(&call, dest);
        let parties = call.parties();
        self.emit(&parties, Some(cid), |local| {
            Message::FailedEvent(FailedEvent {
                monitor_cross_ref_id: Default::default(),
                failed_connection: conn(cid, dest),
                failing_device: dev(dest),
                calling_device: dev(&calling),
                called_device: dev(&call.called),
                last_redirection_device: None,
                originating_nid_connection: None,
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(cause.clone()),
                extensions: None,
            })
        });
    }

    /// AnswerCall / answering at the phone.
    pub fn answer(&mut self, c: &ConnectionId) -> Result<()> {
        self.expect_state(c, &[LocalConnectionState::Alerting], "answer")?;
        let (cid, d) = (c.call().to_string(), c.device().to_string());
        self.set_state(&cid, &d, LocalConnectionState::Connected);
        let call = self.call(&cid)?.clone();
        let calling = self.calling_of(&call, &d);
        let parties = call.parties();
        self.emit(&parties, Some(&cid), |local| {
            Message::EstablishedEvent(EstablishedEvent {
                monitor_cross_ref_id: Default::default(),
                established_connection: conn(&cid, &d),
                answering_device: dev(&d),
                calling_device: dev(&calling),
                called_device: dev(&call.called),
                last_redirection_device: redirection(call.last_redirect.as_deref()),
                originatin_nid_connection: None,
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(EventCause::NewCall),
                network_calling_device: None,
                network_called_device: None,
                associated_calling_device: None,
                associated_called_device: None,
                extensions: None,
            })
        });
        self.after();
        Ok(())
    }

    /// ClearConnection / hanging up. In a two-party call the other party is cleared too.
    pub fn clear_connection(&mut self, cid: &str, d: &str) -> Result<()> {
        self.conn_state(&conn(cid, d))?;
        let recips = self.parties(cid);
        self.remove_conn(cid, d);
        let (cid_s, d_s) = (cid.to_string(), d.to_string());
        self.emit(&recips, Some(cid), |local| {
            Message::ConnectionClearedEvent(ConnectionClearedEvent {
                monitor_cross_ref_id: Default::default(),
                dropped_connection: conn(&cid_s, &d_s),
                releasing_device: dev(&d_s),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(EventCause::NormalClearing),
                extensions: None,
            })
        });
        let rest = self.parties(cid);
        if rest.len() == 1 {
            let y = rest[0].clone();
            self.remove_conn(cid, &y);
            self.emit(std::slice::from_ref(&y), Some(cid), |local| {
                Message::ConnectionClearedEvent(ConnectionClearedEvent {
                    monitor_cross_ref_id: Default::default(),
                    dropped_connection: conn(&cid_s, &y),
                    releasing_device: dev(&y),
                    local_connection_info: Some(local),
                    correlator_data: None,
                    cause: Some(EventCause::NormalClearing),
                    extensions: None,
                })
            });
        }
        if self.parties(cid).is_empty() {
            self.drop_call(cid);
        }
        self.after();
        Ok(())
    }

    /// ClearCall: every connection cleared, then CallCleared.
    pub fn clear_call(&mut self, cid: &str) -> Result<()> {
        let recips = self.call(cid)?.parties();
        for d in &recips {
            self.remove_conn(cid, d);
            self.emit(&recips, Some(cid), |local| {
                Message::ConnectionClearedEvent(ConnectionClearedEvent {
                    monitor_cross_ref_id: Default::default(),
                    dropped_connection: conn(cid, d),
                    releasing_device: dev(d),
                    local_connection_info: Some(local),
                    correlator_data: None,
                    cause: Some(EventCause::NormalClearing),
                    extensions: None,
                })
            });
        }
        self.emit(&recips, None, |_| {
            Message::CallClearedEvent(CallClearedEvent {
                monitor_cross_ref_id: Default::default(),
                cleared_call: call_only(cid),
                correlator_data: None,
                cause: Some(EventCause::NormalClearing),
                extensions: None,
            })
        });
        self.drop_call(cid);
        self.after();
        Ok(())
    }

    fn emit_held(&mut self, cid: &str, d: &str, cause: EventCause) {
        let recips = self.parties(cid);
        self.emit(&recips, Some(cid), |local| {
            Message::HeldEvent(HeldEvent {
                monitor_cross_ref_id: Default::default(),
                held_connection: conn(cid, d),
                holding_device: dev(d),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(cause.clone()),
                extensions: None,
            })
        });
    }

    fn emit_retrieved(&mut self, cid: &str, d: &str, cause: EventCause) {
        let recips = self.parties(cid);
        self.emit(&recips, Some(cid), |local| {
            Message::RetrievedEvent(RetrievedEvent {
                monitor_cross_ref_id: Default::default(),
                retrieved_connection: conn(cid, d),
                retrieving_device: dev(d),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(cause.clone()),
                extensions: None,
            })
        });
    }

    /// HoldCall.
    pub fn hold(&mut self, c: &ConnectionId) -> Result<()> {
        self.expect_state(c, &[LocalConnectionState::Connected], "hold")?;
        self.set_state(c.call(), c.device(), LocalConnectionState::Hold);
        self.emit_held(c.call(), c.device(), EventCause::Normal);
        self.after();
        Ok(())
    }

    /// RetrieveCall.
    pub fn retrieve(&mut self, c: &ConnectionId) -> Result<()> {
        self.expect_state(c, &[LocalConnectionState::Hold], "retrieve")?;
        if self.is_busy(c.device()) {
            return Err(SimError::state(
                StateIncompatibilityError::ConnectedCallExists,
                format!("{} has another active call", c.device()),
            ));
        }
        self.set_state(c.call(), c.device(), LocalConnectionState::Connected);
        self.emit_retrieved(c.call(), c.device(), EventCause::Normal);
        self.after();
        Ok(())
    }

    /// ConsultationCall: hold the existing call and call `to`. Returns the new call ID.
    pub fn consult(&mut self, c: &ConnectionId, to: &str) -> Result<String> {
        self.expect_state(c, &[LocalConnectionState::Connected], "consultation")?;
        self.check_destination(c.device(), to)?;
        let a = c.device().to_string();
        self.set_state(c.call(), &a, LocalConnectionState::Hold);
        self.emit_held(c.call(), &a, EventCause::Consultation);
        let cid = self.originate(&a, to, EventCause::Consultation, EventCause::Consultation);
        self.route(&cid, to, EventCause::NewCall, 0);
        self.after();
        Ok(cid)
    }

    fn check_pair(&self, held: &ConnectionId, active: &ConnectionId) -> Result<()> {
        self.expect_state(held, &[LocalConnectionState::Hold], "held call")?;
        self.conn_state(active)?;
        if held.device() != active.device() {
            return Err(SimError::op(
                OperationError::NotSameDevice,
                "held and active connections are at different devices",
            ));
        }
        if held.call() == active.call() {
            return Err(SimError::op(
                OperationError::InvalidCallID,
                "held and active call are the same call",
            ));
        }
        Ok(())
    }

    /// Give call `old` a new callID, as a switch that renumbers the resulting call of a
    /// transfer or conference does (`renumber_transfers`); returns the new one. A call waiting
    /// in a queue keeps its ID.
    pub fn renumber_call(&mut self, old: &str) -> String {
        let queued = self.waiting.values().any(|q| q.iter().any(|c| c == old));
        let Some(key) = call_key(old).filter(|_| !queued) else {
            return old.to_string();
        };
        let Some(mut call) = self.calls.remove(&key) else {
            return old.to_string();
        };
        let new = format!("C{}", self.next_call);
        call.id = new.clone();
        self.calls.insert(self.next_call, call);
        self.next_call += 1;
        new
    }

    /// TransferCall: the held call's other parties join the active call; the transferring
    /// device leaves both. Returns the resulting call and its connection list.
    pub fn transfer(
        &mut self,
        held: &ConnectionId,
        active: &ConnectionId,
    ) -> Result<(String, Vec<ConnectionListItem>)> {
        self.check_pair(held, active)?;
        use LocalConnectionState as S;
        self.expect_state(active, &[S::Connected, S::Initiated], "active call")?;
        let a = held.device().to_string();
        let (c1, c2) = (held.call().to_string(), active.call().to_string());
        let others1: Vec<Conn> = self
            .call(&c1)?
            .conns
            .iter()
            .filter(|x| x.device != a)
            .cloned()
            .collect();
        let others2: Vec<Conn> = self
            .call(&c2)?
            .conns
            .iter()
            .filter(|x| x.device != a)
            .cloned()
            .collect();
        if others1.is_empty() || others2.is_empty() {
            return Err(SimError::state(
                StateIncompatibilityError::NoCallToComplete,
                "nobody to transfer to",
            ));
        }
        let mut recips = vec![a.clone()];
        recips.extend(others1.iter().map(|x| x.device.clone()));
        recips.extend(others2.iter().map(|x| x.device.clone()));
        let mut list = Vec::new();
        for x in &others1 {
            list.push(ConnectionListItem {
                new_connection: Some(conn(&c2, &x.device)),
                old_connection: Some(conn(&c1, &x.device)),
                endpoint: Some(Endpoint::DeviceId(x.device.as_str().into())),
                associated_nid: None,
            });
        }
        for x in &others2 {
            list.push(ConnectionListItem {
                new_connection: Some(conn(&c2, &x.device)),
                old_connection: Some(conn(&c2, &x.device)),
                endpoint: Some(Endpoint::DeviceId(x.device.as_str().into())),
                associated_nid: None,
            });
        }
        // the model change: C1's others move into C2, A leaves both
        let c1_call = self.call(&c1)?.clone();
        self.drop_call(&c1);
        if let Some(call2) = self.find_call_mut(&c2) {
            call2.conns.retain(|x| x.device != a);
            call2.conns.extend(others1.iter().cloned());
            if call2.calling == a {
                call2.calling = c1_call.calling_of_other(&a);
            }
        }
        let to_dev = others2[0].device.clone();
        let l2 = list.clone();
        self.emit(&recips, Some(&c2), |local| {
            Message::TransferedEvent(TransferedEvent {
                monitor_cross_ref_id: Default::default(),
                primary_old_call: Some(conn(&c1, &a)),
                secondary_old_call: Some(conn(&c2, &a)),
                transferring_device: dev(&a),
                transferred_to_device: dev(&to_dev),
                transferred_connections: l2.clone(),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(EventCause::Transfer),
                extensions: None,
            })
        });
        self.after();
        Ok((c2, list))
    }

    /// ConferenceCall: the active call's other parties join the held call, which the
    /// conferencing device retrieves. Returns the conference call and its connection list.
    pub fn conference(
        &mut self,
        held: &ConnectionId,
        active: &ConnectionId,
    ) -> Result<(String, Vec<ConnectionListItem>)> {
        self.check_pair(held, active)?;
        use LocalConnectionState as S;
        self.expect_state(active, &[S::Connected], "active call")?;
        let a = held.device().to_string();
        let (c1, c2) = (held.call().to_string(), active.call().to_string());
        let others2: Vec<Conn> = self
            .call(&c2)?
            .conns
            .iter()
            .filter(|x| x.device != a)
            .cloned()
            .collect();
        if others2.is_empty() || others2.iter().any(|x| x.state != S::Connected) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidConnectionState,
                "the consulted party has not answered",
            ));
        }
        if others2.iter().any(|x| {
            self.call(&c1)
                .is_ok_and(|c| c.state_of(&x.device).is_some())
        }) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidObjectState,
                "a party is already in the held call",
            ));
        }
        self.drop_call(&c2);
        self.set_state(&c1, &a, S::Connected);
        if let Some(call1) = self.find_call_mut(&c1) {
            call1.conns.extend(others2.iter().cloned());
        }
        let mut list = Vec::new();
        for x in &self.call(&c1)?.conns {
            let old = if others2.iter().any(|o| o.device == x.device) {
                &c2
            } else {
                &c1
            };
            list.push(ConnectionListItem {
                new_connection: Some(conn(&c1, &x.device)),
                old_connection: Some(conn(old, &x.device)),
                endpoint: Some(Endpoint::DeviceId(x.device.as_str().into())),
                associated_nid: None,
            });
        }
        let recips = self.parties(&c1);
        let added = others2[0].device.clone();
        let l2 = list.clone();
        self.emit(&recips, Some(&c1), |local| {
            Message::ConferencedEvent(ConferencedEvent {
                monitor_cross_ref_id: Default::default(),
                primary_old_call: Some(conn(&c1, &a)),
                secondary_old_call: Some(conn(&c2, &a)),
                conferencing_device: dev(&a),
                added_party: dev(&added),
                conference_connections: l2.clone(),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(EventCause::Conference),
                extensions: None,
            })
        });
        self.after();
        Ok((c1, list))
    }

    /// SingleStepTransferCall: the transferring device leaves, `to` is offered the same call.
    pub fn single_step_transfer(&mut self, c: &ConnectionId, to: &str) -> Result<String> {
        self.expect_state(
            c,
            &[LocalConnectionState::Connected],
            "single-step transfer",
        )?;
        self.check_destination(c.device(), to)?;
        let (cid, a) = (c.call().to_string(), c.device().to_string());
        let call = self.call(&cid)?.clone();
        let others: Vec<String> = call.parties().into_iter().filter(|d| *d != a).collect();
        if others.is_empty() {
            return Err(SimError::state(
                StateIncompatibilityError::NoCallToComplete,
                "nobody to transfer",
            ));
        }
        if others.iter().any(|d| d == to) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidDestinationDeviceState,
                format!("{to} is already in call {cid}"),
            ));
        }
        self.check_reachable(to)?;
        let list: Vec<ConnectionListItem> = others
            .iter()
            .map(|x| ConnectionListItem {
                new_connection: Some(conn(&cid, x)),
                old_connection: Some(conn(&cid, x)),
                endpoint: Some(Endpoint::DeviceId(x.as_str().into())),
                associated_nid: None,
            })
            .collect();
        let mut recips = vec![a.clone()];
        recips.extend(others.iter().cloned());
        self.remove_conn(&cid, &a);
        if let Some(cm) = self.find_call_mut(&cid) {
            if cm.calling == a {
                cm.calling = others[0].clone();
            }
            cm.called = to.to_string();
            cm.last_redirect = Some(a.clone());
        }
        let to_s = to.to_string();
        self.emit(&recips, Some(&cid), |local| {
            Message::TransferedEvent(TransferedEvent {
                monitor_cross_ref_id: Default::default(),
                primary_old_call: Some(conn(&cid, &a)),
                secondary_old_call: None,
                transferring_device: dev(&a),
                transferred_to_device: dev(&to_s),
                transferred_connections: list.clone(),
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(EventCause::SingleStepTransfer),
                extensions: None,
            })
        });
        self.route(&cid, to, EventCause::SingleStepTransfer, 0);
        self.after();
        Ok(cid)
    }

    /// Refuse a destination that is busy or on DND with nowhere to forward to.
    fn check_reachable(&self, to: &str) -> Result<()> {
        let d = self.device(to)?;
        if d.kind != DeviceKind::Extension || d.fwd(&ForwardingType::ForwardImmediate).is_some() {
            return Ok(());
        }
        if d.dnd || (self.is_busy(to) && d.fwd(&ForwardingType::ForwardBusy).is_none()) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidDestinationDeviceState,
                format!("{to} is busy"),
            ));
        }
        Ok(())
    }

    /// DeflectCall: an alerting (or queued) call leaves its device for `to`.
    pub fn deflect(&mut self, c: &ConnectionId, to: &str) -> Result<()> {
        use LocalConnectionState as S;
        self.expect_state(c, &[S::Alerting, S::Queued], "deflect")?;
        self.check_destination(c.device(), to)?;
        if self.call(c.call())?.state_of(to).is_some() {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidDestinationDeviceState,
                format!("{to} is already in call {}", c.call()),
            ));
        }
        let (cid, b) = (c.call().to_string(), c.device().to_string());
        let recips = self.parties(&cid);
        self.remove_conn(&cid, &b);
        self.emit_diverted(&cid, &b, to, EventCause::Redirected, &recips);
        if let Some(cm) = self.find_call_mut(&cid) {
            cm.last_redirect = Some(b.clone());
        }
        self.route(&cid, to, EventCause::Redirected, 0);
        self.after();
        Ok(())
    }

    /// AlternateCall: hold the active call, retrieve the held one.
    pub fn alternate(&mut self, held: &ConnectionId, active: &ConnectionId) -> Result<()> {
        self.check_pair(held, active)?;
        self.expect_state(active, &[LocalConnectionState::Connected], "active call")?;
        let a = held.device();
        self.set_state(active.call(), a, LocalConnectionState::Hold);
        self.emit_held(active.call(), a, EventCause::Alternate);
        self.set_state(held.call(), a, LocalConnectionState::Connected);
        self.emit_retrieved(held.call(), a, EventCause::Alternate);
        self.after();
        Ok(())
    }

    /// ReconnectCall: clear the active call, retrieve the held one.
    pub fn reconnect(&mut self, active: &ConnectionId, held: &ConnectionId) -> Result<()> {
        self.check_pair(held, active)?;
        self.clear_connection(active.call(), active.device())?;
        self.set_state(held.call(), held.device(), LocalConnectionState::Connected);
        self.emit_retrieved(held.call(), held.device(), EventCause::Normal);
        self.after();
        Ok(())
    }

    /// GenerateDigits: the connection must exist.
    pub fn generate_digits(&mut self, c: &ConnectionId) -> Result<()> {
        self.expect_state(c, &[LocalConnectionState::Connected], "generate digits")
    }

    // ------------------------------------------------------------------ phone (control API)

    fn pick_call(
        &self,
        device: &str,
        call: Option<&str>,
        states: &[LocalConnectionState],
        what: &str,
    ) -> Result<String> {
        self.device(device)?;
        if let Some(c) = call {
            self.call(c)?;
            return Ok(c.to_string());
        }
        for s in states {
            if let Some(c) = self
                .calls_in_state(device, std::slice::from_ref(s))
                .into_iter()
                .next()
            {
                return Ok(c);
            }
        }
        Err(SimError::state(
            match what {
                "answer" => StateIncompatibilityError::NoCallToAnswer,
                "retrieve" => StateIncompatibilityError::NoHeldCall,
                "hangup" => StateIncompatibilityError::NoCallToClear,
                _ => StateIncompatibilityError::NoActiveCall,
            },
            format!("{device} has no call to {what}"),
        ))
    }

    /// Answer at the phone (the ringing call, or `call`).
    pub fn phone_answer(&mut self, phone: &str, call: Option<&str>) -> Result<String> {
        let d = self.subscriber_at(phone);
        let c = self.pick_call(&d, call, &[LocalConnectionState::Alerting], "answer")?;
        self.answer(&conn(&c, &d))?;
        Ok(c)
    }

    /// Hang up at the phone: the active call, else a ringing one (rejected), else a held one.
    pub fn phone_hangup(&mut self, phone: &str, call: Option<&str>) -> Result<String> {
        use LocalConnectionState as S;
        let d = self.subscriber_at(phone);
        let c = self.pick_call(
            &d,
            call,
            &[S::Connected, S::Initiated, S::Alerting, S::Hold],
            "hangup",
        )?;
        self.clear_connection(&c, &d)?;
        Ok(c)
    }

    /// Hold at the phone.
    pub fn phone_hold(&mut self, phone: &str, call: Option<&str>) -> Result<String> {
        let d = self.subscriber_at(phone);
        let c = self.pick_call(&d, call, &[LocalConnectionState::Connected], "hold")?;
        self.hold(&conn(&c, &d))?;
        Ok(c)
    }

    /// Retrieve at the phone.
    pub fn phone_retrieve(&mut self, phone: &str, call: Option<&str>) -> Result<String> {
        let d = self.subscriber_at(phone);
        let c = self.pick_call(&d, call, &[LocalConnectionState::Hold], "retrieve")?;
        self.retrieve(&conn(&c, &d))?;
        Ok(c)
    }

    /// Consultation at the phone: hold the active call, dial `to`.
    pub fn phone_consult(&mut self, phone: &str, to: &str) -> Result<String> {
        let d = self.subscriber_at(phone);
        let c = self.pick_call(&d, None, &[LocalConnectionState::Connected], "consult")?;
        self.consult(&conn(&c, &d), to)
    }

    /// Complete a transfer (or conference) at the phone: the held call with the active one.
    pub fn phone_complete(&mut self, phone: &str, conference: bool) -> Result<String> {
        use LocalConnectionState as S;
        let d = self.subscriber_at(phone);
        let held = self.pick_call(&d, None, &[S::Hold], "retrieve")?;
        let active = self
            .calls_in_state(&d, &[S::Connected, S::Initiated])
            .into_iter()
            .find(|c| *c != held)
            .ok_or_else(|| {
                SimError::state(
                    StateIncompatibilityError::NoActiveCall,
                    format!("{d} has no active call"),
                )
            })?;
        let (h, a) = (conn(&held, &d), conn(&active, &d));
        let r = if conference {
            self.conference(&h, &a)?
        } else {
            self.transfer(&h, &a)?
        };
        Ok(r.0)
    }

    /// Dial at the phone.
    /// The handset lifted without dialling: ServiceInitiated (cause `newCall`) and a call with
    /// the phone's connection Initiated, nothing more. Hanging up then clears that connection
    /// (ConnectionCleared, cause `normalClearing`): what a CSTA switch reports for an
    /// origination abandoned before any digit.
    pub fn phone_off_hook(&mut self, phone: &str) -> Result<String> {
        self.device(phone)?;
        let d = self.subscriber_at(phone);
        self.check_originator(&d)?;
        if self.is_busy(&d) {
            return Err(SimError::state(
                StateIncompatibilityError::InvalidCallingDeviceState,
                format!("{d} already has an active call"),
            ));
        }
        let cid = format!("C{}", self.next_call);
        self.calls.insert(
            self.next_call,
            Call {
                id: cid.clone(),
                calling: d.clone(),
                called: String::new(),
                last_redirect: None,
                conns: vec![Conn {
                    device: d.clone(),
                    state: LocalConnectionState::Initiated,
                    since_ms: self.now_ms,
                }],
            },
        );
        self.next_call += 1;
        let me = vec![d.clone()];
        self.emit(&me, Some(&cid), |local| {
            Message::ServiceInitiatedEvent(ServiceInitiatedEvent {
                monitor_cross_ref_id: Default::default(),
                initiated_connection: conn(&cid, &d),
                initiating_device: dev(&d),
                called_device: None,
                local_connection_info: Some(local),
                correlator_data: None,
                cause: Some(EventCause::NewCall),
                extensions: None,
            })
        });
        self.after();
        Ok(cid)
    }

    pub fn phone_dial(&mut self, phone: &str, to: &str) -> Result<String> {
        self.device(phone)?;
        let d = self.subscriber_at(phone);
        self.make_call(&d, to, false)
    }

    // ------------------------------------------------------------------ ACD

    /// Where an agent's calls ring: its own subscriber ID when it sits at a host as a guest
    /// (hoteling reports calls under the guest), else the device it is logged on at.
    fn agent_target(&self, a: &Agent) -> Option<String> {
        let d = a.device.as_ref()?;
        if self.assoc.get(&a.id) == Some(d) {
            return Some(a.id.clone());
        }
        Some(d.clone())
    }

    fn pick_agent(&mut self, q: &str) -> Option<String> {
        let members = self.devices.get(q)?.members.clone();
        if members.is_empty() {
            return None;
        }
        let start = *self.rr.get(q).unwrap_or(&0);
        for i in 0..members.len() {
            let idx = (start + i) % members.len();
            let Some(a) = self.agents.get(&members[idx]) else {
                continue;
            };
            if a.mode != AgentMode::Ready {
                continue;
            }
            let Some(t) = self.agent_target(a) else {
                continue;
            };
            let dnd = self.devices.get(&t).is_some_and(|d| d.dnd);
            if dnd || self.is_busy(&t) {
                continue;
            }
            self.rr.insert(q.to_string(), idx + 1);
            return Some(t);
        }
        None
    }

    fn distribute(&mut self, q: &str) {
        loop {
            let Some(cid) = self.waiting.get(q).and_then(|w| w.front()).cloned() else {
                return;
            };
            if self.devices.get(q).map(|d| d.kind) != Some(DeviceKind::Acd) {
                return;
            }
            let Some(target) = self.pick_agent(q) else {
                return;
            };
            let recips = self.parties(&cid);
            self.remove_conn(&cid, q);
            self.emit_diverted(&cid, q, &target, EventCause::Distributed, &recips);
            if let Some(cm) = self.find_call_mut(&cid) {
                cm.last_redirect = Some(q.to_string());
            }
            self.add_conn(&cid, &target, LocalConnectionState::Alerting);
            self.emit_delivered(&cid, &target, EventCause::Distributed);
        }
    }

    /// After every operation: hand waiting ACD calls to agents who became free.
    fn after(&mut self) {
        let queues: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(q, _)| q.clone())
            .collect();
        for q in queues {
            self.distribute(&q);
        }
    }

    // ------------------------------------------------------------------ agents

    fn agent_event(&mut self, device: &str, agent: &str, state: &str) {
        let group = self
            .agents
            .get(agent)
            .and_then(|a| a.groups.first().cloned());
        let reason = self.agents.get(agent).and_then(|a| a.reason.clone());
        let base = (
            Default::default(),
            dev(device),
            Some(agent.into()),
            group.map(Into::into),
        );
        let msg = match state {
            "loggedOn" => Message::AgentLoggedOnEvent(AgentLoggedOnEvent {
                monitor_cross_ref_id: base.0,
                agent_device: base.1,
                agent_id: base.2,
                acd_group: base.3,
                agent_password: None,
                cause: None,
                extensions: None,
            }),
            "loggedOff" => Message::AgentLoggedOffEvent(AgentLoggedOffEvent {
                monitor_cross_ref_id: base.0,
                agent_device: base.1,
                agent_id: base.2,
                acd_group: base.3,
                agent_password: None,
                cause: None,
                extensions: None,
            }),
            "ready" => Message::AgentReadyEvent(AgentReadyEvent {
                monitor_cross_ref_id: base.0,
                agent_device: base.1,
                agent_id: base.2,
                acd_group: base.3,
                cause: None,
                extensions: None,
            }),
            "notReady" => Message::AgentNotReadyEvent(AgentNotReadyEvent {
                monitor_cross_ref_id: base.0,
                agent_device: base.1,
                agent_id: base.2,
                acd_group: base.3,
                cause: None,
                extensions: reason
                    .map(|r| Extensions::private(PrivateData::with_not_ready_reason(&r))),
            }),
            _ => Message::AgentWorkingAfterCallEvent(AgentWorkingAfterCallEvent {
                monitor_cross_ref_id: base.0,
                agent_device: base.1,
                agent_id: base.2,
                acd_group: base.3,
                pending_agent_state: None,
                cause: None,
                extensions: None,
            }),
        };
        self.emit_plain(&[device], msg);
    }

    fn agent_logoff(&mut self, agent: &str, device: &str) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.device = None;
            a.mode = AgentMode::NotReady;
            a.reason = None;
        }
        self.agent_event(device, agent, "loggedOff");
    }

    /// SetAgentState (CSTA) or an agent's button at the phone; `reason` is the not-ready
    /// reason code (BroadSoft private data), kept while the agent is not ready.
    pub fn set_agent_state(
        &mut self,
        device: &str,
        state: &ReqAgentState,
        agent_id: Option<&str>,
        group: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        let d = self.device(device)?.clone();
        if d.kind != DeviceKind::Extension {
            return Err(SimError::op(
                OperationError::RequestIncompatibleWithDevice,
                format!(
                    "{device} is a {}, agents log on at extensions",
                    d.kind.as_str()
                ),
            ));
        }
        let at_device = self
            .agents
            .values()
            .find(|a| a.device.as_deref() == Some(device))
            .map(|a| a.id.clone());
        let agent = agent_id
            .map(str::to_string)
            .or(at_device.clone())
            .or(d.agent_id.clone())
            .ok_or_else(|| {
                SimError::op(
                    OperationError::InvalidAgentIdentifier,
                    format!("no agent ID given and none belongs to {device}"),
                )
            })?;
        let a = self.agents.get(&agent).cloned().ok_or_else(|| {
            SimError::op(
                OperationError::InvalidAgentIdentifier,
                format!("agent {agent:?} is unknown to the switch"),
            )
        })?;
        if let Some(g) = group {
            if !a.groups.iter().any(|x| x == g) {
                return Err(SimError::op(
                    OperationError::InvalidAgentGroup,
                    format!("agent {agent} does not serve {g}"),
                ));
            }
        }
        match state {
            ReqAgentState::LoggedOn => {
                let hotdesk = agent != device
                    && d.hoteling == Some(Hoteling::Host)
                    && self.devices.get(&agent).and_then(|g| g.hoteling) == Some(Hoteling::Guest);
                if let Some(at) = &a.device {
                    return Err(SimError::invalid_state(format!(
                        "agent {agent} is already logged on at {at}"
                    )));
                }
                if hotdesk {
                    match self.assoc.get(&agent) {
                        Some(h) if h != device => {
                            return Err(SimError::invalid_state(format!(
                                "guest {agent} is already associated with {h}"
                            )))
                        }
                        _ => {}
                    }
                    // A guest sitting at the host without being its agent (associated at the
                    // phone or by Escape) keeps it.
                    if let Some(g) = self.guest_of(device) {
                        if g != agent && at_device.as_deref() != Some(g) {
                            return Err(SimError::resource(
                                SystemResourceAvailabilityError::ResourceBusy,
                                format!("host {device} is in use by guest {g}"),
                            ));
                        }
                    }
                    // sign out whoever is logged on at the host; an agent-login guest's
                    // association ends with its login (logout, CFA off, cancelled)
                    if let Some(other) = at_device {
                        if self.assoc.get(&other).map(String::as_str) == Some(device) {
                            self.do_cancel(&other);
                        } else {
                            self.agent_logoff(&other, device);
                        }
                    }
                    if !self.assoc.contains_key(&agent) {
                        self.do_associate(&agent, device);
                    }
                } else {
                    let home = self
                        .devices
                        .values()
                        .find(|x| x.agent_id.as_deref() == Some(agent.as_str()))
                        .map(|x| x.id.clone());
                    if home.as_deref().is_some_and(|h| h != device) {
                        return Err(SimError::op(
                            OperationError::InvalidAgentIdentifier,
                            format!("agent {agent} cannot log on at {device}"),
                        ));
                    }
                    if let Some(other) = at_device {
                        return Err(SimError::resource(
                            SystemResourceAvailabilityError::ResourceBusy,
                            format!("agent {other} is logged on at {device}"),
                        ));
                    }
                }
                if let Some(ag) = self.agents.get_mut(&agent) {
                    ag.device = Some(device.to_string());
                    ag.mode = AgentMode::NotReady;
                    ag.reason = None;
                }
                self.agent_event(device, &agent, "loggedOn");
                self.agent_event(device, &agent, "notReady");
            }
            ReqAgentState::LoggedOff => {
                if a.device.as_deref() != Some(device) {
                    return Err(SimError::invalid_state(format!(
                        "agent {agent} is not logged on at {device}"
                    )));
                }
                if agent != device && self.assoc.get(&agent).map(String::as_str) == Some(device) {
                    self.do_cancel(&agent); // logs the agent off first
                } else {
                    self.agent_logoff(&agent, device);
                }
            }
            ReqAgentState::Ready | ReqAgentState::NotReady | ReqAgentState::WorkingAfterCall => {
                if a.device.as_deref() != Some(device) {
                    return Err(SimError::invalid_state(format!(
                        "agent {agent} is not logged on at {device}"
                    )));
                }
                let (mode, ev) = match state {
                    ReqAgentState::Ready => (AgentMode::Ready, "ready"),
                    ReqAgentState::NotReady => (AgentMode::NotReady, "notReady"),
                    _ => (AgentMode::WorkingAfterCall, "workingAfterCall"),
                };
                if let Some(ag) = self.agents.get_mut(&agent) {
                    ag.mode = mode;
                    ag.reason = match mode {
                        AgentMode::NotReady => reason.map(str::to_string),
                        _ => None,
                    };
                }
                self.agent_event(device, &agent, ev);
            }
            ReqAgentState::Other(s) => {
                return Err(SimError::op(
                    OperationError::AgentStateOutOfRange,
                    format!("requested agent state {s:?}"),
                ))
            }
        }
        self.after();
        Ok(())
    }

    /// GetAgentState.
    pub fn get_agent_state(&self, device: &str) -> Result<Vec<AgentStateEntry>> {
        let d = self.device(device)?;
        let here = self
            .agents
            .values()
            .find(|a| a.device.as_deref() == Some(device));
        let entry = |a: &Agent, on: bool| {
            let st = if !on {
                AgentState::AgentNull
            } else {
                match a.mode {
                    AgentMode::Ready => {
                        let busy = self.agent_target(a).is_some_and(|t| self.is_busy(&t));
                        if busy {
                            AgentState::AgentBusy
                        } else {
                            AgentState::AgentReady
                        }
                    }
                    AgentMode::NotReady => AgentState::AgentNotReady,
                    AgentMode::WorkingAfterCall => AgentState::AgentWorkingAfterCall,
                }
            };
            let groups: Vec<Option<String>> = if a.groups.is_empty() {
                vec![None]
            } else {
                a.groups.iter().cloned().map(Some).collect()
            };
            AgentStateEntry {
                agent_id: Some(a.id.as_str().into()),
                logged_on_state: Some(on),
                agent_info: groups
                    .into_iter()
                    .map(|g| AgentInfoItem {
                        acd_group: g.map(Into::into),
                        agent_state: Some(st.clone()),
                        pending_agent_state: None,
                    })
                    .collect(),
            }
        };
        if let Some(a) = here {
            return Ok(vec![entry(a, true)]);
        }
        if let Some(a) = d.agent_id.as_ref().and_then(|id| self.agents.get(id)) {
            if a.device.is_none() {
                return Ok(vec![entry(a, false)]);
            }
        }
        Ok(Vec::new())
    }

    // ------------------------------------------------------------------ features

    fn forwarding_event(&mut self, device: &str, t: &ForwardingType, on: bool, to: Option<&str>) {
        let msg = Message::ForwardingEvent(ForwardingEvent {
            monitor_cross_ref_id: Default::default(),
            device: dev(device),
            forwarding_type: Some(t.clone()),
            forward_status: Some(on),
            forward_to: to.map(Into::into),
            forward_default: None,
            ring_count: None,
            ring_duration: None,
            extensions: None,
        });
        self.emit_plain(&[device], msg);
    }

    /// SetForwarding.
    pub fn set_forwarding(
        &mut self,
        device: &str,
        t: Option<&ForwardingType>,
        on: bool,
        to: Option<&str>,
    ) -> Result<()> {
        self.device(device)?;
        let t = t.cloned().unwrap_or(ForwardingType::ForwardImmediate);
        if let ForwardingType::Other(s) = &t {
            return Err(SimError::op(
                OperationError::ForwardingTypeOutOfRange,
                format!("forwarding type {s:?}"),
            ));
        }
        if on {
            let to = to.filter(|s| !s.is_empty()).ok_or_else(|| {
                SimError::op(
                    OperationError::InvalidForwardingDestination,
                    "forwarding on without forwardDN",
                )
            })?;
            if to == device || !self.devices.contains_key(to) {
                return Err(SimError::op(
                    OperationError::InvalidForwardingDestination,
                    format!("cannot forward {device} to {to:?}"),
                ));
            }
            if let Some(d) = self.devices.get_mut(device) {
                d.forwarding.insert(t.as_str().into(), to.into());
            }
            self.forwarding_event(device, &t, true, Some(to));
        } else {
            if let Some(d) = self.devices.get_mut(device) {
                d.forwarding.remove(t.as_str());
            }
            self.forwarding_event(device, &t, false, None);
        }
        self.after();
        Ok(())
    }

    /// GetForwarding.
    pub fn get_forwarding(&self, device: &str) -> Result<Vec<ForwardListItem>> {
        let d = self.device(device)?;
        let mut out = Vec::new();
        for t in [
            ForwardingType::ForwardImmediate,
            ForwardingType::ForwardBusy,
            ForwardingType::ForwardNoAns,
        ] {
            let to = d.fwd(&t);
            out.push(ForwardListItem {
                forwarding_type: Some(t.clone()),
                forward_status: Some(to.is_some()),
                forward_dn: to.map(Into::into),
                forward_default: None,
                ring_count: None,
                ring_duration: None,
            });
        }
        for (t, to) in &d.forwarding {
            if !matches!(
                t.as_str(),
                "forwardImmediate" | "forwardBusy" | "forwardNoAns"
            ) {
                out.push(ForwardListItem {
                    forwarding_type: Some(ForwardingType::parse(t)),
                    forward_status: Some(true),
                    forward_dn: Some(to.as_str().into()),
                    forward_default: None,
                    ring_count: None,
                    ring_duration: None,
                });
            }
        }
        Ok(out)
    }

    /// SetDoNotDisturb.
    pub fn set_dnd(&mut self, device: &str, on: bool) -> Result<()> {
        self.device(device)?;
        if let Some(d) = self.devices.get_mut(device) {
            d.dnd = on;
        }
        let msg = Message::DoNotDisturbEvent(DoNotDisturbEvent {
            monitor_cross_ref_id: Default::default(),
            device: dev(device),
            do_not_disturb_on: Some(on),
            extensions: None,
        });
        self.emit_plain(&[device], msg);
        self.after();
        Ok(())
    }

    // ------------------------------------------------------------------ hoteling

    fn check_hoteling_device(&self, id: &str, role: Hoteling) -> Result<()> {
        let d = self.device(id)?;
        if d.kind != DeviceKind::Extension || d.hoteling != Some(role) {
            return Err(SimError::op(
                OperationError::RequestIncompatibleWithDevice,
                format!("{id} is not a hoteling {}", role.as_str()),
            ));
        }
        Ok(())
    }

    /// The checks of csta-xml.md §12.5 rows 2–5, in order.
    fn check_associate(&self, guest: &str, host: &str) -> Result<()> {
        if guest == host {
            return Err(SimError::op(
                OperationError::NotDifferentDevices,
                format!("guest and host are both {guest}"),
            ));
        }
        self.device(guest)?;
        self.device(host)?;
        self.check_hoteling_device(guest, Hoteling::Guest)?;
        self.check_hoteling_device(host, Hoteling::Host)?;
        if let Some(h) = self.assoc.get(guest) {
            return Err(SimError::invalid_state(format!(
                "guest {guest} is already associated with {h}"
            )));
        }
        if let Some(g) = self.guest_of(host) {
            return Err(SimError::resource(
                SystemResourceAvailabilityError::ResourceBusy,
                format!("host {host} is in use by guest {g}"),
            ));
        }
        Ok(())
    }

    fn private_event(&mut self, state: HotDeskState, guest: &str, host: &str) {
        let msg = Message::PrivateEvent(PrivateEvent {
            monitor_cross_ref_id: Default::default(),
            private_data: Some(HotDesk::event(state, guest, host).into_private_data()),
            extensions: None,
        });
        self.emit_plain(&[guest, host], msg);
    }

    /// Make the pair: CFA host → guest (ForwardingEvent), then PrivateEvent established.
    fn do_associate(&mut self, guest: &str, host: &str) {
        self.assoc.insert(guest.to_string(), host.to_string());
        let t = ForwardingType::ForwardImmediate;
        if let Some(h) = self.devices.get_mut(host) {
            h.forwarding.insert(t.as_str().into(), guest.into());
        }
        self.forwarding_event(host, &t, true, Some(guest));
        self.private_event(HotDeskState::Established, guest, host);
    }

    /// End the guest's pair: its agent logged off the host, CFA removed (ForwardingEvent),
    /// then PrivateEvent cancelled.
    fn do_cancel(&mut self, guest: &str) {
        let Some(host) = self.assoc.remove(guest) else {
            return;
        };
        if self
            .agents
            .get(guest)
            .is_some_and(|a| a.device.as_deref() == Some(host.as_str()))
        {
            self.agent_logoff(guest, &host);
        }
        let t = ForwardingType::ForwardImmediate;
        if let Some(h) = self.devices.get_mut(&host) {
            if h.forwarding.get(t.as_str()).map(String::as_str) == Some(guest) {
                h.forwarding.remove(t.as_str());
            }
        }
        self.forwarding_event(&host, &t, false, None);
        self.private_event(HotDeskState::Cancelled, guest, &host);
    }

    /// Associate `guest` with `host` (Escape `associate`, the control API).
    pub fn hotdesk_associate(&mut self, guest: &str, host: &str) -> Result<()> {
        self.check_associate(guest, host)?;
        self.do_associate(guest, host);
        self.after();
        Ok(())
    }

    /// Cancel `guest`'s association (Escape `cancel`, the control API).
    pub fn hotdesk_cancel(&mut self, guest: &str) -> Result<()> {
        self.device(guest)?;
        if !self.assoc.contains_key(guest) {
            return Err(SimError::invalid_state(format!(
                "guest {guest} is not associated"
            )));
        }
        self.do_cancel(guest);
        self.after();
        Ok(())
    }

    /// The Escape private service (csta-xml.md §12.3–12.5): the EscapeResponse or the refusal.
    pub fn escape(&mut self, e: &Escape) -> Result<EscapeResponse> {
        let hd = match &e.private_data {
            None => return Err(SimError::invalid_param("Escape without privateData")),
            Some(pd) => match pd.hotdesk() {
                Some(h) => h.clone(),
                None => {
                    return Err(SimError::op(
                        OperationError::PrivateDataNotSupported,
                        "private data is not the hot-desking dialect this switch speaks",
                    ))
                }
            },
        };
        let HotDesk::Extension {
            action,
            guest,
            host,
        } = hd
        else {
            return Err(SimError::invalid_param(
                "Escape carries guestAssociatedEvent, not guestAssociatedExtension",
            ));
        };
        let empty = EscapeResponse { extensions: None };
        match action {
            Some(HotDeskAction::Associate) => {
                let (Some(g), Some(h)) = (guest, host) else {
                    return Err(SimError::invalid_param("associate needs guest and host"));
                };
                self.hotdesk_associate(&g, &h)?;
                Ok(empty)
            }
            Some(HotDeskAction::Cancel) => {
                let Some(g) = guest else {
                    return Err(SimError::invalid_param("cancel needs guest"));
                };
                self.hotdesk_cancel(&g)?;
                Ok(empty)
            }
            Some(HotDeskAction::Query) => {
                let pair = match (guest, host) {
                    (Some(g), None) => {
                        self.device(&g)?;
                        self.assoc
                            .get(g.as_str())
                            .map(|h| (g.to_string(), h.clone()))
                    }
                    (None, Some(h)) => {
                        self.device(&h)?;
                        self.guest_of(&h).map(|g| (g.to_string(), h.to_string()))
                    }
                    _ => {
                        return Err(SimError::invalid_param(
                            "query needs exactly one of guest and host",
                        ))
                    }
                };
                let answer = HotDesk::answer(pair.as_ref().map(|(g, h)| (g.as_str(), h.as_str())));
                Ok(EscapeResponse {
                    extensions: Some(Extensions::private(answer.into_private_data())),
                })
            }
            Some(HotDeskAction::Other(a)) => {
                Err(SimError::invalid_param(format!("unknown action {a:?}")))
            }
            None => Err(SimError::invalid_param("no action")),
        }
    }

    // ------------------------------------------------------------------ snapshots

    /// SnapshotDevice: the device's calls with its connection state in each.
    pub fn snapshot_device(&self, device: &str) -> Result<Vec<SnapshotDeviceResponseInfo>> {
        self.device(device)?;
        Ok(self
            .calls
            .values()
            .filter_map(|c| {
                let s = c.state_of(device)?;
                Some(SnapshotDeviceResponseInfo {
                    connection_identifier: conn(&c.id, device),
                    endpoint_device: None,
                    local_call_state: Some(LocalCallState::Compound(vec![s])),
                })
            })
            .collect())
    }

    /// The whole state as JSON (control API `GET /state`).
    pub fn to_json(&self) -> Value {
        let devices: Vec<Value> = self
            .devices
            .values()
            .map(|d| {
                let mut v = json!({
                    "device": d.id,
                    "type": d.kind.as_str(),
                    "dnd": d.dnd,
                    "forwarding": d.forwarding,
                    "monitors": self.monitored.get(&d.id).copied().unwrap_or(0),
                    "calls": self.calls_of(&d.id),
                });
                if let Some(h) = d.hoteling {
                    v["hoteling"] = json!(h.as_str());
                }
                if let Some(a) = &d.agent_id {
                    v["agentID"] = json!(a);
                }
                if d.kind == DeviceKind::Acd {
                    v["agents"] = json!(d.members);
                }
                if matches!(d.kind, DeviceKind::Acd | DeviceKind::RoutePoint) {
                    v["waiting"] = json!(self
                        .waiting
                        .get(&d.id)
                        .map(|w| w.iter().collect::<Vec<_>>())
                        .unwrap_or_default());
                }
                v
            })
            .collect();
        let calls: Vec<Value> = self
            .calls
            .values()
            .map(|c| {
                json!({
                    "callID": c.id,
                    "calling": c.calling,
                    "called": c.called,
                    "lastRedirection": c.last_redirect,
                    "connections": c.conns.iter().map(|x| json!({"device": x.device, "state": x.state.as_str()})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let agents: Vec<Value> = self
            .agents
            .values()
            .map(|a| {
                json!({
                    "agentID": a.id,
                    "device": a.device,
                    "state": if a.device.is_some() { a.mode.as_str() } else { "loggedOff" },
                    "groups": a.groups,
                })
            })
            .collect();
        let assoc: Vec<Value> = self
            .assoc
            .iter()
            .map(|(g, h)| json!({"guest": g, "host": h}))
            .collect();
        json!({
            "devices": devices,
            "calls": calls,
            "agents": agents,
            "associations": assoc,
        })
    }
}

impl Call {
    fn calling_of_other(&self, a: &str) -> String {
        self.conns
            .iter()
            .find(|x| x.device != a)
            .map(|x| x.device.clone())
            .unwrap_or_else(|| self.calling.clone())
    }
}
