//! Where to connect when there is more than one server (docs/protocol.md §6.10).
//!
//! With a pair of ctid nodes only the primary serves. Another node accepts the WebSocket and
//! closes it at once with close code 4010 ([`CLOSE_NOT_PRIMARY`]) and the reason
//! `not primary; primary=<ws URL>` or `not primary; primary unknown`. A primary that hands over
//! closes its connections the same way.
//!
//! [`Search`] decides, without doing any IO, which URL to try next and when:
//!
//! * a primary named by a 4010 at once, with no backoff, even one that is not in the list;
//! * otherwise (a refused connect, a dropped or timed-out attempt, `primary unknown`) the next
//!   URL of the list, round robin, after the backoff of [`ResumeOptions`] (doubling from
//!   `min_backoff` to `max_backoff`);
//! * `give_up_after` bounds the whole search; a URL that can never work (not a WebSocket URL, an
//!   HTTP 4xx answer such as 401) is left out for the rest of the search, and when none is left
//!   the search ends at once.
//!
//! Redirects are bounded so that two nodes naming each other cannot keep a client bouncing:
//! after one URL taken from the list, each primary is followed at most once and at most
//! [`MAX_REDIRECTS`] of them; past that the search goes back to the list, with the backoff.
//!
//! [`open`] is one attempt (connect, read the first frame); [`find`] drives a search to its end
//! for a first connection. [`ResumingClient`](crate::ResumingClient) drives its own search while
//! reconnecting, so that it takes requests meanwhile.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use ctid_protocol::parse_event;

use crate::resume::{ResumeOptions, ATTEMPT_TIMEOUT};
use crate::{Error, Received, Result};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close code of a node that is not the primary (docs/protocol.md §6.10).
pub const CLOSE_NOT_PRIMARY: u16 = 4010;

/// Redirects (4010 naming a primary) followed in a row, after one URL taken from the list,
/// before going back to the list.
pub const MAX_REDIRECTS: usize = 4;

/// The shortest backoff used, whatever [`ResumeOptions::min_backoff`] says (no busy loop).
pub(crate) const BACKOFF_FLOOR: Duration = Duration::from_millis(10);

/// Why one attempt at a URL gave no connection to go on with.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Closed with 4010: the node is not the primary; the primary it names, if it knows one.
    NotPrimary {
        primary: Option<String>,
        why: String,
    },
    /// Worth another try later: refused, dropped, timed out, an unexpected close.
    Retry(String),
    /// This URL will not work however often it is tried (not a WebSocket URL, HTTP 4xx).
    Fatal(Box<tungstenite::Error>),
}

impl Failure {
    /// What went wrong, for messages.
    pub(crate) fn why(&self) -> String {
        match self {
            Failure::NotPrimary { why, .. } | Failure::Retry(why) => why.clone(),
            Failure::Fatal(e) => format!("cannot connect: {e}"),
        }
    }
}

/// The primary named by a close with `code` and `reason`: `None` if the close is not a 4010,
/// `Some(None)` for `not primary; primary unknown` (or a reason naming none),
/// `Some(Some(url))` for `not primary; primary=<url>`.
pub fn not_primary(code: u16, reason: &str) -> Option<Option<String>> {
    if code != CLOSE_NOT_PRIMARY {
        return None;
    }
    let url = reason.find("primary=").map(|at| {
        reason[at + "primary=".len()..]
            .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    Some(url.filter(|u| !u.is_empty()))
}

/// Sorts a failed WebSocket connect: retry later, or never with this URL.
fn connect_failure(e: tungstenite::Error) -> Failure {
    match &e {
        tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_) => {
            Failure::Fatal(Box::new(e))
        }
        tungstenite::Error::Http(resp)
            if resp.status().is_client_error() && !matches!(resp.status().as_u16(), 408 | 429) =>
        {
            Failure::Fatal(Box::new(e))
        }
        _ => Failure::Retry(format!("cannot connect: {e}")),
    }
}

/// Reads frames until one is an event (control frames skipped). A close with 4010 is
/// [`Failure::NotPrimary`].
pub(crate) async fn read_event(ws: &mut Ws, deadline: Instant) -> Result<Received, Failure> {
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_elapsed) => return Err(Failure::Retry("no event from the server in time".into())),
            Ok(frame) => frame,
        };
        match frame {
            None => return Err(Failure::Retry("connection closed".into())),
            Some(Err(e)) => return Err(Failure::Retry(e.to_string())),
            Some(Ok(Message::Close(f))) => {
                let (code, reason) = f
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                let why = format!("closed by the server ({code} {reason})");
                return Err(match not_primary(code, &reason) {
                    Some(primary) => Failure::NotPrimary { primary, why },
                    None => Failure::Retry(why),
                });
            }
            Some(Ok(Message::Text(text))) => {
                let raw = text.as_str().to_owned();
                return match parse_event(&raw) {
                    Ok(event) => Ok(Received { event, raw }),
                    Err(e) => Err(Failure::Retry(format!(
                        "undecodable frame from the server ({e}): {raw}"
                    ))),
                };
            }
            Some(Ok(_)) => {}
        }
    }
}

