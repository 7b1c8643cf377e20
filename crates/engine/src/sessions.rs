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
use std::sync::Arc;

use ctid_protocol::{ErrorCode, Event};

use crate::det::Map;
use crate::io::ClientId;

/// How many ended SessionIDs are remembered (to tell "expired" from "unknown").
const ENDED_KEPT: usize = 10_000;

/// Why a session ended (what a later RequestResumeSession of it is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One event kept for a session.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    at_ms: u64,
    size: usize,
    event: Arc<Event>,
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
    bytes: usize,
    /// The newest sequence number let go from `kept` (0: none).
    trimmed_through: u64,
}

impl Session {
    /// Bytes of events kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// Events kept.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }
}

/// The outcome of a resume check.
#[derive(Debug)]
pub enum Resume {
    /// Go on: the session's client, its events above N (in order).
    Ok {
        session: ClientId,
        replay: Vec<Arc<Event>>,
    },
    /// Refuse with this code and message; `end`: the old session to end first, and why.
    Refuse {
        code: ErrorCode,
        message: String,
        end: Option<(ClientId, Ended)>,
    },
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounters {
    pub resumed: u64,
    pub expired: u64,
    pub replayed: u64,
    pub refused: u64,
    pub overflowed: u64,
}

/// Every session, by client number.
#[derive(Debug, Default)]
pub struct Sessions {
    by_client: Map<ClientId, Session>,
    by_id: BTreeMap<String, ClientId>,
    ended: BTreeMap<String, Ended>,
    ended_order: VecDeque<String>,
    pub counters: SessionCounters,
}

/// The JSON size of an event, without building its text.
pub fn json_size(ev: &Event) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, ev) {
        Ok(()) => c.0,
        Err(_) => 256,
    }
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
                bytes: 0,
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
    /// `client` has no session (it ends now).
    pub fn detach(&mut self, client: ClientId, now_ms: u64) -> bool {
        match self.by_client.get_mut(&client) {
            Some(s) => {
                s.detached_at.get_or_insert(now_ms);
                true
            }
            None => false,
        }
    }

    /// The session of `client` ends (`why`, remembered for a later resume attempt).
    pub fn end(&mut self, client: ClientId, why: Ended) {
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
        event: &Arc<Event>,
        size: usize,
        now_ms: u64,
        window_ms: u64,
        limit: usize,
    ) -> Vec<ClientId> {
        let mut overflowed = Vec::new();
        for c in to {
            let Some(s) = self.by_client.get_mut(c) else {
                continue;
            };
            s.kept.push_back(Kept {
                seq: event.event_sequence_number,
                at_ms: now_ms,
                size,
                event: event.clone(),
            });
            s.bytes += size;
            let mut lost = false;
            while let Some(front) = s.kept.front() {
                let old = s.detached_at.is_none() && front.at_ms.saturating_add(window_ms) < now_ms;
                if s.bytes <= limit && !old {
                    break;
                }
                // An event kept after the connection went cannot have reached the client.
                lost |= s.detached_at.is_some_and(|t| front.at_ms >= t);
                s.bytes -= front.size;
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
        let mut v: Vec<ClientId> = self
            .by_client
            .iter()
            .filter(|(_, s)| {
                s.detached_at
                    .is_some_and(|t| t.saturating_add(window_ms) <= now_ms)
            })
            .map(|(c, _)| *c)
            .collect();
        v.sort_unstable();
        v
    }

    /// When the next detached session expires.
    pub fn next_expiry(&self, window_ms: u64) -> Option<u64> {
        self.by_client
            .values()
            .filter_map(|s| s.detached_at.map(|t| t.saturating_add(window_ms)))
            .min()
    }

    /// Detached sessions now.
    pub fn detached_count(&self) -> usize {
        self.by_client
            .values()
            .filter(|s| s.detached_at.is_some())
            .count()
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
        s.used = true;
        let replay: Vec<Arc<Event>> = s
            .kept
            .iter()
            .filter(|k| k.seq > last)
            .map(|k| k.event.clone())
            .collect();
        self.counters.resumed += 1;
        self.counters.replayed += replay.len() as u64;
        Resume::Ok {
            session: old,
            replay,
        }
    }
}
