//! Process-wide counters, gauges and histograms, shared by the link, the core and the HTTP side,
//! rendered in the Prometheus text format at `/metrics`. Everything is an atomic or a small map
//! behind a mutex (label sets are bounded by the message catalogues); histograms have fixed
//! buckets. docs/operations.md lists every metric.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Follow a count kept elsewhere (the engine's counters): never goes down.
    pub fn follow(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Add `v` (negative to subtract), for a gauge two tasks move.
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency histogram buckets, in microseconds (Prometheus `le`, in seconds).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]); observing is three relaxed
/// atomic additions.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket counts (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    /// The smallest bucket bound (µs) below which at least `q` (0..1) of the observations fall;
    /// `None` without observations or when the quantile is in the `+Inf` bucket.
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut acc = 0;
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            if acc >= want {
                return Some(*b);
            }
        }
        None
    }
    fn render(&self, s: &mut String, name: &str, help: &str) {
        use std::fmt::Write;
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            let le = *b as f64 / 1e6;
            let _ = writeln!(s, "{name}_bucket{{le=\"{le}\"}} {acc}");
        }
        acc += self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {acc}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum {sum}\n{name}_count {acc}");
    }
}

/// All metrics.
#[derive(Debug, Default)]
pub struct Inner {
    pub link_up: Gauge,
    pub reconnects: Counter,
    pub bad_frames: Counter,
    /// CSTA answers for no request in flight (the engine's `late_answers`).
    pub unmatched_answers: Counter,
    /// Hot-desking PrivateEvents that changed nothing (the engine's count).
    pub duplicate_private_events: Counter,
    /// CSTA events for a monitorCrossRefID ctid does not hold (the engine's count).
    pub unknown_cross_ref: Counter,
    /// CSTA call events without a callID, dropped (the engine's count).
    pub events_without_call_id: Counter,
    pub unknown_messages: Counter,
    pub monitored_dns: Gauge,
    pub registered_dns: Gauge,
    pub clients: Gauge,
    pub outstanding: Gauge,
    pub rejected_requests: Counter,
    pub clients_dropped_slow: Counter,
    /// Sessions ended by a protocol error (e.g. a frame over `max-client-frame`).
    pub clients_dropped_protocol: Counter,
    pub queue_high_water: Gauge,
    pub csta_in: Mutex<BTreeMap<String, u64>>,
    pub csta_out: Mutex<BTreeMap<String, u64>>,
    pub events_out: Mutex<BTreeMap<String, u64>>,
    pub sync_done: Gauge,
    /// Client requests decoded, by request name.
    pub requests: Mutex<BTreeMap<String, u64>>,
    /// Client requests answered with EventError, by request name and error code.
    pub request_errors: Mutex<BTreeMap<(String, u32), u64>>,
    /// Client request received by the core → its answer queued to the client.
    pub request_latency: Histogram,
    /// CSTA event received by the core → each resulting client event written to its WebSocket.
    pub switch_to_client_latency: Histogram,
    pub reloads_ok: Counter,
    pub reloads_rejected: Counter,
    /// 1 while engine inputs are being recorded (`record-inputs`).
    pub recording: Gauge,
    /// Recording write errors (the first one stops recording).
    pub record_errors: Counter,
    /// CSTA requests allowed in flight now (`max-outstanding`, halved under overload).
    pub window_limit: Gauge,
    /// Per link: 1 while its Connector reports system status `partiallyDisabled`.
    pub partially_disabled: Mutex<BTreeMap<String, i64>>,
    /// Sessions whose connection went, kept for a resume (docs/protocol.md §6.9).
    pub sessions_detached: Gauge,
    /// Sessions resumed by a new connection.
    pub sessions_resumed: Counter,
    /// Detached sessions that ended because `resume-window` passed.
    pub sessions_expired: Counter,
    /// Detached sessions that ended because `resume-buffer-bytes` overflowed.
    pub sessions_overflowed: Counter,
    /// RequestResumeSession answered with EventError.
    pub sessions_refused: Counter,
    /// Events sent again on a resume.
    pub events_replayed: Counter,
    /// 1 when `[export.nats]` is on.
    pub export_enabled: Gauge,
    /// 1 while the export publishes to NATS.
    pub export_connected: Gauge,
    /// Events queued for NATS and not yet acknowledged, and their bytes.
    pub export_lag: Gauge,
    pub export_buffered_bytes: Gauge,
    pub export_published: Counter,
    pub export_acked: Counter,
    /// Events dropped because `max-buffer-bytes` was full.
    pub export_dropped: Counter,
    /// What is wrong with the export now ("" when nothing).
    pub export_error: Mutex<String>,
    /// `[ha]`: 1 when on; the role (1 backup, 2 taking over, 3 primary); the lease term.
    pub ha_enabled: Gauge,
    pub ha_role: Gauge,
    pub ha_term: Gauge,
    /// Last input-stream sequence applied, the stream's last one, and 1 when a backup is ready.
    pub ha_applied_seq: Gauge,
    pub ha_lag: Gauge,
    pub ha_ready: Gauge,
    /// Input batches appended by this node, appends that failed (retried), take-overs, step-downs.
    pub ha_appends: Counter,
    pub ha_append_errors: Counter,
    pub ha_takeovers: Counter,
    pub ha_stepdowns: Counter,
    pub ha_snapshots: Counter,
    pub ha_snapshot_errors: Counter,
    /// From a batch's append to JetStream's acknowledgement (the output rule's wait).
    pub ha_append_latency: Histogram,
}

