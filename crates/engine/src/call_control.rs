//! Call control: each call request made the CSTA service that carries it out, with the event
//! that will answer it on ThisDN (`docs/call-model.md`, "Requests → CSTA services"). Pure: it reads the call
//! model to turn ConnIDs into CSTA connections and builds the service; the orchestrator queues it
//! and waits for the answer (`answers`).

use ctid_csta::{
    AlternateCall, AnswerCall, AutoOriginate, ClearCall, ClearConnection, ConferenceCall,
    ConnectionId, ConsultationCall, DeflectCall, GenerateDigits, HoldCall, MakeCall, Message,
    NewDestination, ReconnectCall, RetrieveCall, SingleStepTransferCall, TransferCall,
};
use ctid_protocol::{ConnId, ErrorCode, EventName, MakeCallType, Request, RequestName as R};

use crate::answers::Then;
use crate::calls::Calls;
use crate::outbox::Refusal;
use crate::requests::other_dn;

/// A request made a CSTA service.
#[derive(Debug, Clone)]
pub struct Service {
    pub message: Message,
    /// Events on ThisDN that answer the request.
    pub events: Vec<EventName>,
    /// The call the request acts on (later requests on it wait, `call-rq-gap`).
    pub conn: Option<ConnId>,
    pub then: Option<Then>,
    /// Answered with this event on acceptance (no CSTA event reports it).
    pub on_accept: Option<EventName>,
    /// A consultation's original call (to note once the switch names the new call).
    pub origin: Option<ConnId>,
}

impl Service {
    fn new(message: Message, event: EventName, conn: Option<ConnId>) -> Self {
        Service {
            message,
            events: vec![event],
            conn,
            then: None,
            on_accept: None,
            origin: None,
        }
    }
}

fn need<T: Clone>(v: &Option<T>, what: &str) -> Result<T, Refusal> {
    v.clone()
        .ok_or_else(|| (ErrorCode::INVALID_ATTR, format!("{what} missing")))
}

/// The CSTA connection of `dn` on the call `c` (56 when ThisDN is not on it).
pub fn connection(calls: &Calls, c: ConnId, dn: &str) -> Result<ConnectionId, Refusal> {
    match calls.get(c) {
        None => Err((ErrorCode::INV_CONNID, format!("ConnID {c} is not known"))),
        Some(call) if call.party(dn).is_none() => {
            Err((ErrorCode::INV_CONNID, format!("ConnID {c} is not on {dn}")))
        }
        Some(call) => Ok(ConnectionId::new(call.call_id.clone(), dn)),
    }
}

/// The ConnID of a local request on a call of `dn` (RequestQueryCall, user data): present (53)
/// and a call `dn` is on (56).
pub fn call_of(req: &Request, calls: &Calls, dn: &str) -> Result<ConnId, Refusal> {
    let c = need(&req.conn_id, "ConnID")?;
    connection(calls, c, dn)?;
    Ok(c)
}