/// One attempt: opens a WebSocket to `url` and reads its first frame (a serving node names the
/// session in it; a node that is not primary closes with 4010 instead).
pub(crate) async fn open(url: &str, deadline: Instant) -> Result<(Ws, Received), Failure> {
    let mut ws =
        match tokio::time::timeout_at(deadline, tokio_tungstenite::connect_async(url)).await {
            Err(_elapsed) => return Err(Failure::Retry("cannot connect: timed out".into())),
            Ok(Err(e)) => return Err(connect_failure(e)),
            Ok(Ok((ws, _response))) => ws,
        };
    let first = read_event(&mut ws, deadline).await?;
    Ok((ws, first))
}

/// How a search starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Begin {
    /// A first connection: the next URL of the list at once.
    Now,
    /// After a lost connection: the next URL of the list after `min_backoff`.
    AfterBackoff,
    /// After a 4010 naming this primary: it at once.
    Redirect(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Try this URL now.
    Try(String),
    /// Nothing to try before this instant.
    Wait(Instant),
    /// Stop: the search is over.
    GiveUp(GaveUp),
}

/// Why a search ended without a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GaveUp {
    /// The last failure, `<url>: <why>`.
    pub last: String,
    /// Every URL failed for good (before `give_up_after` passed).
    pub exhausted: bool,
}

/// The plan of a search for the node that serves (see the module doc). Sans-IO: the caller
/// says what happened and when; [`Search::step`] says what to do.
#[derive(Debug)]
pub(crate) struct Search {
    urls: Vec<String>,
    opts: ResumeOptions,
    /// The list URL tried next.
    next: usize,
    /// URLs left out for the rest of this search (they failed for good).
    dead: Vec<bool>,
    give_up_at: Instant,
    /// The next wait after a failure.
    backoff: Duration,
    not_before: Option<Instant>,
    /// A primary named by a 4010, tried next.
    redirect: Option<String>,
    /// The primaries followed since the last URL taken from the list.
    followed: Vec<String>,
    last: Option<String>,
    over: bool,
}

impl Search {
    /// A search over `urls`, tried in their order first; `opts` with the backoff at least
    /// [`BACKOFF_FLOOR`] and `max_backoff` at least `min_backoff`.
    pub(crate) fn new(urls: &[String], opts: ResumeOptions) -> Search {
        let min = opts.min_backoff.max(BACKOFF_FLOOR);
        let opts = ResumeOptions {
            min_backoff: min,
            max_backoff: opts.max_backoff.max(min),
            give_up_after: opts.give_up_after,
        };
        Search {
            urls: urls.to_vec(),
            opts,
            next: 0,
            dead: vec![false; urls.len()],
            give_up_at: Instant::now(),
            backoff: min,
            not_before: None,
            redirect: None,
            followed: Vec::new(),
            last: None,
            over: false,
        }
    }

    /// The URLs of the list.
    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The options in use (after the floor was applied).
    pub(crate) fn opts(&self) -> ResumeOptions {
        self.opts
    }

