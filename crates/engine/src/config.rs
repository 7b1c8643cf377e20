//! The engine's view of the configuration: DNs, agent logins, `accept-dn-type` and the options
//! that change behaviour. The server parses `ctid.toml` into this (defaults live here).

use ctid_protocol::AddressType;

/// The Register flag of a DN (docs/configuration.md, `register`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
    /// A request on a device with one in flight waits at most this long (`device-rq-gap`);
    /// 0: requests on a device are not held back.
    pub device_rq_gap_ms: u64,
    /// Which calls carry ANI (`ani-distribution`).
    pub ani_distribution: AniDistribution,
    /// Numbers that are internal besides the DN table (`internal-dn-pattern`).
    pub internal_dn_pattern: DnPattern,
    /// Switch messages are handled before queued client requests (`background-processing`;
    /// used by the server's core, which decides the order of inputs).
    pub background_processing: bool,
    /// The engine options of each link (`request-timeout`, `max-outstanding`,
    /// `resync-timeout`, `hotdesk.enabled`, `call-rq-gap`, `device-rq-gap` of `[[link]]`): the
    /// active link's set (named by [`crate::Input::LinkUp`]) replaces the values above.
    pub links: Vec<LinkOptions>,
    /// How long a session whose connection went is kept for a resume (`resume-window`; 0: a
    /// session ends with its connection).
    pub resume_window_ms: u64,
    /// Bound on the events kept per session, bytes of their JSON (`resume-buffer-bytes`).
    pub resume_buffer_bytes: usize,
    /// While a connection carries a session, its events of this long are kept: the longest a
    /// dead connection can go unnoticed (`ping-interval` + `ping-timeout`) plus the window.
    pub resume_keep_attached_ms: u64,
    /// Address every DN event and link event to [`crate::io::EXPORT`] too (`[export.nats]`).
    pub export_events: bool,
}

/// The engine options of one `[[link]]` (docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOptions {
    pub name: String,
    pub request_timeout_ms: u64,
    pub max_outstanding: usize,
    pub resync_timeout_ms: u64,
    pub hotdesk_enabled: bool,
    pub call_rq_gap_ms: u64,
    pub device_rq_gap_ms: u64,
}

impl EngineConfig {
    /// Make the options of link `name` the ones in force (nothing changes for a link without
    /// its own set, e.g. in a recording made before links had one). Returns true when found.
    pub fn select_link(&mut self, name: &str) -> bool {
        let Some(o) = self.links.iter().find(|l| l.name == name).cloned() else {
            return false;
        };
        self.request_timeout_ms = o.request_timeout_ms;
        self.max_outstanding = o.max_outstanding;
        self.resync_timeout_ms = o.resync_timeout_ms;
        self.hotdesk_enabled = o.hotdesk_enabled;
        self.call_rq_gap_ms = o.call_rq_gap_ms;
        self.device_rq_gap_ms = o.device_rq_gap_ms;
        true
    }
}

/// `ani-distribution` (docs/configuration.md): which calls' events carry ANI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AniDistribution {
    /// Inbound calls only (default).
    #[default]
    InboundCallsOnly,
    /// Every call (inbound, outbound, internal, consultation).
    AllCalls,
    /// No call.
    Suppressed,
}

impl AniDistribution {
    /// The ctid.toml name.
    pub fn as_str(self) -> &'static str {
        match self {
            AniDistribution::InboundCallsOnly => "inbound-calls-only",
            AniDistribution::AllCalls => "all-calls",
            AniDistribution::Suppressed => "suppressed",
        }
    }
    /// From its ctid.toml name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "inbound-calls-only" => AniDistribution::InboundCallsOnly,
            "all-calls" => AniDistribution::AllCalls,
            "suppressed" => AniDistribution::Suppressed,
            _ => return None,
        })
    }
    /// Does an event of a call of type `t` carry ANI? `offer`: the event offers the call (EventRinging,
    /// EventRouteRequest).
    /// `all-calls`: the offer of every call and every event of an inbound call (what ctid did
    /// before the option existed, and what recordings without it replay with);
    /// `inbound-calls-only`: every event of an inbound call; `suppressed`: none.
    pub fn shows(self, t: ctid_protocol::CallType, offer: bool) -> bool {
        let inbound = t == ctid_protocol::CallType::Inbound;
        match self {
            AniDistribution::InboundCallsOnly => inbound,
            AniDistribution::AllCalls => inbound || offer,
            AniDistribution::Suppressed => false,
        }
    }
}

