//! The JSON examples of the hot-desking behaviour (docs/protocol.md) and of the design notes, byte for byte:
//! decoding then encoding gives the same text.

use ctid_protocol::*;

fn request_round_trip(text: &str) -> Request {
    let r = parse_request(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(r.to_json(), text);
    r
}

fn event_round_trip(text: &str) -> Event {
    let e = parse_event(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(e.to_json(), text);
    e
}

#[test]
fn design_examples() {
    let r = request_round_trip(
        r#"{"request":"RequestRegisterAddress","ReferenceID":7,"ThisDN":"5001","RegisterMode":"ModeShare"}"#,
    );
    assert_eq!(r.name, RequestName::RequestRegisterAddress);
    assert_eq!(r.reference_id, Some(7));
    assert_eq!(r.register_mode, Some(RegisterMode::Share));
    let e = event_round_trip(
        r#"{"event":"EventRegistered","ReferenceID":7,"ThisDN":"5001","Extensions":{"HOST_DN":"4001"},"EventSequenceNumber":42,"time":"2026-11-24T17:40:00.123456Z"}"#,
    );
    assert_eq!(e.extension_str("HOST_DN"), Some("4001"));
    assert_eq!(e.event_sequence_number, 42);
}

#[test]
fn section_4_4_internal_query() {
    let r = request_round_trip(
        r#"{"request":"RequestRegisterAddress","ReferenceID":7,"ThisDN":"2010","RegisterMode":"ModeShare","AddressType":"AddressTypeDN"}"#,
    );
    assert_eq!(r.address_type, Some(AddressType::Dn));
    let e = event_round_trip(
        r#"{"event":"EventRegistered","ReferenceID":7,"ThisDN":"2010","InfoType":"AddressInfoAddressType","InfoStatus":"AddressTypeDN","AddressType":"AddressTypeDN","Extensions":{"status":"AddressStatusIdle","HOST_DN":"1010"},"EventSequenceNumber":41,"time":"2026-11-24T17:40:00.123456Z"}"#,
    );
    assert_eq!(
        e.info_status,
        Some(InfoStatus::AddressType(AddressType::Dn))
    );
    let r = request_round_trip(
        r#"{"request":"RequestQueryAddress","ReferenceID":8,"ThisDN":"2010","InfoType":"AddressInfoDNStatus"}"#,
    );
    assert_eq!(r.info_type, Some(AddressInfoType::DnStatus));
    let e = event_round_trip(
        r#"{"event":"EventAddressInfo","ReferenceID":8,"ThisDN":"2010","InfoType":"AddressInfoDNStatus","InfoStatus":0,"Extensions":{"status":"AddressStatusIdle","HOST_DN":"1010"},"EventSequenceNumber":42,"time":"2026-11-24T17:40:00.125010Z"}"#,
    );
    assert_eq!(e.info_status, Some(InfoStatus::Number(0)));
}

#[test]
fn section_4_5_private_event() {
    let e = event_round_trip(
        r#"{"event":"EventPrivateInfo","ThisDN":"2001","OtherDN":"1001","PrivateMsgID":1,"EventSequenceNumber":77,"time":"2026-11-24T17:41:10.000200Z"}"#,
    );
    let mut built = Event::hot_desk(1, "2001", "1001");
    built.stamp(77, "2026-11-24T17:41:10.000200Z");
    assert_eq!(built, e);
}

#[test]
fn section_4_8_correlation() {
    let r = request_round_trip(
        r#"{"request":"RequestPrivateService","ReferenceID":15,"ThisDN":"2001","PrivateMsgID":1,"Extensions":{"HOST_DN":"1001"}}"#,
    );
    assert_eq!(r.extension_str("HOST_DN"), Some("1001"));
    assert_eq!(
        Request::private_service("2001", 1)
            .with_reference_id(15)
            .with_extension("HOST_DN", "1001"),
        r
    );
    let a = event_round_trip(
        r#"{"event":"EventPrivateInfo","ReferenceID":15,"ThisDN":"2001","OtherDN":"1001","PrivateMsgID":1,"EventSequenceNumber":90,"time":"..."}"#,
    );
    let mut built = Event::hot_desk(1, "2001", "1001").with_reference_id(r.reference_id);
    built.stamp(90, "...");
    assert_eq!(built, a);
    event_round_trip(
        r#"{"event":"EventPrivateInfo","ThisDN":"2001","OtherDN":"1001","PrivateMsgID":1,"EventSequenceNumber":90,"time":"..."}"#,
    );
    request_round_trip(
        r#"{"request":"RequestPrivateService","ReferenceID":16,"ThisDN":"2001","PrivateMsgID":1,"Extensions":{"HOST_DN":"1002"}}"#,
    );
    let text = r#"{"event":"EventError","ReferenceID":16,"ThisDN":"2001","ErrorCode":1161,"ErrorMessage":"hot desking: guest 2001 is already associated","Extensions":{"CSTAError":"stateIncompatibility/invalidObjectState"},"EventSequenceNumber":91,"time":"..."}"#;
    let e = event_round_trip(text);
    assert_eq!(e.error_code, Some(ErrorCode::CSTA_INVALID_OBJECT_STATE));
    let req = parse_request(
        r#"{"request":"RequestPrivateService","ReferenceID":16,"ThisDN":"2001","PrivateMsgID":1,"Extensions":{"HOST_DN":"1002"}}"#,
    )
    .unwrap();
    let mut built = Event::error_for(
        &req,
        ErrorCode::CSTA_INVALID_OBJECT_STATE,
        "hot desking: guest 2001 is already associated",
    )
    .with_extension("CSTAError", "stateIncompatibility/invalidObjectState");
    built.stamp(91, "...");
    assert_eq!(built.to_json(), text);
}

#[test]
fn call_attributes_round_trip() {
    event_round_trip(
        r#"{"event":"EventReleased","ThisDN":"5001","OtherDN":"5002","ConnID":"00a1f3c200000017","PreviousConnID":"00a1f3c200000016","CallID":"callid-1","CallType":"CallTypeInbound","CallState":"CallStateTransferred","ThisDNRole":"RoleDestination","ANI":"+33123","DNIS":"5001","AgentID":"a1","AgentWorkMode":"AgentAfterCallWork","UserData":{"k":"v","n":3,"b":{"$binary":"AAE="},"l":[["x","1"],["x","2"]]},"EventSequenceNumber":5,"time":"2026-11-24T17:40:00.000000Z"}"#,
    );
    request_round_trip(
        r#"{"request":"RequestCompleteTransfer","ReferenceID":3,"ThisDN":"5001","ConnID":"00a1f3c200000017","TransferConnID":"00a1f3c200000016"}"#,
    );
}
