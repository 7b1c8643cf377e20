//! Process-wide counters, shared by the link, the core and the HTTP side, rendered in the
//! Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// All metrics.
#[derive(Debug, Default)]
pub struct Inner {
    pub link_up: Gauge,
    pub reconnects: Counter,
    pub bad_frames: Counter,
    pub unmatched_answers: Counter,
    pub unknown_messages: Counter,
    pub monitored_dns: Gauge,
    pub registered_dns: Gauge,
    pub clients: Gauge,
    pub outstanding: Gauge,
    pub rejected_requests: Counter,
    pub clients_dropped_slow: Counter,
    pub queue_high_water: Gauge,
    pub csta_in: Mutex<BTreeMap<String, u64>>,
    pub csta_out: Mutex<BTreeMap<String, u64>>,
    pub events_out: Mutex<BTreeMap<String, u64>>,
    pub sync_done: Gauge,
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
        g(
            "ctid_csta_unmatched_answers_total",
            "CSTA answers matching no request",
            "counter",
            self.unmatched_answers.get().to_string(),
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
        let _ = writeln!(s, "# HELP ctid_clients_dropped_total clients disconnected by ctid\n# TYPE ctid_clients_dropped_total counter\nctid_clients_dropped_total{{reason=\"slow\"}} {}", self.clients_dropped_slow.get());
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
        ] {
            let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} counter");
            if let Ok(m) = map.lock() {
                for (k, v) in m.iter() {
                    let _ = writeln!(s, "{metric}{{type=\"{k}\"}} {v}");
                }
            }
        }
        s
    }
}
