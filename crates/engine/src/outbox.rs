//! The outbox: every client event leaves through here. It numbers events
//! (`EventSequenceNumber`, one counter for the engine's life), stamps their `time` from the
//! input's [`Now`], drops addressees that have gone, and writes refusals (EventError with the
//! request's ReferenceID). [`Notice`] is how parts that build events (the call model, agents,
//! features) hand them to the orchestrator for delivery (`docs/architecture.md`, "The outbox").

use ctid_csta::CstaError;
use ctid_protocol::{ErrorCode, Event, Request};
use tracing::info;

use crate::clients::Clients;
use crate::io::{ClientId, Now, Output};

/// A refusal: the T-Library code and the message.
pub type Refusal = (ErrorCode, String);

/// An event of a DN a part built, for the orchestrator to send (the part's caller knows the DN).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// To the clients registered on the DN (and the host's clients of an agent-login guest),
    /// answering a requester that waits for it.
    Deliver(Event),
    /// To the clients registered on the DN, answering nobody (catch-up after a resync).
    Registrants(Event),
}

impl Notice {
    pub fn event(&self) -> &Event {
        match self {
            Notice::Deliver(e) | Notice::Registrants(e) => e,
        }
    }
}

/// Sequence numbers, stamping, and the counters of what went out.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Outbox {
    seq: u64,
    now: Now,
    /// Client event copies sent.
    pub events_sent: u64,
    /// Requests answered with EventError.
    pub request_errors: u64,
}

impl Outbox {
    /// The time of the input being handled (event `time`).
    pub fn set_now(&mut self, now: Now) {
        self.now = now;
    }

    /// The last EventSequenceNumber given.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Stamp `ev` with the input's time and `seq` without using a new number (an event that is
    /// not part of any session's stream: EventSessionResumed).
    pub fn stamp_as(&self, ev: &mut Event, seq: u64) {
        let secs = self.now.unix_micros / 1_000_000;
        let micros = (self.now.unix_micros % 1_000_000) as u32;
        ev.stamp(seq, ctid_protocol::format_unix_micros(secs, micros));
    }

    fn stamp(&mut self, ev: &mut Event) {
        self.seq += 1;
        let secs = self.now.unix_micros / 1_000_000;
        let micros = (self.now.unix_micros % 1_000_000) as u32;
        ev.stamp(self.seq, ctid_protocol::format_unix_micros(secs, micros));
    }

    /// Send `event` to the clients of `to` that are still connected (nothing, and no sequence
    /// number used, when none is).
    pub fn emit(
        &mut self,
        out: &mut Vec<Output>,
        clients: &Clients,
        mut to: Vec<ClientId>,
        mut event: Event,
    ) {
        to.retain(|c| clients.is_connected(*c));
        if to.is_empty() {
            return;
        }
        self.stamp(&mut event);
        self.events_sent += to.len() as u64;
        out.push(event_output(to, event));
    }

    /// The requester's copy with its ReferenceID and everyone else's without, one sequence
    /// number for both.
    pub fn emit_answer(
        &mut self,
        out: &mut Vec<Output>,
        clients: &Clients,
        requester: ClientId,
        reference_id: Option<u32>,
        others: Vec<ClientId>,
        mut event: Event,
    ) {
        self.stamp(&mut event);
        let others: Vec<ClientId> = others
            .into_iter()
            .filter(|c| *c != requester && clients.is_connected(*c))
            .collect();
        if !others.is_empty() {
            let mut copy = event.clone();
            copy.reference_id = None;
            self.events_sent += others.len() as u64;
            out.push(event_output(others, copy));
        }
        if !clients.is_connected(requester) {
            return;
        }
        event.reference_id = reference_id;
        self.events_sent += 1;
        out.push(event_output(vec![requester], event));
    }

    /// EventError for `req`, with its ReferenceID.
    pub fn refuse(
        &mut self,
        out: &mut Vec<Output>,
        clients: &Clients,
        client: ClientId,
        req: &Request,
        (code, msg): Refusal,
    ) {
        self.request_errors += 1;
        info!(client, request = req.name.as_str(), code = code.0, reason = %msg, "rejected request");
        let ev = Event::error_for(req, code, msg);
        self.emit(out, clients, vec![client], ev);
    }

    /// EventError for `req` refused by the Connector: the CSTA error mapped
    /// (`docs/protocol.md`, §8), and named in `Extensions.CSTAError`.
    pub fn refuse_csta(
        &mut self,
        out: &mut Vec<Output>,
        clients: &Clients,
        client: ClientId,
        req: &Request,
        e: &CstaError,
        msg: String,
    ) {
        self.request_errors += 1;
        let code = crate::errors::tlib_code(e);
        info!(client, request = req.name.as_str(), code, csta = %e, "Connector refused request");
        let ev =
            Event::error_for(req, ErrorCode(code), msg).with_extension("CSTAError", e.to_string());
        self.emit(out, clients, vec![client], ev);
    }

    /// EventError for a frame that is not a request the engine can take.
    pub fn refuse_frame(
        &mut self,
        out: &mut Vec<Output>,
        clients: &Clients,
        client: ClientId,
        code: ErrorCode,
        msg: String,
        reference_id: Option<u32>,
    ) {
        self.request_errors += 1;
        info!(client, code = code.0, reason = %msg, "rejected request");
        let ev = Event::error(code, msg).with_reference_id(reference_id);
        self.emit(out, clients, vec![client], ev);
    }
}

/// An event on its way out, with its JSON written once (sent, kept, exported from that text).
pub fn event_output(to: Vec<ClientId>, event: Event) -> Output {
    let text = std::sync::Arc::from(event.to_json());
    Output::Event {
        to,
        event: std::sync::Arc::new(event),
        text,
    }
}
