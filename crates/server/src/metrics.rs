//! Process-wide counters, gauges and histograms, shared by the link, the core and the HTTP side,
//! exposed at `/metrics` in the Prometheus text format (version 0.0.4) by the `prometheus-client`
//! crate's registry and encoder. Counting never takes a lock nor allocates on the per-message
//! paths: counters and gauges are atomics, the by-name counters are made up front for every name
//! of the message catalogues (a hash lookup and an atomic add), and the latency histograms are
//! fixed buckets of atomics. docs/operations.md section 3 lists every metric.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{
    prometheus_text, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{counter, gauge, MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A monotonically increasing counter; clones are handles to the same count.
#[derive(Debug, Default, Clone)]
pub struct Counter(counter::Counter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
    /// Follow a count kept elsewhere (the engine's counters): never goes down.
    pub fn follow(&self, total: u64) {
        self.0.inner().fetch_max(total, Ordering::Relaxed);
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A value that goes up and down; clones are handles to the same value.
#[derive(Debug, Default, Clone)]
pub struct Gauge(gauge::Gauge);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }
    /// Add `v` (negative to subtract), for a gauge two tasks move.
    pub fn add(&self, v: i64) {
        self.0.inc_by(v);
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

impl TypedMetric for Gauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Gauge {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Upper bounds of the latency histogram buckets, in microseconds (Prometheus `le`, in seconds).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]); observing is three relaxed
/// atomic additions (`prometheus-client`'s own histogram takes a mutex per observation, and the
/// switch-to-client one is observed for every event copy). Clones are handles to the same one.
#[derive(Debug, Default, Clone)]
pub struct Histogram(Arc<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    /// Per-bucket counts (not cumulative); the last slot is `+Inf`.
    counts: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_us.fetch_add(us, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }
    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
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
            acc += self.0.counts[i].load(Ordering::Relaxed);
            if acc >= want {
                return Some(*b);
            }
        }
        None
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        // (upper bound in s, count in that bucket alone): the encoder makes them cumulative.
        let mut buckets = [(f64::INFINITY, 0); LATENCY_BUCKETS_US.len() + 1];
        for (i, (le, n)) in buckets.iter_mut().enumerate() {
            if let Some(us) = LATENCY_BUCKETS_US.get(i) {
                *le = *us as f64 / 1e6;
            }
            *n = self.0.counts[i].load(Ordering::Relaxed);
        }
        // `_count` equals the `+Inf` bucket even while observations land.
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Counters by message name (label `type`). The catalogue's names get theirs up front, so
/// counting one is a hash lookup and an atomic add (about 20 ns; the mutex and map this replaced
/// took 35 ns, uncontended); a name outside the catalogue (a CSTA root the codec does not know)
/// gets its counter on first sight, under a lock. Only names counted at least once are exposed.
/// Clones are handles to the same counters.
#[derive(Debug, Clone, Default)]
pub struct ByName(Arc<Names>);

#[derive(Debug, Default)]
struct Names {
    /// For counting.
    known: HashMap<&'static str, Counter>,
    /// The same counters sorted by name, for listing.
    sorted: Box<[(&'static str, Counter)]>,
    other: Mutex<BTreeMap<String, Counter>>,
}

impl ByName {
    fn new(catalogue: impl IntoIterator<Item = &'static str>) -> ByName {
        let known: HashMap<_, _> = catalogue
            .into_iter()
            .map(|n| (n, Counter::default()))
            .collect();
        let mut sorted: Vec<_> = known.iter().map(|(n, c)| (*n, c.clone())).collect();
        sorted.sort_unstable_by_key(|k| k.0);
        ByName(Arc::new(Names {
            known,
            sorted: sorted.into(),
            other: Mutex::default(),
        }))
    }
    /// The catalogue's entry for `name`.
    fn known(&self, name: &str) -> Option<(&&'static str, &Counter)> {
        self.0.known.get_key_value(name)
    }
    /// Count `n` more of `name`.
    pub fn add(&self, name: &str, n: u64) {
        if let Some((_, c)) = self.known(name) {
            c.add(n);
        } else if let Ok(mut other) = self.0.other.lock() {
            match other.get(name) {
                Some(c) => c.add(n),
                None => other.entry(name.to_string()).or_default().add(n),
            }
        }
    }
    /// The count of `name` (0 when never counted).
    pub fn get(&self, name: &str) -> u64 {
        match self.known(name) {
            Some((_, c)) => c.get(),
            None => self
                .0
                .other
                .lock()
                .ok()
                .and_then(|o| o.get(name).map(Counter::get))
                .unwrap_or(0),
        }
    }
    /// Each name counted so far whose CSTA kind is `kind` (any with `None`), with its counter.
    fn each(
        &self,
        kind: Option<CstaKind>,
        mut f: impl FnMut(&str, &Counter) -> fmt::Result,
    ) -> fmt::Result {
        let wanted =
            |name: &str, c: &Counter| c.get() > 0 && kind.is_none_or(|k| csta_kind(name) == k);
        for (name, c) in self.0.sorted.iter() {
            if wanted(name, c) {
                f(name, c)?;
            }
        }
        if let Ok(other) = self.0.other.lock() {
            for (name, c) in other.iter() {
                if wanted(name, c) {
                    f(name, c)?;
                }
            }
        }
        Ok(())
    }
    /// The counters of one CSTA kind, as a metric of their own.
    fn of_kind(&self, kind: CstaKind) -> OfKind {
        OfKind(self.clone(), Some(kind))
    }
}

/// What a [`ByName`] exposes: its counters with label `type`, all of them or one CSTA kind's.
#[derive(Debug)]
struct OfKind(ByName, Option<CstaKind>);

impl EncodeMetric for OfKind {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        self.0.each(self.1, |name, c| {
            c.encode(encoder.encode_family(&[("type", name)])?)
        })
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

impl EncodeMetric for ByName {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        OfKind(self.clone(), None).encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Labels of `ctid_client_request_errors_total`: the request's name and the ErrorCode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestErrorLabels {
    request: Cow<'static, str>,
    code: u32,
}

impl EncodeLabelSet for RequestErrorLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        ([("type", &*self.request)], [("code", self.code)]).encode(encoder)
    }
}

/// A metric whose `# HELP` and `# TYPE` are written even before it has a series (a
/// [`Family`] without members is left out of the text otherwise).
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// A metric exposed only while a feature is on (`on` is 1): the `ctid_export_*` and `ctid_ha_*`
/// metrics.
#[derive(Debug)]
struct WhenOn<M> {
    on: Gauge,
    metric: M,
}

fn when_on<M>(on: &Gauge, metric: M) -> WhenOn<M> {
    WhenOn {
        on: on.clone(),
        metric,
    }
}

impl<M: EncodeMetric> EncodeMetric for WhenOn<M> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.metric.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        self.metric.metric_type()
    }
    fn is_empty(&self) -> bool {
        self.on.get() != 1
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
    /// `ctid_clients_dropped_total` by reason: members of `clients_dropped`.
    pub clients_dropped_slow: Counter,
    /// Sessions ended by a protocol error (e.g. a frame over `max-client-frame`).
    pub clients_dropped_protocol: Counter,
    clients_dropped: Family<[(&'static str, &'static str); 1], Counter>,
    pub queue_high_water: Gauge,
    /// CSTA messages received and sent, by root.
    pub csta_in: ByName,
    pub csta_out: ByName,
    /// Client events sent (copies), by name.
    pub events_out: ByName,
    pub sync_done: Gauge,
    /// Client requests decoded, by request name.
    pub requests: ByName,
    /// Client requests answered with EventError, by request name and error code.
    request_errors: Family<RequestErrorLabels, Counter>,
    /// Client request received by the core → its answer queued to the client.
    pub request_latency: Histogram,
    /// CSTA event received by the core → each resulting client event written to its WebSocket.
    pub switch_to_client_latency: Histogram,
    /// `ctid_config_reloads_total` by result: members of `reloads`.
    pub reloads_ok: Counter,
    pub reloads_rejected: Counter,
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
    /// 1 while engine inputs are being recorded (`record-inputs`).
    pub recording: Gauge,
    /// Recording write errors (the first one stops recording).
    pub record_errors: Counter,
    /// CSTA requests allowed in flight now (`max-outstanding`, halved under overload).
    pub window_limit: Gauge,
    /// Per link: 1 while its Connector reports system status `partiallyDisabled`.
    partially_disabled: Family<[(&'static str, String); 1], Gauge>,
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
    /// The metrics with a counter ready for every CSTA root, request and event name.
    fn new() -> Inner {
        let csta = || ByName::new(ctid_csta::Message::ROOTS.iter().copied());
        let clients_dropped = Family::default();
        let reloads = Family::default();
        Inner {
            csta_in: csta(),
            csta_out: csta(),
            events_out: ByName::new(ctid_protocol::EventName::ALL.iter().map(|e| e.as_str())),
            requests: ByName::new(ctid_protocol::RequestName::ALL.iter().map(|r| r.as_str())),
            clients_dropped_slow: clients_dropped.get_or_create_owned(&[("reason", "slow")]),
            clients_dropped_protocol: clients_dropped
                .get_or_create_owned(&[("reason", "protocol")]),
            clients_dropped,
            reloads_ok: reloads.get_or_create_owned(&[("result", "ok")]),
            reloads_rejected: reloads.get_or_create_owned(&[("result", "rejected")]),
            reloads,
            ..Inner::default()
        }
    }

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

    /// A registry of every metric, in the order `/metrics` lists them. Names are given without
    /// the `_total` of counters and the `_seconds` of histograms: the encoder adds them.
    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "ctid_link_up",
            "1 when the CSTA link is operational",
            self.link_up.clone(),
        );
        r.register(
            "ctid_link_reconnects",
            "CSTA link connection attempts after the first",
            self.reconnects.clone(),
        );
        r.register(
            "ctid_csta_bad_frames",
            "malformed or skipped CSTA frames",
            self.bad_frames.clone(),
        );
        r.register(
            "ctid_export_connected",
            "1 while the event export publishes to NATS",
            when_on(&self.export_enabled, self.export_connected.clone()),
        );
        r.register(
            "ctid_export_lag",
            "events queued for NATS and not yet acknowledged",
            when_on(&self.export_enabled, self.export_lag.clone()),
        );
        r.register(
            "ctid_export_buffered_bytes",
            "bytes of the events queued for NATS and not yet acknowledged",
            when_on(&self.export_enabled, self.export_buffered_bytes.clone()),
        );
        r.register(
            "ctid_export_published",
            "events published to NATS (again after a failure too)",
            when_on(&self.export_enabled, self.export_published.clone()),
        );
        r.register(
            "ctid_export_acked",
            "events acknowledged by JetStream",
            when_on(&self.export_enabled, self.export_acked.clone()),
        );
        r.register(
            "ctid_export_dropped",
            "events dropped because max-buffer-bytes was full",
            when_on(&self.export_enabled, self.export_dropped.clone()),
        );
        for (name, help, g) in [
            (
                "ctid_ha_role",
                "hot standby role: 1 backup, 2 taking over, 3 primary",
                &self.ha_role,
            ),
            (
                "ctid_ha_term",
                "the lease term this node last held or saw",
                &self.ha_term,
            ),
            (
                "ctid_ha_applied_seq",
                "last input-stream sequence applied by this node",
                &self.ha_applied_seq,
            ),
            (
                "ctid_ha_lag",
                "input-stream messages not yet applied by this node",
                &self.ha_lag,
            ),
            (
                "ctid_ha_ready",
                "1 when this backup has applied the stream to its end",
                &self.ha_ready,
            ),
        ] {
            r.register(name, help, when_on(&self.ha_enabled, g.clone()));
        }
        for (name, help, c) in [
            (
                "ctid_ha_appends",
                "input batches appended to the stream",
                &self.ha_appends,
            ),
            (
                "ctid_ha_append_errors",
                "appends that failed and were retried or ended the primary's term",
                &self.ha_append_errors,
            ),
            (
                "ctid_ha_takeovers",
                "times this node became primary",
                &self.ha_takeovers,
            ),
            (
                "ctid_ha_stepdowns",
                "times this node stopped being primary",
                &self.ha_stepdowns,
            ),
            (
                "ctid_ha_snapshots",
                "engine snapshots this node stored (a backup; the primary only when no backup does)",
                &self.ha_snapshots,
            ),
            (
                "ctid_ha_snapshot_errors",
                "engine snapshots that could not be stored or loaded",
                &self.ha_snapshot_errors,
            ),
        ] {
            r.register(name, help, when_on(&self.ha_enabled, c.clone()));
        }
        r.register(
            "ctid_sessions_detached",
            "client sessions whose connection went, kept for a resume",
            self.sessions_detached.clone(),
        );
        for (name, help, c) in [
            (
                "ctid_sessions_resumed",
                "client sessions resumed by a new connection",
                &self.sessions_resumed,
            ),
            (
                "ctid_sessions_expired",
                "detached client sessions ended because resume-window passed",
                &self.sessions_expired,
            ),
            (
                "ctid_sessions_overflowed",
                "detached client sessions ended because resume-buffer-bytes overflowed",
                &self.sessions_overflowed,
            ),
            (
                "ctid_sessions_resume_refused",
                "RequestResumeSession answered with EventError",
                &self.sessions_refused,
            ),
            (
                "ctid_events_replayed",
                "client events sent again on a session resume",
                &self.events_replayed,
            ),
            (
                "ctid_csta_unmatched_answers",
                "CSTA answers matching no request",
                &self.unmatched_answers,
            ),
            (
                "ctid_csta_duplicate_private_events",
                "hot-desking PrivateEvents that changed nothing",
                &self.duplicate_private_events,
            ),
            (
                "ctid_csta_unknown_cross_ref",
                "CSTA events for a monitorCrossRefID ctid does not hold (dropped)",
                &self.unknown_cross_ref,
            ),
            (
                "ctid_csta_events_without_call_id",
                "CSTA call events without a callID (dropped)",
                &self.events_without_call_id,
            ),
            (
                "ctid_csta_unknown_messages",
                "CSTA messages with an unknown root",
                &self.unknown_messages,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        for (name, help, g) in [
            (
                "ctid_monitored_dns",
                "DNs monitored at the switch",
                &self.monitored_dns,
            ),
            (
                "ctid_registered_dns",
                "DNs known (configured and unconfigured)",
                &self.registered_dns,
            ),
            ("ctid_clients", "connected clients", &self.clients),
            (
                "ctid_csta_outstanding",
                "CSTA requests awaiting an answer",
                &self.outstanding,
            ),
            (
                "ctid_csta_window_limit",
                "CSTA requests allowed in flight now (max-outstanding, halved while the Connector reports overloadReached)",
                &self.window_limit,
            ),
        ] {
            r.register(name, help, g.clone());
        }
        r.register(
            "ctid_rejected_requests",
            "client requests answered with EventError",
            self.rejected_requests.clone(),
        );
        r.register(
            "ctid_client_queue_high_water",
            "largest client send queue seen",
            self.queue_high_water.clone(),
        );
        r.register(
            "ctid_recording",
            "1 while engine inputs are recorded (record-inputs)",
            self.recording.clone(),
        );
        r.register(
            "ctid_record_errors",
            "recording write errors (the first stops recording)",
            self.record_errors.clone(),
        );
        r.register(
            "ctid_link_partially_disabled",
            "1 while the link's Connector reports system status partiallyDisabled",
            Listed(self.partially_disabled.clone()),
        );
        r.register(
            "ctid_clients_dropped",
            "clients disconnected by ctid",
            self.clients_dropped.clone(),
        );
        r.register(
            "ctid_config_reloads",
            "configuration reloads (SIGHUP, POST /admin/reload)",
            self.reloads.clone(),
        );
        r.register(
            "ctid_csta_messages_in",
            "CSTA messages received, by root",
            self.csta_in.clone(),
        );
        r.register(
            "ctid_csta_messages_out",
            "CSTA messages sent, by root",
            self.csta_out.clone(),
        );
        r.register(
            "ctid_events_sent",
            "client events sent (copies), by name",
            self.events_out.clone(),
        );
        r.register(
            "ctid_client_requests",
            "client requests received, by name",
            self.requests.clone(),
        );
        r.register(
            "ctid_client_request_errors",
            "client requests answered with EventError, by request and ErrorCode",
            Listed(self.request_errors.clone()),
        );
        // The CSTA counters split by message kind (requests, responses, errors, events).
        r.register(
            "ctid_csta_requests",
            "CSTA requests sent to the Connector, by root",
            self.csta_out.of_kind(CstaKind::Request),
        );
        r.register(
            "ctid_csta_responses",
            "positive CSTA answers received, by root",
            self.csta_in.of_kind(CstaKind::Response),
        );
        r.register(
            "ctid_csta_errors",
            "negative CSTA answers received (CSTAErrorCode, NegResponses), by root",
            self.csta_in.of_kind(CstaKind::Error),
        );
        r.register(
            "ctid_csta_events",
            "CSTA events received, by root",
            self.csta_in.of_kind(CstaKind::Event),
        );
        r.register_with_unit(
            "ctid_request_duration",
            "client request received by the core until its answer is queued to the client",
            Unit::Seconds,
            self.request_latency.clone(),
        );
        r.register_with_unit(
            "ctid_switch_to_client",
            "CSTA event received by the core until each client event it causes is written to the WebSocket",
            Unit::Seconds,
            self.switch_to_client_latency.clone(),
        );
        r.register_with_unit(
            "ctid_ha_append",
            "an input batch's append to the hot-standby stream until JetStream acknowledges it",
            Unit::Seconds,
            when_on(&self.ha_enabled, self.ha_append_latency.clone()),
        );
        r
    }
}

/// Shared handle: the metrics and the registry `/metrics` encodes.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let inner = Inner::new();
        let registry = inner.registry();
        Metrics {
            inner: Arc::new(inner),
            registry: Arc::new(registry),
        }
    }
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Metrics {
    /// Link `name`'s Connector reports `partiallyDisabled` (or no longer).
    pub fn set_partially_disabled(&self, name: &str, on: bool) {
        let family = &self.inner.partially_disabled;
        // Every status back to normal says "no longer": nothing to do (nor allocate) when no
        // link ever reported it.
        if !on && EncodeMetric::is_empty(family) {
            return;
        }
        let key = [("link", name.to_string())];
        match family.get(&key) {
            Some(g) => g.set(on as i64),
            None if on => family.get_or_create(&key).set(1),
            None => {}
        }
    }
    /// The `ctid_link_partially_disabled` value of link `name` (0 when never set).
    pub fn partially_disabled(&self, name: &str) -> i64 {
        self.inner
            .partially_disabled
            .get(&[("link", name.to_string())])
            .map_or(0, |g| g.get())
    }
    pub fn link_up(&self, up: bool) {
        self.inner.link_up.set(up as i64);
    }
    pub fn csta_in(&self, name: &str) {
        self.inner.csta_in.add(name, 1);
    }
    pub fn csta_out(&self, name: &str) {
        self.inner.csta_out.add(name, 1);
    }
    pub fn event_out(&self, name: &str, n: u64) {
        self.inner.events_out.add(name, n);
    }
    pub fn request_in(&self, name: &str) {
        self.inner.requests.add(name, 1);
    }
    pub fn request_error(&self, name: &str, code: u32) {
        let request = match self.inner.requests.known(name) {
            Some((n, _)) => Cow::Borrowed(*n),
            None => Cow::Owned(name.to_string()),
        };
        self.inner
            .request_errors
            .get_or_create(&RequestErrorLabels { request, code })
            .inc();
    }
    /// Every metric in the Prometheus text format (version 0.0.4, [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing to a String does not fail, nor does encoding these metrics.
        let _ = prometheus_text::encode(&mut s, &self.registry);
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
        let mut r = Registry::default();
        r.register_with_unit("x", "help", Unit::Seconds, h.clone());
        let mut s = String::new();
        prometheus_text::encode(&mut s, &r).unwrap();
        assert!(s.contains("# TYPE x_seconds histogram\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"0.00025\"} 1\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"0.0005\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"1\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"5\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_seconds_count 3\n"), "{s}");
        let sum: f64 = s
            .lines()
            .find_map(|l| l.strip_prefix("x_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 60.00035).abs() < 1e-9, "{s}");
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

    /// The value of the sample `series` (`name{labels}`).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn by_name_counters_appear_once_counted() {
        let m = Metrics::default();
        m.csta_in("DeliveredEvent");
        m.csta_in("DeliveredEvent");
        m.csta_in("MonitorStartResponse");
        m.csta_in("CSTAErrorCode");
        // A root outside the codec's catalogue is counted too.
        m.csta_in("SomeVendorEvent");
        m.csta_out("MonitorStart");
        m.event_out("EventDialing", 3);
        m.request_in("RequestMakeCall");
        m.request_error("RequestMakeCall", 41);
        m.request_error("RequestMakeCall", 41);
        assert_eq!(m.csta_in.get("DeliveredEvent"), 2);
        assert_eq!(m.csta_in.get("SomeVendorEvent"), 1);
        let s = m.render();
        for (series, v) in [
            ("ctid_csta_messages_in_total{type=\"DeliveredEvent\"}", 2.0),
            ("ctid_csta_messages_in_total{type=\"SomeVendorEvent\"}", 1.0),
            ("ctid_csta_messages_out_total{type=\"MonitorStart\"}", 1.0),
            ("ctid_csta_events_total{type=\"DeliveredEvent\"}", 2.0),
            ("ctid_csta_events_total{type=\"SomeVendorEvent\"}", 1.0),
            (
                "ctid_csta_responses_total{type=\"MonitorStartResponse\"}",
                1.0,
            ),
            ("ctid_csta_errors_total{type=\"CSTAErrorCode\"}", 1.0),
            ("ctid_csta_requests_total{type=\"MonitorStart\"}", 1.0),
            ("ctid_events_sent_total{type=\"EventDialing\"}", 3.0),
            ("ctid_client_requests_total{type=\"RequestMakeCall\"}", 1.0),
            (
                "ctid_client_request_errors_total{type=\"RequestMakeCall\",code=\"41\"}",
                2.0,
            ),
        ] {
            assert_eq!(sample(&s, series), Some(v), "{series} in\n{s}");
        }
        // Names never counted have no series; the kinds do not mix.
        assert!(!s.contains("type=\"EventRinging\""), "{s}");
        assert!(
            !s.contains("ctid_csta_events_total{type=\"MonitorStartResponse\"}"),
            "{s}"
        );
    }

    #[test]
    fn the_text_lists_every_family_and_the_optional_ones_when_on() {
        let m = Metrics::default();
        let s = m.render();
        for family in [
            "ctid_link_up gauge",
            "ctid_link_reconnects_total counter",
            "ctid_csta_requests_total counter",
            "ctid_client_request_errors_total counter",
            "ctid_link_partially_disabled gauge",
            "ctid_request_duration_seconds histogram",
            "ctid_switch_to_client_seconds histogram",
        ] {
            assert!(
                s.contains(&format!("# TYPE {family}\n")),
                "{family} in\n{s}"
            );
        }
        assert!(
            s.contains("ctid_clients_dropped_total{reason=\"slow\"} 0\n"),
            "{s}"
        );
        assert!(
            s.contains("ctid_config_reloads_total{result=\"rejected\"} 0\n"),
            "{s}"
        );
        assert!(!s.contains("ctid_export_"), "{s}");
        assert!(!s.contains("ctid_ha_"), "{s}");
        m.clients_dropped_slow.inc();
        m.reloads_ok.inc();
        m.export_enabled.set(1);
        m.export_published.add(5);
        m.ha_enabled.set(1);
        m.ha_role.set(3);
        m.ha_append_latency.observe(Duration::from_millis(2));
        let s = m.render();
        assert_eq!(
            sample(&s, "ctid_clients_dropped_total{reason=\"slow\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&s, "ctid_config_reloads_total{result=\"ok\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&s, "ctid_export_published_total"), Some(5.0));
        assert_eq!(sample(&s, "ctid_export_lag"), Some(0.0));
        assert_eq!(sample(&s, "ctid_ha_role"), Some(3.0));
        assert_eq!(
            sample(&s, "ctid_ha_append_seconds_bucket{le=\"0.0025\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn partially_disabled_is_per_link() {
        let m = Metrics::default();
        m.set_partially_disabled("a", false);
        assert!(!m.render().contains("ctid_link_partially_disabled{"));
        m.set_partially_disabled("a", true);
        assert_eq!(m.partially_disabled("a"), 1);
        assert_eq!(m.partially_disabled("b"), 0);
        m.set_partially_disabled("a", false);
        let s = m.render();
        assert_eq!(
            sample(&s, "ctid_link_partially_disabled{link=\"a\"}"),
            Some(0.0)
        );
    }
}
