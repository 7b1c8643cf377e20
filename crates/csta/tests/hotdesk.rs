//! The hot-desking dialect, checked against the framed examples of csta-xml.md §12.8: the
//! header bytes of each example, the typed values they decode to, and encode → decode.

use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, encode_frame, FrameItem, MAX_FRAME_LEN};
use ctid_csta::*;

const ED3: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";

fn escape_doc(inner: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Escape xmlns=\"{ED3}\">\n  <privateData>\n    <private>\n      <hd:guestAssociatedExtension xmlns:hd=\"urn:ctid:csta:hotdesk:1\">\n{inner}      </hd:guestAssociatedExtension>\n    </private>\n  </privateData>\n</Escape>")
}

fn event_doc(xref: &str, state: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PrivateEvent xmlns=\"{ED3}\">\n  <monitorCrossRefID>{xref}</monitorCrossRefID>\n  <privateData>\n    <private>\n      <hd:guestAssociatedEvent xmlns:hd=\"urn:ctid:csta:hotdesk:1\">\n        <hd:state>{state}</hd:state>\n        <hd:guest>2001</hd:guest>\n        <hd:host>1001</hd:host>\n      </hd:guestAssociatedEvent>\n    </private>\n  </privateData>\n</PrivateEvent>")
}

fn header(xml: &str, invoke: u16) -> [u8; 8] {
    let mut b = BytesMut::new();
    encode_frame(InvokeId::new(invoke).unwrap(), xml.as_bytes(), &mut b).unwrap();
    let mut h = [0u8; 8];
    h.copy_from_slice(&b[..8]);
    // and the frame decodes back to the same XML
    let Some(FrameItem::Frame(f)) = decode_frame(&mut b, MAX_FRAME_LEN).unwrap() else {
        panic!()
    };
    assert_eq!(&f.xml[..], xml.as_bytes());
    h
}

fn hd(xml: &str) -> HotDesk {
    match decode(xml.as_bytes()).unwrap() {
        Message::Escape(e) => e.private_data.unwrap().hotdesk().unwrap().clone(),
        Message::PrivateEvent(e) => e.private_data.unwrap().hotdesk().unwrap().clone(),
        Message::EscapeResponse(e) => e.private_data().unwrap().hotdesk().unwrap().clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn example_a_associate() {
    let a = escape_doc("        <hd:action>associate</hd:action>\n        <hd:guest>2001</hd:guest>\n        <hd:host>1001</hd:host>\n");
    assert_eq!(
        header(&a, 42),
        [0x00, 0x00, 0x01, 0x9c, b'0', b'0', b'4', b'2']
    );
    assert_eq!(hd(&a), HotDesk::associate("2001", "1001"));
}

#[test]
fn examples_c_d_j_events() {
    let c = event_doc("21", "established");
    assert_eq!(header(&c, 9999), [0, 0, 0x01, 0xcc, b'9', b'9', b'9', b'9']);
    assert_eq!(
        hd(&c),
        HotDesk::event(HotDeskState::Established, "2001", "1001")
    );
    let d = event_doc("11", "established");
    assert_eq!(header(&d, 9999), [0, 0, 0x01, 0xcc, b'9', b'9', b'9', b'9']);
    let j = event_doc("21", "cancelled");
    assert_eq!(header(&j, 9999), [0, 0, 0x01, 0xca, b'9', b'9', b'9', b'9']);
    assert_eq!(
        hd(&j),
        HotDesk::event(HotDeskState::Cancelled, "2001", "1001")
    );
}

#[test]
fn examples_b_e_f_g_answers() {
    let b =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<EscapeResponse xmlns=\"{ED3}\"/>");
    assert_eq!(header(&b, 42), [0, 0, 0x00, 0x86, b'0', b'0', b'4', b'2']);
    assert!(
        matches!(decode(b.as_bytes()).unwrap(), Message::EscapeResponse(r) if r.private_data().is_none())
    );
    for (child, value, len) in [
        ("stateIncompatibility", "invalidObjectState", 0xd7u8),
        ("operation", "invalidDeviceID", 0xbe),
        ("systemResourceAvailibility", "resourceBusy", 0xdd),
    ] {
        let x = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CSTAErrorCode xmlns=\"{ED3}\">\n  <{child}>{value}</{child}>\n</CSTAErrorCode>");
        assert_eq!(header(&x, 42), [0, 0, 0x00, len, b'0', b'0', b'4', b'2']);
        let Message::CstaErrorCode(e) = decode(x.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(e.error.to_string(), format!("{child}/{value}"));
    }
}

#[test]
fn examples_h_l_n_requests() {
    let h =
        escape_doc("        <hd:action>cancel</hd:action>\n        <hd:guest>2001</hd:guest>\n");
    assert_eq!(header(&h, 43), [0, 0, 0x01, 0x79, b'0', b'0', b'4', b'3']);
    assert_eq!(hd(&h), HotDesk::cancel("2001"));
    let l = escape_doc("        <hd:action>query</hd:action>\n        <hd:guest>2010</hd:guest>\n");
    assert_eq!(header(&l, 44), [0, 0, 0x01, 0x78, b'0', b'0', b'4', b'4']);
    assert_eq!(hd(&l), HotDesk::query_guest("2010"));
    let n = escape_doc("        <hd:action>query</hd:action>\n        <hd:host>1003</hd:host>\n");
    assert_eq!(header(&n, 45), [0, 0, 0x01, 0x76, b'0', b'0', b'4', b'5']);
    assert_eq!(hd(&n), HotDesk::query_host("1003"));
}

#[test]
fn examples_m_o_query_answers() {
    let m = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<EscapeResponse xmlns=\"{ED3}\">\n  <extensions>\n    <privateData>\n      <private>\n        <hd:guestAssociatedExtension xmlns:hd=\"urn:ctid:csta:hotdesk:1\">\n          <hd:guest>2010</hd:guest>\n          <hd:host>1010</hd:host>\n        </hd:guestAssociatedExtension>\n      </private>\n    </privateData>\n  </extensions>\n</EscapeResponse>");
    assert_eq!(header(&m, 44), [0, 0, 0x01, 0xb2, b'0', b'0', b'4', b'4']);
    assert_eq!(hd(&m), HotDesk::answer(Some(("2010", "1010"))));
    let o = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<EscapeResponse xmlns=\"{ED3}\">\n  <extensions>\n    <privateData>\n      <private>\n        <hd:guestAssociatedExtension xmlns:hd=\"urn:ctid:csta:hotdesk:1\"/>\n      </private>\n    </privateData>\n  </extensions>\n</EscapeResponse>");
    assert_eq!(header(&o, 45), [0, 0, 0x01, 0x46, b'0', b'0', b'4', b'5']);
    assert_eq!(hd(&o), HotDesk::answer(None));
}

