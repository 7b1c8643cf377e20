//! The lease that makes one node primary (docs/operations.md §13).
//!
//! [`LeaseMachine`] holds the rules and no IO: it is told what a read of the KV key `lease`
//! returned and how a compare-and-set went, with the moments they happened, and says what to try
//! next. [`run`] is the thin driver that talks to the JetStream KV bucket.
//!
//! The rules, and why two nodes never act at once:
//! - The holder renews with compare-and-set on the revision it wrote last, every
//!   `renew-interval`. After a renew *sent* at `t0` succeeds it may act until
//!   `t0 + lease - margin` (the [`super::Gate`]); a renew that fails leaves that deadline alone, so
//!   a holder cut off from NATS stops by itself.
//! - A follower reads the key every poll interval and notes the local moment `seen_at` when a
//!   read *returned* a revision it had not seen. The write of that revision happened before that
//!   moment, and the holder's renew was sent before the write: so when the follower sees no new
//!   revision for a whole `lease` after `seen_at`, the holder's gate closed at least `margin`
//!   earlier. Only then it takes the lease with compare-and-set on that revision (term + 1).
//!   Durations are measured on each node's monotonic clock; only their rates must agree, within
//!   `margin / lease` (10 %).
//! - A released lease (`holder` empty, a primary stopping) may be taken at once; a handed-over
//!   lease (`handover`, a planned switchover) only by the node it names.
//! - A node that starts and finds itself named as holder without `handover` treats it like any
//!   other holder's lease: its engine state is gone, it waits for the lease to lapse.

use std::time::{Duration, Instant};

use super::LeaseValue;

/// A compare-and-set that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasError {
    /// The key's revision is not the one given (someone else wrote it), or it exists (create).
    WrongRevision,
    /// No answer or another error: the outcome is unknown.
    Other(String),
}

/// A write to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Create the key (no lease yet).
    Create(LeaseValue),
    /// Compare-and-set on `rev`.
    Update { rev: u64, value: LeaseValue },
}

/// What changed for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This node holds the lease (term).
    Won { term: u64 },
    /// This node no longer holds it.
    Lost { why: String },
}

#[derive(Debug, Clone)]
enum State {
    Following {
        /// Last revision seen and its value, and when a read first returned it.
        seen: Option<(u64, LeaseValue)>,
        seen_at: Instant,
    },
    Holding {
        rev: u64,
        term: u64,
        valid_until: Instant,
    },
}

/// The lease rules for one node; see the module documentation.
#[derive(Debug, Clone)]
pub struct LeaseMachine {
    me: String,
    url: String,
    lease: Duration,
    margin: Duration,
    state: State,
}

impl LeaseMachine {
    pub fn new(me: &str, url: &str, lease: Duration, margin: Duration, now: Instant) -> Self {
        LeaseMachine {
            me: me.to_string(),
            url: url.to_string(),
            lease,
            margin,
            state: State::Following {
                seen: None,
                seen_at: now,
            },
        }
    }

    /// Holding the lease (as far as this node knows)?
    pub fn holding(&self) -> bool {
        matches!(self.state, State::Holding { .. })
    }

    /// The term held, if holding.
    pub fn term(&self) -> Option<u64> {
        match self.state {
            State::Holding { term, .. } => Some(term),
            State::Following { .. } => None,
        }
    }

    /// Until when the holder may act.
    pub fn valid_until(&self) -> Option<Instant> {
        match self.state {
            State::Holding { valid_until, .. } => Some(valid_until),
            State::Following { .. } => None,
        }
    }

    /// The lease as last seen by a follower (its revision, value and when first seen).
    pub fn seen(&self) -> Option<(u64, &LeaseValue, Instant)> {
        match &self.state {
            State::Following {
                seen: Some((r, v)),
                seen_at,
            } => Some((*r, v, *seen_at)),
            _ => None,
        }
    }

    fn mine(&self, term: u64, handover: bool) -> LeaseValue {
        LeaseValue {
            holder: Some(self.me.clone()),
            url: self.url.clone(),
            term,
            handover,
        }
    }

