//! The simulator's configuration: the switch's devices and initial hot-desk associations, the
//! session-start mode and the CSTA edition it speaks. Read from `sim.toml` (serde) or built in
//! code; [`SimConfig::demo`] is the built-in demo switch that `ctid --demo` also uses.

use ctid_csta::{Edition, HOTDESK_NS};
use serde::{Deserialize, Serialize};

/// How a CSTA session starts on each connection (csta-xml.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionMode {
    /// ECMA-354: the client sends StartApplicationSession first.
    #[default]
    Ecma354,
    /// The simulator speaks first: SystemStatus, then the client's SystemRegister.
    SystemRegister,
    /// Nothing but TCP; the client polls RequestSystemStatus.
    None,
}

impl SessionMode {
    /// Parse `ecma354`, `system-register` or `none`.
    pub fn parse(s: &str) -> Option<SessionMode> {
        match s {
            "ecma354" => Some(SessionMode::Ecma354),
            "system-register" => Some(SessionMode::SystemRegister),
            "none" => Some(SessionMode::None),
            _ => None,
        }
    }
    /// The literal.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Ecma354 => "ecma354",
            SessionMode::SystemRegister => "system-register",
            SessionMode::None => "none",
        }
    }
}

/// What a device is at the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A subscriber with a phone.
    #[default]
    Extension,
    /// An ACD queue / hunt group: calls queue there and are distributed to ready agents.
    Acd,
    /// A route point: calls wait there until deflected (DeflectCall) or cleared.
    RoutePoint,
}

impl DeviceKind {
    /// Parse `extension`, `acd` (also `queue`, `hunt-group`) or `route-point`.
    pub fn parse(s: &str) -> Option<DeviceKind> {
        match s {
            "extension" => Some(DeviceKind::Extension),
            "acd" | "queue" | "acd-queue" | "hunt-group" => Some(DeviceKind::Acd),
            "route-point" | "routepoint" => Some(DeviceKind::RoutePoint),
            _ => None,
        }
    }
    /// The literal.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Extension => "extension",
            DeviceKind::Acd => "acd",
            DeviceKind::RoutePoint => "route-point",
        }
    }
}

/// The hoteling role of an extension (BroadWorks Hoteling Host / Hoteling Guest services).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hoteling {
    /// A desk phone a guest can take over.
    Host,
    /// A person who can sit at a host.
    Guest,
}

impl Hoteling {
    /// Parse `host` or `guest`.
    pub fn parse(s: &str) -> Option<Hoteling> {
        match s {
            "host" => Some(Hoteling::Host),
            "guest" => Some(Hoteling::Guest),
            _ => None,
        }
    }
    /// The literal.
    pub fn as_str(self) -> &'static str {
        match self {
            Hoteling::Host => "host",
            Hoteling::Guest => "guest",
        }
    }
}

/// One device of the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The device number (CSTA DeviceID).
    pub id: String,
    /// Extension, ACD queue or route point.
    #[serde(rename = "type", default)]
    pub kind: DeviceKind,
    /// Hoteling role of an extension (none: the extension takes no part in hot desking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hoteling: Option<Hoteling>,
    /// The agent ID of the person behind this extension, if they are an ACD agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// For an ACD queue: the agent IDs that serve it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}

impl DeviceConfig {
    /// A plain extension.
    pub fn extension(id: &str) -> Self {
        DeviceConfig {
            id: id.into(),
            kind: DeviceKind::Extension,
            hoteling: None,
            agent_id: None,
            agents: Vec::new(),
        }
    }
    /// An ACD queue served by `agents`.
    pub fn acd(id: &str, agents: &[&str]) -> Self {
        DeviceConfig {
            kind: DeviceKind::Acd,
            agents: agents.iter().map(|s| s.to_string()).collect(),
            ..DeviceConfig::extension(id)
        }
    }
    /// A route point.
    pub fn route_point(id: &str) -> Self {
        DeviceConfig {
            kind: DeviceKind::RoutePoint,
            ..DeviceConfig::extension(id)
        }
    }
    /// With a hoteling role.
    pub fn hoteling(mut self, role: Hoteling) -> Self {
        self.hoteling = Some(role);
        self
    }
    /// With an agent ID.
    pub fn agent(mut self, agent_id: &str) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }
}

fn default_edition() -> Edition {
    Edition::Ed3
}
fn default_hotdesk_ns() -> String {
    HOTDESK_NS.to_string()
}
fn default_status() -> String {
    "normal".to_string()
}
fn default_session_duration() -> u32 {
    180
}
fn default_out_queue() -> usize {
    65_536
}

