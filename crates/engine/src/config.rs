//! The engine's view of the configuration: DNs, agent logins, `accept-dn-type` and the options
//! that change behaviour. The server parses `ctid.toml` into this (defaults live here).

use ctid_protocol::AddressType;

/// The Register flag of a DN (docs/configuration.md, `register`).
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

/// `+extension +position +acdqueue +routedn` (docs/configuration.md, `accept-dn-type`).
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