    /// A follower read the key at `now` (after the read returned): what to try, if anything.
    /// `may_take`: this node has applied the stream to its end.
    pub fn observe(
        &mut self,
        now: Instant,
        entry: Option<(u64, LeaseValue)>,
        may_take: bool,
    ) -> Option<Attempt> {
        let State::Following { seen, seen_at } = &mut self.state else {
            return None;
        };
        let Some((rev, value)) = entry else {
            *seen = None;
            return may_take.then(|| Attempt::Create(self.mine(1, false)));
        };
        if seen.as_ref().map(|(r, _)| *r) != Some(rev) {
            *seen = Some((rev, value.clone()));
            *seen_at = now;
        }
        let lapsed = now.saturating_duration_since(*seen_at) >= self.lease;
        let handed_to_me = value.handover && value.holder.as_deref() == Some(self.me.as_str());
        if handed_to_me {
            // A planned switchover names this node: take it at once, even before caught up
            // (the core catches up before it serves).
            return Some(Attempt::Update {
                rev,
                value: self.mine(value.term, false),
            });
        }
        if !may_take {
            return None;
        }
        let released = value.holder.is_none();
        // Handed to another node: only it may take it, unless it lets the lease lapse.
        if released || lapsed {
            return Some(Attempt::Update {
                rev,
                value: self.mine(value.term + 1, false),
            });
        }
        None
    }

    /// How a follower's attempt went; `sent_at`: when it was sent.
    pub fn attempted(
        &mut self,
        sent_at: Instant,
        attempt: &Attempt,
        result: Result<u64, CasError>,
    ) -> Option<Change> {
        if self.holding() {
            return None;
        }
        let term = match attempt {
            Attempt::Create(v) | Attempt::Update { value: v, .. } => v.term,
        };
        match result {
            Ok(rev) => {
                self.state = State::Holding {
                    rev,
                    term,
                    valid_until: sent_at + self.lease.saturating_sub(self.margin),
                };
                Some(Change::Won { term })
            }
            Err(_) => None,
        }
    }

    /// The renew a holder sends now: compare-and-set on its revision.
    pub fn renew(&self) -> Option<Attempt> {
        match self.state {
            State::Holding { rev, term, .. } => Some(Attempt::Update {
                rev,
                value: self.mine(term, false),
            }),
            State::Following { .. } => None,
        }
    }

    /// How a renew sent at `sent_at` went, seen at `now`. On `WrongRevision` the driver reads the
    /// key and passes it as `current`: a renew that reached the bucket though its answer was lost
    /// left this node's own value there, which is adopted.
    pub fn renewed(
        &mut self,
        sent_at: Instant,
        now: Instant,
        result: Result<u64, CasError>,
        current: Option<(u64, LeaseValue)>,
    ) -> Option<Change> {
        let State::Holding {
            rev,
            term,
            valid_until,
        } = &mut self.state
        else {
            return None;
        };
        match result {
            Ok(r) => {
                *rev = r;
                *valid_until = sent_at + self.lease.saturating_sub(self.margin);
                None
            }
            Err(CasError::WrongRevision) => match current {
                Some((r, v))
                    if v.holder.as_deref() == Some(self.me.as_str())
                        && v.term == *term
                        && !v.handover =>
                {
                    *rev = r;
                    // Its renew time is unknown: the deadline stays as it was.
                    self.expire(now)
                }
                other => {
                    let why = match &other {
                        Some((_, v)) => format!(
                            "the lease passed to {} (term {})",
                            v.holder.as_deref().unwrap_or("nobody"),
                            v.term
                        ),
                        None => "the lease key is gone".to_string(),
                    };
                    self.state = State::Following {
                        seen: other,
                        seen_at: now,
                    };
                    Some(Change::Lost { why })
                }
            },
            Err(CasError::Other(_)) => self.expire(now),
        }
    }

    /// A holder whose deadline passed without a renew gives up (it may take the lease again
    /// later like any follower).
    pub fn expire(&mut self, now: Instant) -> Option<Change> {
        let State::Holding {
            rev,
            term,
            valid_until,
        } = self.state
        else {
            return None;
        };
        if now < valid_until {
            return None;
        }
        self.state = State::Following {
            seen: Some((rev, self.mine(term, false))),
            seen_at: now,
        };
        Some(Change::Lost {
            why: "the lease could not be renewed in time (NATS unreachable or too slow)".into(),
        })
    }

    /// A planned switchover: the value that hands the lease to `to` (term + 1), to write with
    /// compare-and-set on the held revision; `None` hands it to nobody (a release).
    pub fn hand_over(&self, to: Option<(&str, &str)>) -> Option<Attempt> {
        let State::Holding { rev, term, .. } = self.state else {
            return None;
        };
        Some(Attempt::Update {
            rev,
            value: LeaseValue {
                holder: to.map(|(n, _)| n.to_string()),
                url: to.map(|(_, u)| u.to_string()).unwrap_or_default(),
                term: term + 1,
                handover: to.is_some(),
            },
        })
    }

