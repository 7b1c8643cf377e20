//! The keepalive clock of one link session (docs/configuration.md, `kpl-interval` and
//! `kpl-tolerance`): after `kpl-interval` without any frame received, a RequestSystemStatus is
//! due; one not answered within `kpl-interval` is a miss and another is due at once;
//! `kpl-tolerance` misses in a row (0 counts as 1) lose the link. Any answer to a keepalive
//! (even CSTAErrorCode) resets the count. A Connector that falls silent is thus detected at most
//! `kpl-interval × (kpl-tolerance + 1)` after its last frame. Time is an argument; the session
//! sends the requests.

use std::time::{Duration, Instant};

/// What [`Keepalive::on_timeout`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveDue {
    /// Nothing to do yet.
    Nothing,
    /// Send a RequestSystemStatus now. `misses`: unanswered ones in a row before it (0 when
    /// the link was merely quiet).
    Send { misses: u32 },
    /// `kpl-tolerance` keepalives in a row went unanswered: the link is lost.
    Lost { misses: u32 },
}

/// Keepalive state: when the last frame arrived, when the keepalive in flight was sent, and
/// the misses in a row.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    tolerance: u32,
    last_rx: Instant,
    sent: Option<Instant>,
    misses: u32,
}

impl Keepalive {
    /// `interval` zero disables the keepalive.
    pub fn new(interval: Duration, tolerance: u32, now: Instant) -> Self {
        Keepalive {
            interval,
            tolerance,
            last_rx: now,
            sent: None,
            misses: 0,
        }
    }

    /// A frame (any frame, even one skipped as bad) arrived.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// A keepalive was answered.
    pub fn on_answer(&mut self) {
        self.sent = None;
        self.misses = 0;
    }

    /// When the keepalive needs attention next: the answer deadline of the one in flight, or
    /// `kpl-interval` after the last frame received. `None` when disabled.
    pub fn deadline(&self) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        Some(match self.sent {
            Some(t) => t + self.interval,
            None => self.last_rx + self.interval,
        })
    }

    /// Time passed: is a keepalive due, or is the link lost? A `Send` is taken as sent `now`.
    pub fn on_timeout(&mut self, now: Instant) -> KeepaliveDue {
        match self.deadline() {
            Some(d) if now >= d => {}
            _ => return KeepaliveDue::Nothing,
        }
        if self.sent.is_some() {
            self.misses += 1;
            if self.misses >= self.tolerance.max(1) {
                return KeepaliveDue::Lost {
                    misses: self.misses,
                };
            }
        }
        self.sent = Some(now);
        KeepaliveDue::Send {
            misses: self.misses,
        }
    }

    /// `kpl-interval`.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn silence_is_detected_after_interval_times_tolerance_plus_one() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(10 * S, 3, t0);
        assert_eq!(k.deadline(), Some(t0 + 10 * S));
        assert_eq!(k.on_timeout(t0 + 9 * S), KeepaliveDue::Nothing);
        assert_eq!(k.on_timeout(t0 + 10 * S), KeepaliveDue::Send { misses: 0 });
        // Frames other than the answer do not move the deadline of the one in flight.
        k.on_frame(t0 + 15 * S);
        assert_eq!(k.deadline(), Some(t0 + 20 * S));
        assert_eq!(k.on_timeout(t0 + 20 * S), KeepaliveDue::Send { misses: 1 });
        assert_eq!(k.on_timeout(t0 + 30 * S), KeepaliveDue::Send { misses: 2 });
        assert_eq!(k.on_timeout(t0 + 40 * S), KeepaliveDue::Lost { misses: 3 });
    }

    #[test]
    fn an_answer_resets_the_count_and_tolerance_zero_counts_as_one() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(10 * S, 0, t0);
        assert_eq!(k.on_timeout(t0 + 10 * S), KeepaliveDue::Send { misses: 0 });
        k.on_frame(t0 + 12 * S);
        k.on_answer();
        assert_eq!(k.deadline(), Some(t0 + 22 * S));
        assert_eq!(k.on_timeout(t0 + 22 * S), KeepaliveDue::Send { misses: 0 });
        assert_eq!(k.on_timeout(t0 + 32 * S), KeepaliveDue::Lost { misses: 1 });
    }

    #[test]
    fn interval_zero_disables_it() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(Duration::ZERO, 3, t0);
        assert_eq!(k.deadline(), None);
        assert_eq!(k.on_timeout(t0 + 3600 * S), KeepaliveDue::Nothing);
    }
}
