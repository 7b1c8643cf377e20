//! [`ResumingClient`]: a client whose session outlives its connections (docs/protocol.md §6.9).
//!
//! ctid keeps a session for `resume-window` after any loss of its connection but a clean close
//! (1000), with its registrations and the events addressed to it. This client uses that: when its
//! connection drops (a read or write error, end of stream, a close frame it did not ask for) it
//! reconnects with backoff, sends `RequestResumeSession` with the session's `SessionID` and the
//! last `EventSequenceNumber` it received, and carries on. The caller sees one stream: the events
//! before the loss, `EventSessionResumed`, the replayed events with their original numbers, then
//! live events: none twice, none skipped. A [`ResumingClient::request`] waiting across the loss
//! keeps waiting (ctid keeps its answer and replays it).
//!
//! A refused resume (EventError 1901–1905: unknown, expired, events lost, another token) leaves
//! the new connection on its own fresh session: the client goes on with it (its `SessionID`
//! becomes [`ResumingClient::session_id`]) and hands the new connection's first frame and the
//! EventError to the caller through [`ResumingClient::next_event`]; the caller registers again.
//!
//! With a list of servers ([`ResumingClient::connect_any`], a pair of ctid nodes,
//! docs/protocol.md §6.10) the client looks for the node that serves, first and after every
//! loss: a close 4010 naming the primary sends it there at once; a refused connect, a drop or
//! `primary unknown` sends it to the next URL of the list after the backoff (module
//! [`failover`](crate::failover)). The session is resumed on whichever node serves.
//!
//! The connection is driven by a task of its own, so a drop is noticed and the session resumed
//! even while the caller is busy elsewhere; the methods talk to that task over channels.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use ctid_protocol::{parse_event, Event, EventName, Request, REFERENCE_ID_MAX};

use crate::failover::{self, not_primary, read_event, Begin, Failure, Search, Step, Ws};
use crate::{Error, Received, Result};

/// How long one attempt to reconnect may take: TCP and WebSocket handshake, the first frame, the
/// answer to `RequestResumeSession`. Also the bound on the first connection's first frame.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long writing one frame may take before the connection counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Close code ctid uses when the session was resumed on another connection (§6.9).
const CLOSE_RESUMED_ELSEWHERE: u16 = 4001;

/// How [`ResumingClient`] reconnects (and how [`ResumingClient::connect_any`] and
/// [`Client::connect_any`](crate::Client::connect_any) look for the node that serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeOptions {
    /// The wait before the first attempt after a loss; doubled after each failed attempt
    /// (default 100 ms; at least 10 ms).
    pub min_backoff: Duration,
    /// The longest wait between attempts (default 5 s).
    pub max_backoff: Duration,
    /// Stop trying this long after the loss, or after the first attempt of a first connection
    /// (default 60 s): it bounds the whole search through the list. Keep it longer than the
    /// server's `resume-window` so that a server back within the window is not missed.
    pub give_up_after: Duration,
}