    /// Starts a new search at `now`; the place in the list is kept from the last one.
    pub(crate) fn begin(&mut self, now: Instant, how: Begin) {
        self.give_up_at = now + self.opts.give_up_after;
        self.backoff = self.opts.min_backoff;
        self.dead.iter_mut().for_each(|d| *d = false);
        self.redirect = None;
        self.followed.clear();
        self.not_before = None;
        self.last = None;
        self.over = false;
        match how {
            Begin::Now => {}
            Begin::AfterBackoff => self.back_off(now),
            Begin::Redirect(url) => {
                self.followed.push(url.clone());
                self.redirect = Some(url);
            }
        }
    }

    /// What to do at `now`.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        if self.over {
            return self.give_up(false);
        }
        if let Some(url) = self.redirect.take() {
            return Step::Try(url);
        }
        let n = self.urls.len();
        let Some(i) = (0..n).map(|k| (self.next + k) % n).find(|&i| !self.dead[i]) else {
            self.over = true;
            return self.give_up(true);
        };
        if let Some(t) = self.not_before {
            if now < t && now < self.give_up_at {
                return Step::Wait(t.min(self.give_up_at));
            }
        }
        self.not_before = None;
        self.next = (i + 1) % n;
        self.followed.clear();
        Step::Try(self.urls[i].clone())
    }

    /// The attempt at `url` started by the last [`Search::step`] failed at `now`.
    pub(crate) fn failed(&mut self, now: Instant, url: &str, failure: &Failure) {
        self.last = Some(format!("{url}: {}", failure.why()));
        if now >= self.give_up_at {
            self.over = true;
            return;
        }
        match failure {
            Failure::NotPrimary {
                primary: Some(p), ..
            } if p != url && !self.followed.contains(p) && self.followed.len() < MAX_REDIRECTS => {
                self.followed.push(p.clone());
                self.redirect = Some(p.clone());
                return;
            }
            Failure::Fatal(_) => {
                for (u, dead) in self.urls.iter().zip(self.dead.iter_mut()) {
                    if u == url {
                        *dead = true;
                    }
                }
            }
            _ => {}
        }
        self.back_off(now);
    }

    /// `url` serves: a later search starts after it in the list (or where it was, for a URL
    /// that is not in the list).
    pub(crate) fn served(&mut self, url: &str) {
        if let Some(i) = self.urls.iter().position(|u| u == url) {
            self.next = (i + 1) % self.urls.len();
        }
    }

    /// The deadline of an attempt starting at `now`: [`ATTEMPT_TIMEOUT`], cut short by the end of
    /// the search (but never shorter than [`BACKOFF_FLOOR`]).
    pub(crate) fn attempt_deadline(&self, now: Instant) -> Instant {
        (now + ATTEMPT_TIMEOUT).min(self.give_up_at.max(now + BACKOFF_FLOOR))
    }

    fn back_off(&mut self, now: Instant) {
        self.not_before = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
    }

    fn give_up(&self, exhausted: bool) -> Step {
        let last = match &self.last {
            Some(l) => l.clone(),
            None if self.urls.is_empty() => "no server URL given".into(),
            None => "nothing tried".into(),
        };
        Step::GiveUp(GaveUp { last, exhausted })
    }
}

