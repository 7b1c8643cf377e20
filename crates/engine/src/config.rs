//! The engine's view of the configuration: DNs, agent logins, `accept-dn-type` and the options
//! that change behaviour. The server parses `ctid.toml` into this (defaults live here).

use ctid_protocol::AddressType;

/// The Register flag of a DN (tserver-behaviour §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegisterFlag {
    /// Monitor at the switch whenever the link is up.
    True,
    /// Never monitor at the switch.
    False,
    /// Monitor while at least one client registers it (default).
    #[default]
    OnDemand,
}

/// A configured DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnConfig {
    pub number: String,
    pub dn_type: AddressType,
    pub register: RegisterFlag,
}

/// An Agent Login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLoginConfig {
    pub agent_id: String,
    pub password: Option<String>,
}

/// Everything the engine needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub dns: Vec<DnConfig>,
    pub agent_logins: Vec<AgentLoginConfig>,
    /// Address types unconfigured DNs may take (`accept-dn-type`).
    pub accept_dn_types: Vec<AddressType>,
    /// CSTA answer deadline (`request-timeout`).
    pub request_timeout_ms: u64,
    /// CSTA requests in flight (`max-outstanding`).
    pub max_outstanding: usize,
    /// Bound on the link-up resync before EventLinkConnected goes out (`resync-timeout`).
    pub resync_timeout_ms: u64,
    /// Hot-desking queries and private services (`hotdesk.enabled`).
    pub hotdesk_enabled: bool,
    /// Name reported in EventLinkConnected / EventServerInfo.
    pub server_name: String,
    /// A request on a call with one in flight waits at most this long (`call-rq-gap`).
    pub call_rq_gap_ms: u64,
    /// Largest user data of a call, bytes of its compact JSON (`user-data-limit`).
    pub user_data_limit: usize,
    /// Log out an agent when the session that logged it in goes away.
    pub agent_logout_on_unregister: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            dns: Vec::new(),
            agent_logins: Vec::new(),
            accept_dn_types: default_accept_dn_types(),
            request_timeout_ms: 5_000,
            max_outstanding: 100,
            resync_timeout_ms: 10_000,
            hotdesk_enabled: true,
            server_name: "ctid".to_string(),
            call_rq_gap_ms: 250,
            user_data_limit: 16_000,
            agent_logout_on_unregister: false,
        }
    }
}

/// `+extension +position +acdqueue +routedn` (tserver-behaviour §2.3).
pub fn default_accept_dn_types() -> Vec<AddressType> {
    vec![
        AddressType::Dn,
        AddressType::Position,
        AddressType::Queue,
        AddressType::RouteDn,
    ]
}

/// The `accept-dn-type` keyword of an address type.
pub fn accept_keyword(t: AddressType) -> Option<&'static str> {
    Some(match t {
        AddressType::Dn => "extension",
        AddressType::Position => "position",
        AddressType::Queue => "acdqueue",
        AddressType::RouteDn => "routedn",
        AddressType::Trunk => "trunk",
        AddressType::VoiceChannel => "voicemail",
        AddressType::DataChannel => "data",
        AddressType::Announcement => "announcement",
        AddressType::RouteQueue => "routequeue",
        _ => return None,
    })
}

/// The address type of a config `type` name (`Extension`, `ACDPosition`, …).
pub fn dn_type_from_config(name: &str) -> Option<AddressType> {
    Some(match name {
        "Extension" => AddressType::Dn,
        "ACDPosition" => AddressType::Position,
        "ACDQueue" => AddressType::Queue,
        "RoutingPoint" => AddressType::RouteDn,
        "Trunk" => AddressType::Trunk,
        "VoiceChannel" => AddressType::VoiceChannel,
        "Data" => AddressType::DataChannel,
        "Announcement" => AddressType::Announcement,
        "RoutingQueue" => AddressType::RouteQueue,
        _ => return None,
    })
}

/// Parse an `accept-dn-type` value: `+extension -trunk …` applied to the default set.
pub fn parse_accept_dn_type(spec: &str) -> Result<Vec<AddressType>, String> {
    let all = [
        AddressType::Dn,
        AddressType::Position,
        AddressType::Queue,
        AddressType::RouteDn,
        AddressType::Trunk,
        AddressType::VoiceChannel,
        AddressType::DataChannel,
        AddressType::Announcement,
        AddressType::RouteQueue,
    ];
    let mut set = default_accept_dn_types();
    for word in spec.split_whitespace() {
        let (add, kw) = match word.as_bytes()[0] {
            b'+' => (true, &word[1..]),
            b'-' => (false, &word[1..]),
            _ => (true, word),
        };
        let t = all
            .iter()
            .copied()
            .find(|t| accept_keyword(*t) == Some(kw))
            .ok_or_else(|| {
                format!(
                    "unknown DN type {kw:?} (expected extension, position, acdqueue, routedn, trunk, voicemail, data, announcement, routequeue)"
                )
            })?;
        set.retain(|x| *x != t);
        if add {
            set.push(t);
        }
    }
    Ok(set)
}

