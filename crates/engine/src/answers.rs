//! How a client request sent to the switch gets its one answer: the requester waits for the
//! first resulting event on ThisDN (an *expectation*; that event carries its ReferenceID),
//! EventACK when the switch accepted but no event came within `request-timeout`, or EventError.
//! A request on a call that already has one in flight waits (`call-rq-gap`), and so does a
//! request on a device that has one in flight (`device-rq-gap`): one queue per call or device
//! ([`Lane`]), handed back when the first one is answered (accepted by the switch or refused) or
//! the gap has passed; a request the gap let go is sent without waiting again
//! (`docs/call-model.md`, "Requests → CSTA services").

use std::collections::{BTreeMap, VecDeque};

use ctid_protocol::{ConnId, Event, EventName, ForwardMode, Request};

use serde::{Deserialize, Serialize};

use crate::io::ClientId;

/// What to do after the expected event arrived (instead of answering).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Then {
    /// RequestMuteTransfer: once the consultation is dialling, complete the transfer.
    MuteTransfer { original: ConnId },
}

/// A client waiting for the event that answers its request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expect {
    pub id: u64,
    pub client: ClientId,
    #[serde(with = "crate::snapshot::with::request")]
    pub request: Request,
    pub dn: String,
    pub events: Vec<EventName>,
    pub conn: Option<ConnId>,
    pub accepted: bool,
    pub deadline_ms: Option<u64>,
    pub then: Option<Then>,
    /// Answer this event ourselves when the switch accepts (no CSTA event reports it).
    pub on_accept: Option<EventName>,
    /// Only an event with this ForwardMode answers (ForwardModeOnBusyAndNoAnswer: two
    /// SetForwarding, the second one's event answers).
    pub forward_mode: Option<ForwardMode>,
}

/// What a waiting request waits for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    /// The request in flight on this call (`call-rq-gap`).
    Call(ConnId),
    /// The request in flight on this device (`device-rq-gap`).
    Device(String),
}

/// A request handed back from waiting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub client: ClientId,
    #[serde(with = "crate::snapshot::with::request")]
    pub request: Request,
    /// The gap passed: send it even if the first one is still unanswered.
    pub gap_passed: bool,
}

/// Expectations, and requests waiting for their call or device.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answers {
    expects: Vec<Expect>,
    next_id: u64,
    /// Requests waiting for the one in flight on a call or device: (since, client, request).
    #[serde(with = "crate::snapshot::with::lanes")]
    waiting: BTreeMap<Lane, VecDeque<(u64, ClientId, Request)>>,
    /// Requests released from waiting, to be handled before the input is done.
    ready: VecDeque<Ready>,
}

impl Answers {
    /// Expect one of `events` on `dn` (on call `conn`, if given) for `client`'s `request`.
    #[allow(clippy::too_many_arguments)]
    pub fn expect(
        &mut self,
        client: ClientId,
        request: Request,
        dn: String,
        events: Vec<EventName>,
        conn: Option<ConnId>,
        then: Option<Then>,
        on_accept: Option<EventName>,
    ) -> u64 {
        self.next_id += 1;
        self.expects.push(Expect {
            id: self.next_id,
            client,
            request,
            dn,
            events,
            conn,
            accepted: false,
            deadline_ms: None,
            then,
            on_accept,
            forward_mode: None,
        });
        self.next_id
    }

    /// Only an event with ForwardMode `mode` answers expectation `id`.
    pub fn only_forward_mode(&mut self, id: u64, mode: ForwardMode) {
        if let Some(x) = self.expects.iter_mut().find(|x| x.id == id) {
            x.forward_mode = Some(mode);
        }
    }

    /// The expectation an event on `dn` answers, taken.
    pub fn take_matching(&mut self, dn: &str, ev: &Event) -> Option<Expect> {
        let i = self.expects.iter().position(|x| {
            x.dn == dn
                && x.events.contains(&ev.name)
                && (x.conn.is_none() || x.conn == ev.conn_id || ev.previous_conn_id == x.conn)
                && x.forward_mode.is_none_or(|m| ev.forward_mode == Some(m))
        })?;
        let x = self.expects.remove(i);
        self.device_free(&x.dn);
        Some(x)
    }

    /// The expectation `id`, taken.
    pub fn take(&mut self, id: u64) -> Option<Expect> {
        let i = self.expects.iter().position(|x| x.id == id)?;
        let x = self.expects.remove(i);
        self.device_free(&x.dn);
        Some(x)
    }

    /// The call request `id` acts on, while it is awaited.
    pub fn request_conn(&self, id: u64) -> Option<ConnId> {
        self.expects
            .iter()
            .find(|x| x.id == id)
            .and_then(|x| x.conn)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.expects.iter().any(|x| x.id == id)
    }

    /// The switch accepted request `id`: its event is awaited until `deadline_ms`. Returns the
    /// expectation when it is answered on acceptance (taken), else its call.
    pub fn accepted(&mut self, id: u64, deadline_ms: u64) -> Accepted {
        let Some(i) = self.expects.iter().position(|x| x.id == id) else {
            return Accepted::Gone;
        };
        let x = &mut self.expects[i];
        x.accepted = true;
        x.deadline_ms = Some(deadline_ms);
        let (dn, conn) = (x.dn.clone(), x.conn);
        let answer = x.on_accept.is_some().then(|| self.expects.remove(i));
        self.device_free(&dn);
        match answer {
            Some(x) => Accepted::Answer(Box::new(x)),
            None => Accepted::Waiting(conn),
        }
    }

    /// Is a request in flight on this call (not yet accepted by the switch)?
    pub fn busy(&self, conn: ConnId) -> bool {
        self.expects
            .iter()
            .any(|x| x.conn == Some(conn) && !x.accepted)
    }

