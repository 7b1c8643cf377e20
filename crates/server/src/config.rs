//! `ctid.toml`: parsing, defaults and validation. Every error names the key (and, where the TOML
//! parser knows it, the line). See docs/configuration.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ctid_csta::Edition;
use ctid_engine::config::{
    dn_type_from_config, parse_accept_dn_type, AgentLoginConfig, AniDistribution, DnConfig,
    DnPattern, LinkOptions,
};
use ctid_engine::{EngineConfig, RegisterFlag};
use serde::Deserialize;

/// How a link starts its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    Ecma354,
    SystemRegister,
    None,
}

/// One CSTA link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub priority: i64,
    pub session: SessionMode,
    pub edition: Edition,
    pub connect_timeout: Duration,
    pub kpl_interval: Duration,
    pub kpl_tolerance: u32,
    pub request_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub hotdesk_enabled: bool,
    pub hotdesk_namespace: String,
    pub session_duration: u32,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub links: Vec<LinkConfig>,
    pub engine: EngineConfig,
    /// Largest client text frame (bytes).
    pub max_client_frame: usize,
    /// Events queued per client before it is disconnected as too slow.
    pub client_queue: usize,
    /// Bytes queued per client before it is disconnected as too slow.
    pub client_queue_bytes: usize,
    /// Client sessions: rate limit, ping/pong liveness.
    pub client: crate::session::ClientPolicy,
    /// Client authentication (`auth`, `[[client-token]]`).
    pub auth: crate::auth::AuthConfig,
    /// TLS on the client port (`[tls]`); `None`: plain HTTP/WS.
    pub tls: Option<TlsConfig>,
    /// Record the engine's inputs and outputs to this file (`record-inputs`; `ctid
    /// --record-inputs` overrides). Relative to the configuration file's directory.
    pub record_inputs: Option<PathBuf>,
    /// `[export.nats]`: every event published to NATS JetStream (docs/operations.md).
    pub export: Option<crate::export::NatsConfig>,
    /// `[ha]`: a node of a hot-standby cluster (docs/operations.md §13).
    pub ha: Option<crate::ha::HaConfig>,
}

