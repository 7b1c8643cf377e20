//! The link session's own CSTA requests (session start, system status, keepalive, session timer
//! resets, MonitorStop of stale monitors): their invoke IDs, from [`SESSION_INVOKE_IDS`], and
//! the table of those awaiting an answer. The engine's requests are not here: the engine numbers
//! them from `ctid_engine::window::ENGINE_INVOKE_IDS` and holds their only timeout, so an answer
//! whose invoke ID is not in this table is the engine's.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use ctid_csta::InvokeId;

/// The invoke IDs of the session's own requests; the engine uses 1–8999 and 9999 is for
/// events.
pub const SESSION_INVOKE_IDS: RangeInclusive<u16> = 9000..=9998;

/// What one of the session's own requests was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnRequest {
    /// StartApplicationSession (`ecma354`).
    StartSession,
    /// SystemRegister (`system-register`).
    SystemRegister,
    /// RequestSystemStatus while starting (no status normal seen yet).
    AskStatus,
    /// RequestSystemStatus as the keepalive.
    Keepalive,
    /// ResetApplicationSessionTimer.
    TimerReset,
    /// MonitorStop of a monitor held on this session (before a resync, or when demoted).
    MonitorStop,
}

/// The session's requests awaiting an answer, by invoke ID. Nothing here expires: a keepalive
/// that is never answered counts as a miss in [`super::keepalive`], and the table ends with the
/// session.
#[derive(Debug, Default)]
pub struct OwnRequests {
    pending: BTreeMap<u16, OwnRequest>,
    /// The last invoke ID handed out (0 before the first).
    last: u16,
}

impl OwnRequests {
    /// A free invoke ID for a new request of this kind, recorded as pending; the next one after
    /// the last handed out, wrapping from 9998 to 9000 and skipping IDs still pending. `None`
    /// when all 999 are pending.
    pub fn start(&mut self, kind: OwnRequest) -> Option<InvokeId> {
        let id = self.fire()?;
        self.pending.insert(id.get(), kind);
        Some(id)
    }

    /// A free invoke ID for a request whose answer is not awaited (MonitorStop of stale
    /// monitors: there may be thousands, more than the range, so they are not recorded; their
    /// answers are recognised by [`SESSION_INVOKE_IDS`] and dropped).
    pub fn fire(&mut self) -> Option<InvokeId> {
        let (lo, hi) = (*SESSION_INVOKE_IDS.start(), *SESSION_INVOKE_IDS.end());
        for _ in SESSION_INVOKE_IDS {
            self.last = if self.last >= hi || self.last < lo {
                lo
            } else {
                self.last + 1
            };
            if !self.pending.contains_key(&self.last) {
                return InvokeId::new(self.last);
            }
        }
        None
    }

    /// Is this invoke ID one of the session's pending requests?
    pub fn contains(&self, id: InvokeId) -> bool {
        self.pending.contains_key(&id.get())
    }

    /// The pending request with this invoke ID, taken out of the table (its answer arrived).
    pub fn finish(&mut self, id: InvokeId) -> Option<OwnRequest> {
        self.pending.remove(&id.get())
    }

    /// Requests awaiting an answer.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// No request awaits an answer.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_wrap_within_the_session_range_and_skip_pending_ones() {
        let mut t = OwnRequests::default();
        let first = t.start(OwnRequest::Keepalive).unwrap();
        assert_eq!(first.get(), 9000);
        for n in 9001..=9998 {
            assert_eq!(t.start(OwnRequest::MonitorStop).unwrap().get(), n);
        }
        assert_eq!(t.len(), 999);
        assert_eq!(t.start(OwnRequest::Keepalive), None, "all 999 pending");
        assert_eq!(
            t.finish(InvokeId::new(9500).unwrap()),
            Some(OwnRequest::MonitorStop)
        );
        assert_eq!(t.start(OwnRequest::TimerReset).unwrap().get(), 9500);
        assert_eq!(t.finish(first), Some(OwnRequest::Keepalive));
        assert_eq!(t.start(OwnRequest::AskStatus).unwrap().get(), 9000);
        assert!(!t.contains(InvokeId::new(17).unwrap()));
        // Unawaited requests take IDs without filling the table.
        let mut u = OwnRequests::default();
        let k = u.start(OwnRequest::Keepalive).unwrap();
        for _ in 0..5000 {
            let id = u.fire().unwrap();
            assert!(SESSION_INVOKE_IDS.contains(&id.get()));
            assert_ne!(id, k, "a pending ID is skipped");
        }
        assert_eq!(u.len(), 1);
        assert_eq!(t.finish(InvokeId::new(17).unwrap()), None);
    }
}