impl Inner {
    /// Say what is wrong with the export now ("" when nothing).
    pub fn set_export_error(&self, what: &str) {
        if let Ok(mut e) = self.export_error.lock() {
            if *e != what {
                *e = what.to_string();
            }
        }
    }
    /// What is wrong with the export now.
    pub fn export_error(&self) -> String {
        self.export_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

/// Shared handle.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub Arc<Inner>);

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn bump(m: &Mutex<BTreeMap<String, u64>>, k: &str, n: u64) {
    if let Ok(mut g) = m.lock() {
        match g.get_mut(k) {
            Some(v) => *v += n,
            None => {
                g.insert(k.to_string(), n);
            }
        }
    }
}

impl Metrics {
    /// Link `name`'s Connector reports `partiallyDisabled` (or no longer).
    pub fn set_partially_disabled(&self, name: &str, on: bool) {
        if let Ok(mut m) = self.0.partially_disabled.lock() {
            match m.get_mut(name) {
                Some(v) => *v = on as i64,
                None if on => {
                    m.insert(name.to_string(), 1);
                }
                None => {}
            }
        }
    }
    /// The `ctid_link_partially_disabled` value of link `name` (0 when never set).
    pub fn partially_disabled(&self, name: &str) -> i64 {
        self.0
            .partially_disabled
            .lock()
            .ok()
            .and_then(|m| m.get(name).copied())
            .unwrap_or(0)
    }
    pub fn link_up(&self, up: bool) {
        self.0.link_up.set(up as i64);
    }
    pub fn csta_in(&self, name: &str) {
        bump(&self.0.csta_in, name, 1);
    }
    pub fn csta_out(&self, name: &str) {
        bump(&self.0.csta_out, name, 1);
    }
    pub fn event_out(&self, name: &str, n: u64) {
        bump(&self.0.events_out, name, n);
    }
    pub fn request_in(&self, name: &str) {
        bump(&self.0.requests, name, 1);
    }
    pub fn request_error(&self, name: &str, code: u32) {
        if let Ok(mut g) = self.0.request_errors.lock() {
            *g.entry((name.to_string(), code)).or_insert(0) += 1;
        }
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let mut g = |name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        g(
            "ctid_link_up",
            "1 when the CSTA link is operational",
            "gauge",
            self.link_up.get().to_string(),
        );
        g(
            "ctid_link_reconnects_total",
            "CSTA link connection attempts after the first",
            "counter",
            self.reconnects.get().to_string(),
        );
        g(
            "ctid_csta_bad_frames_total",
            "malformed or skipped CSTA frames",
            "counter",
            self.bad_frames.get().to_string(),
        );
        if self.export_enabled.get() == 1 {
            g(
                "ctid_export_connected",
                "1 while the event export publishes to NATS",
                "gauge",
                self.export_connected.get().to_string(),
            );
            g(
                "ctid_export_lag",
                "events queued for NATS and not yet acknowledged",
                "gauge",
                self.export_lag.get().to_string(),
            );
            g(
                "ctid_export_buffered_bytes",
                "bytes of the events queued for NATS and not yet acknowledged",
                "gauge",
                self.export_buffered_bytes.get().to_string(),
            );
            g(
                "ctid_export_published_total",
                "events published to NATS (again after a failure too)",
                "counter",
                self.export_published.get().to_string(),
            );
            g(
                "ctid_export_acked_total",
                "events acknowledged by JetStream",
                "counter",
                self.export_acked.get().to_string(),
            );
            g(
                "ctid_export_dropped_total",
                "events dropped because max-buffer-bytes was full",
                "counter",
                self.export_dropped.get().to_string(),
            );
        }
        if self.ha_enabled.get() == 1 {
            for (name, help, kind, v) in [
                (
                    "ctid_ha_role",
                    "hot standby role: 1 backup, 2 taking over, 3 primary",
                    "gauge",
                    self.ha_role.get().to_string(),
                ),
                (
                    "ctid_ha_term",
                    "the lease term this node last held or saw",
                    "gauge",
                    self.ha_term.get().to_string(),
                ),
                (
                    "ctid_ha_applied_seq",
                    "last input-stream sequence applied by this node",
                    "gauge",
                    self.ha_applied_seq.get().to_string(),
                ),
                (
                    "ctid_ha_lag",
                    "input-stream messages not yet applied by this node",
                    "gauge",
                    self.ha_lag.get().to_string(),
                ),
                (
                    "ctid_ha_ready",
                    "1 when this backup has applied the stream to its end",
                    "gauge",
                    self.ha_ready.get().to_string(),
                ),
                (
                    "ctid_ha_appends_total",
                    "input batches appended to the stream",
                    "counter",
                    self.ha_appends.get().to_string(),
                ),
                (
                    "ctid_ha_append_errors_total",
                    "appends that failed and were retried or ended the primary's term",
                    "counter",
                    self.ha_append_errors.get().to_string(),
                ),
                (
                    "ctid_ha_takeovers_total",
                    "times this node became primary",
                    "counter",
                    self.ha_takeovers.get().to_string(),
                ),
                (
                    "ctid_ha_stepdowns_total",
                    "times this node stopped being primary",
                    "counter",
                    self.ha_stepdowns.get().to_string(),
                ),
                (
                    "ctid_ha_snapshots_total",
                    "engine snapshots this node stored (a backup; the primary only when no backup does)",
                    "counter",
                    self.ha_snapshots.get().to_string(),
                ),
                (
                    "ctid_ha_snapshot_errors_total",
                    "engine snapshots that could not be stored or loaded",
                    "counter",
                    self.ha_snapshot_errors.get().to_string(),
                ),
            ] {
                g(name, help, kind, v);
            }
        }
        g(
            "ctid_sessions_detached",
            "client sessions whose connection went, kept for a resume",
            "gauge",
            self.sessions_detached.get().to_string(),
        );
        g(
            "ctid_sessions_resumed_total",
            "client sessions resumed by a new connection",
            "counter",
            self.sessions_resumed.get().to_string(),
        );
        g(
            "ctid_sessions_expired_total",
            "detached client sessions ended because resume-window passed",
            "counter",
            self.sessions_expired.get().to_string(),
        );
        g(
            "ctid_sessions_overflowed_total",
            "detached client sessions ended because resume-buffer-bytes overflowed",
            "counter",
            self.sessions_overflowed.get().to_string(),
        );
        g(
            "ctid_sessions_resume_refused_total",
            "RequestResumeSession answered with EventError",
            "counter",
            self.sessions_refused.get().to_string(),
        );
        g(
            "ctid_events_replayed_total",
            "client events sent again on a session resume",
            "counter",
            self.events_replayed.get().to_string(),
        );
        g(
            "ctid_csta_unmatched_answers_total",
            "CSTA answers matching no request",
            "counter",
            self.unmatched_answers.get().to_string(),
        );
        g(
            "ctid_csta_duplicate_private_events_total",
            "hot-desking PrivateEvents that changed nothing",
            "counter",
            self.duplicate_private_events.get().to_string(),
        );
        g(
            "ctid_csta_unknown_cross_ref_total",
            "CSTA events for a monitorCrossRefID ctid does not hold (dropped)",
            "counter",
            self.unknown_cross_ref.get().to_string(),
        );
        g(
            "ctid_csta_events_without_call_id_total",
            "CSTA call events without a callID (dropped)",
            "counter",
            self.events_without_call_id.get().to_string(),
        );
        g(
            "ctid_csta_unknown_messages_total",
            "CSTA messages with an unknown root",
            "counter",
            self.unknown_messages.get().to_string(),
        );
        g(
            "ctid_monitored_dns",
            "DNs monitored at the switch",
            "gauge",
            self.monitored_dns.get().to_string(),
        );
        g(
            "ctid_registered_dns",
            "DNs known (configured and unconfigured)",
            "gauge",
            self.registered_dns.get().to_string(),
        );
        g(
            "ctid_clients",
            "connected clients",
            "gauge",
            self.clients.get().to_string(),
        );
        g(
            "ctid_csta_outstanding",
            "CSTA requests awaiting an answer",
            "gauge",
            self.outstanding.get().to_string(),
        );
        g(
            "ctid_csta_window_limit",
            "CSTA requests allowed in flight now (max-outstanding, halved while the Connector reports overloadReached)",
            "gauge",
            self.window_limit.get().to_string(),
        );
        g(
            "ctid_rejected_requests_total",
            "client requests answered with EventError",
            "counter",
            self.rejected_requests.get().to_string(),
        );
        g(
            "ctid_client_queue_high_water",
            "largest client send queue seen",
            "gauge",
            self.queue_high_water.get().to_string(),
        );
        g(
            "ctid_recording",
            "1 while engine inputs are recorded (record-inputs)",
            "gauge",
            self.recording.get().to_string(),
        );
        g(
            "ctid_record_errors_total",
            "recording write errors (the first stops recording)",
            "counter",
            self.record_errors.get().to_string(),
        );
        let _ = writeln!(s, "# HELP ctid_link_partially_disabled 1 while the link's Connector reports system status partiallyDisabled\n# TYPE ctid_link_partially_disabled gauge");
        if let Ok(m) = self.partially_disabled.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(s, "ctid_link_partially_disabled{{link=\"{k}\"}} {v}");
            }
        }
        let _ = writeln!(s, "# HELP ctid_clients_dropped_total clients disconnected by ctid\n# TYPE ctid_clients_dropped_total counter\nctid_clients_dropped_total{{reason=\"slow\"}} {}\nctid_clients_dropped_total{{reason=\"protocol\"}} {}", self.clients_dropped_slow.get(), self.clients_dropped_protocol.get());
        let _ = writeln!(s, "# HELP ctid_config_reloads_total configuration reloads (SIGHUP, POST /admin/reload)\n# TYPE ctid_config_reloads_total counter\nctid_config_reloads_total{{result=\"ok\"}} {}\nctid_config_reloads_total{{result=\"rejected\"}} {}", self.reloads_ok.get(), self.reloads_rejected.get());
        for (metric, map, help) in [
            (
                "ctid_csta_messages_in_total",
                &self.csta_in,
                "CSTA messages received, by root",
            ),
            (
                "ctid_csta_messages_out_total",
                &self.csta_out,
                "CSTA messages sent, by root",
            ),
            (
                "ctid_events_sent_total",
                &self.events_out,
                "client events sent (copies), by name",
            ),
            (
                "ctid_client_requests_total",
                &self.requests,
                "client requests received, by name",
            ),
        ] {
            let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} counter");
            if let Ok(m) = map.lock() {
                for (k, v) in m.iter() {
                    let _ = writeln!(s, "{metric}{{type=\"{k}\"}} {v}");
                }
            }
        }
        let _ = writeln!(s, "# HELP ctid_client_request_errors_total client requests answered with EventError, by request and ErrorCode\n# TYPE ctid_client_request_errors_total counter");
        if let Ok(m) = self.request_errors.lock() {
            for ((k, code), v) in m.iter() {
                let _ = writeln!(
                    s,
                    "ctid_client_request_errors_total{{type=\"{k}\",code=\"{code}\"}} {v}"
                );
            }
        }
        // The CSTA maps split by message kind (requests, responses, errors, events).
        let mut by_kind: BTreeMap<(&str, CstaKind), Vec<(String, u64)>> = BTreeMap::new();
        for (dir, map) in [("out", &self.csta_out), ("in", &self.csta_in)] {
            if let Ok(m) = map.lock() {
                for (k, v) in m.iter() {
                    by_kind
                        .entry((dir, csta_kind(k)))
                        .or_default()
                        .push((k.clone(), *v));
                }
            }
        }
        for (metric, help, kinds) in [
            (
                "ctid_csta_requests_total",
                "CSTA requests sent to the Connector, by root",
                [("out", CstaKind::Request)],
            ),
            (
                "ctid_csta_responses_total",
                "positive CSTA answers received, by root",
                [("in", CstaKind::Response)],
            ),
            (
                "ctid_csta_errors_total",
                "negative CSTA answers received (CSTAErrorCode, NegResponses), by root",
                [("in", CstaKind::Error)],
            ),
            (
                "ctid_csta_events_total",
                "CSTA events received, by root",
                [("in", CstaKind::Event)],
            ),
        ] {
            let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for key in kinds {
                for (k, v) in by_kind.get(&key).map(Vec::as_slice).unwrap_or(&[]) {
                    let _ = writeln!(s, "{metric}{{type=\"{k}\"}} {v}");
                }
            }
        }
        self.request_latency.render(
            &mut s,
            "ctid_request_duration_seconds",
            "client request received by the core until its answer is queued to the client",
        );
        self.switch_to_client_latency.render(
            &mut s,
            "ctid_switch_to_client_seconds",
            "CSTA event received by the core until each client event it causes is written to the WebSocket",
        );
        if self.ha_enabled.get() == 1 {
            self.ha_append_latency.render(
                &mut s,
                "ctid_ha_append_seconds",
                "an input batch's append to the hot-standby stream until JetStream acknowledges it",
            );
        }
        s
    }
}

