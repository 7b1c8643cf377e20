//! The CSTA request window: every request the engine asked the link to send, in one table, from
//! queued to answered or timed out. It hands out the wire's invoke IDs (from
//! [`ENGINE_INVOKE_IDS`]; the link session uses the rest of 0000–9998 for its own requests),
//! keeps at most `max-outstanding` in flight, and holds each one's deadline — the only timeout a
//! request has (`docs/architecture.md`, "The CSTA request window").

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;

use ctid_csta::{InvokeId, Message};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::io::{Output, Tag};

/// The invoke IDs the engine uses; the link session keeps 9000–9998 for its own requests
/// (session start, keepalive, timer resets, stopping stale monitors).
pub const ENGINE_INVOKE_IDS: RangeInclusive<u16> = 1..=8999;

/// A request's kind and, once sent, its invoke ID and deadline. A queued request's message
/// waits in the window's queue, not here: the table stays small however many are queued.
#[derive(Debug, Clone)]
struct Entry<K> {
    kind: K,
    /// `None` while queued.
    sent: Option<(InvokeId, u64)>,
}

/// Requests queued and in flight, each with a kind `K` saying what its answer is for.
///
/// A link-up queues a request or three per DN at once (MonitorStart, SnapshotDevice, the
/// hot-desk query: 150,000 at 50,000 DNs). Their messages wait in one ring, in sending order,
/// which gives its memory back as it drains; they were once kept in the tag-keyed table, whose
/// half-full nodes of 500-byte messages took ~1 KB per request and left the process ~6 KB per
/// DN bigger for good (`docs/performance.md`, "Memory at a link-up").
#[derive(Debug, Clone)]
pub struct RequestWindow<K> {
    entries: BTreeMap<Tag, Entry<K>>,
    /// The requests not sent yet, oldest first, with their messages.
    queue: VecDeque<(Tag, Message)>,
    by_invoke: BTreeMap<u16, Tag>,
    /// (deadline, tag) of every request in flight: the next deadline and the expired ones
    /// without a scan of the window (it can hold tens of thousands queued at a link-up).
    deadlines: BTreeSet<(u64, Tag)>,
    next_tag: Tag,
    next_invoke: u16,
}

impl<K> Default for RequestWindow<K> {
    fn default() -> Self {
        RequestWindow {
            entries: BTreeMap::new(),
            queue: VecDeque::new(),
            by_invoke: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_tag: 1,
            next_invoke: 0,
        }
    }
}

impl<K> RequestWindow<K> {
    /// Queue a request; it is sent by [`RequestWindow::pump`] when the window has room.
    pub fn push(&mut self, kind: K, message: Message) -> Tag {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.entries.insert(tag, Entry { kind, sent: None });
        self.queue.push_back((tag, message));
        tag
    }

    /// Requests sent and not answered.
    pub fn in_flight(&self) -> usize {
        self.by_invoke.len()
    }

    /// The kind of a queued or in-flight request.
    pub fn kind(&self, tag: Tag) -> Option<&K> {
        self.entries.get(&tag).map(|e| &e.kind)
    }

    /// The kind of every queued or in-flight request, by tag.
    pub fn kinds(&self) -> impl Iterator<Item = &K> {
        self.entries.values().map(|e| &e.kind)
    }

