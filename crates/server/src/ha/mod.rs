//! Hot standby (docs/operations.md §13 "Running a pair"): two or more ctid nodes share one model.
//!
//! - **Roles by lease** ([`lease`]): the primary renews a lease in a JetStream KV bucket with
//!   compare-and-set; a backup takes it when it lapses. The primary's [`Gate`] says until when it
//!   may still act; it closes before the lease can pass to another node.
//! - **Replication by inputs** ([`log`]): the primary appends every engine input batch, with its
//!   time, to a JetStream stream (each append checks the stream's last sequence, which fences an
//!   old primary); backups apply the stream to their own engines.
//! - **The output rule**: the core releases a batch's client events and CSTA requests only after
//!   the append of its inputs is acknowledged ([`crate::core`]).
//!
//! Names in NATS for cluster `C`: stream `CTID_HA_C` on subject `ctid-ha.C.in`, KV bucket
//! `ctid-ha-C` (keys `lease`, `node.<name>`).

pub mod lease;
pub mod log;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::export::NatsConfig;

/// `[ha]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HaConfig {
    /// The pair's name (letters, digits, `-`, `_`): names the stream and the KV bucket.
    pub cluster: String,
    /// This node's name (same alphabet), unique in the cluster.
    pub node: String,
    /// NATS servers and credentials (`urls` and the credentials of `[export.nats]` by default).
    pub nats: NatsConfig,
    /// The WebSocket URL clients use to reach this node (default `ws://<listen>/ws`).
    pub advertise: String,
    /// How long a lease lasts without renewal (default 1 s).
    pub lease: Duration,
    /// How often the primary renews it (default lease / 4).
    pub renew_interval: Duration,
    /// Replicas of the stream and the bucket (3 on a three-node NATS cluster; default 1).
    pub replicas: usize,
    /// The input stream's size limit in bytes (default 1 GiB).
    pub max_bytes: i64,
    /// The primary stores an engine snapshot every this many stream messages (default 10,000).
    pub snapshot_every: u64,
}

impl HaConfig {
    /// The JetStream stream of the engine inputs.
    pub fn stream(&self) -> String {
        format!("CTID_HA_{}", self.cluster)
    }
    /// Its one subject.
    pub fn subject(&self) -> String {
        format!("ctid-ha.{}.in", self.cluster)
    }
    /// The object store bucket of the engine snapshots.
    pub fn snapshot_bucket(&self) -> String {
        format!("ctid-ha-{}-snap", self.cluster)
    }
    /// The KV bucket of the lease and the node records.
    pub fn bucket(&self) -> String {
        format!("ctid-ha-{}", self.cluster)
    }
    /// How long before the lease's end the primary stops acting: covers clock rate drift between
    /// the nodes and the gap between checking the gate and writing (docs/operations.md §13).
    pub fn margin(&self) -> Duration {
        (self.lease / 10).max(Duration::from_millis(20))
    }
    /// How often a backup reads the lease.
    pub fn poll_interval(&self) -> Duration {
        (self.lease / 10).clamp(Duration::from_millis(20), Duration::from_millis(200))
    }
}

/// A name for a cluster or node: letters, digits, `-`, `_` (it goes into stream, subject and
/// key names).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Until when this node may act as primary (monitor, send CSTA requests, serve clients). The
/// lease task opens it after each successful renew up to the renew's start plus the lease minus
/// [`HaConfig::margin`], and closes it when the lease is lost or handed over; the core checks it
/// before releasing outputs, the link writer before writing a request. Without `[ha]` it is always
/// open.
#[derive(Debug, Clone)]
pub struct Gate {
    epoch: Instant,
    /// Milliseconds after `epoch` (+1) until which acting is allowed; 0 = closed; u64::MAX =
    /// always open (no `[ha]`).
    until: Arc<AtomicU64>,
}

impl Gate {
    /// Always open (standalone ctid).
    pub fn open() -> Gate {
        Gate {
            epoch: Instant::now(),
            until: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
    /// Closed until [`Gate::open_until`].
    pub fn closed() -> Gate {
        Gate {
            epoch: Instant::now(),
            until: Arc::new(AtomicU64::new(0)),
        }
    }
    /// May this node act now?
    pub fn is_open(&self) -> bool {
        let u = self.until.load(Ordering::Acquire);
        u == u64::MAX || (u > 0 && self.ms(Instant::now()) < u)
    }
    /// Time left before the gate closes by itself (`None`: always open; zero: closed).
    pub fn remaining(&self) -> Option<Duration> {
        let u = self.until.load(Ordering::Acquire);
        if u == u64::MAX {
            return None;
        }
        Some(Duration::from_millis(
            u.saturating_sub(self.ms(Instant::now())),
        ))
    }
    /// Allow acting until `t`.
    pub fn open_until(&self, t: Instant) {
        self.until
            .store(self.ms(t).max(1), std::sync::atomic::Ordering::Release);
    }
    /// Stop acting now.
    pub fn close(&self) {
        self.until.store(0, Ordering::Release);
    }
    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }
}

/// The role of this node (docs/protocol.md §6.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// No `[ha]`.
    #[default]
    Standalone,
    /// Applies the primary's inputs; refuses clients with 4010.
    Backup,
    /// Holds the lease; catching up and appending its first batch.
    TakingOver,
    /// Serves.
    Primary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Backup => "backup",
            Role::TakingOver => "taking-over",
            Role::Primary => "primary",
        }
    }
}