impl Default for ResumeOptions {
    fn default() -> Self {
        ResumeOptions {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

/// True for the EventError of a refused `RequestResumeSession` (1901–1905, §6.9): after it the
/// client is on a fresh session and must register again.
pub fn is_resume_refusal(ev: &Event) -> bool {
    ev.name == EventName::EventError && ev.error_code.is_some_and(|c| (1901..=1905).contains(&c.0))
}

/// What the connection task hands to the [`ResumingClient`], in order.
enum Item {
    /// An event of the current session.
    Event(Received),
    /// EventSessionResumed: a resume succeeded (not an event of the session's stream).
    Resumed(Received),
    /// The resume was refused; from here on the session is this one (the new connection's).
    Fresh(String),
    /// A frame from the server that is not an event.
    Undecodable {
        text: String,
        source: ctid_protocol::Error,
    },
    /// The task stopped trying to reconnect; why.
    GaveUp(String),
}

enum Cmd {
    Send {
        req: Box<Request>,
        ack: oneshot::Sender<Result<u32>>,
    },
    Close {
        ack: oneshot::Sender<Result<()>>,
    },
}

/// A client that keeps its session across lost connections, resuming it by itself
/// (docs/protocol.md §6.9). Dropping it without [`ResumingClient::close`] leaves the session
/// detached (resumable) on the server until its `resume-window` passes.
pub struct ResumingClient {
    cmds: mpsc::Sender<Cmd>,
    items: mpsc::UnboundedReceiver<Item>,
    pending: VecDeque<Received>,
    session_id: String,
    last_sequence: u64,
    resumes: u64,
    gave_up: Option<String>,
    /// What the connection task shares at once (before the caller reads its items).
    shared: Arc<Mutex<Shared>>,
}

/// What the connection task shares with the [`ResumingClient`] as soon as it happens.
#[derive(Debug, Default)]
struct Shared {
    /// The URL of the connection in use (or the last one, while reconnecting).
    url: String,
    /// Why the task gave up.
    gave_up: Option<String>,
}

/// Locks `shared`, whatever a panicking holder left (plain data: still usable).
fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ResumingClient {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:7000/ws`) and reads its first frame,
    /// which names the session. The first frame is the first event [`ResumingClient::next_event`]
    /// returns. This is [`ResumingClient::connect_any`] with a list of one: a refused connect is
    /// tried again with the backoff of `opts` until `give_up_after`.
    pub async fn connect(url: &str, opts: ResumeOptions) -> Result<ResumingClient> {
        Self::connect_any(&[url.to_owned()], opts).await
    }

    /// Connects to whichever server of `urls` serves (docs/protocol.md §6.10) and reads its first
    /// frame, which names the session (the first event [`ResumingClient::next_event`] returns).
    ///
    /// The search, here and after every lost connection: a node that is not the primary closes
    /// with 4010 and the client goes to the primary it names at once (also one not in `urls`;
    /// redirects are bounded, see [`failover`](crate::failover)); a refused or dropped attempt,
    /// or `primary unknown`, moves on to the next URL, round robin, after the backoff of `opts`.
    /// `opts.give_up_after` bounds the whole search: then [`Error::NoServer`] (or
    /// [`Error::Connect`] when the one URL given can never work, such as a 401).
    pub async fn connect_any(urls: &[String], opts: ResumeOptions) -> Result<ResumingClient> {
        let mut search = Search::new(urls, opts);
        let (url, ws, first) = failover::find(&mut search).await?;
        let Some(session_id) = first.event.session_id.clone() else {
            return Err(Error::NoSession {
                url,
                reason: format!("the first frame carries no SessionID: {}", first.raw),
            });
        };
        let last_sequence = first.event.event_sequence_number;
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (item_tx, item_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared { url, gave_up: None }));
        let task = Task {
            shared: shared.clone(),
            search,
            cmds: cmd_rx,
            items: item_tx,
            session_id: session_id.clone(),
            last_sequence,
            next_reference_id: 1,
            queued: VecDeque::new(),
            replay_left: 0,
            resumed_at: 0,
        };
        tokio::spawn(task.run(ws));
        Ok(ResumingClient {
            cmds: cmd_tx,
            items: item_rx,
            pending: VecDeque::from([first]),
            session_id,
            last_sequence,
            resumes: 0,
            gave_up: None,
            shared,
        })
    }

    /// The URL of the server in use: the one the connection goes to, or while reconnecting the
    /// one it last went to. It changes when the client moves to another node.
    pub fn current_url(&self) -> String {
        lock(&self.shared).url.clone()
    }

    /// The current session's `SessionID` (a refused resume replaces it with the new
    /// connection's).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The last `EventSequenceNumber` of the session among the events handed out or buffered
    /// (EventSessionResumed and the first frames of resuming connections do not count).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// How many resumes succeeded so far (as far as the events taken from the connection show).
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// Sends a request, first giving it the next ReferenceID if it has none; returns its
    /// ReferenceID. While the connection is down the request waits and goes out on the resumed
    /// one; a request whose writing failed is written again there (a frame that was not written
    /// whole never reached ctid). Cancelling this call before the request went out withdraws it.
    pub async fn send(&mut self, req: &mut Request) -> Result<u32> {
        let (ack, rx) = oneshot::channel();
        let cmd = Cmd::Send {
            req: Box::new(req.clone()),
            ack,
        };
        if self.cmds.send(cmd).await.is_err() {
            return Err(self.ended());
        }
        let id = rx.await.map_err(|_| self.ended())??;
        req.reference_id = Some(id);
        Ok(id)
    }

    /// Sends `req` and waits up to `timeout` for the event that carries its ReferenceID (the
    /// success event, EventACK or EventError), across resumes. Other events that arrive meanwhile
    /// are kept for [`ResumingClient::next_event`], in order.
    pub async fn request(&mut self, mut req: Request, timeout: Duration) -> Result<Event> {
        Ok(self.request_received(&mut req, timeout).await?.event)
    }

    /// Like [`ResumingClient::request`], with the received text; `req` gets its ReferenceID.
    pub async fn request_received(
        &mut self,
        req: &mut Request,
        timeout: Duration,
    ) -> Result<Received> {
        let deadline = Instant::now() + timeout;
        let name = req.name.to_string();
        let timed_out = |id| Error::Timeout {
            request: name.clone(),
            reference_id: id,
            timeout,
        };
        let id = match tokio::time::timeout_at(deadline, self.send(req)).await {
            Ok(id) => id?,
            Err(_elapsed) => return Err(timed_out(req.reference_id.unwrap_or(0))),
        };
        if let Some(i) = self
            .pending
            .iter()
            .position(|r| r.event.reference_id == Some(id))
        {
            if let Some(r) = self.pending.remove(i) {
                return Ok(r);
            }
        }
        loop {
            match self.read_until(deadline).await? {
                None => return Err(timed_out(id)),
                Some(r) if r.event.reference_id == Some(id) => return Ok(r),
                Some(r) => {
                    let gave_up = r.event.name == EventName::EventServerDisconnected
                        && self.gave_up.is_some();
                    self.pending.push_back(r);
                    if gave_up {
                        return Err(self.ended());
                    }
                }
            }
        }
    }

    /// The next event (buffered ones first), or `None` after `timeout` without one.
    /// EventSessionResumed is among them (filter it if it is of no interest), and so are, after a
    /// refused resume, the new connection's first frame and the EventError
    /// ([`is_resume_refusal`]). When the client gives up reconnecting it returns one synthesised
    /// EventServerDisconnected (ErrorMessage: why), then [`Error::GaveUp`].
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        Ok(self.next_received(timeout).await?.map(|r| r.event))
    }

    /// Like [`ResumingClient::next_event`], with the received text.
    pub async fn next_received(&mut self, timeout: Duration) -> Result<Option<Received>> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(Some(r));
        }
        self.read_until(Instant::now() + timeout).await
    }

    /// Closes the connection with close code 1000: the session ends at once. If the connection
    /// is down at that moment, one attempt is made to resume the session and close it cleanly;
    /// failing that the session is left to expire on the server.
    pub async fn close(self) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close { ack }).await.is_err() {
            return Ok(()); // the connection task has ended: nothing is open
        }
        match tokio::time::timeout(ATTEMPT_TIMEOUT + WRITE_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(Error::Closed),
        }
    }

    /// The error once the connection task has ended.
    fn ended(&self) -> Error {
        let reason = self
            .gave_up
            .clone()
            .or_else(|| lock(&self.shared).gave_up.clone());
        match reason {
            Some(reason) => Error::GaveUp { reason },
            None => Error::Closed,
        }
    }

    /// Takes items until one is an event to hand out, or the deadline passes (`None`).
    async fn read_until(&mut self, deadline: Instant) -> Result<Option<Received>> {
        loop {
            let item = match tokio::time::timeout_at(deadline, self.items.recv()).await {
                Err(_elapsed) => return Ok(None),
                Ok(None) => return Err(self.ended()),
                Ok(Some(item)) => item,
            };
            match item {
                Item::Event(r) => {
                    self.last_sequence = self.last_sequence.max(r.event.event_sequence_number);
                    return Ok(Some(r));
                }
                Item::Resumed(r) => {
                    self.resumes += 1;
                    return Ok(Some(r));
                }
                Item::Fresh(id) => {
                    self.session_id = id;
                    self.last_sequence = 0;
                }
                Item::Undecodable { text, source } => return Err(Error::Decode { text, source }),
                Item::GaveUp(reason) => {
                    let mut event = Event::new(EventName::EventServerDisconnected);
                    event.error_message = Some(reason.clone());
                    event.time = ctid_protocol::format_time(std::time::SystemTime::now());
                    self.gave_up = Some(reason);
                    let raw = event.to_json();
                    return Ok(Some(Received { event, raw }));
                }
            }
        }
    }
}

/// Why serving one connection stopped.
enum End {
    /// The connection is gone; why.
    Lost(String),
    /// The [`ResumingClient`] was dropped.
    Gone,
    /// The caller asked for a clean close.
    Close(oneshot::Sender<Result<()>>),
    /// Another connection took the session over (close code 4001): resuming would take it back.
    TakenOver(String),
    /// The node is no longer primary (close code 4010); the primary it names, if any.
    NotPrimary {
        why: String,
        primary: Option<String>,
    },
}

/// The task that owns the connection: reads events, writes requests, resumes.
struct Task {
    shared: Arc<Mutex<Shared>>,
    /// Where to reconnect: the list of servers and the place in it.
    search: Search,
    cmds: mpsc::Receiver<Cmd>,
    items: mpsc::UnboundedSender<Item>,
    session_id: String,
    /// The last EventSequenceNumber of the session read from the server.
    last_sequence: u64,
    next_reference_id: u32,
    /// Requests waiting for a connection.
    queued: VecDeque<(Box<Request>, oneshot::Sender<Result<u32>>)>,
    /// Replayed events still to come after EventSessionResumed, and the N it was asked for:
    /// one numbered N or lower would be a duplicate.
    replay_left: u64,
    resumed_at: u64,
}

impl Task {
    async fn run(mut self, mut ws: Ws) {
        loop {
            let (lost, primary) = match self.serve(&mut ws).await {
                End::Lost(reason) => (reason, None),
                End::NotPrimary { why, primary } => (why, primary),
                // Dropping the socket without a close frame: the session stays resumable.
                End::Gone => return,
                End::Close(ack) => {
                    let _ = ack.send(close_ws(&mut ws).await);
                    return;
                }
                End::TakenOver(reason) => {
                    self.give_up(reason);
                    return;
                }
            };
            match self.reconnect(lost, primary).await {
                Some(new) => ws = new,
                None => return,
            }
        }
    }

    fn allocate_reference_id(&mut self) -> u32 {
        let id = self.next_reference_id;
        self.next_reference_id = if id >= REFERENCE_ID_MAX { 1 } else { id + 1 };
        id
    }

    /// Serves one connection until it ends: queued requests first, then events and requests as
    /// they come.
    async fn serve(&mut self, ws: &mut Ws) -> End {
        while let Some((req, ack)) = self.queued.pop_front() {
            if let Err(end) = self.write(ws, req, ack).await {
                return end;
            }
        }
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    None => return End::Lost("connection closed".into()),
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        let why = format!("closed by the server ({code} {reason})");
                        if code == CLOSE_RESUMED_ELSEWHERE {
                            return End::TakenOver(why);
                        }
                        return match not_primary(code, &reason) {
                            Some(primary) => End::NotPrimary { why, primary },
                            None => End::Lost(why),
                        };
                    }
                    Some(Ok(Message::Text(text))) => {
                        if !self.deliver(text.as_str().to_owned()) {
                            return End::Gone;
                        }
                    }
                    Some(Ok(_)) => {} // ping/pong/binary: nothing for the caller
                },
                cmd = self.cmds.recv() => match cmd {
                    None => return End::Gone,
                    Some(Cmd::Close { ack }) => return End::Close(ack),
                    Some(Cmd::Send { req, ack }) => {
                        if let Err(end) = self.write(ws, req, ack).await {
                            return end;
                        }
                    }
                },
            }
        }
    }

    /// Writes one request and acknowledges it. A failed write keeps the request queued for the
    /// next connection and ends this one.
    async fn write(
        &mut self,
        ws: &mut Ws,
        mut req: Box<Request>,
        ack: oneshot::Sender<Result<u32>>,
    ) -> Result<(), End> {
        if ack.is_closed() {
            return Ok(()); // the caller stopped waiting before it went out: withdrawn
        }
        let id = match req.reference_id {
            Some(id) => id,
            None => {
                let id = self.allocate_reference_id();
                req.reference_id = Some(id);
                id
            }
        };
        let sent = tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::text(req.to_json()))).await;
        match sent {
            Ok(Ok(())) => {
                let _ = ack.send(Ok(id));
                Ok(())
            }
            // Not the connection's fault: this request cannot be written at all.
            Ok(Err(e @ (tungstenite::Error::Capacity(_) | tungstenite::Error::Utf8(_)))) => {
                let _ = ack.send(Err(Error::WebSocket(Box::new(e))));
                Ok(())
            }
            Ok(Err(e)) => {
                self.queued.push_front((req, ack));
                Err(End::Lost(e.to_string()))
            }
            Err(_elapsed) => {
                self.queued.push_front((req, ack));
                Err(End::Lost(format!(
                    "writing took more than {WRITE_TIMEOUT:?}"
                )))
            }
        }
    }

    /// Hands one frame of the session to the caller; false once the caller is gone.
    fn deliver(&mut self, raw: String) -> bool {
        let item = match parse_event(&raw) {
            Ok(event) => {
                let n = event.event_sequence_number;
                if self.replay_left > 0 {
                    self.replay_left -= 1;
                    if n <= self.resumed_at {
                        return true; // already handed out before the loss
                    }
                }
                self.last_sequence = self.last_sequence.max(n);
                Item::Event(Received { event, raw })
            }
            Err(source) => Item::Undecodable { text: raw, source },
        };
        self.items.send(item).is_ok()
    }

    /// Looks for the node that serves (the primary a 4010 named at once, else the list with
    /// backoff) until a resume (or a refusal) gives a connection to go on with; `None` when the
    /// caller is gone, closed, or the search ended.
    async fn reconnect(&mut self, lost: String, primary: Option<String>) -> Option<Ws> {
        let how = match primary {
            Some(url) => Begin::Redirect(url),
            None => Begin::AfterBackoff,
        };
        self.search.begin(Instant::now(), how);
        loop {
            match self.search.step(Instant::now()) {
                Step::Wait(wake) => loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => break,
                        cmd = self.cmds.recv() => match cmd {
                            None => return None,
                            Some(Cmd::Send { req, ack }) => self.queued.push_back((req, ack)),
                            Some(Cmd::Close { ack }) => {
                                let _ = ack.send(self.close_while_down().await);
                                return None;
                            }
                        },
                    }
                },
                Step::Try(url) => {
                    let deadline = self.search.attempt_deadline(Instant::now());
                    match self.attempt(&url, deadline).await {
                        Ok(ws) => {
                            self.search.served(&url);
                            lock(&self.shared).url = url;
                            return Some(ws);
                        }
                        Err(failure) => self.search.failed(Instant::now(), &url, &failure),
                    }
                }
                Step::GiveUp(g) => {
                    let within = if g.exhausted {
                        "(no URL can work)".to_owned()
                    } else {
                        format!("within {:?}", self.search.opts().give_up_after)
                    };
                    self.give_up(format!(
                        "session {} not resumed {within} (connection lost: {lost}; last attempt: {})",
                        self.session_id, g.last
                    ));
                    return None;
                }
            }
        }
    }

    /// A close asked for while the connection is down: one attempt to resume the session (on the
    /// last URL, or the primary it names) and close it cleanly; failing that the session is left
    /// to expire on the server.
    async fn close_while_down(&mut self) -> Result<()> {
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let url = lock(&self.shared).url.clone();
        let ws = match self.attempt(&url, deadline).await {
            Ok(ws) => Some(ws),
            Err(Failure::NotPrimary {
                primary: Some(p), ..
            }) => self.attempt(&p, deadline).await.ok(),
            Err(_) => None,
        };
        match ws {
            Some(mut ws) => close_ws(&mut ws).await,
            None => Ok(()),
        }
    }

    /// One attempt: connect, read the first frame, RequestResumeSession, its answer. Nothing is
    /// handed to the caller unless it gives a connection to go on with.
    async fn attempt(&mut self, url: &str, deadline: Instant) -> Result<Ws, Failure> {
        // The first frame names the connection's own fresh session: thrown away on a resume.
        let (mut ws, first) = failover::open(url, deadline).await?;
        let Some(fresh) = first.event.session_id.clone() else {
            return Err(Failure::Retry(format!(
                "the first frame carries no SessionID: {}",
                first.raw
            )));
        };
        let mut prelude = vec![first];
        let id = self.allocate_reference_id();
        let mut req = Request::resume_session(self.session_id.clone(), self.last_sequence);
        req.reference_id = Some(id);
        match tokio::time::timeout_at(deadline, ws.send(Message::text(req.to_json()))).await {
            Err(_elapsed) => {
                return Err(Failure::Retry(
                    "writing RequestResumeSession timed out".into(),
                ))
            }
            Ok(Err(e)) => return Err(Failure::Retry(format!("writing RequestResumeSession: {e}"))),
            Ok(Ok(())) => {}
        }
        let gone = || Failure::Retry("the client is gone".into());
        loop {
            let r = read_event(&mut ws, deadline).await?;
            if r.event.reference_id != Some(id) {
                prelude.push(r); // of the fresh session
                continue;
            }
            if r.event.name == EventName::EventSessionResumed {
                self.replay_left = r
                    .event
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get_int("Replayed"))
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0);
                self.resumed_at = self.last_sequence;
                return if self.items.send(Item::Resumed(r)).is_ok() {
                    Ok(ws)
                } else {
                    Err(gone())
                };
            }
            if r.event.is_error() {
                // Refused: go on with this connection's fresh session; the caller registers again.
                self.session_id = fresh.clone();
                self.last_sequence = 0;
                self.replay_left = 0;
                let mut ok = self.items.send(Item::Fresh(fresh)).is_ok();
                for p in prelude.into_iter().chain([r]) {
                    self.last_sequence = self.last_sequence.max(p.event.event_sequence_number);
                    ok &= self.items.send(Item::Event(p)).is_ok();
                }
                return if ok { Ok(ws) } else { Err(gone()) };
            }
            return Err(Failure::Retry(format!(
                "unexpected answer to RequestResumeSession: {}",
                r.raw
            )));
        }
    }

    /// Stops: requests still waiting fail, the caller gets the reason.
    fn give_up(&mut self, reason: String) {
        lock(&self.shared).gave_up = Some(reason.clone());
        for (_, ack) in self.queued.drain(..) {
            let _ = ack.send(Err(Error::GaveUp {
                reason: reason.clone(),
            }));
        }
        let _ = self.items.send(Item::GaveUp(reason));
    }
}

/// A clean close (1000): the session ends on the server.
async fn close_ws(ws: &mut Ws) -> Result<()> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    match tokio::time::timeout(WRITE_TIMEOUT, ws.close(Some(frame))).await {
        Ok(Ok(()) | Err(tungstenite::Error::ConnectionClosed)) => Ok(()),
        Ok(Err(e)) => Err(Error::WebSocket(Box::new(e))),
        Err(_elapsed) => Err(Error::Closed),
    }
}