    /// The indexes agree with the entries (a restored snapshot's check): the queue holds the
    /// unsent entries in some order, each sent one has its invoke ID and deadline indexed, and
    /// tags and invoke IDs are not handed out twice.
    pub fn check(&self) -> Result<(), String> {
        let mut queued = 0;
        for (tag, e) in &self.entries {
            if *tag >= self.next_tag {
                return Err(format!(
                    "tag {tag} is not below the next tag {}",
                    self.next_tag
                ));
            }
            match e.sent {
                Some((id, deadline)) => {
                    if self.by_invoke.get(&id.get()) != Some(tag) {
                        return Err(format!("request {tag} sent as {id} is not indexed"));
                    }
                    if !self.deadlines.contains(&(deadline, *tag)) {
                        return Err(format!("request {tag} has no deadline indexed"));
                    }
                }
                None => queued += 1,
            }
        }
        let sent = self.entries.len() - queued;
        if self.by_invoke.len() != sent || self.deadlines.len() != sent {
            return Err(format!(
                "{sent} requests in flight, {} invoke IDs and {} deadlines indexed",
                self.by_invoke.len(),
                self.deadlines.len()
            ));
        }
        let unsent = self
            .queue
            .iter()
            .map(|(t, _)| t)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|t| self.entries.get(t).is_some_and(|e| e.sent.is_none()))
            .count();
        if self.queue.len() != queued || unsent != queued {
            return Err(format!(
                "{queued} requests queued, the queue holds {}",
                self.queue.len()
            ));
        }
        Ok(())
    }

    /// The kind of a queued or in-flight request, to change.
    pub fn kind_mut(&mut self, tag: Tag) -> Option<&mut K> {
        self.entries.get_mut(&tag).map(|e| &mut e.kind)
    }

    fn free_invoke(&mut self) -> Option<InvokeId> {
        let (lo, hi) = (*ENGINE_INVOKE_IDS.start(), *ENGINE_INVOKE_IDS.end());
        for _ in lo..=hi {
            self.next_invoke = if self.next_invoke >= hi || self.next_invoke < lo {
                lo
            } else {
                self.next_invoke + 1
            };
            if !self.by_invoke.contains_key(&self.next_invoke) {
                return InvokeId::new(self.next_invoke);
            }
        }
        None
    }

    /// Send queued requests while fewer than `limit` are in flight; each gets the deadline
    /// `now_ms + timeout_ms`.
    pub fn pump(&mut self, now_ms: u64, limit: usize, timeout_ms: u64, out: &mut Vec<Output>) {
        let limit = limit.clamp(1, ENGINE_INVOKE_IDS.len());
        while self.by_invoke.len() < limit {
            let Some((tag, message)) = self.queue.pop_front() else {
                break;
            };
            let Some(invoke_id) = self.free_invoke() else {
                self.queue.push_front((tag, message));
                break;
            };
            let Some(e) = self.entries.get_mut(&tag) else {
                continue;
            };
            e.sent = Some((invoke_id, now_ms + timeout_ms));
            self.by_invoke.insert(invoke_id.get(), tag);
            self.deadlines.insert((now_ms + timeout_ms, tag));
            out.push(Output::CstaRequest { invoke_id, message });
        }
        self.give_back();
    }

    /// The queue's memory follows its length: a ring that held a link-up's requests is shrunk
    /// as it drains (each shrink halves it at most, so the copies cost O(1) per request).
    fn give_back(&mut self) {
        const KEEP: usize = 64;
        let (len, cap) = (self.queue.len(), self.queue.capacity());
        if cap > KEEP && len < cap / 4 {
            self.queue.shrink_to((len * 2).max(KEEP));
        }
    }

    /// The request an answer with this invoke ID is for, taken out of the window; `None` for a
    /// late (timed out), duplicated or unknown answer.
    pub fn answer(&mut self, invoke_id: InvokeId) -> Option<(Tag, K)> {
        let tag = *self.by_invoke.get(&invoke_id.get())?;
        self.take(tag).map(|k| (tag, k))
    }

    /// Take a request out of the window (queued or in flight).
    pub fn take(&mut self, tag: Tag) -> Option<K> {
        let e = self.entries.remove(&tag)?;
        match e.sent {
            Some((id, deadline)) => {
                self.by_invoke.remove(&id.get());
                self.deadlines.remove(&(deadline, tag));
            }
            None => {
                self.queue.retain(|(t, _)| *t != tag);
                self.give_back();
            }
        }
        Some(e.kind)
    }

    /// Requests whose deadline has come, taken out of the window, oldest first.
    pub fn expired(&mut self, now_ms: u64) -> Vec<(Tag, K)> {
        let mut due: Vec<Tag> = self
            .deadlines
            .range(..=(now_ms, Tag::MAX))
            .map(|(_, t)| *t)
            .collect();
        due.sort_unstable();
        due.into_iter()
            .filter_map(|t| self.take(t).map(|k| (t, k)))
            .collect()
    }

    /// The earliest deadline of a request in flight.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Everything, taken out (the link is gone), oldest first.
    pub fn clear(&mut self) -> Vec<(Tag, K)> {
        self.queue = VecDeque::new();
        self.by_invoke.clear();
        self.deadlines.clear();
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(t, e)| (t, e.kind))
            .collect()
    }
}

