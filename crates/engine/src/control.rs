//! Call control, agents, forwarding/DND and user data (tserver-behaviour §6.4–§6.6, §7): client
//! requests become CSTA services; the requester gets the first resulting event on ThisDN with its
//! ReferenceID (an *expectation*), EventACK when the switch accepted but no event came within
//! `request-timeout`, or EventError with the CSTA error mapped. Device-level events (agents,
//! forwarding, DND, service state) become their T-Library events. User data is local.

use ctid_csta::{
    ConnectionId, ForwardingType, LocalCallState, LocalConnectionState, Message, NewDestination,
    ReqAgentState, SimpleCallState, SnapshotDevice, SnapshotResult,
};
use ctid_protocol::{
    AgentWorkMode, CallState, ConnId, DnRole, Event, EventName, ForwardMode, KvList, KvValue,
    PartyState, RegisterMode, Request, RequestName,
};
use tracing::{debug, warn};

use crate::{ClientId, Engine, Output, PendingKind};

/// What to do after the expected event arrived (instead of answering).
#[derive(Debug, Clone)]
pub(crate) enum Then {
    /// RequestMuteTransfer: once the consultation is dialling, complete the transfer.
    MuteTransfer { original: ConnId },
}

/// A client waiting for the event that answers its request.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub id: u64,
    pub client: ClientId,
    pub request: Request,
    pub dn: String,
    pub events: Vec<EventName>,
    pub conn: Option<ConnId>,
    pub accepted: bool,
    pub deadline_ms: Option<u64>,
    pub then: Option<Then>,
    /// Answer this event ourselves when the switch accepts (no CSTA event reports it).
    pub on_accept: Option<EventName>,
}

/// Agent state kept per DN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub work_mode: Option<AgentWorkMode>,
    pub ready: bool,
    pub queue: Option<String>,
}