/// `[tls]`: certificate chain and private key, PEM files (paths resolved against the directory
/// of the configuration file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    listen: Option<String>,
    server_name: Option<String>,
    accept_dn_type: Option<String>,
    max_client_frame: Option<usize>,
    client_queue: Option<usize>,
    client_queue_bytes: Option<usize>,
    max_clients: Option<usize>,
    client_rate_limit: Option<f64>,
    client_rate_burst: Option<f64>,
    ping_interval: Option<f64>,
    ping_timeout: Option<f64>,
    agent_logout_on_unregister: Option<bool>,
    resume_window: Option<f64>,
    resume_buffer_bytes: Option<usize>,
    ani_distribution: Option<String>,
    internal_dn_pattern: Option<String>,
    user_data_limit: Option<u64>,
    background_processing: Option<bool>,
    record_inputs: Option<PathBuf>,
    export: Option<RawExport>,
    ha: Option<RawHa>,
    auth: Option<String>,
    #[serde(default)]
    client_token: Vec<RawToken>,
    tls: Option<RawTls>,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    dn: Vec<RawDn>,
    #[serde(default)]
    agent_login: Vec<RawAgent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawToken {
    name: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    admin: Option<bool>,
    permissions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawExport {
    nats: Option<RawNats>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNats {
    url: Option<toml::Value>,
    stream: Option<String>,
    subject_prefix: Option<String>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    creds_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    require_tls: Option<bool>,
    max_buffer_bytes: Option<usize>,
    max_age: Option<f64>,
    max_bytes: Option<i64>,
    retry_interval: Option<f64>,
}

/// A NATS server URL as `[export.nats] url` or `ctid --nats` give it: `nats://`, `tls://`
/// (or `host:port`, taken as `nats://`), with a host.
pub fn check_nats_url(u: &str) -> Result<String, String> {
    let u = u.trim();
    let rest = match u.split_once("://") {
        Some(("nats" | "tls", r)) => r,
        Some((scheme, _)) => {
            return Err(format!(
                "{u:?}: the scheme must be nats:// or tls://, not {scheme}://"
            ))
        }
        None => u,
    };
    let host = rest.rsplit('@').next().unwrap_or(rest);
    if host.is_empty() || host.starts_with(':') || host.contains('/') {
        return Err(format!("{u:?} is not a NATS server URL (nats://host:4222)"));
    }
    Ok(if u.contains("://") {
        u.to_string()
    } else {
        format!("nats://{u}")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHa {
    cluster: Option<String>,
    node: Option<String>,
    url: Option<toml::Value>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    creds_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    require_tls: Option<bool>,
    advertise: Option<String>,
    lease: Option<f64>,
    renew_interval: Option<f64>,
    replicas: Option<usize>,
    max_bytes: Option<i64>,
    snapshot_every: Option<u64>,
}

/// `[ha]`: the NATS settings default to those of `[export.nats]` (one NATS for both).
fn parse_ha(
    raw: Option<&RawHa>,
    export: Option<&crate::export::NatsConfig>,
    base: Option<&Path>,
) -> Result<Option<crate::ha::HaConfig>, String> {
    let Some(h) = raw else { return Ok(None) };
    let name = |v: &Option<String>, key: &str| match v {
        Some(n) if crate::ha::valid_name(n) => Ok(n.clone()),
        Some(n) => Err(format!(
            "ha.{key}: {n:?} must be 1-64 letters, digits, '-' or '_'"
        )),
        None => Err(format!("ha.{key}: required")),
    };
    let cluster = name(&h.cluster, "cluster")?;
    let node = name(&h.node, "node")?;
    let own_credentials = h.token.is_some()
        || h.user.is_some()
        || h.password.is_some()
        || h.creds_file.is_some()
        || h.tls_ca_file.is_some()
        || h.require_tls.is_some();
    if h.url.is_none() && own_credentials {
        return Err("ha: token, user, password, creds-file, tls-ca-file and require-tls go with ha.url (without it [ha] uses the whole [export.nats] connection)".into());
    }
    let nats = match (&h.url, export) {
        (None, Some(e)) => e.clone(),
        (None, None) => {
            return Err(
                "ha.url: required (or give [export.nats] url: the pair uses the same NATS)".into(),
            )
        }
        (Some(_), _) => {
            // The same checks as [export.nats], with the keys named as they are here.
            let raw = RawExport {
                nats: Some(RawNats {
                    url: h.url.clone(),
                    stream: None,
                    subject_prefix: None,
                    token: h.token.clone(),
                    user: h.user.clone(),
                    password: h.password.clone(),
                    creds_file: h.creds_file.clone(),
                    tls_ca_file: h.tls_ca_file.clone(),
                    require_tls: h.require_tls,
                    max_buffer_bytes: None,
                    max_age: None,
                    max_bytes: None,
                    retry_interval: None,
                }),
            };
            parse_export(Some(&raw), base)
                .map_err(|e| e.replace("export.nats", "ha"))?
                .ok_or("ha.url: required")?
        }
    };
    let lease = secs(h.lease, 1.0, "ha.lease", 0.2, 60.0)?;
    let renew_interval = match h.renew_interval {
        None => lease / 4,
        Some(_) => secs(h.renew_interval, 0.25, "ha.renew-interval", 0.01, 30.0)?,
    };
    if renew_interval * 2 > lease {
        return Err(format!(
            "ha.renew-interval = {:?}: at most half of ha.lease ({lease:?}), so that one late renew does not end the primary's term",
            renew_interval
        ));
    }
    let advertise = match &h.advertise {
        Some(a) if a.starts_with("ws://") || a.starts_with("wss://") => a.clone(),
        Some(a) => return Err(format!("ha.advertise: {a:?} is not a ws:// or wss:// URL")),
        None => String::new(),
    };
    let replicas = match h.replicas {
        None => 1,
        Some(n) if (1..=5).contains(&n) => n,
        Some(n) => return Err(format!("ha.replicas = {n}: must be between 1 and 5")),
    };
    let max_bytes = match h.max_bytes {
        None => 1 << 30,
        Some(b) if b >= 1 << 20 || b == -1 => b,
        Some(b) => {
            return Err(format!(
                "ha.max-bytes = {b}: at least 1048576 (or -1: no limit)"
            ))
        }
    };
    let snapshot_every = match h.snapshot_every {
        None => 10_000,
        Some(n) if n >= 10 => n,
        Some(n) => return Err(format!("ha.snapshot-every = {n}: at least 10")),
    };
    Ok(Some(crate::ha::HaConfig {
        snapshot_every,
        cluster,
        node,
        nats,
        advertise,
        lease,
        renew_interval,
        replicas,
        max_bytes,
    }))
}

fn parse_export(
    raw: Option<&RawExport>,
    base: Option<&Path>,
) -> Result<Option<crate::export::NatsConfig>, String> {
    let Some(n) = raw.and_then(|e| e.nats.as_ref()) else {
        return Ok(None);
    };
    let urls: Vec<String> = match &n.url {
        Some(toml::Value::String(u)) => vec![u.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "export.nats.url: expected strings".to_string())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("export.nats.url: expected a URL or a list of URLs".into()),
        None => return Err("export.nats.url: required".into()),
    };
    if urls.is_empty() {
        return Err("export.nats.url: give at least one URL".into());
    }
    let urls = urls
        .iter()
        .map(|u| check_nats_url(u).map_err(|e| format!("export.nats.url: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut c = crate::export::NatsConfig::with_urls(urls);
    if let Some(s) = &n.stream {
        if s.is_empty()
            || s.contains(|c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace())
        {
            return Err(format!(
                "export.nats.stream: {s:?} is not a stream name (no . * > or spaces)"
            ));
        }
        c.stream = s.clone();
    }
    if let Some(p) = &n.subject_prefix {
        if p.is_empty()
            || p.split('.').any(|t| {
                t.is_empty() || t.contains(|c: char| c == '*' || c == '>' || c.is_whitespace())
            })
        {
            return Err(format!("export.nats.subject-prefix: {p:?} is not a subject prefix (tokens without * > or spaces)"));
        }
        c.subject_prefix = p.clone();
    }
    c.token = n.token.clone();
    match (&n.user, &n.password) {
        (Some(u), Some(p)) => {
            c.user = Some(u.clone());
            c.password = Some(p.clone());
        }
        (None, None) => {}
        _ => return Err("export.nats: give both user and password, or neither".into()),
    }
    if let Some(f) = &n.creds_file {
        let f = resolve(base, f);
        std::fs::metadata(&f)
            .map_err(|e| format!("export.nats.creds-file: cannot read {}: {e}", f.display()))?;
        c.creds_file = Some(f);
    }
    if let Some(f) = &n.tls_ca_file {
        let f = resolve(base, f);
        std::fs::metadata(&f)
            .map_err(|e| format!("export.nats.tls-ca-file: cannot read {}: {e}", f.display()))?;
        c.tls_ca_file = Some(f);
    }
    c.require_tls = n.require_tls.unwrap_or(false);
    if let Some(b) = n.max_buffer_bytes {
        if !(1024..=1 << 34).contains(&b) {
            return Err(format!(
                "export.nats.max-buffer-bytes = {b}: must be between 1024 and 17179869184"
            ));
        }
        c.max_buffer_bytes = b;
    }
    c.max_age = secs(
        n.max_age,
        86_400.0,
        "export.nats.max-age",
        1.0,
        366.0 * 86_400.0,
    )?;
    if let Some(b) = n.max_bytes {
        if b < 1 << 20 && b != -1 {
            return Err(format!(
                "export.nats.max-bytes = {b}: at least 1048576 (or -1: no limit)"
            ));
        }
        c.max_bytes = b;
    }
    c.retry_interval = secs(
        n.retry_interval,
        5.0,
        "export.nats.retry-interval",
        0.1,
        600.0,
    )?;
    Ok(Some(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

/// A path from the file, relative to the configuration file's directory.
fn resolve(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

fn parse_auth(raw: &RawConfig, base: Option<&Path>) -> Result<crate::auth::AuthConfig, String> {
    use crate::auth::{AuthConfig, AuthMode, ClientToken, Permission, Permissions};
    let mode = match raw.auth.as_deref().unwrap_or("none") {
        "none" => AuthMode::None,
        "token" => AuthMode::Token,
        other => return Err(format!("auth: {other:?} is not one of \"none\", \"token\"")),
    };
    let mut tokens: Vec<ClientToken> = Vec::new();
    for (i, t) in raw.client_token.iter().enumerate() {
        let key = |k: &str| format!("client-token[{i}].{k}");
        let token = match (&t.token, &t.token_file) {
            (Some(t), None) => t.trim().to_string(),
            (None, Some(f)) => {
                let f = resolve(base, f);
                let text = std::fs::read_to_string(&f).map_err(|e| {
                    format!("{}: cannot read {}: {e}", key("token-file"), f.display())
                })?;
                text.lines().next().unwrap_or("").trim().to_string()
            }
            _ => {
                return Err(format!(
                    "client-token[{i}]: give exactly one of token or token-file"
                ))
            }
        };
        let which = if t.token.is_some() {
            "token"
        } else {
            "token-file"
        };
        if token.len() < 16 {
            return Err(format!(
                "{}: a token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                key(which)
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{}: a token must be printable ASCII without spaces",
                key(which)
            ));
        }
        if tokens.iter().any(|o| o.token == token) {
            return Err(format!(
                "{}: the same token is configured twice",
                key(which)
            ));
        }
        let name = t.name.clone().unwrap_or_else(|| format!("token{}", i + 1));
        if tokens.iter().any(|o| o.name == name) {
            return Err(format!("{}: name {name:?} is used twice", key("name")));
        }
        let permissions = match &t.permissions {
            None => Permissions::ALL,
            Some(list) if list.is_empty() => {
                return Err(format!(
                    "{}: empty: give at least one of \"monitor\", \"call\", \"private\" (or leave the key out for all three)",
                    key("permissions")
                ))
            }
            Some(list) => {
                let mut p = Permissions::NONE;
                for n in list {
                    let one = Permission::from_name(n).ok_or_else(|| {
                        format!(
                            "{}: {n:?} is not one of \"monitor\", \"call\", \"private\"",
                            key("permissions")
                        )
                    })?;
                    p = p.with(one);
                }
                p
            }
        };
        tokens.push(ClientToken {
            name,
            token,
            admin: t.admin.unwrap_or(false),
            permissions,
        });
    }
    if mode == AuthMode::Token && tokens.is_empty() {
        return Err(
            "auth = \"token\": no [[client-token]] configured (nobody could connect)".into(),
        );
    }
    Ok(AuthConfig {
        mode,
        tokens,
        explicit: raw.auth.is_some(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLink {
    name: Option<String>,
    host: String,
    port: Option<u16>,
    priority: Option<i64>,
    session: Option<String>,
    edition: Option<String>,
    connect_tout: Option<f64>,
    kpl_interval: Option<f64>,
    kpl_tolerance: Option<u32>,
    request_timeout: Option<f64>,
    max_outstanding: Option<usize>,
    resync_timeout: Option<f64>,
    call_rq_gap: Option<u64>,
    device_rq_gap: Option<u64>,
    reconnect_min: Option<f64>,
    reconnect_max: Option<f64>,
    session_duration: Option<u32>,
    hotdesk: Option<RawHotdesk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHotdesk {
    enabled: Option<bool>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDn {
    number: Option<String>,
    range: Option<String>,
    #[serde(rename = "type")]
    dn_type: Option<String>,
    register: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAgent {
    agent_id: String,
    password: Option<String>,
}

fn secs(v: Option<f64>, default: f64, key: &str, min: f64, max: f64) -> Result<Duration, String> {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(format!(
            "{key} = {v}: must be between {min} and {max} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn expand_range(r: &str) -> Result<Vec<String>, String> {
    let (a, b) = r
        .split_once('-')
        .ok_or_else(|| format!("range {r:?}: expected FIRST-LAST, e.g. \"1001-1010\""))?;
    let (a, b) = (a.trim(), b.trim());
    let (x, y): (u64, u64) = match (a.parse(), b.parse()) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return Err(format!("range {r:?}: both ends must be numbers")),
    };
    if y < x || y - x > 1_000_000 {
        return Err(format!(
            "range {r:?}: LAST must be >= FIRST and the range at most 1,000,000 long"
        ));
    }
    let width = a.len();
    Ok((x..=y).map(|n| format!("{n:0width$}")).collect())
}

impl Config {
    /// Read and validate a configuration file, [`Config::check_auth`] included (so
    /// `--check-config` and a reload catch an unauthenticated non-loopback `listen`).
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        Config::parse_in(&text, base)
            .and_then(|c| c.check_auth().map(|()| c))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse and validate configuration text (relative paths: against the working directory).
    pub fn parse(text: &str) -> Result<Config, String> {
        Config::parse_in(text, None)
    }

    /// Parse and validate configuration text; relative paths (`token-file`, `[tls]`) are
    /// resolved against `base`. Files named by the configuration are read and checked here, so
    /// `--check-config` and a reload catch a bad one.
    pub fn parse_in(text: &str, base: Option<&Path>) -> Result<Config, String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        let listen: SocketAddr = raw
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:7000")
            .parse()
            .map_err(|e| format!("listen: {e} (expected HOST:PORT, e.g. 127.0.0.1:7000)"))?;
        let auth = parse_auth(&raw, base)?;
        let tls = match &raw.tls {
            None => None,
            Some(t) => {
                let t = TlsConfig {
                    cert: resolve(base, &t.cert),
                    key: resolve(base, &t.key),
                };
                crate::tls::server_config(&t)?;
                Some(t)
            }
        };
        let mut engine = EngineConfig::default();
        if let Some(n) = raw.server_name {
            engine.server_name = n;
        }
        if let Some(a) = &raw.accept_dn_type {
            engine.accept_dn_types =
                parse_accept_dn_type(a).map_err(|e| format!("accept-dn-type: {e}"))?;
        }
        if raw.link.is_empty() {
            return Err("link: at least one [[link]] is required".into());
        }
        let mut links = Vec::new();
        for (i, l) in raw.link.iter().enumerate() {
            let key = |k: &str| format!("link[{i}].{k}");
            let session = match l.session.as_deref().unwrap_or("ecma354") {
                "ecma354" => SessionMode::Ecma354,
                "system-register" => SessionMode::SystemRegister,
                "none" => SessionMode::None,
                other => {
                    return Err(format!(
                        "{}: {other:?} is not one of ecma354, system-register, none",
                        key("session")
                    ))
                }
            };
            let edition = match l.edition.as_deref() {
                None => Edition::Ed3,
                Some(e) => Edition::parse(e).ok_or_else(|| {
                    format!("{}: {e:?} is not one of ed3, ed4, ed5, ed6", key("edition"))
                })?,
            };
            let kpl_tolerance = l.kpl_tolerance.unwrap_or(3);
            if kpl_tolerance > 10 {
                return Err(format!(
                    "{}: {kpl_tolerance} is above 10",
                    key("kpl-tolerance")
                ));
            }
            if l.host.trim().is_empty() {
                return Err(format!("{}: must not be empty", key("host")));
            }
            let hd = l.hotdesk.as_ref();
            links.push(LinkConfig {
                name: l.name.clone().unwrap_or_else(|| format!("link{}", i + 1)),
                host: l.host.clone(),
                port: l.port.unwrap_or(1040),
                priority: l.priority.unwrap_or(i as i64 + 1),
                session,
                edition,
                connect_timeout: secs(l.connect_tout, 2.0, &key("connect-tout"), 0.1, 1000.0)?,
                kpl_interval: secs(l.kpl_interval, 10.0, &key("kpl-interval"), 0.0, 600.0)?,
                kpl_tolerance,
                request_timeout: secs(l.request_timeout, 5.0, &key("request-timeout"), 0.1, 60.0)?,
                reconnect_min: secs(l.reconnect_min, 1.0, &key("reconnect-min"), 0.01, 600.0)?,
                reconnect_max: secs(l.reconnect_max, 30.0, &key("reconnect-max"), 0.01, 3600.0)?,
                hotdesk_enabled: hd.and_then(|h| h.enabled).unwrap_or(true),
                hotdesk_namespace: hd
                    .and_then(|h| h.namespace.clone())
                    .unwrap_or_else(|| ctid_csta::HOTDESK_NS.to_string()),
                session_duration: l.session_duration.unwrap_or(180),
            });
            let mo = l.max_outstanding.unwrap_or(100);
            if !(1..=5000).contains(&mo) {
                return Err(format!(
                    "{}: {mo} is not between 1 and 5000",
                    key("max-outstanding")
                ));
            }
            let gap = |v: Option<u64>, k: &str| match v.unwrap_or(250) {
                g @ 0..=1000 => Ok(g),
                g => Err(format!("{}: {g} is not between 0 and 1000 (ms)", key(k))),
            };
            let new = &links[links.len() - 1];
            let opts = LinkOptions {
                name: new.name.clone(),
                request_timeout_ms: new.request_timeout.as_millis() as u64,
                max_outstanding: mo,
                resync_timeout_ms: secs(l.resync_timeout, 10.0, &key("resync-timeout"), 1.0, 600.0)?
                    .as_millis() as u64,
                hotdesk_enabled: new.hotdesk_enabled,
                call_rq_gap_ms: gap(l.call_rq_gap, "call-rq-gap")?,
                device_rq_gap_ms: gap(l.device_rq_gap, "device-rq-gap")?,
            };
            if engine.links.iter().any(|o| o.name == opts.name) {
                return Err(format!(
                    "{}: link name {:?} is used twice",
                    key("name"),
                    opts.name
                ));
            }
            engine.links.push(opts);
        }
        // Until a link is selected, the first one's engine options are in force.
        if let Some(first) = engine.links.first().map(|o| o.name.clone()) {
            engine.select_link(&first);
        }
        links.sort_by_key(|l| l.priority);
        let mut seen = std::collections::HashSet::new();
        for (i, d) in raw.dn.iter().enumerate() {
            let key = |k: &str| format!("dn[{i}].{k}");
            let t = d.dn_type.as_deref().unwrap_or("Extension");
            let dn_type = dn_type_from_config(t).ok_or_else(|| {
                format!("{}: {t:?} is not one of Extension, ACDPosition, ACDQueue, RoutingPoint, Trunk, VoiceChannel, Data, Announcement, RoutingQueue", key("type"))
            })?;
            let register = match &d.register {
                None => RegisterFlag::OnDemand,
                Some(toml::Value::Boolean(true)) => RegisterFlag::True,
                Some(toml::Value::Boolean(false)) => RegisterFlag::False,
                Some(toml::Value::String(s)) if s == "true" => RegisterFlag::True,
                Some(toml::Value::String(s)) if s == "false" => RegisterFlag::False,
                Some(toml::Value::String(s)) if s == "on-demand" => RegisterFlag::OnDemand,
                Some(v) => {
                    return Err(format!(
                        "{}: {v} is not one of true, false, \"on-demand\"",
                        key("register")
                    ))
                }
            };
            let numbers = match (&d.number, &d.range) {
                (Some(n), None) => vec![n.clone()],
                (None, Some(r)) => expand_range(r).map_err(|e| format!("{}: {e}", key("range")))?,
                _ => return Err(format!("dn[{i}]: give exactly one of number or range")),
            };
            for n in numbers {
                if !ctid_protocol::is_valid_dn(&n) {
                    return Err(format!(
                        "{}: {n:?} is not a valid DN (1-64 of 0-9 A-Z a-z + * # . _ @ -)",
                        key("number")
                    ));
                }
                if !seen.insert(n.clone()) {
                    return Err(format!("{}: DN {n} is configured twice", key("number")));
                }
                engine.dns.push(DnConfig {
                    number: n,
                    dn_type,
                    register,
                });
            }
        }
        for a in raw.agent_login {
            engine.agent_logins.push(AgentLoginConfig {
                agent_id: a.agent_id,
                password: a.password,
            });
        }
        if let Some(v) = raw.agent_logout_on_unregister {
            engine.agent_logout_on_unregister = v;
        }
        if let Some(a) = &raw.ani_distribution {
            engine.ani_distribution = AniDistribution::from_name(a).ok_or_else(|| {
                format!("ani-distribution: {a:?} is not one of inbound-calls-only, all-calls, suppressed")
            })?;
        }
        if let Some(p) = &raw.internal_dn_pattern {
            engine.internal_dn_pattern = DnPattern::new(p).map_err(|e| {
                format!(
                    "internal-dn-pattern: {p:?} is not a regular expression: {}",
                    e.replace('\n', " ")
                )
            })?;
        }
        if let Some(n) = raw.user_data_limit {
            if !(1..=65_535).contains(&n) {
                return Err(format!(
                    "user-data-limit = {n}: must be between 1 and 65535 (bytes)"
                ));
            }
            engine.user_data_limit = n as usize;
        }
        if let Some(b) = raw.background_processing {
            engine.background_processing = b;
        }
        let rate = |v: Option<f64>, key: &str| -> Result<f64, String> {
            let v = v.unwrap_or(0.0);
            if !(0.0..=1_000_000.0).contains(&v) {
                return Err(format!("{key} = {v}: must be between 0 (off) and 1000000"));
            }
            Ok(v)
        };
        let client = crate::session::ClientPolicy {
            rate_limit: rate(raw.client_rate_limit, "client-rate-limit")?,
            rate_burst: rate(raw.client_rate_burst, "client-rate-burst")?,
            ping_interval: secs(raw.ping_interval, 30.0, "ping-interval", 0.0, 3600.0)?,
            ping_timeout: secs(raw.ping_timeout, 10.0, "ping-timeout", 0.1, 3600.0)?,
            max_clients: match raw.max_clients {
                None => crate::session::DEFAULT_MAX_CLIENTS,
                Some(n) if (1..=1_000_000).contains(&n) => n,
                Some(n) => return Err(format!("max-clients = {n}: must be between 1 and 1000000")),
            },
        };
        let resume_window = secs(raw.resume_window, 30.0, "resume-window", 0.0, 3600.0)?;
        engine.resume_window_ms = resume_window.as_millis() as u64;
        engine.resume_buffer_bytes = match raw.resume_buffer_bytes {
            None => 4 << 20,
            Some(n) if (1024..=1 << 30).contains(&n) => n,
            Some(n) => {
                return Err(format!(
                    "resume-buffer-bytes = {n}: must be between 1024 and 1073741824"
                ))
            }
        };
        engine.resume_keep_attached_ms = engine.resume_window_ms
            + (client.ping_interval + client.ping_timeout).as_millis() as u64;
        let export = parse_export(raw.export.as_ref(), base)?;
        engine.export_events = export.is_some();
        let ha = parse_ha(raw.ha.as_ref(), export.as_ref(), base)?;

        let cfg =
            Config {
                listen,
                links,
                engine,
                export,
                ha,
                max_client_frame: raw.max_client_frame.unwrap_or(256 * 1024),
                client_queue: raw.client_queue.unwrap_or(10_000),
                client_queue_bytes: raw.client_queue_bytes.unwrap_or(64 * 1024 * 1024),
                client,
                auth,
                tls,
                record_inputs: match &raw.record_inputs {
                    Some(p) if p.as_os_str().is_empty() => return Err(
                        "record-inputs: must not be empty (leave the key out to record nothing)"
                            .into(),
                    ),
                    Some(p) => Some(resolve(base, p)),
                    None => None,
                },
            };
        Ok(cfg)
    }

    /// Unauthenticated access needs the configuration's consent: with `auth` left out, clients
    /// are served without a token only when `listen` is a loopback address (127.0.0.0/8, ::1;
    /// the demo, tests); on any other address ctid refuses to start. `auth = "none"` allows
    /// it anywhere (start-up then warns on a non-loopback address). [`Config::load`] checks the
    /// file's `listen`; [`Config::parse`] does not (the demo and tests build configurations from
    /// text): call this before serving, after any override of `listen` (`ctid --listen`).
    pub fn check_auth(&self) -> Result<(), String> {
        use crate::auth::AuthMode;
        if self.auth.mode == AuthMode::None
            && !self.auth.explicit
            && !self.listen.ip().is_loopback()
        {
            return Err(format!(
                "auth: the client port listens on {}, which is not loopback: set auth = \"token\" with [[client-token]] entries, or auth = \"none\" to allow unauthenticated clients explicitly",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../../ctid.example.toml");
        let c = Config::parse(text).unwrap();
        assert_eq!(c.links.len(), 1);
        assert!(c.engine.dns.len() >= 20);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[[link]]\nhost='x'\nsession='soap'\n").unwrap_err();
        assert!(e.contains("link[0].session"), "{e}");
        let e =
            Config::parse("[[link]]\nhost='x'\n[[dn]]\nnumber='1'\ntype='Phone'\n").unwrap_err();
        assert!(e.contains("dn[0].type"), "{e}");
        let e = Config::parse("[[link]]\nhost='x'\nkpl-interval='x'\n").unwrap_err();
        assert!(e.contains("kpl-interval") && e.contains("line"), "{e}");
        let e = Config::parse("[[link]]\nhost='x'\nbogus=1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse("listen='nowhere'\n[[link]]\nhost='x'\n").unwrap_err();
        assert!(e.starts_with("listen"), "{e}");
        let e = Config::parse("[[link]]\nhost='x'\n[[dn]]\nrange='10-1'\n").unwrap_err();
        assert!(e.contains("dn[0].range"), "{e}");
    }

    #[test]
    fn ha_section() {
        let base = "[[link]]\nhost='x'\n";
        let c = Config::parse(&format!(
            "{base}[ha]\ncluster='cc1'\nnode='a'\nurl=['nats://n1:4222','nats://n2:4222']\n"
        ))
        .unwrap();
        let h = c.ha.unwrap();
        assert_eq!((h.cluster.as_str(), h.node.as_str()), ("cc1", "a"));
        assert_eq!(h.nats.urls.len(), 2);
        assert_eq!(h.lease, Duration::from_secs(1));
        assert_eq!(h.renew_interval, Duration::from_millis(250));
        assert_eq!(h.margin(), Duration::from_millis(100));
        assert_eq!(h.poll_interval(), Duration::from_millis(100));
        assert_eq!((h.replicas, h.snapshot_every), (1, 10_000));
        // The export's NATS by default.
        let c = Config::parse(&format!(
            "{base}[export.nats]\nurl='nats://e:4222'\n[ha]\ncluster='c'\nnode='b'\nlease=2\n"
        ))
        .unwrap();
        let h = c.ha.unwrap();
        assert_eq!(h.nats.urls, vec!["nats://e:4222".to_string()]);
        assert_eq!(h.renew_interval, Duration::from_millis(500));
        for (bad, key) in [
            ("cluster='c'\n", "ha.node"),
            (
                "cluster='a.b'\nnode='a'\nurl='nats://n:4222'\n",
                "ha.cluster",
            ),
            ("cluster='c'\nnode='a'\n", "ha.url"),
            (
                "cluster='c'\nnode='a'\nurl='nats://n:4222'\nlease=1\nrenew-interval=0.6\n",
                "ha.renew-interval",
            ),
            (
                "cluster='c'\nnode='a'\nurl='nats://n:4222'\nreplicas=7\n",
                "ha.replicas",
            ),
            (
                "cluster='c'\nnode='a'\nurl='nats://n:4222'\nadvertise='http://x'\n",
                "ha.advertise",
            ),
            (
                "cluster='c'\nnode='a'\nurl='nats://n:4222'\nsnapshot-every=1\n",
                "ha.snapshot-every",
            ),
        ] {
            let e = Config::parse(&format!("{base}[ha]\n{bad}")).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
        // Credentials of its own need a URL of its own.
        let e = Config::parse(&format!(
            "{base}[export.nats]\nurl='nats://e:4222'\n[ha]\ncluster='c'\nnode='a'\ntoken='t'\n"
        ))
        .unwrap_err();
        assert!(e.contains("ha.url"), "{e}");
    }

    #[test]
    fn client_session_options() {
        let c = Config::parse("[[link]]\nhost='x'\n").unwrap();
        assert_eq!(c.client, crate::session::ClientPolicy::default());
        assert!(!c.engine.agent_logout_on_unregister);
        let c = Config::parse(
            "client-rate-limit = 50\nclient-rate-burst = 200\nping-interval = 5\nping-timeout = 2\nagent-logout-on-unregister = true\n[[link]]\nhost='x'\n",
        )
        .unwrap();
        assert_eq!(c.client.rate_limit, 50.0);
        assert_eq!(c.client.rate_burst, 200.0);
        assert_eq!(c.client.ping_interval, Duration::from_secs(5));
        assert_eq!(c.client.ping_timeout, Duration::from_secs(2));
        assert!(c.engine.agent_logout_on_unregister);
        let e = Config::parse("client-rate-limit = -1\n[[link]]\nhost='x'\n").unwrap_err();
        assert!(e.contains("client-rate-limit"), "{e}");
        let e = Config::parse("ping-timeout = 0\n[[link]]\nhost='x'\n").unwrap_err();
        assert!(e.contains("ping-timeout"), "{e}");
    }

    #[test]
    fn unauthenticated_access_needs_loopback_or_an_explicit_auth() {
        // Left out: fine on loopback (v4 and v6), refused elsewhere, naming the key.
        for l in ["127.0.0.1:7000", "127.1.2.3:7000", "[::1]:7000"] {
            let c = Config::parse(&format!("listen = '{l}'\n[[link]]\nhost='x'\n")).unwrap();
            assert!(!c.auth.explicit);
            c.check_auth().unwrap();
        }
        for l in ["0.0.0.0:7000", "10.1.2.3:7000", "[::]:7000"] {
            let c = Config::parse(&format!("listen = '{l}'\n[[link]]\nhost='x'\n")).unwrap();
            let e = c.check_auth().unwrap_err();
            assert!(e.starts_with("auth: the client port listens on"), "{e}");
            assert!(
                e.contains("not loopback") && e.contains("auth = \"none\""),
                "{e}"
            );
        }
        // A file is checked on load (`--check-config`, start-up, reload).
        let dir = std::env::temp_dir().join(format!("ctid-config-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ctid.toml");
        std::fs::write(&file, "listen = '0.0.0.0:7000'\n[[link]]\nhost='x'\n").unwrap();
        let e = Config::load(&file).unwrap_err();
        assert!(
            e.contains(": auth: the client port listens on 0.0.0.0:7000"),
            "{e}"
        );
        std::fs::write(&file, "listen = '127.0.0.1:7000'\n[[link]]\nhost='x'\n").unwrap();
        Config::load(&file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        // Explicit auth = "none" keeps today's behaviour anywhere.
        let c =
            Config::parse("listen = '0.0.0.0:7000'\nauth = 'none'\n[[link]]\nhost='x'\n").unwrap();
        assert!(c.auth.explicit);
        c.check_auth().unwrap();
        // Tokens: fine anywhere.
        let c = Config::parse(
            "listen = '0.0.0.0:7000'\nauth = 'token'\n[[link]]\nhost='x'\n[[client-token]]\ntoken='0123456789abcdef'\n",
        )
        .unwrap();
        c.check_auth().unwrap();
        // `ctid --listen` overrides after parsing: the check is run again on the result.
        let mut c = Config::parse("[[link]]\nhost='x'\n").unwrap();
        c.listen = "192.0.2.1:7000".parse().unwrap();
        let e = c.check_auth().unwrap_err();
        assert!(e.contains("192.0.2.1:7000"), "{e}");
    }

    #[test]
    fn token_permissions_and_max_clients() {
        use crate::auth::{Permission, Permissions};
        let c = Config::parse(
            "auth = 'token'\n[[link]]\nhost='x'\n[[client-token]]\ntoken='0123456789abcdef'\n[[client-token]]\ntoken='fedcba9876543210'\npermissions = ['monitor', 'private']\n",
        )
        .unwrap();
        assert_eq!(c.auth.tokens[0].permissions, Permissions::ALL);
        assert_eq!(
            c.auth.tokens[1].permissions,
            Permissions::NONE
                .with(Permission::Monitor)
                .with(Permission::Private)
        );
        let e = Config::parse(
            "[[link]]\nhost='x'\n[[client-token]]\ntoken='0123456789abcdef'\npermissions = ['admin']\n",
        )
        .unwrap_err();
        assert!(e.contains("client-token[0].permissions"), "{e}");
        let e = Config::parse(
            "[[link]]\nhost='x'\n[[client-token]]\ntoken='0123456789abcdef'\npermissions = []\n",
        )
        .unwrap_err();
        assert!(e.contains("client-token[0].permissions"), "{e}");
        assert_eq!(c.client.max_clients, 10_000);
        let c = Config::parse("max-clients = 2\n[[link]]\nhost='x'\n").unwrap();
        assert_eq!(c.client.max_clients, 2);
        let e = Config::parse("max-clients = 0\n[[link]]\nhost='x'\n").unwrap_err();
        assert!(e.starts_with("max-clients"), "{e}");
    }

    #[test]
    fn record_inputs_is_relative_to_the_file() {
        let c = Config::parse("[[link]]\nhost='x'\n").unwrap();
        assert_eq!(c.record_inputs, None);
        let c = Config::parse_in(
            "record-inputs = 'rec/ctid.jsonl'\n[[link]]\nhost='x'\n",
            Some(Path::new("/etc/ctid")),
        )
        .unwrap();
        assert_eq!(
            c.record_inputs.as_deref(),
            Some(Path::new("/etc/ctid/rec/ctid.jsonl"))
        );
        let e = Config::parse("record-inputs = ''\n[[link]]\nhost='x'\n").unwrap_err();
        assert!(e.starts_with("record-inputs"), "{e}");
    }

    #[test]
    fn call_options_and_their_ranges() {
        let c = Config::parse("[[link]]\nhost='x'\n").unwrap();
        assert_eq!(c.engine.ani_distribution, AniDistribution::InboundCallsOnly);
        assert_eq!(c.engine.internal_dn_pattern.as_str(), "^[0-9]{1,6}$");
        assert_eq!(c.engine.user_data_limit, 16_000);
        assert!(c.engine.background_processing);
        assert_eq!(
            (c.engine.call_rq_gap_ms, c.engine.device_rq_gap_ms),
            (250, 250)
        );
        let c = Config::parse(
            "ani-distribution = 'suppressed'\ninternal-dn-pattern = '^4[0-9]{3}$'\nuser-data-limit = 65535\nbackground-processing = false\n[[link]]\nhost='x'\ncall-rq-gap = 0\ndevice-rq-gap = 1000\n",
        )
        .unwrap();
        assert_eq!(c.engine.ani_distribution, AniDistribution::Suppressed);
        assert!(c.engine.internal_dn_pattern.matches("4001"));
        assert!(!c.engine.internal_dn_pattern.matches("1001"));
        assert_eq!(c.engine.user_data_limit, 65_535);
        assert!(!c.engine.background_processing);
        assert_eq!(
            (c.engine.call_rq_gap_ms, c.engine.device_rq_gap_ms),
            (0, 1000)
        );
        for (text, key) in [
            ("ani-distribution = 'some'\n", "ani-distribution"),
            ("internal-dn-pattern = '^[0-9'\n", "internal-dn-pattern"),
            ("user-data-limit = 65536\n", "user-data-limit"),
            ("user-data-limit = 0\n", "user-data-limit"),
            ("background-processing = 1\n", "background-processing"),
        ] {
            let e = Config::parse(&format!("{text}[[link]]\nhost='x'\n")).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = Config::parse("[[link]]\nhost='x'\ncall-rq-gap = 1001\n").unwrap_err();
        assert!(e.contains("link[0].call-rq-gap"), "{e}");
        let e = Config::parse("[[link]]\nhost='x'\ndevice-rq-gap = 5000\n").unwrap_err();
        assert!(e.contains("link[0].device-rq-gap"), "{e}");
    }

    #[test]
    fn every_link_has_its_engine_options() {
        let c = Config::parse(
            "[[link]]\nname='a'\nhost='x'\nmax-outstanding=10\nrequest-timeout=2\n[[link]]\nname='b'\nhost='y'\nmax-outstanding=40\nresync-timeout=30\ncall-rq-gap=100\ndevice-rq-gap=0\n[link.hotdesk]\nenabled=false\n",
        )
        .unwrap();
        // The first link's options are in force until a link is selected.
        assert_eq!(c.engine.max_outstanding, 10);
        assert_eq!(c.engine.request_timeout_ms, 2000);
        let b = &c.engine.links[1];
        assert_eq!(
            (
                b.name.as_str(),
                b.max_outstanding,
                b.resync_timeout_ms,
                b.hotdesk_enabled
            ),
            ("b", 40, 30_000, false)
        );
        assert_eq!((b.call_rq_gap_ms, b.device_rq_gap_ms), (100, 0));
        let mut e = c.engine.clone();
        assert!(e.select_link("b"));
        assert_eq!((e.max_outstanding, e.request_timeout_ms), (40, 5000));
        let e = Config::parse("[[link]]\nname='a'\nhost='x'\n[[link]]\nname='a'\nhost='y'\n")
            .unwrap_err();
        assert!(e.contains("link[1].name"), "{e}");
        let e = Config::parse("[[link]]\nhost='x'\n[[link]]\nhost='y'\nmax-outstanding=0\n")
            .unwrap_err();
        assert!(e.contains("link[1].max-outstanding"), "{e}");
    }

    #[test]
    fn ranges_expand() {
        let c = Config::parse("[[link]]\nhost='x'\n[[dn]]\nrange='0998-1001'\nregister=true\n")
            .unwrap();
        let n: Vec<_> = c.engine.dns.iter().map(|d| d.number.as_str()).collect();
        assert_eq!(n, ["0998", "0999", "1000", "1001"]);
        assert_eq!(c.engine.dns[0].register, RegisterFlag::True);
    }
}