/// What a CSTA root is, by ECMA-323 naming (`...Response`, `...NegResponse`, `CSTAErrorCode`,
/// `...Event`); anything else is a request (from either side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CstaKind {
    Request,
    Response,
    Error,
    Event,
}

fn csta_kind(root: &str) -> CstaKind {
    if root == "CSTAErrorCode" || root.ends_with("NegResponse") {
        CstaKind::Error
    } else if root.ends_with("Response") {
        CstaKind::Response
    } else if root.ends_with("Event") {
        CstaKind::Event
    } else {
        CstaKind::Request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(60));
        let mut s = String::new();
        h.render(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"0.0001\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.0005\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"5\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
        assert_eq!(h.quantile_bound_us(0.5), Some(500));
        assert_eq!(h.quantile_bound_us(1.0), None);
    }

    #[test]
    fn csta_roots_are_classified() {
        assert_eq!(csta_kind("MakeCall"), CstaKind::Request);
        assert_eq!(csta_kind("MakeCallResponse"), CstaKind::Response);
        assert_eq!(csta_kind("CSTAErrorCode"), CstaKind::Error);
        assert_eq!(
            csta_kind("StartApplicationSessionNegResponse"),
            CstaKind::Error
        );
        assert_eq!(csta_kind("DeliveredEvent"), CstaKind::Event);
        assert_eq!(csta_kind("SystemStatus"), CstaKind::Request);
    }
}