fn user_data_size(k: &KvList) -> usize {
    k.to_json().len()
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// Match an event being delivered against waiting requesters.
    pub(crate) fn match_expectation(
        &mut self,
        dn: &str,
        ev: &Event,
    ) -> Option<(ClientId, Option<u32>)> {
        let i = self.expects.iter().position(|x| {
            x.dn == dn
                && x.events.contains(&ev.name)
                && (x.conn.is_none() || x.conn == ev.conn_id || ev.previous_conn_id == x.conn)
        })?;
        let x = self.expects.remove(i);
        if let Some(Then::MuteTransfer { original }) = x.then {
            // Second step: transfer the original call to the consultation now dialling.
            if let (Some(consult), Some(orig)) = (ev.conn_id, self.calls.calls.get(&original)) {
                let held = ConnectionId::new(orig.call_id.clone(), dn);
                let active = self
                    .calls
                    .calls
                    .get(&consult)
                    .map(|c| ConnectionId::new(c.call_id.clone(), dn));
                if let Some(active) = active {
                    let msg = Message::TransferCall(ctid_csta::TransferCall {
                        held_call: held,
                        active_call: active,
                        extensions: None,
                    });
                    self.call_request(
                        x.client,
                        x.request,
                        dn.to_string(),
                        vec![EventName::EventReleased],
                        Some(original),
                        None,
                        None,
                        msg,
                    );
                }
            }
            return None;
        }
        self.release_call_waiters(x.conn);
        Some((x.client, x.request.reference_id))
    }

    #[allow(clippy::too_many_arguments)]
    fn call_request(
        &mut self,
        client: ClientId,
        request: Request,
        dn: String,
        events: Vec<EventName>,
        conn: Option<ConnId>,
        then: Option<Then>,
        on_accept: Option<EventName>,
        msg: Message,
    ) {
        self.next_expect += 1;
        let id = self.next_expect;
        self.expects.push(Expect {
            id,
            client,
            request,
            dn,
            events,
            conn,
            accepted: false,
            deadline_ms: None,
            then,
            on_accept,
        });
        self.send(
            PendingKind::Call {
                expect: id,
                origin: None,
            },
            msg,
        );
    }

    /// The CSTA answer to a call-control request.
    pub(crate) fn call_answer(
        &mut self,
        expect: u64,
        origin: Option<ConnId>,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        let Some(i) = self.expects.iter().position(|x| x.id == expect) else {
            // Answered already by its event; a consultation still needs its origin noted.
            if let (Ok(Message::ConsultationCallResponse(r)), Some(o)) = (&msg, origin) {
                if let Some(c) = &r.initiated_call.call_id {
                    self.note_consultation(c, o);
                }
            }
            return;
        };
        match msg {
            Ok(Message::CstaErrorCode(e)) => {
                let x = self.expects.remove(i);
                let text = format!(
                    "{} refused by the switch: {}",
                    x.request.name.as_str(),
                    e.error
                );
                self.csta_error(out, x.client, &x.request, &e.error, text);
                self.release_call_waiters(x.conn);
            }
            Ok(m) if matches!(m.kind(), ctid_csta::MessageKind::Response) => {
                if let (Message::ConsultationCallResponse(r), Some(o)) = (&m, origin) {
                    if let Some(c) = &r.initiated_call.call_id {
                        self.note_consultation(c, o);
                    }
                }
                let deadline = self.now.mono_ms + self.cfg.request_timeout_ms;
                let x = &mut self.expects[i];
                x.accepted = true;
                x.deadline_ms = Some(deadline);
                if let Some(name) = x.on_accept {
                    let x = self.expects.remove(i);
                    let mut ev = Event::reply(name, &x.request);
                    ev.conn_id = x.request.conn_id;
                    ev.dtmf_digits = x.request.dtmf_digits.clone();
                    ev.other_dn = x.request.other_dn.clone();
                    ev.reference_id = None;
                    let to = self.registrants(&[&x.dn]);
                    self.emit_answer(out, x.client, x.request.reference_id, to, ev);
                    self.release_call_waiters(x.conn);
                    return;
                }
                let conn = self.expects[i].conn;
                self.release_call_waiters(conn);
            }
            Ok(other) => {
                let x = self.expects.remove(i);
                let text = format!("unexpected answer {} from the Connector", other.name());
                self.error(out, x.client, &x.request, 1121, text);
                self.release_call_waiters(x.conn);
            }
            Err(reason) => {
                let x = self.expects.remove(i);
                self.error(
                    out,
                    x.client,
                    &x.request,
                    1102,
                    format!("malformed answer from the Connector: {reason}"),
                );
                self.release_call_waiters(x.conn);
            }
        }
    }

    /// No CSTA answer in time.
    pub(crate) fn call_timeout(&mut self, expect: u64, out: &mut Vec<Output>) {
        if let Some(i) = self.expects.iter().position(|x| x.id == expect) {
            let x = self.expects.remove(i);
            self.error(
                out,
                x.client,
                &x.request,
                57,
                "no answer from the CSTA Connector".into(),
            );
            self.release_call_waiters(x.conn);
        }
    }

    /// Accepted requests whose event never came get EventACK.
    pub(crate) fn expect_tick(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.expects)
            .into_iter()
            .partition(|x| x.accepted && x.deadline_ms.is_some_and(|d| d <= now));
        self.expects = keep;
        for x in late {
            debug!(
                request = x.request.name.as_str(),
                "accepted, no event in time: EventACK"
            );
            let ev = Event::reply(EventName::EventACK, &x.request);
            self.emit(out, vec![x.client], ev);
        }
        let gap = self.cfg.call_rq_gap_ms;
        let due: Vec<ConnId> = self
            .call_waiting
            .iter()
            .filter(|(_, q)| q.front().is_some_and(|(t, _, _)| now >= t + gap))
            .map(|(c, _)| *c)
            .collect();
        for c in due {
            self.release_call_waiters(Some(c));
        }
    }

    pub(crate) fn expects_link_down(&mut self, out: &mut Vec<Output>) {
        for x in std::mem::take(&mut self.expects) {
            self.error(
                out,
                x.client,
                &x.request,
                54,
                "no link to the CSTA Connector".into(),
            );
        }
        for (_, q) in std::mem::take(&mut self.call_waiting) {
            for (_, client, req) in q {
                self.error(
                    out,
                    client,
                    &req,
                    54,
                    "no link to the CSTA Connector".into(),
                );
            }
        }
    }

    fn release_call_waiters(&mut self, conn: Option<ConnId>) {
        let Some(conn) = conn else { return };
        if let Some(q) = self.call_waiting.get_mut(&conn) {
            if let Some((_, client, req)) = q.pop_front() {
                if q.is_empty() {
                    self.call_waiting.remove(&conn);
                }
                self.ready_requests.push_back((client, req));
            }
        }
    }

    fn call_busy(&self, conn: ConnId) -> bool {
        self.expects
            .iter()
            .any(|x| x.conn == Some(conn) && !x.accepted)
    }

    /// A call-control, agent, feature or user-data request.
    pub(crate) fn control_request(
        &mut self,
        client: ClientId,
        req: Request,
        out: &mut Vec<Output>,
    ) {
        use RequestName as R;
        let supported = matches!(
            req.name,
            R::RequestMakeCall
                | R::RequestAnswerCall
                | R::RequestReleaseCall
                | R::RequestClearCall
                | R::RequestHoldCall
                | R::RequestRetrieveCall
                | R::RequestInitiateTransfer
                | R::RequestInitiateConference
                | R::RequestMuteTransfer
                | R::RequestCompleteTransfer
                | R::RequestCompleteConference
                | R::RequestSingleStepTransfer
                | R::RequestRedirectCall
                | R::RequestRouteCall
                | R::RequestDeleteFromConference
                | R::RequestAlternateCall
                | R::RequestReconnectCall
                | R::RequestSendDTMF
                | R::RequestCallForwardSet
                | R::RequestCallForwardCancel
                | R::RequestSetDNDOn
                | R::RequestSetDNDOff
                | R::RequestAgentLogin
                | R::RequestAgentLogout
                | R::RequestAgentReady
                | R::RequestAgentNotReady
                | R::RequestQueryCall
                | R::RequestAttachUserData
                | R::RequestUpdateUserData
                | R::RequestDeletePair
                | R::RequestDeleteUserData
        );
        if !supported {
            let msg = format!("{} is not supported by this server", req.name.as_str());
            return self.error(out, client, &req, 51, msg);
        }
        let local = matches!(
            req.name,
            R::RequestQueryCall
                | R::RequestAttachUserData
                | R::RequestUpdateUserData
                | R::RequestDeletePair
                | R::RequestDeleteUserData
        );
        if !local && self.link != crate::LinkState::Up {
            return self.error(
                out,
                client,
                &req,
                54,
                "no link to the CSTA Connector".into(),
            );
        }
        let Some(dn) = req.this_dn.clone() else {
            return self.error(out, client, &req, 53, "ThisDN missing".into());
        };
        let Some(mode) = self
            .dns
            .get(&dn)
            .and_then(|d| d.regs.get(&client))
            .map(|r| r.mode)
        else {
            return self.error(out, client, &req, 41, format!("ThisDN {dn} not registered"));
        };
        if mode == RegisterMode::Monitor {
            return self.error(
                out,
                client,
                &req,
                41,
                "ThisDN registered in ModeMonitor".into(),
            );
        }
        macro_rules! need {
            ($v:expr, $what:literal) => {
                match $v {
                    Some(v) => v,
                    None => {
                        return self.error(out, client, &req, 53, concat!($what, " missing").into())
                    }
                }
            };
        }
        // ConnID of a call ThisDN takes part in.
        let conn_on = |e: &Engine, c: ConnId| -> Result<ConnectionId, String> {
            match e.calls.calls.get(&c) {
                None => Err(format!("ConnID {c} is not known")),
                Some(call) if call.party(&dn).is_none() => {
                    Err(format!("ConnID {c} is not on {dn}"))
                }
                Some(call) => Ok(ConnectionId::new(call.call_id.clone(), dn.clone())),
            }
        };
        macro_rules! conn {
            ($c:expr) => {
                match conn_on(self, $c) {
                    Ok(x) => x,
                    Err(m) => return self.error(out, client, &req, 56, m),
                }
            };
        }
        macro_rules! other {
            () => {{
                let o = need!(req.other_dn.clone(), "OtherDN");
                if !ctid_protocol::is_valid_dn(&o) {
                    return self.error(
                        out,
                        client,
                        &req,
                        71,
                        format!("OtherDN {o:?} is not a valid number"),
                    );
                }
                o
            }};
        }
        // A request on a call that already has one in flight waits (call-rq-gap).
        if let Some(c) = req.conn_id {
            if !local && self.call_busy(c) {
                self.call_waiting
                    .entry(c)
                    .or_default()
                    .push_back((self.now.mono_ms, client, req));
                return;
            }
        }
        let ev = |n: EventName| vec![n];
        match req.name {
            R::RequestMakeCall => {
                let other = other!();
                let msg = Message::MakeCall(ctid_csta::MakeCall {
                    calling_device: dn.clone(),
                    called_directory_number: other,
                    account_code: None,
                    auth_code: None,
                    auto_originate: Some(ctid_csta::AutoOriginate::DoNotPrompt),
                    correlator_data: None,
                    extensions: None,
                });
                self.call_request(
                    client,
                    req,
                    dn,
                    ev(EventName::EventDialing),
                    None,
                    None,
                    None,
                    msg,
                );
            }
            R::RequestAnswerCall
            | R::RequestReleaseCall
            | R::RequestClearCall
            | R::RequestHoldCall
            | R::RequestRetrieveCall => {
                let c = need!(req.conn_id, "ConnID");
                let cx = conn!(c);
                let (msg, want) = match req.name {
                    R::RequestAnswerCall => (
                        Message::AnswerCall(ctid_csta::AnswerCall {
                            call_to_be_answered: cx,
                            correlator_data: None,
                            extensions: None,
                        }),
                        EventName::EventEstablished,
                    ),
                    R::RequestReleaseCall => (
                        Message::ClearConnection(ctid_csta::ClearConnection {
                            connection_to_be_cleared: cx,
                            correlator_data: None,
                            extensions: None,
                        }),
                        EventName::EventReleased,
                    ),
                    R::RequestClearCall => (
                        Message::ClearCall(ctid_csta::ClearCall {
                            call_to_be_cleared: cx,
                            extensions: None,
                        }),
                        EventName::EventReleased,
                    ),
                    R::RequestHoldCall => (
                        Message::HoldCall(ctid_csta::HoldCall {
                            call_to_be_held: cx,
                            connection_reservation: None,
                            extensions: None,
                        }),
                        EventName::EventHeld,
                    ),
                    _ => (
                        Message::RetrieveCall(ctid_csta::RetrieveCall {
                            call_to_be_retrieved: cx,
                            extensions: None,
                        }),
                        EventName::EventRetrieved,
                    ),
                };
                self.call_request(client, req, dn, ev(want), Some(c), None, None, msg);
            }
            R::RequestInitiateTransfer | R::RequestInitiateConference | R::RequestMuteTransfer => {
                let c = need!(req.conn_id, "ConnID");
                let cx = conn!(c);
                let other = other!();
                let msg = Message::ConsultationCall(ctid_csta::ConsultationCall {
                    existing_call: cx,
                    consulted_device: other,
                    connection_reservation: None,
                    account_code: None,
                    auth_code: None,
                    correlator_data: None,
                    extensions: None,
                });
                let then = (req.name == R::RequestMuteTransfer)
                    .then_some(Then::MuteTransfer { original: c });
                self.next_expect += 1;
                let id = self.next_expect;
                self.expects.push(Expect {
                    id,
                    client,
                    request: req,
                    dn,
                    events: ev(EventName::EventDialing),
                    conn: None,
                    accepted: false,
                    deadline_ms: None,
                    then,
                    on_accept: None,
                });
                self.send(
                    PendingKind::Call {
                        expect: id,
                        origin: Some(c),
                    },
                    msg,
                );
            }
            R::RequestCompleteTransfer | R::RequestCompleteConference => {
                let c = need!(req.conn_id, "ConnID");
                let active = conn!(c);
                let orig = if req.name == R::RequestCompleteTransfer {
                    req.transfer_conn_id
                } else {
                    req.conference_conn_id.or(req.transfer_conn_id)
                };
                let o = match orig {
                    Some(o) => o,
                    None => {
                        return self.error(
                            out,
                            client,
                            &req,
                            53,
                            if req.name == R::RequestCompleteTransfer {
                                "TransferConnID missing".into()
                            } else {
                                "ConferenceConnID missing".into()
                            },
                        )
                    }
                };
                let held = conn!(o);
                let (msg, want) = if req.name == R::RequestCompleteTransfer {
                    (
                        Message::TransferCall(ctid_csta::TransferCall {
                            held_call: held,
                            active_call: active,
                            extensions: None,
                        }),
                        EventName::EventReleased,
                    )
                } else {
                    (
                        Message::ConferenceCall(ctid_csta::ConferenceCall {
                            held_call: held,
                            active_call: active,
                            extensions: None,
                        }),
                        EventName::EventPartyAdded,
                    )
                };
                self.call_request(client, req, dn, ev(want), None, None, None, msg);
            }
            R::RequestSingleStepTransfer | R::RequestRedirectCall => {
                let c = need!(req.conn_id, "ConnID");
                let cx = conn!(c);
                let other = other!();
                let msg = if req.name == R::RequestSingleStepTransfer {
                    Message::SingleStepTransferCall(ctid_csta::SingleStepTransferCall {
                        active_call: cx,
                        transferred_to: other,
                        account_code: None,
                        auth_code: None,
                        correlator_data: None,
                        extensions: None,
                    })
                } else {
                    Message::DeflectCall(ctid_csta::DeflectCall {
                        call_to_be_diverted: cx,
                        new_destination: NewDestination(other),
                        correlator_data: None,
                        extensions: None,
                    })
                };
                self.call_request(
                    client,
                    req,
                    dn,
                    ev(EventName::EventReleased),
                    Some(c),
                    None,
                    None,
                    msg,
                );
            }
            R::RequestRouteCall => {
                let c = need!(req.conn_id, "ConnID");
                let cx = conn!(c);
                let other = other!();
                let msg = Message::DeflectCall(ctid_csta::DeflectCall {
                    call_to_be_diverted: cx,
                    new_destination: NewDestination(other),
                    correlator_data: None,
                    extensions: None,
                });
                self.call_request(
                    client,
                    req,
                    dn,
                    ev(EventName::EventRouteUsed),
                    Some(c),
                    None,
                    Some(EventName::EventRouteUsed),
                    msg,
                );
            }
            R::RequestDeleteFromConference => {
                let c = need!(req.conn_id, "ConnID");
                conn!(c);
                let other = other!();
                let Some(call) = self
                    .calls
                    .calls
                    .get(&c)
                    .filter(|x| x.party(&other).is_some())
                else {
                    return self.error(
                        out,
                        client,
                        &req,
                        53,
                        format!("OtherDN {other} is not on the call"),
                    );
                };
                let cx = ConnectionId::new(call.call_id.clone(), other);
                let msg = Message::ClearConnection(ctid_csta::ClearConnection {
                    connection_to_be_cleared: cx,
                    correlator_data: None,
                    extensions: None,
                });
                self.call_request(
                    client,
                    req,
                    dn,
                    ev(EventName::EventPartyDeleted),
                    Some(c),
                    None,
                    None,
                    msg,
                );
            }
            R::RequestAlternateCall | R::RequestReconnectCall => {
                let c = need!(req.conn_id, "ConnID");
                let active = conn!(c);
                let h = need!(req.transfer_conn_id, "TransferConnID");
                let held = conn!(h);
                let (msg, events) = if req.name == R::RequestAlternateCall {
                    (
                        Message::AlternateCall(ctid_csta::AlternateCall {
                            held_call: held,
                            active_call: active,
                            connection_reservation: None,
                            extensions: None,
                        }),
                        vec![EventName::EventHeld, EventName::EventRetrieved],
                    )
                } else {
                    (
                        Message::ReconnectCall(ctid_csta::ReconnectCall {
                            active_call: active,
                            held_call: held,
                            extensions: None,
                        }),
                        vec![EventName::EventReleased, EventName::EventRetrieved],
                    )
                };
                self.call_request(client, req, dn, events, None, None, None, msg);
            }
            R::RequestSendDTMF => {
                let c = need!(req.conn_id, "ConnID");
                let cx = conn!(c);
                let digits = need!(req.dtmf_digits.clone(), "DTMFDigits");
                let msg = Message::GenerateDigits(ctid_csta::GenerateDigits {
                    connection_to_send_digits: cx,
                    digit_mode: None,
                    characters_to_send: digits,
                    tone_duration: None,
                    pulse_rate: None,
                    pause_duration: None,
                    extensions: None,
                });
                self.call_request(
                    client,
                    req,
                    dn,
                    ev(EventName::EventDTMFSent),
                    Some(c),
                    None,
                    Some(EventName::EventDTMFSent),
                    msg,
                );
            }
            R::RequestCallForwardSet | R::RequestCallForwardCancel => {
                let set = req.name == R::RequestCallForwardSet;
                let mode = req.forward_mode.unwrap_or(ForwardMode::Unconditional);
                let types: Vec<ForwardingType> = match mode {
                    ForwardMode::Unconditional => vec![ForwardingType::ForwardImmediate],
                    ForwardMode::OnBusy => vec![ForwardingType::ForwardBusy],
                    ForwardMode::OnNoAnswer => vec![ForwardingType::ForwardNoAns],
                    ForwardMode::OnBusyAndNoAnswer => {
                        vec![ForwardingType::ForwardBusy, ForwardingType::ForwardNoAns]
                    }
                    ForwardMode::SendAllCalls => vec![ForwardingType::ForwardDND],
                    ForwardMode::None if !set => vec![ForwardingType::ForwardImmediate],
                    other => {
                        return self.error(
                            out,
                            client,
                            &req,
                            51,
                            format!("ForwardMode {} is not supported", other.as_str()),
                        )
                    }
                };
                let fdn = if set { Some(other!()) } else { None };
                let want = if set {
                    EventName::EventForwardSet
                } else {
                    EventName::EventForwardCancel
                };
                for (i, t) in types.into_iter().enumerate() {
                    let msg = Message::SetForwarding(ctid_csta::SetForwarding {
                        device: dn.clone(),
                        forwarding_type: Some(t),
                        activate_forward: set,
                        forward_dn: fdn.clone(),
                        ring_count: None,
                        ring_duration: None,
                        extensions: None,
                    });
                    if i == 0 {
                        self.call_request(
                            client,
                            req.clone(),
                            dn.clone(),
                            ev(want),
                            None,
                            None,
                            None,
                            msg,
                        );
                    } else {
                        self.send(PendingKind::MonitorStop, msg);
                    }
                }
            }
            R::RequestSetDNDOn | R::RequestSetDNDOff => {
                let on = req.name == R::RequestSetDNDOn;
                let msg = Message::SetDoNotDisturb(ctid_csta::SetDoNotDisturb {
                    device: dn.clone(),
                    do_not_disturb_on: on,
                    call_origination: None,
                    extensions: None,
                });
                self.call_request(
                    client,
                    req,
                    dn,
                    ev(if on {
                        EventName::EventDNDOn
                    } else {
                        EventName::EventDNDOff
                    }),
                    None,
                    None,
                    None,
                    msg,
                );
            }
            R::RequestAgentLogin
            | R::RequestAgentLogout
            | R::RequestAgentReady
            | R::RequestAgentNotReady => {
                let agent_here = self.dns.get(&dn).and_then(|d| d.agent.clone());
                let agent_id = req
                    .agent_id
                    .clone()
                    .or_else(|| agent_here.as_ref().map(|a| a.agent_id.clone()));
                let (state, want) = match req.name {
                    R::RequestAgentLogin => {
                        let a = need!(req.agent_id.clone(), "AgentID");
                        if let Some(h) = &agent_here {
                            if h.agent_id != a {
                                return self.error(
                                    out,
                                    client,
                                    &req,
                                    42,
                                    format!("DN {dn} is occupied by agent {}", h.agent_id),
                                );
                            }
                        }
                        (ReqAgentState::LoggedOn, EventName::EventAgentLogin)
                    }
                    R::RequestAgentLogout => {
                        (ReqAgentState::LoggedOff, EventName::EventAgentLogout)
                    }
                    R::RequestAgentReady => (ReqAgentState::Ready, EventName::EventAgentReady),
                    _ => match req.agent_work_mode {
                        Some(AgentWorkMode::AfterCallWork) => (
                            ReqAgentState::WorkingAfterCall,
                            EventName::EventAgentNotReady,
                        ),
                        _ => (ReqAgentState::NotReady, EventName::EventAgentNotReady),
                    },
                };
                let password = req.password.clone().or_else(|| {
                    let a = agent_id.as_deref()?;
                    self.cfg
                        .agent_logins
                        .iter()
                        .find(|l| l.agent_id == a)
                        .and_then(|l| l.password.clone())
                });
                let msg = Message::SetAgentState(ctid_csta::SetAgentState {
                    device: dn.clone(),
                    requested_agent_state: state.clone(),
                    agent_id,
                    password: if state == ReqAgentState::LoggedOn {
                        password.map(|p| hex(&p))
                    } else {
                        None
                    },
                    group: if state == ReqAgentState::LoggedOn {
                        req.this_queue.clone()
                    } else {
                        None
                    },
                    extensions: None,
                });
                if req.name == R::RequestAgentLogin {
                    self.login_owner.insert(dn.clone(), client);
                }
                self.call_request(client, req, dn, ev(want), None, None, None, msg);
            }
            R::RequestQueryCall => {
                let c = need!(req.conn_id, "ConnID");
                conn!(c);
                let mut e = self.call_event(EventName::EventPartyInfo, &dn, c);
                e.reference_id = req.reference_id;
                if let Some(call) = self.calls.calls.get(&c) {
                    let mut parties = KvList::new();
                    for p in &call.parties {
                        parties.insert_str(p.dn.clone(), p.state.as_str());
                    }
                    e.extensions
                        .get_or_insert_with(KvList::new)
                        .insert("Parties", KvValue::List(parties));
                }
                self.emit(out, vec![client], e);
            }
            R::RequestAttachUserData
            | R::RequestUpdateUserData
            | R::RequestDeletePair
            | R::RequestDeleteUserData => {
                let c = need!(req.conn_id, "ConnID");
                conn!(c);
                let Some(call) = self.calls.calls.get(&c) else {
                    return;
                };
                let mut data = call.user_data.clone();
                match req.name {
                    R::RequestAttachUserData => {
                        let add = need!(req.user_data.clone(), "UserData");
                        for (k, v) in add.iter() {
                            data.push(k, v.clone());
                        }
                    }
                    R::RequestUpdateUserData => {
                        let add = need!(req.user_data.clone(), "UserData");
                        for (k, v) in add.iter() {
                            data.insert(k, v.clone());
                        }
                    }
                    R::RequestDeletePair => {
                        let key = need!(req.data_key.clone(), "DataKey");
                        if data.remove(&key) == 0 {
                            return self.error(
                                out,
                                client,
                                &req,
                                53,
                                format!("DataKey {key:?} is not in the call's user data"),
                            );
                        }
                    }
                    _ => data = KvList::new(),
                }
                if user_data_size(&data) > self.cfg.user_data_limit {
                    return self.error(
                        out,
                        client,
                        &req,
                        53,
                        format!("user data would exceed {} bytes", self.cfg.user_data_limit),
                    );
                }
                let parties: Vec<String> = call.parties.iter().map(|p| p.dn.clone()).collect();
                if let Some(call) = self.calls.calls.get_mut(&c) {
                    call.user_data = data;
                }
                let refs: Vec<&str> = parties.iter().map(String::as_str).collect();
                let to = self.registrants(&refs);
                let e = self.call_event(EventName::EventAttachedDataChanged, &dn, c);
                self.emit_answer(out, client, req.reference_id, to, e);
            }
            other => {
                let msg = format!("{} is not supported by this server", other.as_str());
                self.error(out, client, &req, 51, msg);
            }
        }
    }

    /// Agent, forwarding, DND and service-state events for monitored DN `d`.
    pub(crate) fn device_event(&mut self, d: &str, msg: &Message, out: &mut Vec<Output>) {
        let dev_of = |x: &Option<ctid_csta::DeviceRef>| {
            x.as_ref().and_then(|v| v.as_id()).map(str::to_string)
        };
        let agent_ev = |name: EventName,
                        dn: &str,
                        agent: Option<String>,
                        mode: Option<AgentWorkMode>,
                        queue: Option<String>| {
            let mut e = Event::new(name).with_this_dn(dn);
            e.agent_id = agent;
            e.agent_work_mode = mode;
            e.this_queue = queue;
            e
        };
        let (name, agent, mode, queue, dev) = match msg {
            Message::AgentLoggedOnEvent(e) => (
                EventName::EventAgentLogin,
                e.agent_id.clone(),
                None,
                e.acd_group.clone(),
                dev_of(&e.agent_device),
            ),
            Message::AgentLoggedOffEvent(e) => (
                EventName::EventAgentLogout,
                e.agent_id.clone(),
                None,
                e.acd_group.clone(),
                dev_of(&e.agent_device),
            ),
            Message::AgentReadyEvent(e) => (
                EventName::EventAgentReady,
                e.agent_id.clone(),
                Some(AgentWorkMode::ManualIn),
                e.acd_group.clone(),
                dev_of(&e.agent_device),
            ),
            Message::AgentNotReadyEvent(e) => (
                EventName::EventAgentNotReady,
                e.agent_id.clone(),
                Some(AgentWorkMode::AuxWork),
                e.acd_group.clone(),
                dev_of(&e.agent_device),
            ),
            Message::AgentWorkingAfterCallEvent(e) => (
                EventName::EventAgentNotReady,
                e.agent_id.clone(),
                Some(AgentWorkMode::AfterCallWork),
                e.acd_group.clone(),
                dev_of(&e.agent_device),
            ),
            Message::ForwardingEvent(e) => {
                let on = e.forward_status.unwrap_or(false);
                let mode = match e.forwarding_type.as_ref() {
                    Some(ForwardingType::ForwardBusy)
                    | Some(ForwardingType::ForwardBusyInt)
                    | Some(ForwardingType::ForwardBusyExt) => ForwardMode::OnBusy,
                    Some(ForwardingType::ForwardNoAns)
                    | Some(ForwardingType::ForwardNoAnsInt)
                    | Some(ForwardingType::ForwardNoAnsExt) => ForwardMode::OnNoAnswer,
                    Some(ForwardingType::ForwardDND)
                    | Some(ForwardingType::ForwardDNDInt)
                    | Some(ForwardingType::ForwardDNDExt) => ForwardMode::SendAllCalls,
                    _ => ForwardMode::Unconditional,
                };
                if let Some(x) = self.dns.get_mut(d) {
                    x.forward = if on {
                        Some((mode, e.forward_to.clone().unwrap_or_default()))
                    } else {
                        None
                    };
                }
                let mut ev = Event::new(if on {
                    EventName::EventForwardSet
                } else {
                    EventName::EventForwardCancel
                })
                .with_this_dn(d);
                ev.forward_mode = Some(mode);
                ev.other_dn = e.forward_to.clone();
                self.deliver(out, d, ev);
                return;
            }
            Message::DoNotDisturbEvent(e) => {
                let on = e.do_not_disturb_on.unwrap_or(false);
                if let Some(x) = self.dns.get_mut(d) {
                    x.dnd = on;
                }
                let ev = Event::new(if on {
                    EventName::EventDNDOn
                } else {
                    EventName::EventDNDOff
                })
                .with_this_dn(d);
                self.deliver(out, d, ev);
                return;
            }
            Message::OutOfServiceEvent(_) | Message::BackInServiceEvent(_) => {
                let oos = matches!(msg, Message::OutOfServiceEvent(_));
                if let Some(x) = self.dns.get_mut(d) {
                    x.out_of_service = oos;
                }
                let ev = Event::new(if oos {
                    EventName::EventDNOutOfService
                } else {
                    EventName::EventDNBackInService
                })
                .with_this_dn(d);
                self.deliver(out, d, ev);
                return;
            }
            Message::SnapshotDeviceData(s) => {
                self.snapshot_segment(s, out);
                return;
            }
            Message::AgentBusyEvent(_)
            | Message::CallInformationEvent(_)
            | Message::ServiceCompletionFailureEvent(_) => return,
            other => {
                debug!(event = other.name(), "event not used by the call model");
                return;
            }
        };
        let dn = dev.unwrap_or_else(|| d.to_string());
        if dn != d {
            return; // reported on the agent device's own monitor
        }
        if let Some(x) = self.dns.get_mut(d) {
            match name {
                EventName::EventAgentLogin => {
                    x.had_agent = true;
                    x.agent = Some(crate::control::AgentInfo {
                        agent_id: agent.clone().unwrap_or_default(),
                        work_mode: None,
                        ready: false,
                        queue: queue.clone(),
                    })
                }
                EventName::EventAgentLogout => x.agent = None,
                _ => {
                    let a = x.agent.get_or_insert_with(|| crate::control::AgentInfo {
                        agent_id: agent.clone().unwrap_or_default(),
                        ..Default::default()
                    });
                    a.work_mode = mode;
                    a.ready = name == EventName::EventAgentReady;
                }
            }
        }
        if name == EventName::EventAgentLogout {
            self.login_owner.remove(d);
        }
        if let Some(a) = &agent {
            if matches!(
                name,
                EventName::EventAgentLogin | EventName::EventAgentLogout
            ) {
                let a = a.clone();
                self.agent_login_sync(&a);
            }
        }
        let ev = agent_ev(name, d, agent, mode, queue);
        self.deliver(out, d, ev);
    }

    /// The DN-status keys about the agent and features.
    pub(crate) fn feature_status(&self, dn: &str, k: &mut KvList) -> Option<String> {
        let d = self.dns.get(dn)?;
        if let Some((mode, to)) = &d.forward {
            k.insert_str("ForwardMode", mode.as_str());
            k.insert_str("ForwardDN", to.clone());
        }
        if d.dnd {
            k.insert_str("DND", "on");
        }
        if d.out_of_service {
            k.insert_str("status", "AddressStatusMaintenance");
        }
        match &d.agent {
            Some(a) => {
                let status = if a.ready {
                    a.work_mode
                        .unwrap_or(AgentWorkMode::ManualIn)
                        .as_str()
                        .to_string()
                } else {
                    match a.work_mode {
                        Some(m) => m.as_str().to_string(),
                        None => "NotReady".to_string(),
                    }
                };
                k.insert_str("AgentStatus", status);
                Some(a.agent_id.clone())
            }
            None if matches!(
                d.dn_type,
                ctid_protocol::AddressType::Dn | ctid_protocol::AddressType::Position
            ) =>
            {
                if self.cfg.agent_logins.iter().any(|l| l.agent_id == dn) || d.had_agent {
                    k.insert_str("AgentStatus", "LoggedOut");
                }
                None
            }
            None => None,
        }
    }

    // -------------------------------------------------------------------------- snapshot / resync

    pub(crate) fn start_snapshot(&mut self, dn: &str) {
        let msg = Message::SnapshotDevice(SnapshotDevice {
            snapshot_object: dn.to_string(),
            extensions: None,
        });
        let tag = self.send(PendingKind::Snapshot { dn: dn.to_string() }, msg);
        // During a resync the call catch-up must come before EventLinkConnected.
        if self.link != crate::LinkState::Up {
            self.sync_tags.insert(tag);
        }
    }

    /// GetAgentState: learn (or, after an outage, reconcile) the agent on a DN.
    pub(crate) fn start_agent_query(&mut self, dn: &str, resync: bool) {
        let msg = Message::GetAgentState(ctid_csta::GetAgentState {
            device: dn.to_string(),
            acd_group: None,
            extensions: None,
        });
        let tag = self.send(
            PendingKind::AgentQuery {
                dn: dn.to_string(),
                resync,
            },
            msg,
        );
        if resync {
            self.sync_tags.insert(tag);
        }
    }

    /// The switch's agent state for `dn`: make ctid's equal to it; after an outage report the
    /// differences as the agent events a client would have seen.
    pub(crate) fn agent_answer(
        &mut self,
        dn: &str,
        resync: bool,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        let entry = match msg {
            Ok(Message::GetAgentStateResponse(r)) => r
                .agent_state_list
                .into_iter()
                .find(|e| e.logged_on_state.unwrap_or(true) && e.agent_id.is_some()),
            Ok(Message::CstaErrorCode(e)) => {
                debug!(%dn, error = %e.error, "GetAgentState refused");
                return;
            }
            Ok(other) => {
                debug!(%dn, answer = other.name(), "unexpected answer to GetAgentState");
                return;
            }
            Err(reason) => {
                warn!(%dn, %reason, "malformed answer to GetAgentState");
                return;
            }
        };
        let now = entry.map(|e| {
            let item = e.agent_info.first();
            let (mode, ready) = match item.and_then(|i| i.agent_state.as_ref()) {
                Some(ctid_csta::AgentState::AgentReady) => (Some(AgentWorkMode::ManualIn), true),
                Some(ctid_csta::AgentState::AgentWorkingAfterCall) => {
                    (Some(AgentWorkMode::AfterCallWork), false)
                }
                Some(ctid_csta::AgentState::AgentNotReady) => (Some(AgentWorkMode::AuxWork), false),
                _ => (None, false),
            };
            AgentInfo {
                agent_id: e.agent_id.unwrap_or_default(),
                work_mode: mode,
                ready,
                queue: item.and_then(|i| i.acd_group.clone()),
            }
        });
        let Some(d) = self.dns.get_mut(dn) else {
            return;
        };
        let before = d.agent.clone();
        if before == now {
            return;
        }
        if now.is_some() {
            d.had_agent = true;
        }
        d.agent = now.clone();
        if !resync {
            return;
        }
        let mk = |name: EventName, a: &AgentInfo| {
            let mut e = Event::new(name).with_this_dn(dn);
            e.agent_id = Some(a.agent_id.clone());
            e.this_queue = a.queue.clone();
            e
        };
        match (&before, &now) {
            (Some(b), None) => {
                let e = mk(EventName::EventAgentLogout, b);
                self.deliver(out, dn, e);
            }
            (b, Some(n)) => {
                if b.as_ref().map(|x| &x.agent_id) != Some(&n.agent_id) {
                    if let Some(b) = b {
                        let e = mk(EventName::EventAgentLogout, b);
                        self.deliver(out, dn, e);
                    }
                    let e = mk(EventName::EventAgentLogin, n);
                    self.deliver(out, dn, e);
                }
                if let Some(mode) = n.work_mode {
                    let name = if n.ready {
                        EventName::EventAgentReady
                    } else {
                        EventName::EventAgentNotReady
                    };
                    let mut e = mk(name, n);
                    e.agent_work_mode = Some(mode);
                    self.deliver(out, dn, e);
                }
            }
            (None, None) => {}
        }
        if let Some(a) = now.as_ref().map(|n| n.agent_id.clone()) {
            self.agent_login_sync(&a);
        }
        if let Some(a) = before.map(|b| b.agent_id) {
            self.agent_login_sync(&a);
        }
    }

    pub(crate) fn snapshot_answer(
        &mut self,
        dn: &str,
        msg: Result<Message, String>,
        out: &mut Vec<Output>,
    ) {
        match msg {
            Ok(Message::SnapshotDeviceResponse(r)) => match r.cross_ref_id_or_snapshot_data {
                SnapshotResult::Data(items) => self.reconcile(dn, &items, out),
                SnapshotResult::ServiceCrossRefId(x) => {
                    self.snapshot_parts.insert(x, (dn.to_string(), Vec::new()));
                }
            },
            Ok(Message::CstaErrorCode(e)) => warn!(%dn, error = %e.error, "SnapshotDevice refused"),
            Ok(other) => warn!(%dn, answer = other.name(), "unexpected answer to SnapshotDevice"),
            Err(reason) => warn!(%dn, %reason, "malformed answer to SnapshotDevice"),
        }
    }

    fn snapshot_segment(&mut self, s: &ctid_csta::SnapshotDeviceData, out: &mut Vec<Output>) {
        let Some((_, items)) = self.snapshot_parts.get_mut(&s.service_cross_ref_id) else {
            debug!(xref = %s.service_cross_ref_id, "snapshot segment for no snapshot");
            return;
        };
        items.extend(s.snapshot_data.iter().cloned());
        if s.last_segment.unwrap_or(true) {
            if let Some((dn, items)) = self.snapshot_parts.remove(&s.service_cross_ref_id) {
                self.reconcile(&dn, &items, out);
            }
        }
    }

    /// Make ctid's calls on `dn` equal the switch's (tserver-behaviour §6.7).
    fn reconcile(
        &mut self,
        dn: &str,
        items: &[ctid_csta::SnapshotDeviceResponseInfo],
        out: &mut Vec<Output>,
    ) {
        let mut present = Vec::new();
        for it in items {
            let Some(call_id) = it.connection_identifier.call_id.clone() else {
                continue;
            };
            let state = match &it.local_call_state {
                Some(LocalCallState::Compound(v)) => v
                    .first()
                    .cloned()
                    .unwrap_or(LocalConnectionState::Connected),
                Some(LocalCallState::Simple(s)) => match s {
                    SimpleCallState::CallDelivered | SimpleCallState::CallReceived => {
                        LocalConnectionState::Alerting
                    }
                    SimpleCallState::CallOriginated | SimpleCallState::CallPending => {
                        LocalConnectionState::Initiated
                    }
                    SimpleCallState::CallEstablishedHeld
                    | SimpleCallState::CallDeliveredHeld
                    | SimpleCallState::CallQueuedHeld => LocalConnectionState::Hold,
                    SimpleCallState::CallQueued => LocalConnectionState::Queued,
                    _ => LocalConnectionState::Connected,
                },
                _ => LocalConnectionState::Connected,
            };
            let known = self.calls.conn_of(&call_id).is_some_and(|c| {
                self.calls
                    .calls
                    .get(&c)
                    .is_some_and(|x| x.party(dn).is_some())
            });
            let conn = self.call_for_snapshot(&call_id);
            present.push(conn);
            let ps = crate::calls::state_of(&state);
            let (name, ps) = match ps {
                PartyState::Alerting => (EventName::EventRinging, ps),
                PartyState::Initiated => (EventName::EventDialing, ps),
                PartyState::Held => (EventName::EventHeld, ps),
                PartyState::Queued => (EventName::EventQueued, ps),
                PartyState::Null => continue,
                _ => (EventName::EventEstablished, PartyState::Connected),
            };
            if let Some(c) = self.calls.calls.get_mut(&conn) {
                match c.parties.iter_mut().find(|p| p.dn == dn) {
                    Some(p) => p.state = ps,
                    None => c.parties.push(crate::calls::Party {
                        dn: dn.to_string(),
                        state: ps,
                        role: DnRole::Unknown,
                        offered: name == EventName::EventRinging,
                    }),
                }
            }
            self.add_dn_call(dn, conn);
            if !known {
                let ev = self.call_event(name, dn, conn);
                self.emit(out, self.registrants(&[dn]), ev);
            }
        }
        let held: Vec<ConnId> = self
            .dns
            .get(dn)
            .map(|d| d.calls.iter().copied().collect())
            .unwrap_or_default();
        for conn in held {
            if present.contains(&conn) {
                continue;
            }
            let mut ev = self.call_event(EventName::EventReleased, dn, conn);
            ev.call_state = Some(CallState::Dropped);
            ev.extensions
                .get_or_insert_with(KvList::new)
                .insert_str("ReleaseCause", "resync");
            self.emit(out, self.registrants(&[dn]), ev);
            if let Some(c) = self.calls.calls.get_mut(&conn) {
                c.parties.retain(|p| p.dn != dn);
                if c.parties.is_empty() {
                    self.forget_call(conn);
                }
            }
            self.remove_dn_call(dn, conn);
        }
    }

    fn call_for_snapshot(&mut self, call_id: &str) -> ConnId {
        if let Some(c) = self.calls.conn_of(call_id) {
            return c;
        }
        self.call_for(call_id)
    }
}