/// Runs a first search to its end: the URL that serves, its connection and its first frame.
pub(crate) async fn find(search: &mut Search) -> Result<(String, Ws, Received)> {
    search.begin(Instant::now(), Begin::Now);
    let mut fatal = None;
    loop {
        match search.step(Instant::now()) {
            Step::Wait(t) => tokio::time::sleep_until(t).await,
            Step::Try(url) => match open(&url, search.attempt_deadline(Instant::now())).await {
                Ok((ws, first)) => {
                    search.served(&url);
                    return Ok((url, ws, first));
                }
                Err(failure) => {
                    search.failed(Instant::now(), &url, &failure);
                    if let Failure::Fatal(e) = failure {
                        fatal = Some((url, e));
                    }
                }
            },
            Step::GiveUp(g) => {
                return Err(match fatal {
                    Some((url, source)) if search.urls().len() == 1 => {
                        Error::Connect { url, source }
                    }
                    _ => {
                        let reason = if g.exhausted {
                            format!("none of them can work; last: {}", g.last)
                        } else {
                            format!(
                                "no server served within {:?}; last: {}",
                                search.opts().give_up_after,
                                g.last
                            )
                        };
                        Error::NoServer {
                            urls: search.urls().to_vec(),
                            reason,
                        }
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn opts() -> ResumeOptions {
        ResumeOptions {
            min_backoff: 100 * MS,
            max_backoff: 400 * MS,
            give_up_after: 2000 * MS,
        }
    }

    fn urls(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn refused() -> Failure {
        Failure::Retry("cannot connect: refused".into())
    }

    fn redirect(to: &str) -> Failure {
        Failure::NotPrimary {
            primary: Some(to.into()),
            why: format!("closed by the server (4010 not primary; primary={to})"),
        }
    }

    fn unknown() -> Failure {
        Failure::NotPrimary {
            primary: None,
            why: "closed by the server (4010 not primary; primary unknown)".into(),
        }
    }

    fn try_url(s: Step) -> String {
        match s {
            Step::Try(u) => u,
            other => panic!("expected an attempt, got {other:?}"),
        }
    }

    #[test]
    fn the_reason_of_a_4010_names_the_primary() {
        assert_eq!(
            not_primary(4010, "not primary; primary=ws://10.0.0.2:7000/ws"),
            Some(Some("ws://10.0.0.2:7000/ws".into()))
        );
        assert_eq!(
            not_primary(4010, "not primary; primary unknown"),
            Some(None)
        );
        assert_eq!(not_primary(4010, ""), Some(None));
        assert_eq!(not_primary(4010, "not primary; primary="), Some(None));
        assert_eq!(not_primary(4001, "not primary; primary=ws://x/ws"), None);
        assert_eq!(not_primary(1000, ""), None);
    }

    #[test]
    fn a_named_primary_is_tried_at_once_then_the_list_goes_on_after_it() {
        let t0 = Instant::now();
        let mut s = Search::new(&urls(&["a", "b", "c"]), opts());
        s.begin(t0, Begin::Now);
        assert_eq!(try_url(s.step(t0)), "a");
        s.failed(t0, "a", &redirect("x")); // not in the list: followed anyway
        assert_eq!(try_url(s.step(t0)), "x");
        s.served("x");
        // Lost later: the list goes on after the URL that led there, after the backoff.
        let t1 = t0 + 5000 * MS;
        s.begin(t1, Begin::AfterBackoff);
        assert_eq!(s.step(t1), Step::Wait(t1 + 100 * MS));
        assert_eq!(try_url(s.step(t1 + 100 * MS)), "b");
        s.served("b");
        s.begin(t1, Begin::Redirect("a".into()));
        assert_eq!(try_url(s.step(t1)), "a");
    }

    #[test]
    fn refusals_and_an_unknown_primary_go_round_the_list_with_the_backoff() {
        let t0 = Instant::now();
        let mut s = Search::new(&urls(&["a", "b"]), opts());
        s.begin(t0, Begin::Now);
        let mut t = t0;
        let mut tried = Vec::new();
        let mut waits = Vec::new();
        while tried.len() < 5 {
            match s.step(t) {
                Step::Try(u) => {
                    let f = if u == "a" { refused() } else { unknown() };
                    s.failed(t, &u, &f);
                    tried.push(u);
                }
                Step::Wait(w) => {
                    waits.push(w - t);
                    t = w;
                }
                Step::GiveUp(g) => panic!("gave up early: {g:?}"),
            }
        }
        assert_eq!(tried, ["a", "b", "a", "b", "a"]);
        assert_eq!(waits, [100 * MS, 200 * MS, 400 * MS, 400 * MS]);
    }

    #[test]
    fn two_nodes_naming_each_other_are_not_followed_for_ever() {
        let t0 = Instant::now();
        let mut s = Search::new(&urls(&["a", "b"]), opts());
        s.begin(t0, Begin::Now);
        let mut t = t0;
        let mut attempts = 0;
        let mut at_once = 0;
        let mut max_at_once = 0;
        let g = loop {
            match s.step(t) {
                Step::Try(u) => {
                    attempts += 1;
                    at_once += 1;
                    max_at_once = max_at_once.max(at_once);
                    let other = if u == "a" { "b" } else { "a" };
                    s.failed(t, &u, &redirect(other));
                }
                Step::Wait(w) => {
                    at_once = 0;
                    t = w;
                }
                Step::GiveUp(g) => break g,
            }
        };
        // a → b → a, then the backoff: three connections per round, never a loop.
        assert_eq!(max_at_once, 3);
        assert!(attempts < 40, "{attempts} attempts");
        assert!(!g.exhausted);
        assert!(t >= t0 + 2000 * MS);
        assert!(g.last.contains("not primary"), "{g:?}");
    }

    #[test]
    fn a_chain_of_distinct_primaries_is_bounded() {
        let t0 = Instant::now();
        let mut s = Search::new(&urls(&["a"]), opts());
        s.begin(t0, Begin::Now);
        let mut followed = 0;
        let mut u = try_url(s.step(t0));
        loop {
            s.failed(t0, &u, &redirect(&format!("{u}'")));
            match s.step(t0) {
                Step::Try(next) => {
                    followed += 1;
                    u = next;
                }
                Step::Wait(_) => break,
                Step::GiveUp(g) => panic!("{g:?}"),
            }
        }
        assert_eq!(followed, MAX_REDIRECTS);
    }

    #[test]
    fn give_up_after_bounds_the_whole_search() {
        let t0 = Instant::now();
        let mut s = Search::new(&urls(&["a", "b"]), opts());
        s.begin(t0, Begin::Now);
        let mut t = t0;
        let g = loop {
            match s.step(t) {
                Step::Try(u) => s.failed(t, &u, &refused()),
                Step::Wait(w) => {
                    assert!(w <= t0 + 2000 * MS, "waits past the end");
                    t = w;
                }
                Step::GiveUp(g) => break g,
            }
        };
        assert_eq!(t, t0 + 2000 * MS, "the last attempt is made at the end");
        assert!(!g.exhausted);
        assert!(g.last.ends_with("cannot connect: refused"), "{g:?}");
        // A redirect coming after the end is not followed either.
        let mut s = Search::new(&urls(&["a"]), opts());
        s.begin(t0, Begin::Now);
        let u = try_url(s.step(t0));
        s.failed(t0 + 3000 * MS, &u, &redirect("b"));
        assert!(matches!(s.step(t0 + 3000 * MS), Step::GiveUp(_)));
    }

    #[test]
    fn urls_that_cannot_work_are_left_out_and_end_the_search_when_none_is_left() {
        let bad = || Failure::Fatal(Box::new(tungstenite::Error::AttackAttempt));
        let t0 = Instant::now();
        let mut s = Search::new(&urls(&["a", "b"]), opts());
        s.begin(t0, Begin::Now);
        assert_eq!(try_url(s.step(t0)), "a");
        s.failed(t0, "a", &bad());
        let Step::Wait(w) = s.step(t0) else {
            panic!("no backoff")
        };
        assert_eq!(try_url(s.step(w)), "b");
        s.failed(w, "b", &refused());
        let Step::Wait(w) = s.step(w) else {
            panic!("no backoff")
        };
        assert_eq!(try_url(s.step(w)), "b", "a is left out");
        s.failed(w, "b", &bad());
        assert!(matches!(
            s.step(w),
            Step::GiveUp(GaveUp {
                exhausted: true,
                ..
            })
        ));
        // A new search tries them again.
        s.begin(w, Begin::Now);
        assert!(matches!(s.step(w), Step::Try(_)));
        // No URL at all.
        let mut s = Search::new(&[], opts());
        s.begin(t0, Begin::Now);
        assert_eq!(
            s.step(t0),
            Step::GiveUp(GaveUp {
                last: "no server URL given".into(),
                exhausted: true
            })
        );
    }
}
