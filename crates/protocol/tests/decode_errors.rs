//! parse_request: the error code, message and ReferenceID of every kind of bad input, and a
//! property test that arbitrary input never panics.

use ctid_protocol::*;
use proptest::prelude::*;

fn err(text: &str) -> RequestError {
    match parse_request(text) {
        Ok(r) => panic!("{text} decoded as {r:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn check(text: &str, code: u32, rid: Option<u32>, needle: &str) {
    let e = err(text);
    assert_eq!(e.code, ErrorCode(code), "{text}: {e}");
    assert_eq!(e.reference_id, rid, "{text}: {e}");
    assert!(
        e.message.contains(needle),
        "{text}: {:?} lacks {needle:?}",
        e.message
    );
    assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
}

#[test]
fn syntax_and_reference_id() {
    check("", 53, None, "invalid JSON");
    check("{", 53, None, "invalid JSON");
    check("[1]", 53, None, "JSON object, got array");
    check(
        r#"{"request":"RequestQueryServer"}"#,
        53,
        None,
        "ReferenceID missing",
    );
    check(
        r#"{"request":"RequestQueryServer","ReferenceID":null}"#,
        53,
        None,
        "ReferenceID missing",
    );
    check(
        r#"{"request":"RequestQueryServer","ReferenceID":0}"#,
        53,
        None,
        "got number 0",
    );
    check(
        r#"{"request":"RequestQueryServer","ReferenceID":2147483648}"#,
        53,
        None,
        "1..2147483647",
    );
    check(
        r#"{"request":"RequestQueryServer","ReferenceID":-1}"#,
        53,
        None,
        "ReferenceID",
    );
    check(
        r#"{"request":"RequestQueryServer","ReferenceID":7.5}"#,
        53,
        None,
        "got number 7.5",
    );
    check(
        r#"{"request":"RequestQueryServer","ReferenceID":"7"}"#,
        53,
        None,
        "got string \"7\"",
    );
    assert!(parse_request(r#"{"request":"RequestQueryServer","ReferenceID":2147483647}"#).is_ok());
}

#[test]
fn request_name() {
    check(r#"{"ReferenceID":3}"#, 53, Some(3), "request missing");
    check(
        r#"{"request":5,"ReferenceID":3}"#,
        53,
        Some(3),
        "request: expected a string",
    );
    check(
        r#"{"request":"RequestFoo","ReferenceID":3}"#,
        51,
        Some(3),
        "unknown request \"RequestFoo\"",
    );
    check(
        r#"{"request":"EventRegistered","ReferenceID":3}"#,
        51,
        Some(3),
        "unknown request",
    );
    // attribute errors are reported before an unknown name (§3.3 step 1)
    check(
        r#"{"request":"RequestFoo","ReferenceID":3,"ThisDN":5}"#,
        53,
        Some(3),
        "ThisDN",
    );
}

#[test]
fn attributes() {
    let base = r#"{"request":"RequestRegisterAddress","ReferenceID":9,"#;
    let case = |tail: &str, needle: &str| check(&format!("{base}{tail}}}"), 53, Some(9), needle);
    case(
        r#""ThisDN":5001"#,
        "ThisDN: expected a string, got number 5001",
    );
    case(r#""ThisDN":"50 01""#, "ThisDN: expected a DN");
    case(r#""ThisDN":"""#, "ThisDN: expected a DN");
    case(
        r#""ThisDN":"5001","RegisterMode":"Share""#,
        "RegisterMode: expected one of ModeShare, ModePrivate, ModeMonitor, got string \"Share\"",
    );
    case(
        r#""ThisDN":"5001","RegisterMode":0"#,
        "RegisterMode: expected one of",
    );
    case(
        r#""ThisDN":"5001","AddressType":"Extension""#,
        "AddressType",
    );
    case(
        r#""ThisDN":"5001","ConnID":"xyz""#,
        "ConnID: expected a string of 16 hex digits",
    );
    case(r#""ThisDN":"5001","PrivateMsgID":-2"#, "PrivateMsgID");
    case(
        r#""ThisDN":"5001","Extensions":"HOST_DN=1""#,
        "Extensions: expected a KV list",
    );
    case(
        r#""ThisDN":"5001","Extensions":{"HOST_DN":true}"#,
        "Extensions: key \"HOST_DN\"",
    );
    case(
        r#""ThisDN":"5001","ThisDN":"5002""#,
        "attribute \"ThisDN\" given more than once",
    );
}

#[test]
fn messages_stay_short_whatever_the_input() {
    let long = "R".repeat(100_000);
    let e = err(&format!(r#"{{"request":"{long}","ReferenceID":1}}"#));
    assert_eq!(e.code, ErrorCode::UNSUP_OPER);
    assert!(e.message.len() < 100, "{}", e.message);
    let e = err(&format!(
        r#"{{"request":"RequestQueryServer","ReferenceID":1,"Extensions":{{"{long}":true}}}}"#
    ));
    assert!(e.message.len() < 200, "{}", e.message);
    let e = err(&format!(
        r#"{{"request":"RequestQueryServer","ReferenceID":1,"ThisDN":"{long}\n"}}"#
    ));
    assert!(
        e.message.len() < 200 && !e.message.contains('\n'),
        "{}",
        e.message
    );
}

#[test]
fn lenient_parts() {
    let r = parse_request(
        r#"{"ThisDN":"5001","Whatever":[1,2],"request":"RequestRegisterAddress","ControlMode":null,"ReferenceID":1}"#,
    )
    .unwrap();
    assert_eq!(r.this_dn.as_deref(), Some("5001"));
    assert_eq!(r.control_mode, None);
    // output order is canonical: request first
    assert_eq!(
        r.to_json(),
        r#"{"request":"RequestRegisterAddress","ReferenceID":1,"ThisDN":"5001"}"#
    );
}

#[test]
fn error_event() {
    let e = err(r#"{"request":"RequestFoo","ReferenceID":3}"#).to_event();
    assert_eq!(
        e.to_json(),
        r#"{"event":"EventError","ReferenceID":3,"ErrorCode":51,"ErrorMessage":"unknown request \"RequestFoo\"","EventSequenceNumber":0,"time":""}"#
    );
}

#[test]
fn every_request_name_round_trips() {
    for name in RequestName::ALL {
        let r = Request::new(*name).with_reference_id(1);
        assert_eq!(parse_request(&r.to_json()).unwrap(), r);
    }
    for name in EventName::ALL {
        let e = Event::new(*name);
        assert_eq!(parse_event(&e.to_json()).unwrap(), e);
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse_request(&s);
        let _ = parse_event(&s);
    }

    #[test]
    fn json_shaped_text_never_panics(
        s in r#"\{("(request|ReferenceID|ThisDN|ConnID|Extensions|UserData|PrivateMsgID|RegisterMode|InfoStatus|event)":(-?[0-9]{1,20}(\.[0-9])?|"[A-Za-z0-9 ]{0,8}"|null|true|\[\[?"k",?[0-9"{}$a-z:]{0,8}\]?\]|\{"[a-z$]{0,7}":[0-9"a-z{}\[\]]{0,9}\}),?){0,6}\}"#
    ) {
        let _ = parse_request(&s);
        let _ = parse_event(&s);
    }

    #[test]
    fn kv_lists_round_trip(pairs in proptest::collection::vec(("[a-c$]{0,3}", "[a-z]{0,3}", any::<i64>(), any::<Vec<u8>>(), 0u8..3), 0..8)) {
        let mut l = KvList::new();
        for (k, s, i, b, which) in pairs {
            match which {
                0 => l.push(k, s),
                1 => l.push(k, i),
                _ => l.push(k, KvValue::Binary(b)),
            }
        }
        let mut outer = KvList::new();
        outer.push("inner", l.clone());
        outer.push("inner", l.clone());
        prop_assert_eq!(KvList::from_json(&l.to_json()).unwrap(), l);
        prop_assert_eq!(KvList::from_json(&outer.to_json()).unwrap(), outer);
    }
}
