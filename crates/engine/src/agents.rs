//! Agents: who is logged in on which DN, in which work mode, on which queue; which client
//! logged an agent in (for `agent-logout-on-unregister`); the switch's agent events made
//! T-Library events; GetAgentState at monitoring and after an outage (catch-up events for what
//! changed); the agent requests made SetAgentState (`docs/call-model.md`, "Requests → CSTA services").

use std::collections::{BTreeMap, BTreeSet};

use ctid_csta::{Extensions, GetAgentState, Message, PrivateData, ReqAgentState, SetAgentState};
use ctid_protocol::RequestName as R;
use ctid_protocol::{
    AddressType, AgentWorkMode, ErrorCode, Event, EventName, KvList, KvValue, Request,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::config::EngineConfig;
use crate::io::ClientId;
use crate::outbox::Refusal;

/// Agent state kept per DN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub work_mode: Option<AgentWorkMode>,
    pub ready: bool,
    pub queue: Option<String>,
    /// The not-ready reason code while not ready (BroadSoft `AgentNotReadyReasonValue`).
    pub reason: Option<String>,
}

/// The not-ready reason code of a request: `Extensions.ReasonCode`, else `Reasons.ReasonCode`
/// (a string or an integer; docs/protocol.md, agent requests).
fn reason_of(req: &Request) -> Result<Option<String>, Refusal> {
    let v = req
        .extensions
        .as_ref()
        .and_then(|k| k.get("ReasonCode"))
        .or_else(|| req.reasons.as_ref().and_then(|k| k.get("ReasonCode")));
    match v {
        None => Ok(None),
        Some(KvValue::Int(n)) => Ok(Some(n.to_string())),
        Some(KvValue::Str(s)) if !s.trim().is_empty() && s.trim().len() <= 64 => {
            Ok(Some(s.trim().to_string()))
        }
        Some(_) => Err((
            ErrorCode::INVALID_ATTR,
            "ReasonCode must be an integer or a string of 1-64 characters".into(),
        )),
    }
}

/// `ReasonCode` as clients read it: an integer when it is one, else the string.
fn reason_kv(code: &str) -> KvList {
    let mut k = KvList::default();
    match code.parse::<i64>() {
        Ok(n) => k.insert_int("ReasonCode", n),
        Err(_) => k.insert_str("ReasonCode", code),
    }
    k
}

/// What an agent event or answer changed.
#[derive(Debug, Default)]
pub struct AgentChange {
    /// Events for the DN's clients, in order.
    pub events: Vec<Event>,
    /// Agent IDs whose agent-login hot desk may have changed.
    pub agents: Vec<String>,
}

/// Agents by DN.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Agents {
    by_dn: BTreeMap<String, AgentInfo>,
    /// DNs where an agent was seen (so `AgentStatus` = `LoggedOut` means something).
    had_agent: BTreeSet<String>,
    /// DN → the client whose RequestAgentLogin logged the agent in.
    login_owner: BTreeMap<String, ClientId>,
    /// DN → the client and AgentID of a RequestAgentLogin sent to the switch; it becomes the
    /// owner when that agent is logged on (the switch may first sign another agent out).
    login_asked: BTreeMap<String, (ClientId, String)>,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

impl Agents {
    /// The agent logged in on `dn`.
    pub fn on(&self, dn: &str) -> Option<&AgentInfo> {
        self.by_dn.get(dn)
    }

    /// `agent` is now logged on at `dn`: the client that asked for it owns the login (an event
    /// that names no agent is taken for the one asked for).
    fn logged_on(&mut self, dn: &str, agent: Option<&str>) {
        let asked = self.login_asked.get(dn);
        if asked.is_some_and(|(_, a)| agent.is_none_or(|x| x == a)) {
            if let Some((client, _)) = self.login_asked.remove(dn) {
                self.login_owner.insert(dn.to_string(), client);
            }
        }
    }

    /// The DN is forgotten: so is what was known of its agent.
    pub fn forget(&mut self, dn: &str) {
        self.by_dn.remove(dn);
        self.had_agent.remove(dn);
    }

