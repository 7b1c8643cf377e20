//! Every request (`← {...}`) and event (`→ {...}`) example line in docs/protocol.md decodes and
//! re-encodes to exactly the same text, so the contract and this crate cannot drift apart.

use ctid_protocol::{parse_event, parse_request};

const DOC: &str = include_str!("../../../docs/protocol.md");

#[test]
fn every_example_in_the_contract_round_trips() {
    let mut requests = 0;
    let mut events = 0;
    for line in DOC.lines() {
        if let Some(text) = line.strip_prefix("← ") {
            let r = parse_request(text).unwrap_or_else(|e| panic!("{text}\n{e}"));
            assert_eq!(
                r.to_json(),
                text,
                "request example is not in canonical form"
            );
            requests += 1;
        } else if let Some(text) = line.strip_prefix("→ ") {
            let e = parse_event(text).unwrap_or_else(|e| panic!("{text}\n{e}"));
            assert_eq!(e.to_json(), text, "event example is not in canonical form");
            events += 1;
        }
    }
    assert!(
        requests >= 8 && events >= 10,
        "{requests} requests, {events} events"
    );
}

#[test]
fn user_data_example_decodes() {
    let line = DOC
        .lines()
        .find(|l| l.starts_with("\"UserData\":"))
        .expect("UserData example");
    let text = format!("{{\"event\":\"EventACK\",{line}}}");
    let e = parse_event(&text).unwrap();
    let ud = e.user_data.unwrap();
    assert_eq!(
        ud.get("Case")
            .unwrap()
            .as_list()
            .unwrap()
            .get_all("Tag")
            .count(),
        2
    );
    assert_eq!(ud.get_int("Score"), Some(42));
    assert!(text.starts_with(r#"{"event":"EventACK","UserData":"#));
    assert_eq!(ud.to_json(), line.trim_start_matches("\"UserData\":"));
}

/// Every request ctid serves (phases H and C of the catalogue) has a `←` example and every
/// event it sends has a `→` example, so a new request or event cannot go undocumented.
#[test]
fn every_served_message_has_an_example() {
    use ctid_protocol::names::{EventName, RequestName, Scope};
    let mut requests = std::collections::BTreeSet::new();
    let mut events = std::collections::BTreeSet::new();
    for line in DOC.lines() {
        if let Some(text) = line.strip_prefix("← ") {
            requests.insert(parse_request(text).unwrap().name);
        } else if let Some(text) = line.strip_prefix("→ ") {
            events.insert(parse_event(text).unwrap().name);
        }
    }
    let missing: Vec<&str> = RequestName::ALL
        .iter()
        .filter(|r| matches!(r.scope(), Scope::H | Scope::C) && !requests.contains(*r))
        .map(|r| r.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "requests without an example: {missing:?}"
    );
    // not sent by this version (section 9.6)
    let not_sent = [EventName::EventOnHook];
    let missing: Vec<&str> = EventName::ALL
        .iter()
        .filter(|e| matches!(e.scope(), Scope::H | Scope::C) && !not_sent.contains(*e))
        .filter(|e| !events.contains(*e))
        .map(|e| e.as_str())
        .collect();
    assert!(missing.is_empty(), "events without an example: {missing:?}");
}