    /// Is a request in flight on this device (not yet accepted by the switch)?
    pub fn device_busy(&self, dn: &str) -> bool {
        self.expects.iter().any(|x| x.dn == dn && !x.accepted)
    }

    /// The device `dn` has no request in flight any more: the next one waiting goes.
    fn device_free(&mut self, dn: &str) {
        if !self.device_busy(dn) {
            self.release_lane(Lane::Device(dn.to_string()), false);
        }
    }

    /// Does a request of `dn` wait for EventDialing (a call ctid makes)?
    pub fn dialing(&self, dn: &str) -> bool {
        self.dialing_request(dn).is_some()
    }

    /// The request the next EventDialing on `dn` answers (RequestMakeCall or a consultation):
    /// the call `dn` now originates is the one it asked for, and takes its `UserData`.
    pub fn dialing_request(&self, dn: &str) -> Option<&Request> {
        self.expects
            .iter()
            .find(|x| x.dn == dn && x.events.contains(&EventName::EventDialing))
            .map(|x| &x.request)
    }

    /// `client`'s request waits for the request in flight on `lane`.
    pub fn wait(&mut self, lane: Lane, since_ms: u64, client: ClientId, req: Request) {
        self.waiting
            .entry(lane)
            .or_default()
            .push_back((since_ms, client, req));
    }

    /// The request in flight on `conn` is answered: the next one waiting goes.
    pub fn release(&mut self, conn: Option<ConnId>) {
        if let Some(conn) = conn {
            self.release_lane(Lane::Call(conn), false);
        }
    }

    fn release_lane(&mut self, lane: Lane, gap_passed: bool) {
        if let Some(q) = self.waiting.get_mut(&lane) {
            if let Some((_, client, request)) = q.pop_front() {
                if q.is_empty() {
                    self.waiting.remove(&lane);
                }
                self.ready.push_back(Ready {
                    client,
                    request,
                    gap_passed,
                });
            }
        }
    }

    /// The next request released from waiting.
    pub fn next_ready(&mut self) -> Option<Ready> {
        self.ready.pop_front()
    }

    /// The gap of a lane: `call-rq-gap` or `device-rq-gap`.
    fn gap(lane: &Lane, gaps: Gaps) -> u64 {
        match lane {
            Lane::Call(_) => gaps.call_ms,
            Lane::Device(_) => gaps.device_ms,
        }
    }

    /// Accepted requests whose event did not come by `now_ms` (each gets EventACK), taken;
    /// waiting requests past their lane's gap are released.
    pub fn tick(&mut self, now_ms: u64, gaps: Gaps) -> Vec<Expect> {
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.expects)
            .into_iter()
            .partition(|x| x.accepted && x.deadline_ms.is_some_and(|d| d <= now_ms));
        self.expects = keep;
        let due: Vec<Lane> = self
            .waiting
            .iter()
            .filter(|(l, q)| {
                q.front()
                    .is_some_and(|(t, _, _)| now_ms >= t + Self::gap(l, gaps))
            })
            .map(|(l, _)| l.clone())
            .collect();
        for l in due {
            self.release_lane(l, true);
        }
        late
    }

    /// The earliest moment [`Answers::tick`] has something to do.
    pub fn next_deadline(&self, gaps: Gaps) -> Option<u64> {
        let a = self.expects.iter().filter_map(|x| x.deadline_ms).min();
        let b = self
            .waiting
            .iter()
            .filter_map(|(l, q)| q.front().map(|(t, _, _)| t + Self::gap(l, gaps)))
            .min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The link is gone: every request awaiting the switch, taken (each gets 54), expectations
    /// first, then waiting requests by call.
    pub fn link_lost(&mut self) -> Vec<(ClientId, Request)> {
        let mut v: Vec<(ClientId, Request)> = std::mem::take(&mut self.expects)
            .into_iter()
            .map(|x| (x.client, x.request))
            .collect();
        for (_, q) in std::mem::take(&mut self.waiting) {
            v.extend(q.into_iter().map(|(_, c, r)| (c, r)));
        }
        v
    }

    /// Every client number an expectation or a waiting or released request holds, to `f`.
    pub(crate) fn client_ids(&self, f: &mut dyn FnMut(ClientId)) {
        self.expects.iter().for_each(|x| f(x.client));
        for q in self.waiting.values() {
            q.iter().for_each(|(_, c, _)| f(*c));
        }
        self.ready.iter().for_each(|r| f(r.client));
    }

    /// A client left: nothing of it is answered or sent any more.
    pub fn client_gone(&mut self, client: ClientId) {
        self.expects.retain(|x| x.client != client);
        for q in self.waiting.values_mut() {
            q.retain(|(_, c, _)| *c != client);
        }
        self.waiting.retain(|_, q| !q.is_empty());
        self.ready.retain(|r| r.client != client);
        let dns: Vec<String> = self
            .waiting
            .keys()
            .filter_map(|l| match l {
                Lane::Device(d) => Some(d.clone()),
                Lane::Call(_) => None,
            })
            .collect();
        for d in dns {
            self.device_free(&d);
        }
    }
}

/// The gaps of the two kinds of lane (`call-rq-gap`, `device-rq-gap`), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gaps {
    pub call_ms: u64,
    pub device_ms: u64,
}

/// What acceptance by the switch means for an expectation.
#[derive(Debug)]
pub enum Accepted {
    /// Answered already (by its event, or its client left).
    Gone,
    /// Answer it now with its `on_accept` event.
    Answer(Box<Expect>),
    /// Its event is awaited; the call's waiting requests may go.
    Waiting(Option<ConnId>),
}
