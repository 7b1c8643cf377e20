//! The replicated input log: one JetStream stream per cluster holding every engine input batch
//! with its time, in the recording's line format ([`crate::record`]): one JSON object per line,
//! `{"t":[mono_ms,unix_micros],"in":…}`. The very first message of a cluster starts with a
//! genesis line `{"genesis":{"config":…,"lineage":"…"}}`: the engine configuration every node
//! builds its engine from, and the export's lineage (docs/operations.md §13).
//!
//! Appends carry `Nats-Expected-Last-Sequence`: an append made by a node that has not seen the
//! stream's last message fails (an old primary is fenced) and `Nats-Msg-Id` (a retry after a lost
//! answer is recognised as a duplicate). A batch longer than [`PART_BYTES`] goes as several
//! messages with the header `Ctid-Part: i/n`; a follower applies it when it has all parts.
//!
//! Beside the stream, an object store bucket `ctid-ha-<cluster>-snap` keeps the latest engine
//! snapshot as one object `latest`: `{"seq":…,"lineage":…,"t":[…],"engine":{…}}`, the state
//! after stream message `seq`. A ready backup writes one every `snapshot-every` messages (the
//! primary only when nobody has for four intervals) and then trims the stream below the previous
//! one (one interval is kept for a backup that lags); a node that joins loads it and follows
//! from `seq + 1`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::HaConfig;
use crate::core::CoreMsg;

/// A follower that gets nothing for this long while the stream has messages for it starts a
/// new consumer.
const STALLED: Duration = Duration::from_secs(1);

/// Largest message body appended (NATS' default `max_payload` is 1 MiB).
pub const PART_BYTES: usize = 512 * 1024;

/// Why an append did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The stream holds messages this node has not seen: another node appended (fenced).
    Fenced,
    /// No answer, or an error: the outcome is unknown (retrying is safe: same message ID).
    Unavailable(String),
}

/// One replicated message as the follower hands it to the core.
#[derive(Debug)]
pub struct Replicated {
    pub seq: u64,
    /// `Some((i, n))` for part i of n.
    pub part: Option<(u32, u32)>,
    pub payload: Bytes,
}

/// The cluster's input stream and its snapshot store.
#[derive(Clone)]
pub struct Log {
    js: jetstream::Context,
    stream: String,
    subject: String,
    snaps: jetstream::object_store::ObjectStore,
}

/// The snapshot object's name in the bucket.
const SNAPSHOT: &str = "latest";

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("stream", &self.stream).finish()
    }
}

impl Log {
    /// Use the stream, creating it when missing.
    pub async fn open(js: jetstream::Context, cfg: &HaConfig) -> Result<Log, String> {
        let name = cfg.stream();
        match js.get_stream(&name).await {
            Ok(_) => info!(stream = %name, "hot standby: using the input stream"),
            Err(_) => {
                let sc = stream::Config {
                    name: name.clone(),
                    subjects: vec![cfg.subject()],
                    max_bytes: cfg.max_bytes,
                    storage: stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                };
                match js.create_stream(sc).await {
                    Ok(_) => {
                        info!(stream = %name, replicas = cfg.replicas, max_bytes = cfg.max_bytes, "hot standby: created the input stream")
                    }
                    // Another node created it meanwhile.
                    Err(e) => {
                        js.get_stream(&name)
                            .await
                            .map_err(|_| format!("cannot create stream {name}: {e}"))?;
                    }
                }
            }
        }
        let bucket = cfg.snapshot_bucket();
        let snaps = match js.get_object_store(&bucket).await {
            Ok(s) => s,
            Err(_) => {
                let sc = jetstream::object_store::Config {
                    bucket: bucket.clone(),
                    num_replicas: cfg.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                match js.create_object_store(sc).await {
                    Ok(s) => s,
                    Err(e) => js
                        .get_object_store(&bucket)
                        .await
                        .map_err(|_| format!("cannot create snapshot bucket {bucket}: {e}"))?,
                }
            }
        };
        Ok(Log {
            js,
            stream: name,
            subject: cfg.subject(),
            snaps,
        })
    }

    /// Store a snapshot taken after message `seq` (replacing the one before), then trim the
    /// stream below `trim_below` (0: nothing trimmed). Skipped when the stored one is newer.
    pub async fn save_snapshot(
        &self,
        seq: u64,
        body: Vec<u8>,
        trim_below: u64,
    ) -> Result<(), String> {
        if let Ok(info) = self.snaps.info(SNAPSHOT).await {
            let stored = info.metadata.get("seq").and_then(|s| s.parse::<u64>().ok());
            if stored.is_some_and(|s| s >= seq) {
                return Ok(());
            }
        }
        let meta = jetstream::object_store::ObjectMetadata {
            name: SNAPSHOT.to_string(),
            description: Some(format!("ctid engine snapshot after input message {seq}")),
            metadata: [("seq".to_string(), seq.to_string())].into_iter().collect(),
            ..Default::default()
        };
        self.snaps
            .put(meta, &mut body.as_slice())
            .await
            .map_err(|e| format!("storing the snapshot: {e}"))?;
        if trim_below > 1 {
            let s = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| e.to_string())?;
            s.purge()
                .sequence(trim_below)
                .await
                .map_err(|e| format!("trimming the stream below {trim_below}: {e}"))?;
        }
        Ok(())
    }