#[test]
fn encoder_uses_the_hd_prefix_and_configured_namespace() {
    let msg: Message = Escape {
        escape_register_id: None,
        private_data: Some(HotDesk::associate("2001", "1001").into_private_data()),
        extensions: None,
    }
    .into();
    let s = String::from_utf8(encode(&msg, Edition::Ed3).unwrap()).unwrap();
    assert!(s.contains("<private><hd:guestAssociatedExtension xmlns:hd=\"urn:ctid:csta:hotdesk:1\"><hd:action>associate</hd:action><hd:guest>2001</hd:guest><hd:host>1001</hd:host></hd:guestAssociatedExtension></private>"), "{s}");
    let opts = CodecOptions {
        edition: Edition::Ed4,
        hotdesk_ns: "urn:example:hd".into(),
    };
    let s = encode_with(&msg, &opts).unwrap();
    let text = String::from_utf8(s.clone()).unwrap();
    assert!(text.contains("xmlns:hd=\"urn:example:hd\""));
    // A decoder configured for that namespace sees the dialect; the default one does not.
    let d = decode_with(&s, &opts).unwrap().message;
    assert!(
        matches!(&d, Message::Escape(e) if e.private_data.as_ref().unwrap().hotdesk().is_some())
    );
    let d = decode(&s).unwrap();
    assert!(
        matches!(&d, Message::Escape(e) if e.private_data.as_ref().unwrap().hotdesk().is_none())
    );
    // Answer with no pair is an empty element.
    let ans: Message = EscapeResponse {
        extensions: Some(Extensions::private(
            HotDesk::answer(None).into_private_data(),
        )),
    }
    .into();
    let s = String::from_utf8(encode(&ans, Edition::Ed3).unwrap()).unwrap();
    assert!(
        s.contains("<hd:guestAssociatedExtension xmlns:hd=\"urn:ctid:csta:hotdesk:1\"/>"),
        "{s}"
    );
}
