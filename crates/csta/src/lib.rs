//! ctid-csta: the CSTA Phase III XML codec (ECMA-323 editions 3–6, ECMA-354 sessions).
//!
//! * [`frame`] — the 8-byte header framing ("CSTA XML over TCP without SOAP"), as plain functions
//!   over a `BytesMut` (the link session in ctid-server drives them; no runtime here).
//! * [`Message`] — typed messages; [`decode`] accepts any edition's namespace or none, prefixed or
//!   default, children in any order, unknown elements ignored, unknown roots kept as
//!   [`Message::Unknown`]; [`encode`] writes one edition in schema order with an explicit `xmlns`.
//! * [`private`] — private data, including ctid's hot-desking dialect (`urn:ctid:csta:hotdesk:1`).
//! * [`json`] — the JSON form used by `ctictl csta decode|encode`.
//!
//! No runtime, no sockets; a decoder never panics on input.
#![deny(unsafe_code)]

#[macro_use]
mod macros;
pub mod enums;
pub mod error;
pub mod frame;
pub mod json;
pub mod messages;
pub mod private;
pub mod types;
pub mod xml;

/// The string type of the messages' text values (device, call and cross-ref IDs, …): up to 24
/// bytes inline, no allocation; `Deref<Target = str>`, compares with `str` and `String`.
pub use compact_str::{format_compact, CompactString, ToCompactString};
pub use enums::*;
pub use error::{DecodeError, EncodeError, FrameError, Result};
pub use frame::{Frame, InvokeId};
pub use messages::*;
pub use private::{HotDesk, PrivateContent, PrivateData, BROADSOFT_NS, HOTDESK_NS};
pub use types::*;
pub use xml::{decode, decode_with, encode, encode_into, encode_with, CodecOptions, Edition};
