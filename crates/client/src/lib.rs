//! ctid-client: an async client for ctid's WebSocket/JSON protocol (docs/protocol.md).
//!
//! [`Client`] owns one WebSocket connection. It numbers requests ([`Client::send`]), correlates
//! answers by ReferenceID ([`Client::request`]) and keeps every other event, in arrival order, for
//! [`Client::next_event`]. When the server closes the connection the client reports one
//! synthesised `EventServerDisconnected`, as T-Library client libraries do, then
//! [`Error::Closed`].
//!
//! [`ResumingClient`] keeps its session across lost connections instead: it reconnects and
//! resumes by itself (docs/protocol.md §6.9), so its caller sees one event stream.
//!
//! Both take a list of servers for a pair of ctid nodes ([`Client::connect_any`],
//! [`ResumingClient::connect_any`]): they connect to whichever node serves, following a close
//! 4010 to the primary it names (docs/protocol.md §6.10, module [`failover`]).
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use ctid_protocol as protocol;
use ctid_protocol::{parse_event, Event, EventName, Request, REFERENCE_ID_MAX};

pub mod display;
pub mod failover;
pub mod resume;

pub use resume::{is_resume_refusal, ResumeOptions, ResumingClient};

/// Errors of the client library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The WebSocket connection could not be opened.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL given to [`Client::connect`].
        url: String,
        /// What went wrong.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// Reading or writing the WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tungstenite::Error>),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// No answer to a request in time.
    #[error("no answer to {request} (ReferenceID {reference_id}) within {timeout:?}")]
    Timeout {
        /// The request name.
        request: String,
        /// Its ReferenceID.
        reference_id: u32,
        /// How long the client waited.
        timeout: Duration,
    },
    /// No server of the list served (docs/protocol.md §6.10): every attempt until
    /// `give_up_after` failed, or every URL failed for good.
    #[error("cannot connect to {}: {reason}", urls.join(", "))]
    NoServer {
        /// The URLs given.
        urls: Vec<String>,
        /// How long it tried, and the last failure.
        reason: String,
    },
    /// The connection opened but did not name a session (no first frame with `SessionID`).
    #[error("no session from {url}: {reason}")]
    NoSession {
        /// The URL that served.
        url: String,
        /// What arrived instead.
        reason: String,
    },
    /// [`ResumingClient`] stopped trying to resume its session (docs/protocol.md §6.9).
    #[error("gave up resuming the session: {reason}")]
    GaveUp {
        /// Why: how long it tried and the last failure, or the session taken over elsewhere.
        reason: String,
    },
    /// The server sent a frame that is not a valid event.
    #[error("undecodable frame from the server ({source}): {text}")]
    Decode {
        /// The frame.
        text: String,
        /// Why it is not an event.
        #[source]
        source: ctid_protocol::Error,
    },
}

/// Result with the client [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An event with the exact text it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The decoded event.
    pub event: Event,
    /// The text frame as received (for `ctictl --json`). Synthesised events carry their own
    /// encoding.
    pub raw: String,
}

/// One connection to ctid.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    url: String,
    next_reference_id: u32,
    pending: VecDeque<Received>,
    closed: bool,
    disconnect_reported: bool,
}

