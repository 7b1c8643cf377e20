//! Fixture corpus: every file under tests/fixtures decodes, and survives a round trip through
//! the encoder in every edition (decode → encode → decode gives the same message). Files under
//! tests/malformed are rejected with an error value.

use ctid_csta::*;
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn files(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn root_name(xml: &[u8]) -> String {
    let s = String::from_utf8_lossy(xml);
    let mut rest: &str = &s;
    loop {
        let i = rest.find('<').expect("a root");
        rest = &rest[i + 1..];
        if !rest.starts_with('?') && !rest.starts_with('!') {
            break;
        }
    }
    let name: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
        .collect();
    name.rsplit(':').next().unwrap().to_string()
}

#[test]
fn every_fixture_round_trips_in_every_edition() {
    let all = files("fixtures");
    assert!(all.len() > 100, "fixture corpus went missing");
    for (name, xml) in all {
        let msg = decode(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg.name(), root_name(&xml), "{name}");
        if name.starts_with("unknown-root") {
            assert!(matches!(msg, Message::Unknown(_)), "{name}");
        } else {
            assert!(
                !matches!(msg, Message::Unknown(_)),
                "{name} decoded as Unknown"
            );
        }
        for ed in [Edition::Ed3, Edition::Ed4, Edition::Ed5, Edition::Ed6] {
            let out = encode(&msg, ed).unwrap_or_else(|e| panic!("{name}: {e}"));
            let again = decode(&out)
                .unwrap_or_else(|e| panic!("{name} {ed}: {e}\n{}", String::from_utf8_lossy(&out)));
            assert_eq!(again, msg, "{name} {ed}\n{}", String::from_utf8_lossy(&out));
            let json = json::to_json(&msg);
            assert_eq!(json["message"], msg.name(), "{name}");
            assert_eq!(json::from_json(&json).unwrap(), msg, "{name} JSON");
        }
    }
}

#[test]
fn malformed_documents_are_errors() {
    for (name, xml) in files("malformed") {
        assert!(decode(&xml).is_err(), "{name} decoded: {:?}", decode(&xml));
    }
}

#[test]
fn encoder_writes_the_edition_namespace_and_schema_order() {
    let msg: Message = DeflectCall {
        call_to_be_diverted: ConnectionId::new("C42", "4002"),
        new_destination: NewDestination("4005".into()),
        correlator_data: None,
        extensions: None,
    }
    .into();
    let ed3 = String::from_utf8(encode(&msg, Edition::Ed3).unwrap()).unwrap();
    assert_eq!(
        ed3,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeflectCall xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><callToBeDiverted><callID>C42</callID><deviceID>4002</deviceID></callToBeDiverted><newDestination>4005</newDestination></DeflectCall>"
    );
    let ed6 = String::from_utf8(encode(&msg, Edition::Ed6).unwrap()).unwrap();
    assert!(ed6.contains("csta/ed6\""), "{ed6}");
    assert!(
        ed6.contains("<newDestination><device>4005</device></newDestination>"),
        "{ed6}"
    );
    let session: Message = StopApplicationSessionPosResponse { extensions: None }.into();
    let s = String::from_utf8(encode(&session, Edition::Ed6).unwrap()).unwrap();
    assert!(s.ends_with("<StopApplicationSessionPosResponse xmlns=\"http://www.ecma-international.org/standards/ecma-354/appl_session\"/>"), "{s}");
}

#[test]
fn misspellings_of_the_standard_are_reproduced() {
    let err: Message = CstaErrorCode::from(CstaError::SystemResourceAvailability(
        SystemResourceAvailabilityError::ResourceBusy,
    ))
    .into();
    let s = String::from_utf8(encode(&err, Edition::Ed3).unwrap()).unwrap();
    assert!(s.contains("<systemResourceAvailibility>resourceBusy</systemResourceAvailibility>"));
    let xml = std::fs::read(dir("fixtures").join("spec-25-TransferedEvent.xml")).unwrap();
    let m = decode(&xml).unwrap();
    assert_eq!(m.name(), "TransferedEvent");
    let s = String::from_utf8(encode(&m, Edition::Ed3).unwrap()).unwrap();
    assert!(s.contains("<TransferedEvent "));
    let xml = std::fs::read(dir("fixtures").join("ed5-mixedprefix-EstablishedEvent.xml")).unwrap();
    let Message::EstablishedEvent(e) = decode(&xml).unwrap() else {
        panic!()
    };
    assert_eq!(e.originatin_nid_connection.as_ref().unwrap().call(), "N1");
    assert_eq!(e.cause, Some(EventCause::Other("someFutureCause".into())));
    let s = String::from_utf8(encode(&e.into(), Edition::Ed3).unwrap()).unwrap();
    assert!(s.contains("<originatinNIDConnection>"));
    assert!(OperationError::LITERALS.contains(&"connectionReservoationOutOfRange"));
    assert!(OperationError::LITERALS.contains(&"invalidNumberOFChannels"));
    assert!(OperationError::LITERALS.contains(&"ringVolumnOutOfRange"));
}

#[test]
fn tolerance_rules() {
    let read = |f: &str| decode(&std::fs::read(dir("fixtures").join(f)).unwrap()).unwrap();
    let Message::DeliveredEvent(d) = read("ed6-reordered-DeliveredEvent.xml") else {
        panic!()
    };
    assert_eq!(d.monitor_cross_ref_id, "12");
    assert_eq!(d.connection, ConnectionId::new("C7", "1002"));
    assert_eq!(d.calling_device, Some(DeviceRef::id("1001")));
    assert_eq!(
        d.last_redirection_device,
        Some(RedirectionDevice::NotRequired)
    );
    let Message::SetForwarding(f) = read("bw-order-SetForwarding.xml") else {
        panic!()
    };
    assert_eq!(f.forwarding_type, Some(ForwardingType::ForwardNoAns));
    assert!(f.activate_forward);
    assert_eq!(f.ring_count, Some(4));
    let Message::SetAgentState(s) = read("empty-elements-SetAgentState.xml") else {
        panic!()
    };
    assert_eq!((s.agent_id, s.password, s.group), (None, None, None));
    let Message::CallInformationEvent(c) = read("latin1-CallInformationEvent.xml") else {
        panic!()
    };
    assert_eq!(c.account_info.as_deref(), Some("Müller"));
    let Message::SnapshotDevice(s) = read("ed4-prefixed-SnapshotDevice.xml") else {
        panic!()
    };
    assert_eq!(s.snapshot_object, "1001");
    let Message::MonitorStop(m) = read("comments-pi-MonitorStop.xml") else {
        panic!()
    };
    assert_eq!(m.monitor_cross_ref_id, "17");
    let Message::CstaErrorCode(e) = read("CSTAErrorCode-corrected-spelling.xml") else {
        panic!()
    };
    assert_eq!(
        e.error.to_string(),
        "systemResourceAvailibility/networkBusy"
    );
}

#[test]
fn edition_is_reported() {
    let xml = std::fs::read(dir("fixtures").join("ed4-prefixed-SnapshotDevice.xml")).unwrap();
    let d = decode_with(&xml, &CodecOptions::default()).unwrap();
    assert_eq!(d.edition, Some(Edition::Ed4));
    let d = decode_with(
        b"<SystemStatus><systemStatus>normal</systemStatus></SystemStatus>",
        &CodecOptions::default(),
    )
    .unwrap();
    assert_eq!(d.edition, None);
}