/// The service for a call request of `dn`.
pub fn service(req: &Request, dn: &str, calls: &Calls) -> Result<Service, Refusal> {
    let conn = |c: ConnId| connection(calls, c, dn);
    Ok(match req.name {
        R::RequestMakeCall => {
            // CSTA MakeCall has one kind of call; the other T-Library types need switch
            // features (agent/supervisor/priority calls) the Connector does not offer.
            match req.make_call_type {
                None | Some(MakeCallType::Regular) => {}
                Some(t) => {
                    return Err((
                        ErrorCode::UNSUP_OPER,
                        format!(
                            "MakeCallType {} is not supported by the switch; only MakeCallRegular",
                            t.as_str()
                        ),
                    ))
                }
            }
            let other = other_dn(req)?;
            let msg = Message::MakeCall(MakeCall {
                calling_device: dn.into(),
                called_directory_number: other.into(),
                account_code: None,
                auth_code: None,
                auto_originate: Some(AutoOriginate::DoNotPrompt),
                correlator_data: None,
                extensions: None,
            });
            Service::new(msg, EventName::EventDialing, None)
        }
        R::RequestAnswerCall
        | R::RequestReleaseCall
        | R::RequestClearCall
        | R::RequestHoldCall
        | R::RequestRetrieveCall => {
            let c = need(&req.conn_id, "ConnID")?;
            let cx = conn(c)?;
            let (msg, want) = match req.name {
                R::RequestAnswerCall => (
                    Message::AnswerCall(AnswerCall {
                        call_to_be_answered: cx,
                        correlator_data: None,
                        extensions: None,
                    }),
                    EventName::EventEstablished,
                ),
                R::RequestReleaseCall => (
                    Message::ClearConnection(ClearConnection {
                        connection_to_be_cleared: cx,
                        correlator_data: None,
                        extensions: None,
                    }),
                    EventName::EventReleased,
                ),
                R::RequestClearCall => (
                    Message::ClearCall(ClearCall {
                        call_to_be_cleared: cx,
                        extensions: None,
                    }),
                    EventName::EventReleased,
                ),
                R::RequestHoldCall => (
                    Message::HoldCall(HoldCall {
                        call_to_be_held: cx,
                        connection_reservation: None,
                        extensions: None,
                    }),
                    EventName::EventHeld,
                ),
                _ => (
                    Message::RetrieveCall(RetrieveCall {
                        call_to_be_retrieved: cx,
                        extensions: None,
                    }),
                    EventName::EventRetrieved,
                ),
            };
            let mut s = Service::new(msg, want, Some(c));
            if want == EventName::EventReleased {
                // Releasing a phone that is off hook without having dialled: EventOnHook.
                s.events.push(EventName::EventOnHook);
            }
            s
        }
        R::RequestInitiateTransfer | R::RequestInitiateConference | R::RequestMuteTransfer => {
            let c = need(&req.conn_id, "ConnID")?;
            let cx = conn(c)?;
            let other = other_dn(req)?;
            let msg = Message::ConsultationCall(ConsultationCall {
                existing_call: cx,
                consulted_device: other.into(),
                connection_reservation: None,
                account_code: None,
                auth_code: None,
                correlator_data: None,
                extensions: None,
            });
            let mut s = Service::new(msg, EventName::EventDialing, None);
            s.then =
                (req.name == R::RequestMuteTransfer).then_some(Then::MuteTransfer { original: c });
            s.origin = Some(c);
            s
        }
        R::RequestCompleteTransfer | R::RequestCompleteConference => {
            let c = need(&req.conn_id, "ConnID")?;
            let active = conn(c)?;
            let transfer = req.name == R::RequestCompleteTransfer;
            let orig = if transfer {
                req.transfer_conn_id
            } else {
                req.conference_conn_id.or(req.transfer_conn_id)
            };
            let Some(o) = orig else {
                let what = if transfer {
                    "TransferConnID"
                } else {
                    "ConferenceConnID"
                };
                return Err((ErrorCode::INVALID_ATTR, format!("{what} missing")));
            };
            let held = conn(o)?;
            if transfer {
                let msg = Message::TransferCall(TransferCall {
                    held_call: held,
                    active_call: active,
                    extensions: None,
                });
                Service::new(msg, EventName::EventReleased, None)
            } else {
                let msg = Message::ConferenceCall(ConferenceCall {
                    held_call: held,
                    active_call: active,
                    extensions: None,
                });
                Service::new(msg, EventName::EventPartyAdded, None)
            }
        }
        R::RequestSingleStepTransfer | R::RequestRedirectCall => {
            let c = need(&req.conn_id, "ConnID")?;
            let cx = conn(c)?;
            let other = other_dn(req)?;
            let msg = if req.name == R::RequestSingleStepTransfer {
                Message::SingleStepTransferCall(SingleStepTransferCall {
                    active_call: cx,
                    transferred_to: other.into(),
                    account_code: None,
                    auth_code: None,
                    correlator_data: None,
                    extensions: None,
                })
            } else {
                Message::DeflectCall(DeflectCall {
                    call_to_be_diverted: cx,
                    new_destination: NewDestination(other.into()),
                    correlator_data: None,
                    extensions: None,
                })
            };
            Service::new(msg, EventName::EventReleased, Some(c))
        }
        R::RequestRouteCall => {
            let c = need(&req.conn_id, "ConnID")?;
            let cx = conn(c)?;
            let other = other_dn(req)?;
            let msg = Message::DeflectCall(DeflectCall {
                call_to_be_diverted: cx,
                new_destination: NewDestination(other.into()),
                correlator_data: None,
                extensions: None,
            });
            let mut s = Service::new(msg, EventName::EventRouteUsed, Some(c));
            s.on_accept = Some(EventName::EventRouteUsed);
            s
        }
        R::RequestDeleteFromConference => {
            let c = need(&req.conn_id, "ConnID")?;
            conn(c)?;
            let other = other_dn(req)?;
            let Some(call) = calls.get(c).filter(|x| x.party(&other).is_some()) else {
                return Err((
                    ErrorCode::INVALID_ATTR,
                    format!("OtherDN {other} is not on the call"),
                ));
            };
            let cx = ConnectionId::new(call.call_id.clone(), other);
            let msg = Message::ClearConnection(ClearConnection {
                connection_to_be_cleared: cx,
                correlator_data: None,
                extensions: None,
            });
            Service::new(msg, EventName::EventPartyDeleted, Some(c))
        }
        R::RequestAlternateCall | R::RequestReconnectCall => {
            let c = need(&req.conn_id, "ConnID")?;
            let active = conn(c)?;
            let h = need(&req.transfer_conn_id, "TransferConnID")?;
            let held = conn(h)?;
            let (msg, events) = if req.name == R::RequestAlternateCall {
                (
                    Message::AlternateCall(AlternateCall {
                        held_call: held,
                        active_call: active,
                        connection_reservation: None,
                        extensions: None,
                    }),
                    vec![EventName::EventHeld, EventName::EventRetrieved],
                )
            } else {
                (
                    Message::ReconnectCall(ReconnectCall {
                        active_call: active,
                        held_call: held,
                        extensions: None,
                    }),
                    vec![EventName::EventReleased, EventName::EventRetrieved],
                )
            };
            let mut s = Service::new(msg, EventName::EventHeld, None);
            s.events = events;
            s
        }
        R::RequestSendDTMF => {
            let c = need(&req.conn_id, "ConnID")?;
            let cx = conn(c)?;
            let digits = need(&req.dtmf_digits, "DTMFDigits")?;
            let msg = Message::GenerateDigits(GenerateDigits {
                connection_to_send_digits: cx,
                digit_mode: None,
                characters_to_send: digits.into(),
                tone_duration: None,
                pulse_rate: None,
                pause_duration: None,
                extensions: None,
            });
            let mut s = Service::new(msg, EventName::EventDTMFSent, Some(c));
            s.on_accept = Some(EventName::EventDTMFSent);
            s
        }
        other => {
            return Err((
                ErrorCode::UNSUP_OPER,
                format!("{} is not supported by this server", other.as_str()),
            ))
        }
    })
}

/// RequestMuteTransfer's second step: the original call (held on `dn`) transferred to the
/// consultation now dialling.
pub fn mute_transfer_step(
    calls: &Calls,
    dn: &str,
    original: ConnId,
    consult: ConnId,
) -> Option<Message> {
    let held = ConnectionId::new(calls.get(original)?.call_id.clone(), dn);
    let active = ConnectionId::new(calls.get(consult)?.call_id.clone(), dn);
    Some(Message::TransferCall(TransferCall {
        held_call: held,
        active_call: active,
        extensions: None,
    }))
}