impl Client {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:7000/ws`).
    pub async fn connect(url: &str) -> Result<Client> {
        let (ws, _response) =
            tokio_tungstenite::connect_async(url)
                .await
                .map_err(|e| Error::Connect {
                    url: url.to_owned(),
                    source: Box::new(e),
                })?;
        Ok(Client {
            ws,
            url: url.to_owned(),
            next_reference_id: 1,
            pending: VecDeque::new(),
            closed: false,
            disconnect_reported: false,
        })
    }

    /// Connects to whichever server of `urls` serves (docs/protocol.md §6.10): a node that is not
    /// the primary closes with 4010 and the client goes to the primary it names at once; a
    /// refused or dropped attempt, or `primary unknown`, moves on to the next URL after the
    /// backoff of `opts`, until `opts.give_up_after` has passed ([`Error::NoServer`]). Unlike
    /// [`Client::connect`] it reads the first frame (that is how a 4010 shows), and keeps it as
    /// the first event [`Client::next_event`] returns.
    pub async fn connect_any(urls: &[String], opts: ResumeOptions) -> Result<Client> {
        let mut search = failover::Search::new(urls, opts);
        let (url, ws, first) = failover::find(&mut search).await?;
        Ok(Client {
            ws,
            url,
            next_reference_id: 1,
            pending: VecDeque::from([first]),
            closed: false,
            disconnect_reported: false,
        })
    }

    /// The URL this client is connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next ReferenceID this client will assign (1, 2, ... wrapping after 2^31−1).
    pub fn allocate_reference_id(&mut self) -> u32 {
        let id = self.next_reference_id;
        self.next_reference_id = if id >= REFERENCE_ID_MAX { 1 } else { id + 1 };
        id
    }

    /// Sends a request, first giving it the next ReferenceID if it has none; returns its
    /// ReferenceID.
    pub async fn send(&mut self, req: &mut Request) -> Result<u32> {
        let id = match req.reference_id {
            Some(id) => id,
            None => {
                let id = self.allocate_reference_id();
                req.reference_id = Some(id);
                id
            }
        };
        self.send_text(req.to_json()).await?;
        Ok(id)
    }

    /// Sends one text frame as it is (no checks; for tests and `ctictl send`).
    pub async fn send_text(&mut self, text: String) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| Error::WebSocket(Box::new(e)))
    }

    /// The next event (buffered ones first), or `None` after `timeout` without one.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        Ok(self.next_received(timeout).await?.map(|r| r.event))
    }

    /// Like [`Client::next_event`], with the received text.
    pub async fn next_received(&mut self, timeout: Duration) -> Result<Option<Received>> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(Some(r));
        }
        let deadline = Instant::now() + timeout;
        self.read_until(deadline).await
    }

    /// Sends `req` (assigning a ReferenceID if needed) and waits up to `timeout` for the event that
    /// carries its ReferenceID: the success event, EventACK or EventError. Other events that arrive
    /// meanwhile are kept for [`Client::next_event`], in order.
    pub async fn request(&mut self, mut req: Request, timeout: Duration) -> Result<Event> {
        Ok(self.request_received(&mut req, timeout).await?.event)
    }

    /// Like [`Client::request`], with the received text; `req` gets its ReferenceID.
    pub async fn request_received(
        &mut self,
        req: &mut Request,
        timeout: Duration,
    ) -> Result<Received> {
        let id = self.send(req).await?;
        let name = req.name.as_str();
        self.wait_for(timeout, name, id, |e| e.reference_id == Some(id))
            .await
    }

    /// Waits up to `timeout` for the first event (buffered or new) that `matches`; other events
    /// stay buffered. `request`/`reference_id` only label the timeout error.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        request: &str,
        reference_id: u32,
        mut matches: impl FnMut(&Event) -> bool,
    ) -> Result<Received> {
        if let Some(i) = self.pending.iter().position(|r| matches(&r.event)) {
            return Ok(self.pending.remove(i).expect("index from position"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_until(deadline).await? {
                None => {
                    return Err(Error::Timeout {
                        request: request.to_owned(),
                        reference_id,
                        timeout,
                    })
                }
                Some(r) if matches(&r.event) => return Ok(r),
                Some(r) => {
                    if r.event.name == EventName::EventServerDisconnected {
                        self.pending.push_back(r);
                        return Err(Error::Closed);
                    }
                    self.pending.push_back(r);
                }
            }
        }
    }

    /// Closes the connection politely, with close code 1000: the session ends at once
    /// (docs/protocol.md §6.9; dropping a `Client` without closing leaves it resumable).
    pub async fn close(mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        };
        match self.ws.close(Some(frame)).await {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Ok(()),
            Err(e) => Err(Error::WebSocket(Box::new(e))),
        }
    }

    /// Reads frames until one is an event, the deadline passes (`None`) or the connection ends
    /// (one synthesised EventServerDisconnected, then [`Error::Closed`]).
    async fn read_until(&mut self, deadline: Instant) -> Result<Option<Received>> {
        loop {
            if self.closed {
                return self.report_disconnect(None);
            }
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_elapsed) => return Ok(None),
                Ok(frame) => frame,
            };
            match frame {
                None | Some(Ok(Message::Close(_))) => {
                    self.closed = true;
                    return self.report_disconnect(Some("connection closed by the server"));
                }
                Some(Err(e)) => {
                    self.closed = true;
                    return self.report_disconnect(Some(&e.to_string()));
                }
                Some(Ok(Message::Text(text))) => {
                    let raw = text.as_str().to_owned();
                    return match parse_event(&raw) {
                        Ok(event) => Ok(Some(Received { event, raw })),
                        Err(source) => Err(Error::Decode { text: raw, source }),
                    };
                }
                Some(Ok(_)) => continue, // ping/pong/binary: nothing for the caller
            }
        }
    }

    fn report_disconnect(&mut self, reason: Option<&str>) -> Result<Option<Received>> {
        if self.disconnect_reported {
            return Err(Error::Closed);
        }
        self.disconnect_reported = true;
        let mut event = Event::new(EventName::EventServerDisconnected);
        event.error_message = Some(reason.unwrap_or("connection closed").to_owned());
        event.time = ctid_protocol::format_time(std::time::SystemTime::now());
        let raw = event.to_json();
        Ok(Some(Received { event, raw }))
    }
}
