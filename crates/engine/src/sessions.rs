//! Client sessions that outlive their connection (docs/protocol.md §6.9): each session's
//! `SessionID` and owner (the token it was opened with), whether a connection carries it, and
//! the events addressed to it, kept so that a new connection can resume it with nothing lost and
//! nothing twice. The part decides; the orchestrator ends sessions and writes the outputs.
//!
//! What is kept: every event sent to the session, in order, each counted at its JSON size. While
//! the session is attached, events older than `resume-window` + `ping-interval` +
//! `ping-timeout` are let go (the longest a dead connection goes unnoticed, and the window after
//! it); the total is bounded by
//! `resume-buffer-bytes`, the oldest going first. `trimmed_through` remembers the newest event
//! let go, so a resume that would need it is refused rather than silently incomplete.

use std::collections::{BTreeMap, VecDeque};

use ctid_protocol::{ErrorCode, Event};
use serde::{Deserialize, Serialize};

use crate::det::Map;
use crate::io::ClientId;

/// How many ended SessionIDs are remembered (to tell "expired" from "unknown").
const ENDED_KEPT: usize = 10_000;

/// Why a session ended (what a later RequestResumeSession of it is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ended {
    /// Its client closed cleanly (1000), or the server let it go.
    Closed,
    /// Not resumed within `resume-window`.
    Expired,
    /// Events it needed were no longer kept.
    EventsLost,
    /// A client with another token presented its SessionID.
    OtherToken,
}

/// One event kept for a session; its JSON text is the next `len` bytes of the session's
/// buffer (kept as text in one ring per session: about the text's own size in memory,
/// docs/performance.md "Client sessions").
#[derive(Debug, Clone, Copy)]
struct Kept {
    seq: u64,
    at_ms: u64,
    len: u32,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// The token name it was opened with ("" without authentication).
    pub owner: String,
    /// When its connection went (monotonic ms); `None` while a connection carries it.
    pub detached_at: Option<u64>,
    /// A request other than RequestResumeSession was made on its connection.
    pub used: bool,
    kept: VecDeque<Kept>,
    /// The texts of `kept`, back to back.
    buf: VecDeque<u8>,
    /// The newest sequence number let go from `kept` (0: none).
    trimmed_through: u64,
}

/// A session as a snapshot holds it: its kept events one by one with their text (the
/// buffer and the lengths are rebuilt from them, so they cannot disagree).
#[derive(Serialize, Deserialize)]
struct SessionState {
    id: String,
    owner: String,
    detached_at: Option<u64>,
    used: bool,
    /// `[seq, at_ms, text]` of each kept event, oldest first.
    kept: Vec<(u64, u64, String)>,
    trimmed_through: u64,
}