// The snapshot form (`docs/architecture.md`, "Snapshots") is the table of every request with
// a queued one's message in its entry, the queue as tags, the indexes and the counters — as
// it was when the messages were kept in the table, so snapshots of either build load in the
// other.

#[derive(Serialize)]
struct EntryOut<'a, K> {
    kind: &'a K,
    #[serde(serialize_with = "crate::snapshot::with::opt_message::serialize")]
    message: Option<&'a Message>,
    #[serde(with = "crate::snapshot::with::sent")]
    sent: Option<(InvokeId, u64)>,
}

#[derive(Serialize)]
struct WindowOut<'a, K> {
    entries: BTreeMap<Tag, EntryOut<'a, K>>,
    queue: Vec<Tag>,
    by_invoke: &'a BTreeMap<u16, Tag>,
    deadlines: &'a BTreeSet<(u64, Tag)>,
    next_tag: Tag,
    next_invoke: u16,
}

#[derive(Deserialize)]
struct EntryIn<K> {
    kind: K,
    #[serde(with = "crate::snapshot::with::opt_message")]
    message: Option<Message>,
    #[serde(with = "crate::snapshot::with::sent")]
    sent: Option<(InvokeId, u64)>,
}

#[derive(Deserialize)]
struct WindowIn<K> {
    entries: BTreeMap<Tag, EntryIn<K>>,
    queue: VecDeque<Tag>,
    by_invoke: BTreeMap<u16, Tag>,
    deadlines: BTreeSet<(u64, Tag)>,
    next_tag: Tag,
    next_invoke: u16,
}

impl<K: Serialize> Serialize for RequestWindow<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let queued: BTreeMap<Tag, &Message> = self.queue.iter().map(|(t, m)| (*t, m)).collect();
        let entries = self
            .entries
            .iter()
            .map(|(tag, e)| {
                let entry = EntryOut {
                    kind: &e.kind,
                    message: queued.get(tag).copied(),
                    sent: e.sent,
                };
                (*tag, entry)
            })
            .collect();
        WindowOut {
            entries,
            queue: self.queue.iter().map(|(t, _)| *t).collect(),
            by_invoke: &self.by_invoke,
            deadlines: &self.deadlines,
            next_tag: self.next_tag,
            next_invoke: self.next_invoke,
        }
        .serialize(s)
    }
}

