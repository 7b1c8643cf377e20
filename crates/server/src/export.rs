//! Event export to NATS JetStream (docs/operations.md "Event export"): every event of every
//! monitored DN and every link event — the engine addresses them to [`ctid_engine::io::EXPORT`] —
//! published once, the same JSON a client gets, on `<prefix>.events.<ThisDN>.<EventName>` with
//! `Nats-Msg-Id` = `<lineage>:<EventSequenceNumber>`.
//!
//! Publishing never blocks the core: [`ExportHandle::offer`] only queues (bounded by
//! `max-buffer-bytes`; beyond it an event is dropped, counted and logged, never silently). The
//! export task publishes in order with a bounded number of acks awaited at once; while NATS is
//! unreachable or refuses, it holds what it has and publishes it, in order, when NATS is back (a
//! message that may have been stored before the failure is published again: JetStream drops it
//! by its `Nats-Msg-Id`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::IntoFuture;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use ctid_protocol::Event;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Acks awaited at once.
const MAX_IN_FLIGHT: usize = 256;

/// `[export.nats]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://…`).
    pub urls: Vec<String>,
    pub stream: String,
    pub subject_prefix: String,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub creds_file: Option<PathBuf>,
    /// PEM file of the CA that signs the server's certificate (implies TLS).
    pub tls_ca_file: Option<PathBuf>,
    pub require_tls: bool,
    /// Events held while NATS cannot take them, bytes of their JSON.
    pub max_buffer_bytes: usize,
    /// Limits of the stream ctid creates when it is missing.
    pub max_age: Duration,
    pub max_bytes: i64,
    /// How often an unreachable NATS is tried (and said so in the log).
    pub retry_interval: Duration,
}

impl NatsConfig {
    /// The defaults for these URLs (`ctid --nats URL`).
    pub fn with_urls(urls: Vec<String>) -> Self {
        NatsConfig {
            urls,
            stream: "CTID".into(),
            subject_prefix: "ctid".into(),
            token: None,
            user: None,
            password: None,
            creds_file: None,
            tls_ca_file: None,
            require_tls: false,
            max_buffer_bytes: 64 << 20,
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
            retry_interval: Duration::from_secs(5),
        }
    }

    /// The subjects of the stream: `<prefix>.events.>`.
    pub fn stream_subject(&self) -> String {
        format!("{}.events.>", self.subject_prefix)
    }
}

/// A DN as one subject token: `.`, `*`, `>` and `%` percent-encoded (a DN may hold `.` and `*`).
pub fn subject_token(dn: &str) -> String {
    let mut s = String::with_capacity(dn.len());
    for c in dn.chars() {
        match c {
            '.' => s.push_str("%2E"),
            '*' => s.push_str("%2A"),
            '>' => s.push_str("%3E"),
            '%' => s.push_str("%25"),
            c if c.is_whitespace() => s.push('_'),
            c => s.push(c),
        }
    }
    s
}

/// The subject of an event: `<prefix>.events.<ThisDN or _>.<EventName>`.
pub fn subject_of(prefix: &str, ev: &Event) -> String {
    let dn = ev
        .this_dn
        .as_deref()
        .map(subject_token)
        .unwrap_or_else(|| "_".into());
    format!("{prefix}.events.{dn}.{}", ev.name.as_str())
}

struct Item {
    subject: String,
    msg_id: String,
    payload: Bytes,
}

/// Drops during one outage, for the log line that ends it.
#[derive(Debug, Clone, Copy)]
struct Outage {
    first: u64,
    last: u64,
    count: u64,
}

/// The core's side: queue an event for export.
pub struct ExportHandle {
    tx: mpsc::UnboundedSender<Item>,
    prefix: String,
    lineage: String,
    max: usize,
    metrics: Metrics,
    dropping: Option<Outage>,
}

