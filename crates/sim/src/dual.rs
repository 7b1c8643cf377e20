//! The dual-primary check: did two CSTA clients act on the switch at once?
//!
//! ctid runs as a hot-standby pair (or trio): only the primary holds a CSTA connection,
//! monitors devices and sends requests; a backup that takes over opens its own connection. The
//! safety property is "at no moment did two nodes monitor devices or send requests on a CSTA
//! link". The simulator checks it per connection (ids are never reused):
//!
//! - Every frame a client sends makes its connection the **owner** of the link, unless it
//!   already is. Every frame counts the same: requests (session ones such as
//!   StartApplicationSession, ResetApplicationSessionTimer, SystemRegister too; MonitorStart;
//!   call control), answers to the switch's own requests (SystemStatusResponse, a MonitorStop
//!   answer), and frames that do not decode. A process that has been superseded must not speak
//!   on its old link at all, not even to answer, so no kind is exempt.
//! - When the owner changes from connection Y to connection X (`owner_changes`, the first owner
//!   is not a change), Y becomes **superseded** if the simulator still has it open.
//! - A frame that later arrives on a superseded connection is a **violation**: it is counted
//!   (`violations`, one per frame), its connection is counted once (`connections`: distinct
//!   superseded connections that spoke again), it is logged at warn level, and a line
//!   describing it goes to `recent` (the last [`RECENT`]). It is served as usual, and it does
//!   not give the link back: a superseded connection never becomes the owner again.
//! - Holding monitors on a superseded connection is not a violation: a frozen process keeps its
//!   TCP connection (and the switch keeps sending it events) until it is noticed dead. Only
//!   what it sends counts.
//! - A connection is forgotten only when the simulator drops it (peer closed, fault, session
//!   stopped or expired); frames it had already sent but the switch had not yet read are then
//!   ignored. So a client that reconnects (closing the old connection) gives an owner change
//!   and no violation.
//!
//! The rule assumes the simulator serves one logical client (the ctid nodes of one cluster);
//! any other CSTA client speaking would take the link over too.
//!
//! Read it with [`crate::Sim::dual_primary`] or `GET /dual-primary` on the control API.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::{info, warn};

/// How many violation descriptions are kept.
pub const RECENT: usize = 20;

/// The dual-primary counters ([`crate::Sim::dual_primary`]); JSON in camelCase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DualPrimary {
    /// Frames received on superseded connections.
    pub violations: u64,
    /// Distinct superseded connections that spoke again.
    pub connections: u64,
    /// Times the owner of the link changed (the first owner is not a change).
    pub owner_changes: u64,
    /// The last [`RECENT`] violations, oldest first: when (Unix seconds), which connection and
    /// peer, what it sent, how long after it was superseded and by whom, the owner now.
    pub recent: Vec<String>,
}

struct Owner {
    id: u64,
    peer: SocketAddr,
    /// Still open (not dropped by the simulator).
    open: bool,
}

struct Superseded {
    at: Instant,
    by: u64,
    /// It spoke again (counted in `connections`).
    spoke: bool,
}

/// The check's state, fed by the switch task.
#[derive(Default)]
pub(crate) struct Tracker {
    owner: Option<Owner>,
    /// Open superseded connections.
    superseded: HashMap<u64, Superseded>,
    violations: u64,
    connections: u64,
    owner_changes: u64,
    recent: VecDeque<String>,
}

