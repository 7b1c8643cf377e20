//! The fuzz entry function of the client request decoder. It takes arbitrary bytes, must never
//! panic on its own account, and asserts the decoder's contract (a panic here is a finding):
//!
//! * [`request`]: a text frame (bytes that are not UTF-8 are what a WebSocket text frame can never
//!   carry, and are skipped) goes to [`parse_request`]. A request it accepts re-encodes
//!   ([`Request::to_json`]) to text that decodes to the same request, and its answers (EventACK,
//!   EventError) encode to JSON that [`parse_event`] reads back equal. A refusal has code 53 or
//!   51, an ErrorMessage on one short line (docs/protocol.md: it names what was expected and
//!   what arrived, never echoing a whole frame), a ReferenceID only when the frame had a valid
//!   one, and an EventError that round-trips too.
//!
//! This file is compiled twice: by the fuzz crate (`crates/protocol/fuzz`) and, included by path,
//! by the regular test `crates/protocol/tests/fuzz_corpus.rs`. It may use only `ctid_protocol` and
//! `std`.

use ctid_protocol::{parse_event, parse_request, ErrorCode, Event, EventName, Request};

/// Longest ErrorMessage the decoder may produce, whatever the input. The bound does not grow
/// with the input (values are quoted cut to 40 characters); the longest messages are refused
/// enumerations, which list every allowed name (InfoType: 19 names, about 600 bytes) plus the
/// quoted value with escapes.
pub const MAX_MESSAGE: usize = 1200;

/// Decode one client frame and check the contract.
pub fn request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_request(text) {
        Ok(req) => check_request(&req),
        Err(e) => {
            assert!(
                e.code == ErrorCode(53) || e.code == ErrorCode(51),
                "code {} for {text:?}",
                e.code.0
            );
            assert!(
                !e.message.is_empty()
                    && e.message.len() <= MAX_MESSAGE
                    && !e.message.contains('\n')
                    && !e.message.contains('\r'),
                "ErrorMessage not one short line ({} bytes): {:?}",
                e.message.len(),
                e.message
            );
            if let Some(r) = e.reference_id {
                assert!((1..=i32::MAX as u32).contains(&r), "ReferenceID {r}");
            }
            check_event(&e.to_event());
        }
    }
}

/// A decoded request survives its own encoding, and its answers survive theirs.
pub fn check_request(req: &Request) {
    let json = req.to_json();
    let again = parse_request(&json)
        .unwrap_or_else(|e| panic!("re-encoded request refused: {e}\n{json}\n{req:?}"));
    assert_eq!(&again, req, "request round trip\n{json}");
    assert!(req.reference_id.is_some(), "accepted without ReferenceID");
    check_event(&Event::reply(EventName::EventACK, req));
    check_event(&Event::error_for(req, ErrorCode(53), "x"));
}

/// An event encodes to JSON that decodes to the same event.
pub fn check_event(ev: &Event) {
    let json = ev.to_json();
    let again = parse_event(&json).unwrap_or_else(|e| panic!("event refused: {e}\n{json}"));
    assert_eq!(&again, ev, "event round trip\n{json}");
}
