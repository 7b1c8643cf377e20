//! Client-session policy for the WebSocket port: dead-client detection (WebSocket ping/pong with a
//! timeout) and a per-client request rate limit. `http.rs` calls in here from its session loop;
//! the policy itself ([`ClientPolicy`]) comes from the configuration (docs/configuration.md,
//! "Client sessions").
//!
//! * **Liveness**: every `ping-interval` the writer sends a Ping; any frame from the client (a
//!   Pong, a request, anything) proves it alive. A client from which nothing arrived for
//!   `ping-interval + ping-timeout` is closed (code 1001, "ping timeout") and its session ends
//!   like any other: its registrations are released and, with `agent-logout-on-unregister`, the
//!   agents it logged in are logged out.
//! * **Rate limit**: a token bucket per client, `client-rate-limit` requests per second with a
//!   burst of `client-rate-burst`. A client that exceeds it is closed (code 1008, "request rate
//!   limit exceeded: …"); the others never notice. Off (0) by default: a desktop registering
//!   thousands of DNs at start is legitimate.
//! * **Max clients**: at most `max-clients` WebSocket sessions at once ([`ClientSlots`]); the
//!   upgrade beyond it is answered HTTP 503 with a one-line reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a client session may do and how it is watched.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientPolicy {
    /// Requests per second per client; 0 = no limit.
    pub rate_limit: f64,
    /// Requests a client may send at once above the rate (bucket size).
    pub rate_burst: f64,
    /// How often the server pings a client; zero = never (no dead-client detection).
    pub ping_interval: Duration,
    /// How long after a due Pong a silent client is declared dead.
    pub ping_timeout: Duration,
    /// WebSocket sessions served at once (`max-clients`).
    pub max_clients: usize,
}

/// `max-clients` when the configuration does not say.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            rate_limit: 0.0,
            rate_burst: 0.0,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Why ctid closes a client session (sent as the WebSocket close reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    pub reason: String,
}

/// What the reader and the writer of one session share: when the client was last heard of.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    /// Milliseconds since `start` of the last frame received.
    last_heard_ms: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            start: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
        }
    }
}

impl Liveness {
    /// A frame arrived from the client.
    pub fn heard(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_heard_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the client has been silent.
    pub fn silent_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_heard_ms.load(Ordering::Relaxed)))
    }

    /// Called when a ping is due: `Err` with the close reason when the client has been silent
    /// past `ping-interval + ping-timeout`, otherwise `Ok` (send a Ping).
    pub fn check(&self, p: &ClientPolicy) -> Result<(), CloseReason> {
        let silent = self.silent_for();
        if silent >= p.ping_interval + p.ping_timeout {
            return Err(CloseReason {
                code: 1001,
                reason: format!(
                    "ping timeout: nothing received for {:.1} s",
                    silent.as_secs_f64()
                ),
            });
        }
        Ok(())
    }
}

/// The WebSocket sessions of one client port, counted against `max-clients`.
#[derive(Debug, Clone, Default)]
pub struct ClientSlots(std::sync::Arc<std::sync::atomic::AtomicUsize>);

/// One session's place in [`ClientSlots`], given back when dropped (the session ended, or the
/// upgrade never completed).
#[derive(Debug)]
pub struct ClientSlot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ClientSlots {
    /// A place for one more session, or `Err` with the one-line reason when `max` are open.
    pub fn take(&self, max: usize) -> Result<ClientSlot, String> {
        let mut n = self.0.load(Ordering::Acquire);
        loop {
            if n >= max {
                return Err(format!(
                    "too many clients: this server serves at most {max} sessions (max-clients); try again later"
                ));
            }
            match self
                .0
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(ClientSlot(self.0.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Sessions open (or being upgraded).
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// A ping timer for the writer: `None` when pings are off.
pub fn ping_timer(p: &ClientPolicy) -> Option<tokio::time::Interval> {
    if p.ping_interval.is_zero() {
        return None;
    }
    let mut t = tokio::time::interval_at(
        tokio::time::Instant::now() + p.ping_interval,
        p.ping_interval,
    );
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(t)
}

/// Wait for the next tick of an optional timer (forever when there is none).
pub async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// After a close frame was sent: read and drop what the client still sends until it closes or
/// a second passes (closing on unread data would reset the connection before the client reads
/// the close reason).
pub async fn drain<S, T, E>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<T, E>> + Unpin,
{
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, stream.next()).await {}
}

/// Token bucket of one client.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `None` when the policy sets no limit.
    pub fn new(p: &ClientPolicy) -> Option<RateLimiter> {
        if p.rate_limit <= 0.0 {
            return None;
        }
        let burst = if p.rate_burst > 0.0 {
            p.rate_burst
        } else {
            p.rate_limit
        }
        .max(1.0);
        Some(RateLimiter {
            rate: p.rate_limit,
            burst,
            tokens: burst,
            last: Instant::now(),
        })
    }

    /// Take one token for a request at `now`; `Err` with the close reason when there is none.
    pub fn take(&mut self, now: Instant) -> Result<(), CloseReason> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(CloseReason {
            code: 1008,
            reason: format!(
                "request rate limit exceeded: more than {} requests/s (burst {})",
                self.rate, self.burst
            ),
        })
    }
}

/// Take a token if there is a limiter.
pub fn allow(limiter: &mut Option<RateLimiter>) -> Result<(), CloseReason> {
    match limiter {
        Some(l) => l.take(Instant::now()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let p = ClientPolicy {
            rate_limit: 10.0,
            rate_burst: 5.0,
            ..ClientPolicy::default()
        };
        let mut l = RateLimiter::new(&p).unwrap();
        let t0 = l.last;
        for _ in 0..5 {
            l.take(t0).unwrap();
        }
        let e = l.take(t0).unwrap_err();
        assert_eq!(e.code, 1008);
        assert!(e.reason.contains("10 requests/s"), "{}", e.reason);
        // 100 ms later one more token.
        l.take(t0 + Duration::from_millis(100)).unwrap();
        assert!(l.take(t0 + Duration::from_millis(100)).is_err());
        assert!(RateLimiter::new(&ClientPolicy::default()).is_none());
    }

    #[test]
    fn slots_stop_at_the_maximum_and_come_back() {
        let s = ClientSlots::default();
        let a = s.take(2).unwrap();
        let _b = s.take(2).unwrap();
        let e = s.take(2).unwrap_err();
        assert!(e.contains("max-clients") && !e.contains('\n'), "{e}");
        drop(a);
        assert_eq!(s.open(), 1);
        let _c = s.take(2).unwrap();
        assert_eq!(s.open(), 2);
    }

    #[test]
    fn silence_past_interval_and_timeout_closes() {
        let p = ClientPolicy {
            ping_interval: Duration::from_millis(0),
            ping_timeout: Duration::from_millis(0),
            ..ClientPolicy::default()
        };
        let l = Liveness::default();
        std::thread::sleep(Duration::from_millis(2));
        let e = l.check(&p).unwrap_err();
        assert_eq!(e.code, 1001);
        l.heard();
        let p = ClientPolicy::default();
        assert!(l.check(&p).is_ok());
    }
}