/// The lease as a node last read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseValue {
    /// The node holding it; `None`: released (any ready backup may take it at once).
    pub holder: Option<String>,
    /// The holder's client URL.
    #[serde(default)]
    pub url: String,
    /// Incremented by every take-over and hand-over.
    pub term: u64,
    /// Set by a planned switchover: `holder` may take it at once.
    #[serde(default)]
    pub handover: bool,
}

/// Another node as its record in the bucket shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    pub node: String,
    pub url: String,
    pub role: String,
    pub applied_seq: u64,
    pub ready: bool,
    /// The stream message of the last snapshot it stored or loaded.
    #[serde(default)]
    pub snapshot_seq: u64,
    /// When it wrote this (Unix ms, its clock).
    pub at_unix_ms: u64,
    /// How long ago this node read it (filled by the reader).
    #[serde(default)]
    pub seen_ms_ago: u64,
}

/// What `/api/ha`, `/readyz` and the metrics show (docs/protocol.md §6.10).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HaView {
    pub enabled: bool,
    pub cluster: String,
    pub node: String,
    pub role: Role,
    pub term: u64,
    pub lease: Option<LeaseSeen>,
    pub applied_seq: u64,
    pub stream_last_seq: u64,
    pub lag: u64,
    /// The stream message of the last snapshot this node loaded or stored (0: none).
    pub snapshot_seq: u64,
    pub ready: bool,
    pub nodes: Vec<NodeRecord>,
    /// Why this node last stepped down or could not take over, if it did.
    pub last_error: String,
}

/// The lease in [`HaView`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LeaseSeen {
    pub holder: Option<String>,
    pub url: String,
    pub term: u64,
    pub age_ms: u64,
}

/// State the HA tasks share with the core and the HTTP side.
#[derive(Debug, Clone)]
pub struct Shared {
    pub gate: Gate,
    /// The core has applied the stream up to its end (a backup that may take over).
    pub ready: Arc<AtomicBool>,
    /// Last stream sequence applied (or appended) by this node.
    pub applied: Arc<AtomicU64>,
    /// The stream's last sequence as last read ([`UNKNOWN`] until the follower has read it).
    pub stream_last: Arc<AtomicU64>,
    /// The lease holder's client URL, for the 4010 close of a node that does not serve.
    pub primary_url: Arc<std::sync::Mutex<Option<String>>>,
    /// The stream message of the last snapshot this node stored or loaded.
    pub snapshot_seq: Arc<AtomicU64>,
    role: Arc<std::sync::atomic::AtomicU8>,
}

impl Shared {
    pub fn new(gate: Gate) -> Shared {
        Shared {
            gate,
            ready: Arc::new(AtomicBool::new(false)),
            applied: Arc::new(AtomicU64::new(0)),
            stream_last: Arc::new(AtomicU64::new(UNKNOWN)),
            primary_url: Arc::new(std::sync::Mutex::new(None)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            role: Arc::new(std::sync::atomic::AtomicU8::new(Role::Backup as u8)),
        }
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            x if x == Role::Primary as u8 => Role::Primary,
            x if x == Role::TakingOver as u8 => Role::TakingOver,
            x if x == Role::Standalone as u8 => Role::Standalone,
            _ => Role::Backup,
        }
    }

    /// Set the role.
    pub fn set_role(&self, r: Role) {
        self.role.store(r as u8, Ordering::Release);
    }

    /// Does this node serve clients? Only a primary does.
    pub fn serving(&self) -> bool {
        self.role() == Role::Primary
    }

    /// The close reason a node that does not serve gives a client (docs/protocol.md §6.10).
    pub fn not_primary_reason(&self) -> String {
        let url = self.primary_url.lock().ok().and_then(|u| u.clone());
        match url {
            // A close reason holds at most 123 bytes.
            Some(u) if u.len() <= 100 => format!("not primary; primary={u}"),
            _ => "not primary; primary unknown".to_string(),
        }
    }
}

/// [`Shared::stream_last`] before the stream has been read.
pub const UNKNOWN: u64 = u64::MAX;

/// The close code of a node that does not serve (docs/protocol.md §6.10).
pub const CLOSE_NOT_PRIMARY: u16 = 4010;

/// Connect to the cluster's NATS: a client that reconnects by itself (an append that a
/// reconnect delays is checked by its expected last sequence, so order cannot break).
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, String> {
    let o = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(2)))
        .retry_on_initial_connect()
        .name(name);
    crate::export::connect_with(o, cfg).await
}

/// Unix time in ms.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_closes_by_itself() {
        let g = Gate::closed();
        assert!(!g.is_open());
        g.open_until(Instant::now() + Duration::from_secs(60));
        assert!(g.is_open());
        assert!(g.remaining().unwrap() > Duration::from_secs(59));
        g.open_until(Instant::now());
        assert!(!g.is_open());
        g.open_until(Instant::now() + Duration::from_secs(60));
        g.close();
        assert!(!g.is_open());
        assert!(Gate::open().is_open());
        assert_eq!(Gate::open().remaining(), None);
    }

    #[test]
    fn names() {
        assert!(valid_name("cc-1_a"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
    }
}