impl ExportHandle {
    /// Queue `ev` (its JSON `text`) for publishing, or drop it (counted, logged) when the
    /// buffer is full. Never blocks.
    pub fn offer(&mut self, ev: &Event, text: &str) {
        let seq = ev.event_sequence_number;
        let held = self.metrics.export_buffered_bytes.get().max(0) as usize;
        if held + text.len() > self.max {
            self.metrics.export_dropped.inc();
            match &mut self.dropping {
                Some(o) => {
                    o.last = seq;
                    o.count += 1;
                }
                None => {
                    warn!(seq, max_buffer_bytes = self.max, "event export: buffer full (NATS is not taking events); dropping events from EventSequenceNumber {seq} on");
                    self.dropping = Some(Outage {
                        first: seq,
                        last: seq,
                        count: 1,
                    });
                }
            }
            return;
        }
        if let Some(o) = self.dropping.take() {
            warn!(
                dropped = o.count,
                first = o.first,
                last = o.last,
                "event export: {} events were dropped (EventSequenceNumber {} to {}); publishing again",
                o.count,
                o.first,
                o.last
            );
        }
        self.metrics.export_buffered_bytes.add(text.len() as i64);
        self.metrics.export_lag.add(1);
        let item = Item {
            subject: subject_of(&self.prefix, ev),
            msg_id: format!("{}:{seq}", self.lineage),
            payload: Bytes::copy_from_slice(text.as_bytes()),
        };
        if self.tx.send(item).is_err() {
            // The export task ended (only at shutdown): count it, nothing else to do.
            self.metrics.export_dropped.inc();
        }
    }
}

/// Start the export task; `lineage` is fixed for the life of the engine's state.
pub fn start(cfg: NatsConfig, lineage: String, metrics: Metrics) -> ExportHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    metrics.export_enabled.set(1);
    let handle = ExportHandle {
        tx,
        prefix: cfg.subject_prefix.clone(),
        lineage,
        max: cfg.max_buffer_bytes,
        metrics: metrics.clone(),
        dropping: None,
    };
    tokio::spawn(run(cfg, rx, metrics));
    handle
}

/// A connection to NATS that is never re-established behind ctid's back: a client that
/// reconnected by itself would first send what was queued while it was away, ahead of the
/// events ctid publishes again from the first unacknowledged one, and the stream would lose its
/// order. `lost` wakes when the connection goes.
async fn connect(
    cfg: &NatsConfig,
    lost: Arc<tokio::sync::Notify>,
) -> Result<async_nats::Client, String> {
    let o = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(0)
        .event_callback(move |e| {
            let lost = lost.clone();
            async move {
                if matches!(
                    e,
                    async_nats::Event::Disconnected | async_nats::Event::Closed
                ) {
                    lost.notify_one();
                }
            }
        })
        .name("ctid");
    connect_with(o, cfg).await
}

