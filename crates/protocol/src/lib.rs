//! ctid-protocol: the client protocol of ctid, without IO.
//!
//! Clients and ctid exchange JSON objects, one per WebSocket text frame, in the T-Library
//! vocabulary: requests (`{"request":"RequestRegisterAddress","ReferenceID":7,"ThisDN":"5001"}`)
//! and events (`{"event":"EventRegistered","ReferenceID":7,...}`). This crate owns the names
//! ([`RequestName`], [`EventName`]), the enumerations, KV lists ([`KvList`]), error codes
//! ([`ErrorCode`]), the typed [`Request`] and [`Event`], and their JSON codec
//! ([`parse_request`], [`Event::to_json`], [`parse_event`], [`Request::to_json`]).
//! `docs/protocol.md` is the contract this crate implements.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod attrs;
pub mod enums;
pub mod error;
pub mod event;
pub mod json;
pub mod kv;
pub mod names;
pub mod request;
pub mod types;

pub use attrs::REFERENCE_ID_MAX;
pub use enums::{
    AddressInfoType, AddressStatus, AddressType, AgentWorkMode, CallState, CallType, ControlMode,
    DnRole, ForwardMode, MakeCallType, PartyState, RegisterMode, RouteType,
};
pub use error::{Error, ErrorCode, RequestError, Result};
pub use event::{parse_event, Event};
pub use kv::{KvList, KvValue};
pub use names::{EventName, RequestName, Scope, UnknownName};
pub use request::{parse_request, Request};
pub use types::{format_time, format_unix_micros, is_valid_dn, ConnId, InfoStatus, DN_MAX_LEN};