impl RegisterFlag {
    /// `true`, `false` or `on-demand`, as in ctid.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterFlag::True => "true",
            RegisterFlag::False => "false",
            RegisterFlag::OnDemand => "on-demand",
        }
    }
    /// The flag of its ctid.toml name.
    pub fn from_name(s: &str) -> Option<RegisterFlag> {
        Some(match s {
            "true" => RegisterFlag::True,
            "false" => RegisterFlag::False,
            "on-demand" => RegisterFlag::OnDemand,
            _ => return None,
        })
    }
}

impl EngineConfig {
    /// The JSON object of the configuration (the header of a recording).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dns": self.dns.iter().map(|d| serde_json::json!([d.number, d.dn_type.as_str(), d.register.as_str()])).collect::<Vec<_>>(),
            "agent_logins": self.agent_logins.iter().map(|a| serde_json::json!([a.agent_id, a.password])).collect::<Vec<_>>(),
            "accept_dn_types": self.accept_dn_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "request_timeout_ms": self.request_timeout_ms,
            "max_outstanding": self.max_outstanding,
            "resync_timeout_ms": self.resync_timeout_ms,
            "hotdesk_enabled": self.hotdesk_enabled,
            "server_name": self.server_name,
            "call_rq_gap_ms": self.call_rq_gap_ms,
            "user_data_limit": self.user_data_limit,
            "agent_logout_on_unregister": self.agent_logout_on_unregister,
        })
    }

    /// A configuration from [`EngineConfig::to_json`]'s object; missing keys take defaults.
    pub fn from_json(v: &serde_json::Value) -> Result<EngineConfig, crate::io::RecordError> {
        use crate::io::RecordError;
        let err = |k: &str| RecordError(format!("engine configuration: bad or missing \"{k}\""));
        let mut c = EngineConfig::default();
        let ty = |s: &serde_json::Value| s.as_str().and_then(AddressType::from_name);
        for d in v["dns"].as_array().ok_or_else(|| err("dns"))? {
            let (Some(n), Some(t), Some(r)) = (
                d[0].as_str(),
                ty(&d[1]),
                d[2].as_str().and_then(RegisterFlag::from_name),
            ) else {
                return Err(err("dns"));
            };
            c.dns.push(DnConfig {
                number: n.to_string(),
                dn_type: t,
                register: r,
            });
        }
        for a in v["agent_logins"]
            .as_array()
            .ok_or_else(|| err("agent_logins"))?
        {
            c.agent_logins.push(AgentLoginConfig {
                agent_id: a[0]
                    .as_str()
                    .ok_or_else(|| err("agent_logins"))?
                    .to_string(),
                password: a[1].as_str().map(str::to_string),
            });
        }
        if let Some(ts) = v.get("accept_dn_types") {
            c.accept_dn_types = ts
                .as_array()
                .ok_or_else(|| err("accept_dn_types"))?
                .iter()
                .map(|t| ty(t).ok_or_else(|| err("accept_dn_types")))
                .collect::<Result<_, _>>()?;
        }
        let num = |k: &str, d: u64| match v.get(k) {
            None => Ok(d),
            Some(x) => x.as_u64().ok_or_else(|| err(k)),
        };
        let flag = |k: &str, d: bool| match v.get(k) {
            None => Ok(d),
            Some(x) => x.as_bool().ok_or_else(|| err(k)),
        };
        c.request_timeout_ms = num("request_timeout_ms", c.request_timeout_ms)?;
        c.max_outstanding = num("max_outstanding", c.max_outstanding as u64)? as usize;
        c.resync_timeout_ms = num("resync_timeout_ms", c.resync_timeout_ms)?;
        c.hotdesk_enabled = flag("hotdesk_enabled", c.hotdesk_enabled)?;
        if let Some(s) = v.get("server_name") {
            c.server_name = s.as_str().ok_or_else(|| err("server_name"))?.to_string();
        }
        c.call_rq_gap_ms = num("call_rq_gap_ms", c.call_rq_gap_ms)?;
        c.user_data_limit = num("user_data_limit", c.user_data_limit as u64)? as usize;
        c.agent_logout_on_unregister =
            flag("agent_logout_on_unregister", c.agent_logout_on_unregister)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let mut c = EngineConfig::default();
        c.dns.push(DnConfig {
            number: "1001".into(),
            dn_type: AddressType::Queue,
            register: RegisterFlag::True,
        });
        c.agent_logins.push(AgentLoginConfig {
            agent_id: "2001".into(),
            password: Some("x".into()),
        });
        c.max_outstanding = 7;
        assert_eq!(EngineConfig::from_json(&c.to_json()).unwrap(), c);
    }
}
