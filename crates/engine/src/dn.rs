//! The DN table entry: type, Register flag, client registrations, monitor state, and the
//! first-registration waiters (tserver-behaviour §2).

use std::collections::BTreeMap;

use std::collections::BTreeSet;

use ctid_protocol::{AddressType, ConnId, ControlMode, ForwardMode, RegisterMode, Request};

use crate::config::RegisterFlag;
use crate::{ClientId, Tag};

/// One client's registration of a DN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg {
    pub mode: RegisterMode,
    pub control: ControlMode,
}

/// The switch monitor of a DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Monitor {
    Off,
    Starting { tag: Tag },
    Active { xref: String },
}

/// A DN ctid knows.
#[derive(Debug, Clone)]
pub struct Dn {
    pub number: String,
    pub dn_type: AddressType,
    pub configured: bool,
    pub register: RegisterFlag,
    pub regs: BTreeMap<ClientId, Reg>,
    pub monitor: Monitor,
    /// Hot-desking query in flight.
    pub query_tag: Option<Tag>,
    /// Registrations waiting for the switch-level registration to finish.
    pub waiters: Vec<(ClientId, Request)>,
    /// Calls the DN takes part in.
    pub calls: BTreeSet<ConnId>,
    /// The agent logged in on the DN.
    pub agent: Option<crate::control::AgentInfo>,
    /// An agent was seen on this DN (so `AgentStatus` = `LoggedOut` means something).
    pub had_agent: bool,
    pub forward: Option<(ForwardMode, String)>,
    pub dnd: bool,
    pub out_of_service: bool,
    /// Monitored for ctid's own use: the guest of an agent-login hot desk (§4.10).
    pub internal: bool,
}

impl Dn {
    /// A DN from the configuration.
    pub fn configured(number: &str, dn_type: AddressType, register: RegisterFlag) -> Self {
        Dn {
            number: number.to_string(),
            dn_type,
            configured: true,
            register,
            regs: BTreeMap::new(),
            monitor: Monitor::Off,
            query_tag: None,
            waiters: Vec::new(),
            calls: BTreeSet::new(),
            agent: None,
            had_agent: false,
            forward: None,
            dnd: false,
            out_of_service: false,
            internal: false,
        }
    }

    /// A DN a client registered without configuration (monitored on demand).
    pub fn unconfigured(number: &str, dn_type: AddressType) -> Self {
        Dn {
            configured: false,
            ..Dn::configured(number, dn_type, RegisterFlag::OnDemand)
        }
    }

    /// Does anything need this DN monitored at the switch (§2.4)?
    pub fn wants_monitor(&self) -> bool {
        self.register == RegisterFlag::True
            || self.internal
            || self.regs.values().any(|r| match r.control {
                ControlMode::Local => false,
                ControlMode::Force => true,
                ControlMode::Default => self.register != RegisterFlag::False,
            })
    }
}