    /// The latest snapshot: (seq, body), or `None` when there is none yet.
    pub async fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, String> {
        let mut obj = match self.snaps.get(SNAPSHOT).await {
            Ok(o) => o,
            Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(format!("reading the snapshot: {e}")),
        };
        let seq = obj
            .info
            .metadata
            .get("seq")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the snapshot object has no seq")?;
        let mut body = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut body)
            .await
            .map_err(|e| format!("reading the snapshot: {e}"))?;
        Ok(Some((seq, body)))
    }

    /// Append `payload` after sequence `last` (the last this node applied); the sequence of the
    /// last message written. `id` names the batch for duplicate detection.
    pub async fn append(
        &self,
        last: u64,
        id: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<u64, AppendError> {
        let parts: Vec<&[u8]> = if payload.len() <= PART_BYTES {
            vec![payload]
        } else {
            payload.chunks(PART_BYTES).collect()
        };
        let n = parts.len();
        let mut seq = last;
        for (i, p) in parts.into_iter().enumerate() {
            let mut m = PublishMessage::build()
                .payload(Bytes::copy_from_slice(p))
                .message_id(if n == 1 {
                    id.to_string()
                } else {
                    format!("{id}/{i}")
                })
                .expected_last_sequence(seq);
            if n > 1 {
                m = m.header("Ctid-Part", format!("{}/{n}", i + 1).as_str());
            }
            let ack = tokio::time::timeout(timeout, async {
                self.js
                    .send_publish(self.subject.clone(), m)
                    .await
                    .map_err(|e| AppendError::Unavailable(e.to_string()))?
                    .await
                    .map_err(|e| match e.kind() {
                        jetstream::context::PublishErrorKind::WrongLastSequence => {
                            AppendError::Fenced
                        }
                        _ => AppendError::Unavailable(e.to_string()),
                    })
            })
            .await
            .map_err(|_| AppendError::Unavailable("no acknowledgement in time".into()))??;
            seq = ack.sequence;
        }
        Ok(seq)
    }

    /// The stream's last sequence (0 when empty) and its first.
    pub async fn bounds(&self) -> Result<(u64, u64), String> {
        let mut s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let info = s.info().await.map_err(|e| e.to_string())?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// One message by sequence.
    pub async fn get(&self, seq: u64) -> Result<Replicated, String> {
        let s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let m = s.get_raw_message(seq).await.map_err(|e| e.to_string())?;
        Ok(Replicated {
            seq: m.sequence,
            part: part_of(&m.headers),
            payload: m.payload,
        })
    }

    /// Follow the stream from `from` on: every message to the core as
    /// [`CoreMsg::Replicated`], and the stream's last sequence to `last` now and then. Runs
    /// until aborted; survives NATS going away (starts again after the last message sent).
    pub async fn follow(
        self,
        from: u64,
        core: mpsc::Sender<CoreMsg>,
        last: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        let mut next = from.max(1);
        let mut complained = false;
        loop {
            match self.follow_once(&mut next, &core, &last).await {
                Ok(()) => return, // the core is gone
                Err(e) => {
                    if !complained {
                        warn!(error = %e, from = next, "hot standby: cannot read the input stream; retrying");
                        complained = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn follow_once(
        &self,
        next: &mut u64,
        core: &mpsc::Sender<CoreMsg>,
        last: &std::sync::atomic::AtomicU64,
    ) -> Result<(), String> {
        let s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        // Readiness needs the stream's end: read it before the first message.
        let (_, l) = self.bounds().await?;
        last.store(l.max(*next - 1), std::sync::atomic::Ordering::Relaxed);
        let c = s
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: *next,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut msgs = c.messages().await.map_err(|e| e.to_string())?;
        let mut every = tokio::time::interval(Duration::from_millis(250));
        // A consumer whose NATS server went away can sit silent for long before the client
        // notices: when the stream has messages for it and none came for a while, start over.
        let mut progress = tokio::time::Instant::now();
        loop {
            tokio::select! {
                m = msgs.next() => {
                    let Some(m) = m else { return Err("the consumer ended".into()) };
                    let m = m.map_err(|e| e.to_string())?;
                    let info = m.info().map_err(|e| e.to_string())?;
                    let seq = info.stream_sequence;
                    let r = Replicated {
                        seq,
                        part: m.headers.as_ref().and_then(part_of),
                        payload: m.payload.clone(),
                    };
                    last.fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
                    *next = seq + 1;
                    progress = tokio::time::Instant::now();
                    if core.send(CoreMsg::Replicated(r)).await.is_err() {
                        return Ok(());
                    }
                }
                _ = every.tick() => {
                    if let Ok((_, l)) = self.bounds().await {
                        last.store(l, std::sync::atomic::Ordering::Relaxed);
                        if l < *next {
                            progress = tokio::time::Instant::now();
                        } else if progress.elapsed() > STALLED {
                            return Err(format!("no message for {STALLED:?} while the stream has {l} and this node needs {}: following again", *next));
                        }
                    }
                }
            }
        }
    }
}

/// `Ctid-Part: i/n` of a multi-part batch.
fn part_of(h: &async_nats::HeaderMap) -> Option<(u32, u32)> {
    let v = h.get("Ctid-Part")?.as_str();
    let (i, n) = v.split_once('/')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}