mod edition_serde {
    use ctid_csta::Edition;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(e: &Edition, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(e.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Edition, D::Error> {
        let s = String::deserialize(d)?;
        Edition::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("edition {s:?}: expected ed3, ed4, ed5 or ed6"))
        })
    }
}

/// The whole simulator configuration (`sim.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// The switch's devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// Hot-desk associations that exist at start: `(guest, host)`.
    #[serde(default)]
    pub associations: Vec<(String, String)>,
    /// Session start on each CSTA connection.
    #[serde(default)]
    pub session: SessionMode,
    /// The CSTA edition the simulator writes (it reads every edition).
    #[serde(default = "default_edition", with = "edition_serde")]
    pub edition: Edition,
    /// Namespace URI of the hot-desking private data (csta-xml.md §12.1).
    #[serde(default = "default_hotdesk_ns")]
    pub hotdesk_ns: String,
    /// System status at start (`normal`, `enabled`, `disabled`, …).
    #[serde(default = "default_status")]
    pub system_status: String,
    /// ECMA-354 session duration granted when the client asks for none (seconds).
    #[serde(default = "default_session_duration")]
    pub session_duration: u32,
    /// Snapshot answers with more calls than this are sent as SnapshotDeviceData segments of
    /// this many calls (0 = always inline).
    #[serde(default)]
    pub snapshot_segment: usize,
    /// Outbound frames queued per CSTA connection before it is judged too slow and closed.
    #[serde(default = "default_out_queue")]
    pub out_queue: usize,
    /// Record every frame in both directions to this file (JSON lines, see `record`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<std::path::PathBuf>,
    /// The resulting call of TransferCall, ConferenceCall and SingleStepTransferCall gets a new
    /// callID, reported only in the answer (old/new connection pairs) and used by every later
    /// event, as BroadWorks does when its tracking ID changes.
    #[serde(default)]
    pub renumber_transfers: bool,
    /// Seconds an offered call rings before the device's no-answer forwarding takes it
    /// (0 = never: forwardNoAns is stored but does not act).
    #[serde(default)]
    pub no_answer_secs: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            devices: Vec::new(),
            associations: Vec::new(),
            session: SessionMode::default(),
            edition: default_edition(),
            hotdesk_ns: default_hotdesk_ns(),
            system_status: default_status(),
            session_duration: default_session_duration(),
            snapshot_segment: 0,
            out_queue: default_out_queue(),
            record: None,
            renumber_transfers: false,
            no_answer_secs: 0,
        }
    }
}

impl SimConfig {
    /// The built-in demo switch: desk phones 1001–1010 (hoteling hosts), 2001–2010 (hoteling
    /// guests, also agent IDs), ACD queue 3001 served by agents 2001–2005, route point 3101;
    /// guest 2010 already sits at host 1010.
    pub fn demo() -> Self {
        let mut devices = Vec::new();
        for n in 1001..=1010 {
            devices.push(DeviceConfig::extension(&n.to_string()).hoteling(Hoteling::Host));
        }
        for n in 2001..=2010 {
            let id = n.to_string();
            devices.push(
                DeviceConfig::extension(&id)
                    .hoteling(Hoteling::Guest)
                    .agent(&id),
            );
        }
        devices.push(DeviceConfig::acd(
            "3001",
            &["2001", "2002", "2003", "2004", "2005"],
        ));
        devices.push(DeviceConfig::route_point("3101"));
        SimConfig {
            devices,
            associations: vec![("2010".into(), "1010".into())],
            ..SimConfig::default()
        }
    }

    /// Parse a `sim.toml` document.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Read and parse a `sim.toml` file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_round_trips_through_toml() {
        let demo = SimConfig::demo();
        let text = toml::to_string(&demo).unwrap();
        assert_eq!(SimConfig::from_toml(&text).unwrap(), demo);
    }

    #[test]
    fn minimal_toml() {
        let c = SimConfig::from_toml(
            r#"
session = "system-register"
edition = "ed6"
associations = [["2001", "1001"]]
[[device]]
id = "1001"
hoteling = "host"
[[device]]
id = "2001"
hoteling = "guest"
agent_id = "2001"
[[device]]
id = "3001"
type = "acd"
agents = ["2001"]
"#,
        )
        .unwrap();
        assert_eq!(c.session, SessionMode::SystemRegister);
        assert_eq!(c.edition, Edition::Ed6);
        assert_eq!(c.devices.len(), 3);
        assert_eq!(c.devices[2].kind, DeviceKind::Acd);
        assert!(SimConfig::from_toml("edition = \"ed9\"").is_err());
        assert!(SimConfig::from_toml("bogus = 1").is_err());
    }
}