/// Connect with `o` plus `cfg`'s credentials and TLS to `cfg`'s servers (the export's and the
/// hot-standby pair's connections).
pub async fn connect_with(
    mut o: async_nats::ConnectOptions,
    cfg: &NatsConfig,
) -> Result<async_nats::Client, String> {
    if let Some(t) = &cfg.token {
        o = o.token(t.clone());
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(f) = &cfg.creds_file {
        o = o
            .credentials_file(f)
            .await
            .map_err(|e| format!("creds-file {}: {e}", f.display()))?;
    }
    if let Some(ca) = &cfg.tls_ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if cfg.require_tls {
        o = o.require_tls(true);
    }
    // Each URL on its own (a comma-joined string is taken as one URL).
    o.connect(cfg.urls.as_slice())
        .await
        .map_err(|e| e.to_string())
}

async fn ensure_stream(js: &jetstream::Context, cfg: &NatsConfig) -> Result<(), String> {
    match js.get_stream(&cfg.stream).await {
        Ok(_) => {
            info!(stream = %cfg.stream, "event export: using the existing JetStream stream");
            Ok(())
        }
        Err(_) => {
            let sc = stream::Config {
                name: cfg.stream.clone(),
                subjects: vec![cfg.stream_subject()],
                max_age: cfg.max_age,
                max_bytes: cfg.max_bytes,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            js.create_stream(sc)
                .await
                .map_err(|e| format!("cannot create stream {}: {e}", cfg.stream))?;
            info!(stream = %cfg.stream, subjects = %cfg.stream_subject(), max_age_s = cfg.max_age.as_secs(), max_bytes = cfg.max_bytes, "event export: created the JetStream stream");
            Ok(())
        }
    }
}

/// Log at most once per `retry_interval` while something keeps failing.
struct Complaint {
    last: Option<Instant>,
    every: Duration,
}

impl Complaint {
    fn say(&mut self, metrics: &Metrics, what: &str) {
        metrics.set_export_error(what);
        if self.last.is_none_or(|t| t.elapsed() >= self.every) {
            warn!(error = %what, "event export: NATS unavailable; events are held (max-buffer-bytes) and published when it is back");
            self.last = Some(Instant::now());
        }
    }
}

async fn run(cfg: NatsConfig, mut rx: mpsc::UnboundedReceiver<Item>, metrics: Metrics) {
    let mut queue: VecDeque<Item> = VecDeque::new();
    let mut complaint = Complaint {
        last: None,
        every: cfg.retry_interval,
    };
    let release = |metrics: &Metrics, item: &Item| {
        metrics
            .export_buffered_bytes
            .add(-(item.payload.len() as i64));
        metrics.export_lag.add(-1);
    };
    loop {
        // Connect (holding what arrives meanwhile): a new client each time.
        let lost = Arc::new(tokio::sync::Notify::new());
        let client = loop {
            match connect(&cfg, lost.clone()).await {
                Ok(c) => break c,
                Err(e) => {
                    metrics.export_connected.set(0);
                    complaint.say(&metrics, &e);
                    if !hold(&mut rx, &mut queue, cfg.retry_interval).await {
                        return;
                    }
                }
            }
        };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        if let Err(e) = ensure_stream(&js, &cfg).await {
            complaint.say(&metrics, &e);
            if !hold(&mut rx, &mut queue, cfg.retry_interval).await {
                return;
            }
            continue;
        }
        info!(urls = %cfg.urls.join(","), stream = %cfg.stream, held = queue.len(), "event export: publishing to NATS");
        metrics.export_connected.set(1);
        metrics.set_export_error("");
        // Publish in order from the first unacknowledged event; on any failure, leave this
        // connection and start over on a new one.
        let mut sent = 0usize;
        let mut acks = FuturesOrdered::new();
        let failure = 'publish: loop {
            while sent < queue.len() && acks.len() < MAX_IN_FLIGHT {
                let it = &queue[sent];
                let p = PublishMessage::build()
                    .payload(it.payload.clone())
                    .message_id(it.msg_id.as_str());
                match js.send_publish(it.subject.clone(), p).await {
                    Ok(f) => {
                        acks.push_back(f.into_future());
                        sent += 1;
                        metrics.export_published.inc();
                    }
                    Err(e) => break 'publish e.to_string(),
                }
            }
            tokio::select! {
                _ = lost.notified() => break 'publish "connection to NATS lost".to_string(),
                item = rx.recv() => match item {
                    Some(i) => queue.push_back(i),
                    None => return,
                },
                Some(r) = acks.next(), if !acks.is_empty() => match r {
                    Ok(_) => {
                        if let Some(it) = queue.pop_front() {
                            release(&metrics, &it);
                        }
                        sent -= 1;
                        metrics.export_acked.inc();
                    }
                    Err(e) => break 'publish e.to_string(),
                },
            }
        };
        metrics.export_connected.set(0);
        complaint.say(&metrics, &failure);
        drop(acks);
        drop(js);
        drop(client);
        // A moment for NATS to come back, holding what arrives meanwhile.
        if !hold(&mut rx, &mut queue, Duration::from_millis(200)).await {
            return;
        }
    }
}

/// Wait `d`, queueing what arrives; false when the core has gone (shutdown).
async fn hold(
    rx: &mut mpsc::UnboundedReceiver<Item>,
    queue: &mut VecDeque<Item>,
    d: Duration,
) -> bool {
    let until = tokio::time::sleep(d);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => return true,
            item = rx.recv() => match item {
                Some(i) => queue.push_back(i),
                None => return false,
            },
        }
    }
}