impl Serialize for Session {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Every field, by name: a field added to `Session` does not compile here until the
        // snapshot has it too.
        let Session {
            id,
            owner,
            detached_at,
            used,
            kept,
            buf,
            trimmed_through,
        } = self;
        let mut at = 0usize;
        let mut texts = Vec::with_capacity(kept.len());
        for k in kept {
            let end = (at + k.len as usize).min(buf.len());
            let bytes: Vec<u8> = buf.range(at.min(end)..end).copied().collect();
            // The texts are whole events written by ctid: UTF-8.
            texts.push((k.seq, k.at_ms, String::from_utf8_lossy(&bytes).into_owned()));
            at = end;
        }
        SessionState {
            id: id.clone(),
            owner: owner.clone(),
            detached_at: *detached_at,
            used: *used,
            kept: texts,
            trimmed_through: *trimmed_through,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Session {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let SessionState {
            id,
            owner,
            detached_at,
            used,
            kept: texts,
            trimmed_through,
        } = SessionState::deserialize(d)?;
        let mut kept = VecDeque::with_capacity(texts.len());
        let mut buf = VecDeque::with_capacity(texts.iter().map(|(_, _, t)| t.len()).sum());
        for (seq, at_ms, text) in texts {
            let len = u32::try_from(text.len()).map_err(|_| {
                serde::de::Error::custom(format!("kept event {seq} is longer than 4 GiB"))
            })?;
            buf.extend(text.as_bytes());
            kept.push_back(Kept { seq, at_ms, len });
        }
        Ok(Session {
            id,
            owner,
            detached_at,
            used,
            kept,
            buf,
            trimmed_through,
        })
    }
}

impl Session {
    /// Bytes of events kept.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }
    /// Events kept.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }
}

/// The outcome of a resume check.
#[derive(Debug)]
pub enum Resume {
    /// Go on: the session's client, its events above N (in order, as JSON text).
    Ok {
        session: ClientId,
        replay: Vec<String>,
    },
    /// Refuse with this code and message; `end`: the old session to end first, and why.
    Refuse {
        code: ErrorCode,
        message: String,
        end: Option<(ClientId, Ended)>,
    },
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounters {
    pub resumed: u64,
    pub expired: u64,
    pub replayed: u64,
    pub refused: u64,
    pub overflowed: u64,
}

/// Every session, by client number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sessions {
    #[serde(with = "crate::snapshot::with::sorted")]
    by_client: Map<ClientId, Session>,
    by_id: BTreeMap<String, ClientId>,
    ended: BTreeMap<String, Ended>,
    ended_order: VecDeque<String>,
    pub counters: SessionCounters,
    /// The detached sessions and when they were detached: an index of `by_client` (not in a
    /// snapshot; rebuilt by `reserve_detached` on restore), so that the count and the next
    /// expiry the core asks for after every input do not walk every session.
    #[serde(skip)]
    detached: BTreeMap<ClientId, u64>,
}

/// The JSON text of an event, as it is kept (and sent again on a resume).
pub fn text_of(ev: &Event) -> String {
    ev.to_json()
}

impl Sessions {
    /// A new session for `client`.
    pub fn open(&mut self, client: ClientId, id: String, owner: String) {
        self.by_id.insert(id.clone(), client);
        self.by_client.insert(
            client,
            Session {
                id,
                owner,
                detached_at: None,
                used: false,
                kept: VecDeque::new(),
                buf: VecDeque::new(),
                trimmed_through: 0,
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.by_client.get(&client)
    }

    /// Is `client` a session whose connection is gone (events are kept, not sent)?
    pub fn is_detached(&self, client: ClientId) -> bool {
        self.by_client
            .get(&client)
            .is_some_and(|s| s.detached_at.is_some())
    }

    /// Note a request on `client`'s connection (RequestResumeSession must come first).
    pub fn used(&mut self, client: ClientId) {
        if let Some(s) = self.by_client.get_mut(&client) {
            s.used = true;
        }
    }

    /// The connection of `client` went without a clean close: keep it. Returns false when
    /// `client` has no session (it ends now). Its buffer gets room for `limit` bytes at once
    /// (growing it by doubling while it fills would leave the smaller copies behind).
    pub fn detach(&mut self, client: ClientId, now_ms: u64, limit: usize) -> bool {
        match self.by_client.get_mut(&client) {
            Some(s) => {
                if s.detached_at.is_none() {
                    s.detached_at = Some(now_ms);
                    self.detached.insert(client, now_ms);
                    let room = limit.saturating_add(64 * 1024);
                    s.buf.reserve_exact(room.saturating_sub(s.buf.len()));
                }
                true
            }
            None => false,
        }
    }

    /// The session of `client` ends (`why`, remembered for a later resume attempt).
    pub fn end(&mut self, client: ClientId, why: Ended) {
        self.detached.remove(&client);
        if let Some(s) = self.by_client.remove(&client) {
            self.by_id.remove(&s.id);
            self.ended.insert(s.id.clone(), why);
            self.ended_order.push_back(s.id);
            while self.ended_order.len() > ENDED_KEPT {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
    }

    /// Forget the session of `client` without a trace (the fresh session of a connection that
    /// resumed another).
    pub fn discard(&mut self, client: ClientId) {
        self.detached.remove(&client);
        if let Some(s) = self.by_client.remove(&client) {
            self.by_id.remove(&s.id);
        }
    }

    /// Keep `event` (of `size` bytes) for each of `to` that has a session (attached ones keep
    /// `window_ms` of events); returns the detached ones that overflowed (they must end: a
    /// resume could not be complete).
    pub fn keep(
        &mut self,
        to: &[ClientId],
        seq: u64,
        text: &str,
        now_ms: u64,
        window_ms: u64,
        limit: usize,
    ) -> Vec<ClientId> {
        let mut overflowed = Vec::new();
        for c in to {
            let Some(s) = self.by_client.get_mut(c) else {
                continue;
            };
            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
            if s.buf.is_empty() && s.buf.capacity() < 4096 {
                s.buf.reserve(4096);
            }
            // A slice, so the ring copies it in whole (through an iterator adapter it went
            // byte by byte).
            s.buf.extend(&text.as_bytes()[..len as usize]);
            s.kept.push_back(Kept {
                seq,
                at_ms: now_ms,
                len,
            });
            let mut lost = false;
            while let Some(front) = s.kept.front().copied() {
                let old = s.detached_at.is_none() && front.at_ms.saturating_add(window_ms) < now_ms;
                if s.buf.len() <= limit && !old {
                    break;
                }
                // An event kept after the connection went cannot have reached the client.
                lost |= s.detached_at.is_some_and(|t| front.at_ms >= t);
                s.buf.drain(..(front.len as usize).min(s.buf.len()));
                s.trimmed_through = s.trimmed_through.max(front.seq);
                s.kept.pop_front();
            }
            if lost {
                overflowed.push(*c);
            }
        }
        overflowed
    }

    /// Detached sessions whose window has passed at `now_ms`.
    pub fn expired(&self, now_ms: u64, window_ms: u64) -> Vec<ClientId> {
        // In client order (the index is a BTreeMap).
        self.detached
            .iter()
            .filter(|(_, t)| t.saturating_add(window_ms) <= now_ms)
            .map(|(c, _)| *c)
            .collect()
    }

    /// When the next detached session expires.
    pub fn next_expiry(&self, window_ms: u64) -> Option<u64> {
        self.detached
            .values()
            .map(|t| t.saturating_add(window_ms))
            .min()
    }

    /// Detached sessions now.
    pub fn detached_count(&self) -> usize {
        self.detached.len()
    }

    /// Every client number a session holds, to `f`.
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        self.by_client.keys().for_each(|c| f(*c));
        self.by_id.values().for_each(|c| f(*c));
    }

    /// Give each detached session's buffer its room for `limit` bytes at once, as
    /// [`Sessions::detach`] does (a restored engine).
    pub(crate) fn reserve_detached(&mut self, limit: usize) {
        self.detached.clear();
        for (c, s) in self.by_client.iter_mut() {
            if let Some(t) = s.detached_at {
                self.detached.insert(*c, t);
                let room = limit.saturating_add(64 * 1024);
                s.buf.reserve_exact(room.saturating_sub(s.buf.len()));
            }
        }
    }

    /// The SessionID index and the sessions agree, and so do the ended ones and their order
    /// (a restored snapshot's check).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.by_id.len() != self.by_client.len() {
            return Err(format!(
                "{} sessions but {} SessionIDs",
                self.by_client.len(),
                self.by_id.len()
            ));
        }
        for (id, c) in &self.by_id {
            if self.by_client.get(c).map(|s| s.id.as_str()) != Some(id.as_str()) {
                return Err(format!(
                    "SessionID {id:?} names client {c}, whose session it is not"
                ));
            }
        }
        let ordered: std::collections::BTreeSet<&String> = self.ended_order.iter().collect();
        if ordered.len() != self.ended_order.len()
            || ordered.len() != self.ended.len()
            || !self.ended.keys().all(|k| ordered.contains(k))
        {
            return Err("the ended sessions and their order disagree".into());
        }
        let detached: BTreeMap<ClientId, u64> = self
            .by_client
            .iter()
            .filter_map(|(c, s)| Some((*c, s.detached_at?)))
            .collect();
        if detached != self.detached {
            return Err("the index of detached sessions disagrees with the sessions".into());
        }
        Ok(())
    }

    /// Every session's client, in order.
    pub fn clients(&self) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self.by_client.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// May the connection of `requester` (opened with `owner`) resume session `id` from
    /// sequence number `last`? On success the session is attached again (to the requester's
    /// connection, which the orchestrator rebinds).
    pub fn resume(&mut self, requester: ClientId, owner: &str, id: &str, last: u64) -> Resume {
        let refuse = |code, message: String, end| Resume::Refuse { code, message, end };
        if self.by_client.get(&requester).is_some_and(|s| s.used) {
            self.counters.refused += 1;
            return refuse(
                ErrorCode::SESSION_NOT_FIRST,
                "RequestResumeSession must be the first request on a connection".into(),
                None,
            );
        }
        let Some(&old) = self.by_id.get(id) else {
            self.counters.refused += 1;
            let (code, message) = match self.ended.get(id) {
                Some(Ended::Expired) => (
                    ErrorCode::SESSION_EXPIRED,
                    format!("session {id} expired: not resumed within the resume window"),
                ),
                Some(Ended::EventsLost) => (
                    ErrorCode::SESSION_EVENTS_LOST,
                    format!("session {id}: events lost (resume buffer overflowed)"),
                ),
                _ => (
                    ErrorCode::SESSION_UNKNOWN,
                    format!("session {id} is unknown"),
                ),
            };
            return refuse(code, message, None);
        };
        if old == requester {
            self.counters.refused += 1;
            return refuse(
                ErrorCode::INVALID_ATTR,
                format!("session {id} is this connection's own session"),
                None,
            );
        }
        let Some(s) = self.by_client.get_mut(&old) else {
            return refuse(
                ErrorCode::SESSION_UNKNOWN,
                format!("session {id} is unknown"),
                None,
            );
        };
        if s.owner != owner {
            self.counters.refused += 1;
            return refuse(
                ErrorCode::SESSION_OTHER_TOKEN,
                format!("session {id} belongs to another token"),
                Some((old, Ended::OtherToken)),
            );
        }
        if last < s.trimmed_through {
            self.counters.refused += 1;
            return refuse(
                ErrorCode::SESSION_EVENTS_LOST,
                format!("session {id}: events lost (resume buffer overflowed)"),
                Some((old, Ended::EventsLost)),
            );
        }
        s.detached_at = None;
        self.detached.remove(&old);
        s.used = true;
        let mut replay = Vec::new();
        let mut at = 0usize;
        for k in &s.kept {
            let end = at + k.len as usize;
            if k.seq > last {
                let bytes: Vec<u8> = s.buf.range(at..end.min(s.buf.len())).copied().collect();
                replay.push(String::from_utf8_lossy(&bytes).into_owned());
            }
            at = end;
        }
        self.counters.resumed += 1;
        self.counters.replayed += replay.len() as u64;
        Resume::Ok {
            session: old,
            replay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctid_protocol::EventName;

    fn ev(seq: u64) -> String {
        let mut e = Event::new(EventName::EventACK);
        e.stamp(seq, "2026-12-04T00:00:00.000000Z".to_string());
        text_of(&e)
    }

    #[test]
    fn kept_events_are_bounded_and_a_resume_needing_a_dropped_one_is_refused() {
        let mut s = Sessions::default();
        s.open(1, "a".into(), "t".into());
        let size = ev(1).len();
        let limit = size * 3;
        for seq in 1..=5 {
            assert!(s.keep(&[1], seq, &ev(seq), 0, 1_000, limit).is_empty());
        }
        // 1 and 2 went (bytes), 3..=5 are kept
        assert_eq!(s.get(1).unwrap().kept(), 3);
        s.open(2, "b".into(), "t".into());
        match s.resume(2, "t", "a", 1) {
            Resume::Refuse { code, end, .. } => {
                assert_eq!(code, ErrorCode::SESSION_EVENTS_LOST);
                assert_eq!(end, Some((1, Ended::EventsLost)));
            }
            other => panic!("{other:?}"),
        }
        s.open(3, "c".into(), "t".into());
        s.open(4, "d".into(), "t".into());
        match s.resume(4, "t", "c", 0) {
            Resume::Ok { session, replay } => {
                assert_eq!(session, 3);
                assert!(replay.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_detached_session_overflows_attached_ones_let_old_events_go() {
        let mut s = Sessions::default();
        s.open(1, "a".into(), "".into());
        s.open(2, "b".into(), "".into());
        let size = ev(1).len();
        // attached: events older than the window go, nothing is "lost"
        s.keep(&[1, 2], 1, &ev(1), 0, 100, size * 10);
        s.keep(&[1, 2], 2, &ev(2), 500, 100, size * 10);
        assert_eq!(s.get(1).unwrap().kept(), 1);
        // detached: no time limit, but bytes over the bound lose events it never got
        assert!(s.detach(2, 600, size * 2));
        assert!(s.keep(&[2], 3, &ev(3), 700, 100, size * 2).is_empty());
        // 2 goes to make room: sent before the connection went, so not necessarily lost
        assert!(s.keep(&[2], 4, &ev(4), 800, 100, size * 2).is_empty());
        // 3 goes: kept after it went, so the client never had it
        assert_eq!(s.keep(&[2], 5, &ev(5), 900, 100, size * 2), vec![2]);
        // resume replays what is above N, in order
        s.open(3, "c".into(), "".into());
        match s.resume(3, "", "a", 1) {
            Resume::Ok { replay, .. } => assert_eq!(replay, vec![ev(2)]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_and_unknown_sessions_are_told_apart() {
        let mut s = Sessions::default();
        s.open(1, "a".into(), "".into());
        assert!(s.detach(1, 10, 1024));
        assert_eq!(s.next_expiry(100), Some(110));
        assert_eq!(s.expired(109, 100), Vec::<ClientId>::new());
        assert_eq!(s.expired(110, 100), vec![1]);
        s.end(1, Ended::Expired);
        s.open(2, "b".into(), "".into());
        let code = |r: Resume| match r {
            Resume::Refuse { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(s.resume(2, "", "a", 0)), ErrorCode::SESSION_EXPIRED);
        assert_eq!(code(s.resume(2, "", "zz", 0)), ErrorCode::SESSION_UNKNOWN);
    }
}