impl<'de, K: Deserialize<'de>> Deserialize<'de> for RequestWindow<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WindowIn::<K>::deserialize(d)?;
        let mut messages = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for (tag, e) in w.entries {
            match (e.sent, e.message) {
                (Some(_), Some(_)) => {
                    return Err(D::Error::custom(format!(
                        "request {tag} is sent and queued"
                    )))
                }
                (None, None) => {
                    return Err(D::Error::custom(format!(
                        "request {tag} has no message and was not sent"
                    )))
                }
                (None, Some(m)) => {
                    messages.insert(tag, m);
                }
                (Some(_), None) => {}
            }
            entries.insert(
                tag,
                Entry {
                    kind: e.kind,
                    sent: e.sent,
                },
            );
        }
        let mut queue = VecDeque::with_capacity(w.queue.len());
        for tag in w.queue {
            let m = messages.remove(&tag).ok_or_else(|| {
                D::Error::custom(format!(
                    "the queue holds request {tag}, which is not queued (or holds it twice)"
                ))
            })?;
            queue.push_back((tag, m));
        }
        if let Some(tag) = messages.keys().next() {
            return Err(D::Error::custom(format!(
                "request {tag} is queued but not in the queue"
            )));
        }
        Ok(RequestWindow {
            entries,
            queue,
            by_invoke: w.by_invoke,
            deadlines: w.deadlines,
            next_tag: w.next_tag,
            next_invoke: w.next_invoke,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message::RequestSystemStatus(ctid_csta::RequestSystemStatus {
            sys_stat_register_id: None,
            extensions: None,
        })
    }

    #[test]
    fn window_limits_and_reuses_invoke_ids() {
        let mut w: RequestWindow<u8> = RequestWindow::default();
        let a = w.push(1, msg());
        let _b = w.push(2, msg());
        let mut out = Vec::new();
        w.pump(0, 1, 100, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(w.in_flight(), 1);
        let Output::CstaRequest { invoke_id, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(w.answer(*invoke_id), Some((a, 1)));
        assert_eq!(w.answer(*invoke_id), None, "a second answer is late");
        w.pump(0, 1, 100, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(w.next_deadline(), Some(100));
        assert_eq!(w.expired(99), vec![]);
        assert_eq!(w.expired(100).len(), 1);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn invoke_ids_stay_in_the_engine_range() {
        let mut w: RequestWindow<()> = RequestWindow::default();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            w.push((), msg());
            w.pump(0, 10, 1, &mut out);
            let Some(Output::CstaRequest { invoke_id, .. }) = out.pop() else {
                panic!()
            };
            assert!(ENGINE_INVOKE_IDS.contains(&invoke_id.get()));
            w.answer(invoke_id).unwrap();
        }
    }

    #[test]
    fn snapshot_form_keeps_queued_messages_in_their_entries() {
        let mut w: RequestWindow<u8> = RequestWindow::default();
        w.push(1, msg());
        w.push(2, msg());
        w.push(3, msg());
        let mut out = Vec::new();
        w.pump(5, 1, 100, &mut out);
        let v = serde_json::to_value(&w).unwrap();
        // The form snapshots have always had: every entry with kind, message (queued) and
        // sent (in flight), the queue as tags.
        assert_eq!(v["queue"], serde_json::json!([2, 3]));
        assert_eq!(v["entries"]["1"]["message"], serde_json::Value::Null);
        assert!(v["entries"]["1"]["sent"].is_array());
        assert_eq!(v["entries"]["2"]["message"], msg().to_json());
        assert_eq!(v["entries"]["3"]["sent"], serde_json::Value::Null);
        assert_eq!(v["deadlines"], serde_json::json!([[105, 1]]));
        let back: RequestWindow<u8> = serde_json::from_value(v.clone()).unwrap();
        back.check().unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);

        let mut broken = v.clone();
        broken["queue"] = serde_json::json!([2]);
        let e = serde_json::from_value::<RequestWindow<u8>>(broken).unwrap_err();
        assert!(
            e.to_string()
                .contains("request 3 is queued but not in the queue"),
            "{e}"
        );
        let mut broken = v.clone();
        broken["queue"] = serde_json::json!([2, 3, 3]);
        assert!(serde_json::from_value::<RequestWindow<u8>>(broken).is_err());
        let mut broken = v;
        broken["entries"]["2"]["message"] = serde_json::Value::Null;
        assert!(serde_json::from_value::<RequestWindow<u8>>(broken).is_err());
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let mut w: RequestWindow<()> = RequestWindow::default();
        for _ in 0..50_000 {
            w.push((), msg());
        }
        assert!(w.queue.capacity() >= 50_000);
        let mut out = Vec::new();
        while !w.entries.is_empty() {
            w.pump(0, 1000, 1, &mut out);
            for o in out.drain(..) {
                let Output::CstaRequest { invoke_id, .. } = o else {
                    panic!()
                };
                w.answer(invoke_id).unwrap();
            }
        }
        assert!(w.queue.capacity() <= 64, "{}", w.queue.capacity());
        w.check().unwrap();
    }
}