    /// The hand-over was written (or not): a holder that handed over follows from now on. One
    /// whose write failed follows too — its core has stopped acting — and treats its own lease
    /// like anyone's: it lapses a whole `lease` after now, and then any ready node may take it.
    pub fn handed_over(&mut self, now: Instant, attempt: &Attempt, result: Result<u64, CasError>) {
        let State::Holding { rev, term, .. } = self.state else {
            return;
        };
        let seen = match (result, attempt) {
            (Ok(new), Attempt::Update { value, .. }) => (new, value.clone()),
            _ => (rev, self.mine(term, false)),
        };
        self.state = State::Following {
            seen: Some(seen),
            seen_at: now,
        };
    }
}

/// Orders from the core to the lease task.
#[derive(Debug)]
pub enum LeaseCmd {
    /// Planned switchover: hand the lease to `to` (node, url) or release it (`None`); answers
    /// with the new term.
    HandOver {
        to: Option<(String, String)>,
        done: tokio::sync::oneshot::Sender<Result<u64, String>>,
    },
}

/// What the lease task shows the core and the HTTP side.
#[derive(Debug, Clone, Default)]
pub struct LeaseWatch {
    /// The lease as last read (holder, url, term) and when that revision was first seen.
    pub value: Option<super::LeaseValue>,
    pub seen_at: Option<Instant>,
    /// The other nodes' records.
    pub nodes: Vec<super::NodeRecord>,
}

const LEASE_KEY: &str = "lease";

fn decode(e: Option<async_nats::jetstream::kv::Entry>) -> Option<(u64, super::LeaseValue)> {
    let e = e?;
    if e.operation != async_nats::jetstream::kv::Operation::Put {
        return None;
    }
    let v = serde_json::from_slice(&e.value).ok()?;
    Some((e.revision, v))
}

async fn read(
    kv: &async_nats::jetstream::kv::Store,
    limit: Duration,
) -> Result<Option<(u64, super::LeaseValue)>, String> {
    match tokio::time::timeout(limit, kv.entry(LEASE_KEY)).await {
        Ok(Ok(e)) => Ok(decode(e)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in time".into()),
    }
}

async fn write(
    kv: &async_nats::jetstream::kv::Store,
    a: &Attempt,
    limit: Duration,
) -> Result<u64, CasError> {
    use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
    let body =
        |v: &super::LeaseValue| bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default());
    let r = match a {
        Attempt::Create(v) => tokio::time::timeout(limit, kv.create(LEASE_KEY, body(v)))
            .await
            .map(|r| {
                r.map_err(|e| match e.kind() {
                    CreateErrorKind::AlreadyExists => CasError::WrongRevision,
                    _ => CasError::Other(e.to_string()),
                })
            }),
        Attempt::Update { rev, value } => {
            tokio::time::timeout(limit, kv.update(LEASE_KEY, body(value), *rev))
                .await
                .map(|r| {
                    r.map_err(|e| match e.kind() {
                        UpdateErrorKind::WrongLastRevision => CasError::WrongRevision,
                        _ => CasError::Other(e.to_string()),
                    })
                })
        }
    };
    r.unwrap_or_else(|_| Err(CasError::Other("no answer in time".into())))
}

