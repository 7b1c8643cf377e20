//! What a DN and a call look like from outside: the DN-status keys (EventRegistered,
//! EventAddressInfo: `status`, `conn-N`/`ps-N`, forwarding, DND, `AgentStatus`, `HOST_DN`) and
//! the web monitor's views (`docs/protocol.md`, §7.1). Read-only over the parts.

use ctid_protocol::{AddressInfoType, Event, EventName, InfoStatus, KvList, Request};

use crate::agents::Agents;
use crate::calls::Calls;
use crate::config::EngineConfig;
use crate::dns::{Dn, Dns};
use crate::features::Features;
use crate::hotdesk::HotDesk;
use crate::io::ClientId;

/// One DN as the web monitor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnView {
    pub number: String,
    pub dn_type: &'static str,
    pub configured: bool,
    pub monitored: bool,
    pub registrations: usize,
    pub status: String,
    pub calls: usize,
    pub agent_id: Option<String>,
    pub agent_status: Option<String>,
    /// Hot desking: the host this guest uses.
    pub host: Option<String>,
    /// Hot desking: the guest using this host.
    pub guest: Option<String>,
    pub forward_to: Option<String>,
    pub dnd: bool,
}

/// One call as the web monitor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    pub conn_id: String,
    pub call_id: String,
    pub call_type: &'static str,
    /// (DN, party state)
    pub parties: Vec<(String, &'static str)>,
}

/// The parts a DN's status is read from.
pub struct Status<'a> {
    pub calls: &'a Calls,
    pub features: &'a Features,
    pub agents: &'a Agents,
    pub hotdesk: &'a HotDesk,
    pub cfg: &'a EngineConfig,
}

impl Status<'_> {
    /// The DN-status Extensions, the number of calls and the agent. The keys come in this
    /// order: calls, forwarding, DND, service state, agent, hot desk.
    pub fn dn_status(&self, d: &Dn) -> (KvList, usize, Option<String>) {
        let mut k = KvList::new();
        // An agent-login desk shows its guest's calls.
        let guest = self.hotdesk.agent_login_guest(&d.number, self.agents);
        let n = self.calls.status_keys(&d.number, guest, &mut k);
        self.features.status_keys(&d.number, &mut k);
        let agent = self
            .agents
            .status_keys(&d.number, d.dn_type, self.cfg, &mut k);
        if let Some(h) = self.hotdesk.table.host_of(&d.number) {
            k.insert_str("HOST_DN", h);
        }
        (k, n, agent)
    }

    /// EventRegistered for `dn`, answering `req`.
    pub fn registered_event(&self, dns: &Dns, dn: &str, req: &Request) -> Event {
        let mut ev = Event::reply(EventName::EventRegistered, req);
        ev.this_dn = Some(dn.to_string());
        if let Some(d) = dns.get(dn) {
            ev.info_type = Some(AddressInfoType::AddressType);
            ev.info_status = Some(InfoStatus::AddressType(d.dn_type));
            ev.address_type = Some(d.dn_type);
            let (k, _, agent) = self.dn_status(d);
            ev.extensions = Some(k);
            ev.agent_id = agent;
        }
        ev
    }

    /// The web monitor's view of a DN.
    pub fn dn_view(&self, d: &Dn) -> DnView {
        let (k, calls, agent) = self.dn_status(d);
        DnView {
            number: d.number.clone(),
            dn_type: d.dn_type.as_str(),
            configured: d.configured,
            monitored: d.is_active(),
            registrations: d.regs.len(),
            status: k
                .get_str("status")
                .unwrap_or("AddressStatusIdle")
                .to_string(),
            calls,
            agent_id: agent,
            agent_status: k.get_str("AgentStatus").map(str::to_string),
            host: self.hotdesk.table.host_of(&d.number).map(str::to_string),
            guest: self.hotdesk.table.guest_of(&d.number).map(str::to_string),
            forward_to: self.features.forward_of(&d.number).map(|f| f.1.to_string()),
            dnd: self.features.dnd(&d.number),
        }
    }
}

/// The web monitor's view of every call, by ConnID.
pub fn call_views(calls: &Calls) -> Vec<CallView> {
    calls
        .iter()
        .map(|c| CallView {
            conn_id: c.conn_id.to_string(),
            call_id: c.call_id.clone(),
            call_type: c.call_type.as_str(),
            parties: c
                .parties
                .iter()
                .map(|p| (p.dn.clone(), p.state.as_str()))
                .collect(),
        })
        .collect()
}

/// A resumable client session, for the web monitor and `/api/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub client: ClientId,
    pub peer: String,
    pub app: Option<String>,
    /// The token name it was opened with ("" without authentication).
    pub owner: String,
    /// How long its connection has been gone, as of the last input; `None` while one carries
    /// it.
    pub detached_for_ms: Option<u64>,
    /// When its connection went (monotonic ms, the inputs' clock): a caller with the clock
    /// reckons how long it has been.
    pub detached_at_ms: Option<u64>,
    pub kept_events: usize,
    pub kept_bytes: usize,
    /// DNs it has registered.
    pub dns: usize,
}