/// `internal-dn-pattern`: a regular expression a whole number must match to be internal.
/// Compared by its text.
#[derive(Debug, Clone)]
pub struct DnPattern {
    text: String,
    re: regex::Regex,
}

/// The default `internal-dn-pattern`.
pub const DEFAULT_INTERNAL_DN_PATTERN: &str = "^[0-9]{1,6}$";

impl DnPattern {
    /// Compile a pattern (the error says why it is not a regular expression).
    pub fn new(text: &str) -> Result<Self, String> {
        let re = regex::Regex::new(text).map_err(|e| e.to_string())?;
        Ok(DnPattern {
            text: text.to_string(),
            re,
        })
    }
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// Does `number` match?
    pub fn matches(&self, number: &str) -> bool {
        !number.is_empty() && self.re.is_match(number)
    }
}

impl Default for DnPattern {
    fn default() -> Self {
        DnPattern {
            text: DEFAULT_INTERNAL_DN_PATTERN.to_string(),
            // A constant, not input (`default_pattern_compiles` below).
            #[allow(clippy::expect_used)]
            re: regex::Regex::new(DEFAULT_INTERNAL_DN_PATTERN).expect("the default compiles"),
        }
    }
}

impl PartialEq for DnPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for DnPattern {}

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
            device_rq_gap_ms: 250,
            ani_distribution: AniDistribution::default(),
            internal_dn_pattern: DnPattern::default(),
            background_processing: true,
            links: Vec::new(),
            resume_window_ms: 30_000,
            resume_buffer_bytes: 4 << 20,
            resume_keep_attached_ms: 70_000,
            export_events: false,
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
        c.ani_distribution = AniDistribution::AllCalls;
        c.internal_dn_pattern = DnPattern::new("^9[0-9]{3}$").unwrap();
        c.device_rq_gap_ms = 40;
        c.background_processing = false;
        c.links.push(LinkOptions {
            name: "b".into(),
            request_timeout_ms: 900,
            max_outstanding: 3,
            resync_timeout_ms: 2000,
            hotdesk_enabled: false,
            call_rq_gap_ms: 10,
            device_rq_gap_ms: 20,
        });
        assert_eq!(EngineConfig::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn default_pattern_compiles_and_classifies() {
        let p = DnPattern::default();
        assert!(p.matches("1001") && p.matches("123456"));
        assert!(!p.matches("1234567") && !p.matches("+33123") && !p.matches(""));
        assert!(DnPattern::new("^[0-9").is_err());
    }

    #[test]
    fn the_active_links_options_apply() {
        let mut c = EngineConfig::default();
        c.links.push(LinkOptions {
            name: "b".into(),
            request_timeout_ms: 900,
            max_outstanding: 3,
            resync_timeout_ms: 2000,
            hotdesk_enabled: false,
            call_rq_gap_ms: 10,
            device_rq_gap_ms: 20,
        });
        assert!(!c.select_link("a"));
        assert_eq!(c.max_outstanding, 100);
        assert!(c.select_link("b"));
        assert_eq!(
            (c.request_timeout_ms, c.max_outstanding, c.resync_timeout_ms),
            (900, 3, 2000)
        );
        assert!(!c.hotdesk_enabled);
        assert_eq!((c.call_rq_gap_ms, c.device_rq_gap_ms), (10, 20));
    }
}