/// The lease task: renews while holding, watches while following, writes this node's record and
/// reads the others'; tells the core of every [`Change`] (closing the gate first when the lease is
/// lost). Runs until aborted.
pub async fn run(
    kv: async_nats::jetstream::kv::Store,
    cfg: super::HaConfig,
    shared: super::Shared,
    core: tokio::sync::mpsc::Sender<crate::core::CoreMsg>,
    mut cmds: tokio::sync::mpsc::UnboundedReceiver<LeaseCmd>,
    view: tokio::sync::watch::Sender<LeaseWatch>,
) {
    use crate::core::CoreMsg;
    let mut m = LeaseMachine::new(
        &cfg.node,
        &cfg.advertise,
        cfg.lease,
        cfg.margin(),
        Instant::now(),
    );
    let limit = cfg.lease / 2;
    let mut next_record = Instant::now();
    let mut last_value: Option<super::LeaseValue> = None;
    let mut complained = false;
    loop {
        let wait = if m.holding() {
            cfg.renew_interval
        } else {
            cfg.poll_interval()
        };
        tokio::select! {
            c = cmds.recv() => {
                let Some(LeaseCmd::HandOver { to, done }) = c else { return };
                let Some(a) = m.hand_over(to.as_ref().map(|(n, u)| (n.as_str(), u.as_str()))) else {
                    let _ = done.send(Err("this node does not hold the lease".into()));
                    continue;
                };
                // Stop acting first: from here on this node is not primary, whatever happens.
                shared.gate.close();
                let r = write(&kv, &a, limit).await;
                m.handed_over(Instant::now(), &a, r.clone());
                let term = match &a { Attempt::Update { value, .. } | Attempt::Create(value) => value.term };
                let _ = done.send(r.map(|_| term).map_err(|e| format!("{e:?}")));
                // Handed over, released, or (the write failed) left to lapse: not the holder.
                let _ = core.send(CoreMsg::Lease(Change::Lost { why: "handed over".into() })).await;
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let mut change = None;
        if m.holding() {
            change = m.expire(Instant::now());
            if change.is_none() {
                if let Some(a) = m.renew() {
                    let sent = Instant::now();
                    let left = m
                        .valid_until()
                        .map(|v| v.saturating_duration_since(sent))
                        .unwrap_or(limit);
                    let r = write(&kv, &a, left.max(Duration::from_millis(10))).await;
                    let current = if r == Err(CasError::WrongRevision) {
                        read(&kv, limit).await.ok().flatten()
                    } else {
                        None
                    };
                    change = m.renewed(sent, Instant::now(), r, current);
                    if change.is_none() {
                        if let Some(v) = m.valid_until() {
                            shared.gate.open_until(v);
                        }
                    }
                }
            }
        } else {
            match read(&kv, limit).await {
                Ok(entry) => {
                    complained = false;
                    let now = Instant::now();
                    last_value = entry.as_ref().map(|(_, v)| v.clone());
                    let ready = shared.ready.load(std::sync::atomic::Ordering::Acquire);
                    if let Some(a) = m.observe(now, entry, ready) {
                        let sent = Instant::now();
                        let r = write(&kv, &a, limit).await;
                        change = m.attempted(sent, &a, r);
                        if let (Some(Change::Won { .. }), Some(v)) = (&change, m.valid_until()) {
                            shared.gate.open_until(v);
                        }
                    }
                }
                Err(e) => {
                    if !complained {
                        tracing::warn!(error = %e, "hot standby: cannot read the lease");
                        complained = true;
                    }
                }
            }
        }
        if let Some(Change::Lost { .. }) = &change {
            shared.gate.close();
        }
        if m.holding() {
            last_value = m.renew().map(|a| match a {
                Attempt::Update { value, .. } | Attempt::Create(value) => value,
            });
        }
        if let Ok(mut u) = shared.primary_url.lock() {
            // Never this node itself: a node that does not serve sends clients elsewhere (a
            // lease of its own that lapsed names no primary).
            *u = last_value
                .as_ref()
                .filter(|v| v.holder.is_some() && v.holder.as_deref() != Some(cfg.node.as_str()))
                .map(|v| v.url.clone());
        }
        let seen_at = m.seen().map(|(_, _, t)| t);
        view.send_modify(|w| {
            w.value = last_value.clone();
            w.seen_at = if m.holding() {
                Some(Instant::now())
            } else {
                seen_at
            };
        });
        if let Some(c) = change {
            if core.send(CoreMsg::Lease(c)).await.is_err() {
                return;
            }
        }
        if Instant::now() >= next_record {
            next_record = Instant::now() + Duration::from_millis(500);
            let kv = kv.clone();
            let shared = shared.clone();
            let cfg = cfg.clone();
            let view = view.clone();
            // Records are for operators: never let them delay a renew.
            tokio::spawn(async move { records(&kv, &cfg, &shared, &view, limit).await });
        }
    }
}

/// Write this node's record and read the others'.
async fn records(
    kv: &async_nats::jetstream::kv::Store,
    cfg: &super::HaConfig,
    shared: &super::Shared,
    view: &tokio::sync::watch::Sender<LeaseWatch>,
    limit: Duration,
) {
    use std::sync::atomic::Ordering;
    let me = super::NodeRecord {
        node: cfg.node.clone(),
        url: cfg.advertise.clone(),
        role: shared.role().as_str().to_string(),
        applied_seq: shared.applied.load(Ordering::Relaxed),
        ready: shared.ready.load(Ordering::Relaxed),
        snapshot_seq: shared.snapshot_seq.load(Ordering::Relaxed),
        at_unix_ms: super::unix_ms(),
        seen_ms_ago: 0,
    };
    let body = bytes::Bytes::from(serde_json::to_vec(&me).unwrap_or_default());
    let _ = tokio::time::timeout(limit, kv.put(format!("node.{}", cfg.node), body)).await;
    let Ok(Ok(mut keys)) = tokio::time::timeout(limit, kv.keys()).await else {
        return;
    };
    let mut nodes = Vec::new();
    let now = super::unix_ms();
    while let Ok(Some(Ok(k))) =
        tokio::time::timeout(limit, futures_util::StreamExt::next(&mut keys)).await
    {
        if k == format!("node.{}", cfg.node) || !k.starts_with("node.") {
            continue;
        }
        if let Ok(Ok(Some(v))) = tokio::time::timeout(limit, kv.get(k.clone())).await {
            if let Ok(mut r) = serde_json::from_slice::<super::NodeRecord>(&v) {
                r.seen_ms_ago = now.saturating_sub(r.at_unix_ms);
                nodes.push(r);
            }
        }
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    view.send_modify(|w| w.nodes = nodes);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(1000);
    const MARGIN: Duration = Duration::from_millis(100);

    fn other(term: u64) -> LeaseValue {
        LeaseValue {
            holder: Some("b".into()),
            url: "ws://b/ws".into(),
            term,
            handover: false,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn an_empty_bucket_is_created_by_a_ready_node_only() {
        let t0 = Instant::now();
        let mut m = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        assert_eq!(m.observe(t0, None, false), None);
        let a = m.observe(t0, None, true).unwrap();
        assert!(matches!(&a, Attempt::Create(v) if v.term == 1));
        assert_eq!(
            m.attempted(t0, &a, Err(CasError::WrongRevision)),
            None,
            "another node created it first"
        );
        assert_eq!(m.attempted(t0, &a, Ok(1)), Some(Change::Won { term: 1 }));
        assert_eq!(m.valid_until(), Some(ms(t0, 900)));
    }

    #[test]
    fn a_follower_takes_over_only_a_whole_lease_after_the_last_revision_it_saw() {
        let t0 = Instant::now();
        let mut m = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        assert_eq!(m.observe(t0, Some((5, other(3))), true), None);
        // Renewed: a new revision restarts the wait.
        assert_eq!(m.observe(ms(t0, 600), Some((6, other(3))), true), None);
        assert_eq!(m.observe(ms(t0, 1500), Some((6, other(3))), true), None);
        let a = m.observe(ms(t0, 1600), Some((6, other(3))), true).unwrap();
        assert_eq!(
            a,
            Attempt::Update {
                rev: 6,
                value: LeaseValue {
                    holder: Some("a".into()),
                    url: "ws://a/ws".into(),
                    term: 4,
                    handover: false
                }
            }
        );
        // Not caught up: never.
        let mut n = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        n.observe(t0, Some((6, other(3))), false);
        assert_eq!(n.observe(ms(t0, 5000), Some((6, other(3))), false), None);
    }

    #[test]
    fn the_holders_gate_closes_before_a_follower_can_take_over() {
        // Holder b renews at t_send; the write lands later; a sees it later still. Whatever the
        // delays, a's take-over time is after b's valid_until.
        let t0 = Instant::now();
        for (write_delay, read_delay) in [(0, 0), (5, 0), (300, 400), (899, 1)] {
            let mut b = LeaseMachine::new("b", "ws://b/ws", LEASE, MARGIN, t0);
            let c = b.observe(t0, None, true).unwrap();
            b.attempted(t0, &c, Ok(1));
            let send = ms(t0, 100);
            let r = b.renew().unwrap();
            assert!(matches!(r, Attempt::Update { rev: 1, .. }));
            b.renewed(send, ms(t0, 100 + write_delay), Ok(2), None);
            let b_until = b.valid_until().unwrap();
            let mut a = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
            let seen = ms(t0, 100 + write_delay + read_delay);
            a.observe(seen, Some((2, other(1))), true);
            let mut t = seen;
            let take = loop {
                t += Duration::from_millis(10);
                if a.observe(t, Some((2, other(1))), true).is_some() {
                    break t;
                }
            };
            assert!(take >= b_until + MARGIN, "{write_delay} {read_delay}");
        }
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_at_its_deadline() {
        let t0 = Instant::now();
        let mut m = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        let c = m.observe(t0, None, true).unwrap();
        m.attempted(t0, &c, Ok(1));
        assert_eq!(
            m.renewed(
                ms(t0, 250),
                ms(t0, 600),
                Err(CasError::Other("timeout".into())),
                None
            ),
            None
        );
        assert!(m.holding());
        assert!(matches!(m.expire(ms(t0, 900)), Some(Change::Lost { .. })));
        assert!(!m.holding());
    }

    #[test]
    fn a_renew_whose_answer_was_lost_is_adopted_and_a_passed_lease_is_lost() {
        let t0 = Instant::now();
        let mut m = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        let c = m.observe(t0, None, true).unwrap();
        m.attempted(t0, &c, Ok(1));
        let mine = m.mine(1, false);
        assert_eq!(
            m.renewed(
                ms(t0, 100),
                ms(t0, 200),
                Err(CasError::WrongRevision),
                Some((2, mine))
            ),
            None
        );
        assert!(matches!(m.renew(), Some(Attempt::Update { rev: 2, .. })));
        let lost = m.renewed(
            ms(t0, 300),
            ms(t0, 350),
            Err(CasError::WrongRevision),
            Some((3, other(2))),
        );
        assert!(matches!(lost, Some(Change::Lost { why }) if why.contains("to b")));
    }

    #[test]
    fn handover_names_one_node_and_a_release_is_taken_at_once() {
        let t0 = Instant::now();
        let mut a = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        let c = a.observe(t0, None, true).unwrap();
        a.attempted(t0, &c, Ok(1));
        let h = a.hand_over(Some(("b", "ws://b/ws"))).unwrap();
        a.handed_over(ms(t0, 10), &h, Ok(2));
        assert!(!a.holding());
        let Attempt::Update { value, .. } = &h else {
            unreachable!()
        };
        // b takes it at once; c (not named) does not, even when ready.
        let mut b = LeaseMachine::new("b", "ws://b/ws", LEASE, MARGIN, t0);
        let t = b
            .observe(ms(t0, 20), Some((2, value.clone())), false)
            .unwrap();
        assert_eq!(
            b.attempted(ms(t0, 20), &t, Ok(3)),
            Some(Change::Won { term: 2 })
        );
        let mut c = LeaseMachine::new("c", "ws://c/ws", LEASE, MARGIN, t0);
        assert_eq!(c.observe(ms(t0, 20), Some((2, value.clone())), true), None);
        // A released lease: any ready node at once.
        let released = LeaseValue {
            holder: None,
            url: String::new(),
            term: 5,
            handover: false,
        };
        let t = c.observe(ms(t0, 30), Some((9, released)), true).unwrap();
        assert!(matches!(t, Attempt::Update { rev: 9, ref value } if value.term == 6));
    }

    #[test]
    fn a_release_that_fails_to_write_lets_the_lease_lapse_instead_of_renewing_it() {
        let t0 = Instant::now();
        let mut a = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        let c = a.observe(t0, None, true).unwrap();
        a.attempted(t0, &c, Ok(1));
        let r = a.hand_over(None).unwrap();
        a.handed_over(ms(t0, 100), &r, Err(CasError::Other("timeout".into())));
        assert!(!a.holding());
        assert_eq!(a.renew(), None);
        // Its own lease is like anyone's now: not taken back before it lapses...
        let mine = LeaseValue {
            holder: Some("a".into()),
            url: "ws://a/ws".into(),
            term: 1,
            handover: false,
        };
        assert_eq!(a.observe(ms(t0, 600), Some((1, mine.clone())), true), None);
        // ...and taken by a ready node (here itself) once it has.
        assert!(a.observe(ms(t0, 1200), Some((1, mine)), true).is_some());
    }

    #[test]
    fn a_restarted_node_named_holder_waits_for_the_lease_to_lapse() {
        let t0 = Instant::now();
        let mut a = LeaseMachine::new("a", "ws://a/ws", LEASE, MARGIN, t0);
        let stale = LeaseValue {
            holder: Some("a".into()),
            url: "ws://a/ws".into(),
            term: 4,
            handover: false,
        };
        assert_eq!(a.observe(t0, Some((7, stale.clone())), true), None);
        assert!(a.observe(ms(t0, 1000), Some((7, stale)), true).is_some());
    }
}