impl Tracker {
    /// Connection `id` (from `peer`), open, sent a frame whose root is `kind`. (Frames of a
    /// connection already [`Tracker::closed`] must not come here.)
    pub(crate) fn inbound(&mut self, id: u64, peer: SocketAddr, kind: &str) {
        if self.owner.as_ref().is_some_and(|o| o.id == id) {
            return;
        }
        if let Some(s) = self.superseded.get_mut(&id) {
            self.violations += 1;
            if !s.spoke {
                s.spoke = true;
                self.connections += 1;
            }
            let owner = match &self.owner {
                Some(o) if o.open => format!("conn {} ({})", o.id, o.peer),
                Some(o) => format!("conn {} ({}, closed)", o.id, o.peer),
                None => "none".to_string(),
            };
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let line = format!(
                "{}.{:03} conn {id} ({peer}) sent {kind} {:.3}s after conn {} took the link over; owner: {owner}",
                t.as_secs(),
                t.subsec_millis(),
                s.at.elapsed().as_secs_f64(),
                s.by,
            );
            warn!(conn = id, %peer, kind, owner, violations = self.violations, "dual primary: a superseded CSTA connection spoke");
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(line);
            return;
        }
        if let Some(prev) = self.owner.take() {
            self.owner_changes += 1;
            info!(from = prev.id, from_peer = %prev.peer, from_open = prev.open, to = id, to_peer = %peer, "CSTA link owner changed");
            if prev.open {
                self.superseded.insert(
                    prev.id,
                    Superseded {
                        at: Instant::now(),
                        by: id,
                        spoke: false,
                    },
                );
            }
        }
        self.owner = Some(Owner {
            id,
            peer,
            open: true,
        });
    }

    /// The simulator dropped connection `id`.
    pub(crate) fn closed(&mut self, id: u64) {
        self.superseded.remove(&id);
        if let Some(o) = self.owner.as_mut().filter(|o| o.id == id) {
            o.open = false;
        }
    }

    pub(crate) fn report(&self) -> DualPrimary {
        DualPrimary {
            violations: self.violations,
            connections: self.connections,
            owner_changes: self.owner_changes,
            recent: self.recent.iter().cloned().collect(),
        }
    }

    /// Zero the counters; who owns the link and who is superseded stay.
    pub(crate) fn reset(&mut self) {
        self.violations = 0;
        self.connections = 0;
        self.owner_changes = 0;
        self.recent.clear();
        for s in self.superseded.values_mut() {
            s.spoke = false;
        }
    }

    /// The role of connection `id`: `owner`, `superseded` or none.
    pub(crate) fn role(&self, id: u64) -> Option<&'static str> {
        if self.owner.as_ref().is_some_and(|o| o.id == id) {
            Some("owner")
        } else if self.superseded.contains_key(&id) {
            Some("superseded")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn takeover_then_the_old_one_speaks() {
        let mut t = Tracker::default();
        t.inbound(1, p(1), "StartApplicationSession");
        t.inbound(1, p(1), "MonitorStart");
        t.inbound(2, p(2), "StartApplicationSession");
        assert_eq!((t.report().violations, t.report().owner_changes), (0, 1));
        assert_eq!((t.role(1), t.role(2)), (Some("superseded"), Some("owner")));
        t.inbound(1, p(1), "ResetApplicationSessionTimer");
        t.inbound(1, p(1), "MakeCall");
        t.inbound(2, p(2), "MonitorStart");
        let r = t.report();
        assert_eq!((r.violations, r.connections, r.owner_changes), (2, 1, 1));
        assert_eq!(r.recent.len(), 2);
        assert!(
            r.recent[0].contains("conn 1 (127.0.0.1:1) sent ResetApplicationSessionTimer"),
            "{}",
            r.recent[0]
        );
        assert!(r.recent[0].ends_with("owner: conn 2 (127.0.0.1:2)"));
        // dropped: forgotten (the switch task ignores what it still had from it)
        t.closed(1);
        assert_eq!((t.role(1), t.role(2)), (None, Some("owner")));
        assert!(t.superseded.is_empty());
    }

    #[test]
    fn reconnect_and_reset() {
        let mut t = Tracker::default();
        t.inbound(1, p(1), "MonitorStart");
        t.closed(1);
        t.inbound(2, p(2), "MonitorStart");
        assert_eq!(
            t.report(),
            DualPrimary {
                owner_changes: 1,
                ..Default::default()
            }
        );
        t.inbound(3, p(3), "MonitorStart");
        t.inbound(2, p(2), "MonitorStart");
        t.inbound(2, p(2), "MonitorStart");
        assert_eq!((t.report().violations, t.report().connections), (2, 1));
        t.reset();
        assert_eq!(t.report(), DualPrimary::default());
        t.inbound(2, p(2), "MonitorStart");
        assert_eq!((t.report().violations, t.report().connections), (1, 1));
        for _ in 0..30 {
            t.inbound(2, p(2), "MonitorStart");
        }
        assert_eq!(t.report().recent.len(), RECENT);
    }
}