    /// Every client number a login (owned or asked for) holds, to `f`.
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        self.login_owner.values().for_each(|c| f(*c));
        self.login_asked.values().for_each(|(c, _)| f(*c));
    }

    /// The client that logged the agent on `dn` in.
    pub fn owner(&self, dn: &str) -> Option<ClientId> {
        self.login_owner.get(dn).copied()
    }

    pub fn forget_owner(&mut self, dn: &str) {
        self.login_owner.remove(dn);
    }

    /// GetAgentState for `dn`.
    pub fn query(dn: &str) -> Message {
        Message::GetAgentState(GetAgentState {
            device: dn.into(),
            acd_group: None,
            extensions: None,
        })
    }

    /// SetAgentState logging the agent on `dn` out (`agent-logout-on-unregister`).
    pub fn logout_message(&self, dn: &str) -> Option<Message> {
        let agent = self.by_dn.get(dn)?.agent_id.clone();
        Some(Message::SetAgentState(SetAgentState {
            device: dn.into(),
            requested_agent_state: ReqAgentState::LoggedOff,
            agent_id: Some(agent.into()),
            password: None,
            group: None,
            extensions: None,
        }))
    }

    /// RequestAgentLogin / Logout / Ready / NotReady made SetAgentState, and the event that
    /// answers it. A login records `client` as the owner.
    pub fn request(
        &mut self,
        req: &Request,
        dn: &str,
        client: ClientId,
        cfg: &EngineConfig,
    ) -> Result<(Message, EventName), Refusal> {
        let here = self.by_dn.get(dn);
        let agent_id = req
            .agent_id
            .clone()
            .or_else(|| here.map(|a| a.agent_id.clone()));
        let mut reason = None;
        let (state, want) = match req.name {
            R::RequestAgentLogin => {
                // Another agent on the DN: the switch decides (it signs that agent out, which
                // is reported first, or refuses).
                if req.agent_id.is_none() {
                    return Err((ErrorCode::INVALID_ATTR, "AgentID missing".into()));
                }
                (ReqAgentState::LoggedOn, EventName::EventAgentLogin)
            }
            R::RequestAgentLogout => (ReqAgentState::LoggedOff, EventName::EventAgentLogout),
            R::RequestAgentReady => (ReqAgentState::Ready, EventName::EventAgentReady),
            _ => match req.agent_work_mode {
                Some(AgentWorkMode::AfterCallWork) => (
                    ReqAgentState::WorkingAfterCall,
                    EventName::EventAgentNotReady,
                ),
                _ => {
                    reason = reason_of(req)?;
                    (ReqAgentState::NotReady, EventName::EventAgentNotReady)
                }
            },
        };
        let password = req.password.clone().or_else(|| {
            let a = agent_id.as_deref()?;
            cfg.agent_logins
                .iter()
                .find(|l| l.agent_id == a)
                .and_then(|l| l.password.clone())
        });
        let logon = state == ReqAgentState::LoggedOn;
        let msg = Message::SetAgentState(SetAgentState {
            device: dn.into(),
            requested_agent_state: state,
            agent_id: agent_id.map(Into::into),
            password: if logon {
                password.map(|p| hex(&p).into())
            } else {
                None
            },
            group: if logon {
                req.this_queue.as_deref().map(Into::into)
            } else {
                None
            },
            extensions: reason.map(|r| Extensions::private(PrivateData::with_not_ready_reason(&r))),
        });
        if let (R::RequestAgentLogin, Some(a)) = (req.name, &req.agent_id) {
            self.login_asked.insert(dn.to_string(), (client, a.clone()));
        }
        Ok((msg, want))
    }

    /// A switch agent event on monitored DN `d`; `None` when it is not an agent event.
    pub fn event(&mut self, d: &str, msg: &Message) -> Option<AgentChange> {
        let dev_of = |x: &Option<ctid_csta::DeviceRef>| {
            x.as_ref().and_then(|v| v.as_id()).map(str::to_string)
        };
        let mut reason = None;
        let (name, agent, mode, queue, dev) = match msg {
            Message::AgentLoggedOnEvent(e) => (
                EventName::EventAgentLogin,
                e.agent_id.as_deref().map(String::from),
                None,
                e.acd_group.as_deref().map(String::from),
                dev_of(&e.agent_device),
            ),
            Message::AgentLoggedOffEvent(e) => (
                EventName::EventAgentLogout,
                e.agent_id.as_deref().map(String::from),
                None,
                e.acd_group.as_deref().map(String::from),
                dev_of(&e.agent_device),
            ),
            Message::AgentReadyEvent(e) => (
                EventName::EventAgentReady,
                e.agent_id.as_deref().map(String::from),
                Some(AgentWorkMode::ManualIn),
                e.acd_group.as_deref().map(String::from),
                dev_of(&e.agent_device),
            ),
            Message::AgentNotReadyEvent(e) => {
                reason = e
                    .extensions
                    .as_ref()
                    .and_then(|x| x.private_data.as_ref())
                    .and_then(|p| p.not_ready_reason())
                    .map(str::to_string);
                (
                    EventName::EventAgentNotReady,
                    e.agent_id.as_deref().map(String::from),
                    Some(AgentWorkMode::AuxWork),
                    e.acd_group.as_deref().map(String::from),
                    dev_of(&e.agent_device),
                )
            }
            Message::AgentWorkingAfterCallEvent(e) => (
                EventName::EventAgentNotReady,
                e.agent_id.as_deref().map(String::from),
                Some(AgentWorkMode::AfterCallWork),
                e.acd_group.as_deref().map(String::from),
                dev_of(&e.agent_device),
            ),
            _ => return None,
        };
        let mut change = AgentChange::default();
        if dev.is_some_and(|x| x != d) {
            return Some(change); // reported on the agent device's own monitor
        }
        match name {
            EventName::EventAgentLogin => {
                self.logged_on(d, agent.as_deref());
                self.had_agent.insert(d.to_string());
                self.by_dn.insert(
                    d.to_string(),
                    AgentInfo {
                        agent_id: agent.clone().unwrap_or_default(),
                        work_mode: None,
                        ready: false,
                        queue: queue.clone(),
                        reason: None,
                    },
                );
            }
            EventName::EventAgentLogout => {
                self.by_dn.remove(d);
            }
            _ => {
                let a = self
                    .by_dn
                    .entry(d.to_string())
                    .or_insert_with(|| AgentInfo {
                        agent_id: agent.clone().unwrap_or_default(),
                        ..Default::default()
                    });
                a.work_mode = mode;
                a.ready = name == EventName::EventAgentReady;
                a.reason = reason.clone();
            }
        }
        if name == EventName::EventAgentLogout {
            self.login_owner.remove(d);
        }
        if let Some(a) = &agent {
            if matches!(
                name,
                EventName::EventAgentLogin | EventName::EventAgentLogout
            ) {
                change.agents.push(a.clone());
            }
        }
        let mut e = Event::new(name).with_this_dn(d);
        e.agent_id = agent;
        e.agent_work_mode = mode;
        e.this_queue = queue;
        if let Some(r) = &reason {
            e.reasons = Some(reason_kv(r));
            e.extensions = Some(reason_kv(r));
        }
        change.events.push(e);
        Some(change)
    }

    /// The switch's agent state for `dn` (GetAgentState's answer): ctid's becomes equal to it;
    /// with `resync` (after an outage) the differences are reported as the agent events a
    /// client would have seen.
    pub fn answer(&mut self, dn: &str, resync: bool, msg: Result<Message, String>) -> AgentChange {
        let mut change = AgentChange::default();
        let entry = match msg {
            Ok(Message::GetAgentStateResponse(r)) => r
                .agent_state_list
                .into_iter()
                .find(|e| e.logged_on_state.unwrap_or(true) && e.agent_id.is_some()),
            Ok(Message::CstaErrorCode(e)) => {
                debug!(%dn, error = %e.error, "GetAgentState refused");
                return change;
            }
            Ok(other) => {
                debug!(%dn, answer = other.name(), "unexpected answer to GetAgentState");
                return change;
            }
            Err(reason) => {
                warn!(%dn, %reason, "malformed answer to GetAgentState");
                return change;
            }
        };
        let now = entry.map(|e| {
            let item = e.agent_info.first();
            let (mode, ready) = match item.and_then(|i| i.agent_state.as_ref()) {
                Some(ctid_csta::AgentState::AgentReady) => (Some(AgentWorkMode::ManualIn), true),
                Some(ctid_csta::AgentState::AgentWorkingAfterCall) => {
                    (Some(AgentWorkMode::AfterCallWork), false)
                }
                Some(ctid_csta::AgentState::AgentNotReady) => (Some(AgentWorkMode::AuxWork), false),
                _ => (None, false),
            };
            AgentInfo {
                agent_id: e.agent_id.map(String::from).unwrap_or_default(),
                work_mode: mode,
                ready,
                queue: item.and_then(|i| i.acd_group.as_deref().map(String::from)),
                reason: None,
            }
        });
        let before = self.by_dn.get(dn).cloned();
        // GetAgentState carries no reason: an agent still not ready keeps the one known.
        let now = now.map(|mut n| {
            if let Some(b) = before.as_ref().filter(|b| {
                b.agent_id == n.agent_id && b.work_mode == n.work_mode && b.ready == n.ready
            }) {
                n.reason = b.reason.clone();
            }
            n
        });
        if before == now {
            return change;
        }
        match &now {
            Some(n) => {
                self.logged_on(dn, Some(&n.agent_id));
                self.had_agent.insert(dn.to_string());
                self.by_dn.insert(dn.to_string(), n.clone());
            }
            None => {
                self.by_dn.remove(dn);
            }
        }
        if !resync {
            return change;
        }
        let mk = |name: EventName, a: &AgentInfo| {
            let mut e = Event::new(name).with_this_dn(dn);
            e.agent_id = Some(a.agent_id.clone());
            e.this_queue = a.queue.clone();
            e
        };
        match (&before, &now) {
            (Some(b), None) => change.events.push(mk(EventName::EventAgentLogout, b)),
            (b, Some(n)) => {
                if b.as_ref().map(|x| &x.agent_id) != Some(&n.agent_id) {
                    if let Some(b) = b {
                        change.events.push(mk(EventName::EventAgentLogout, b));
                    }
                    change.events.push(mk(EventName::EventAgentLogin, n));
                }
                if let Some(mode) = n.work_mode {
                    let name = if n.ready {
                        EventName::EventAgentReady
                    } else {
                        EventName::EventAgentNotReady
                    };
                    let mut e = mk(name, n);
                    e.agent_work_mode = Some(mode);
                    change.events.push(e);
                }
            }
            (None, None) => {}
        }
        if let Some(a) = now.map(|n| n.agent_id) {
            change.agents.push(a);
        }
        if let Some(a) = before.map(|b| b.agent_id) {
            change.agents.push(a);
        }
        change
    }

    /// The DN-status key `AgentStatus`; returns the AgentID.
    pub fn status_keys(
        &self,
        dn: &str,
        dn_type: AddressType,
        cfg: &EngineConfig,
        k: &mut KvList,
    ) -> Option<String> {
        match self.by_dn.get(dn) {
            Some(a) => {
                let status = if a.ready {
                    a.work_mode
                        .unwrap_or(AgentWorkMode::ManualIn)
                        .as_str()
                        .to_string()
                } else {
                    // Logged in, no state reported yet: not ready without a reason is AuxWork
                    // (BroadWorks leaves a new login unavailable; docs/protocol.md, agents).
                    a.work_mode
                        .unwrap_or(AgentWorkMode::AuxWork)
                        .as_str()
                        .to_string()
                };
                k.insert_str("AgentStatus", status);
                Some(a.agent_id.clone())
            }
            None if matches!(dn_type, AddressType::Dn | AddressType::Position) => {
                if cfg.agent_logins.iter().any(|l| l.agent_id == dn) || self.had_agent.contains(dn)
                {
                    k.insert_str("AgentStatus", "LoggedOut");
                }
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"";

    fn msg(xml: &str) -> Message {
        ctid_csta::decode(xml.as_bytes()).unwrap()
    }

    fn status(a: &Agents) -> Option<String> {
        let mut k = KvList::default();
        a.status_keys("4001", AddressType::Dn, &EngineConfig::default(), &mut k);
        k.get_str("AgentStatus").map(str::to_string)
    }

    #[test]
    fn a_login_without_a_state_reads_as_aux_work_and_a_reason_survives_a_resync() {
        let mut a = Agents::default();
        a.event(
            "4001",
            &msg(&format!(
                "<AgentLoggedOnEvent {NS}><monitorCrossRefID>1</monitorCrossRefID>\
                 <agentDevice><deviceIdentifier>4001</deviceIdentifier></agentDevice>\
                 <agentID>a7</agentID></AgentLoggedOnEvent>"
            )),
        );
        assert_eq!(status(&a).as_deref(), Some("AgentAuxWork"));
        let ch = a
            .event(
                "4001",
                &msg(&format!(
                    "<AgentNotReadyEvent {NS}><monitorCrossRefID>1</monitorCrossRefID>\
                     <agentID>a7</agentID><extensions><privateData><private \
                     xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\
                     <pri:AgentNotReadyReasonValue>5</pri:AgentNotReadyReasonValue>\
                     </private></privateData></extensions></AgentNotReadyEvent>"
                )),
            )
            .unwrap();
        assert_eq!(
            ch.events[0]
                .extensions
                .as_ref()
                .unwrap()
                .get_int("ReasonCode"),
            Some(5)
        );
        // GetAgentState after an outage says "not ready" without a reason: nothing changed
        let answer = msg(&format!(
            "<GetAgentStateResponse {NS}><agentStateList><agentStateEntry>\
             <agentID>a7</agentID><loggedOnState>true</loggedOnState><agentInfo><agentInfoItem>\
             <agentState>agentNotReady</agentState></agentInfoItem></agentInfo>\
             </agentStateEntry></agentStateList></GetAgentStateResponse>"
        ));
        let ch = a.answer("4001", true, Ok(answer));
        assert!(ch.events.is_empty(), "{:?}", ch.events);
        assert_eq!(a.on("4001").unwrap().reason.as_deref(), Some("5"));
    }
}
