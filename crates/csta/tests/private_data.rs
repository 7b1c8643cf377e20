//! `<private>` content is read in one pass (the dialect is decoded in place, anything else is
//! kept verbatim): what is kept, with which namespace declarations.

use ctid_csta::*;

const ED3: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";

fn private_of(private: &str) -> PrivateData {
    let doc = format!(
        "<PrivateEvent xmlns=\"{ED3}\" xmlns:v=\"urn:v\"><monitorCrossRefID>1</monitorCrossRefID>\
         <privateData>{private}</privateData><after>x</after></PrivateEvent>"
    );
    match decode(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{doc}")) {
        Message::PrivateEvent(e) => e.private_data.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn opaque(xml: &str, namespaces: &[(&str, &str)]) -> PrivateData {
    PrivateData::Private(PrivateContent::Opaque {
        xml: xml.into(),
        namespaces: namespaces
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    })
}

#[test]
fn opaque_content_is_kept_verbatim_with_its_scope() {
    assert_eq!(
        private_of("<private>\n  <v:a x=\"1\"><b/>t</v:a> <c/>\n</private>"),
        opaque("<v:a x=\"1\"><b/>t</v:a> <c/>", &[("v", "urn:v")])
    );
    assert_eq!(
        private_of("<private xmlns:w=\"urn:w\"><!-- c --></private>"),
        opaque("<!-- c -->", &[("v", "urn:v"), ("w", "urn:w")])
    );
    assert_eq!(
        private_of("<private xmlns=\"urn:d\"> text &amp; more </private>"),
        opaque("text &amp; more", &[("v", "urn:v"), ("", "urn:d")])
    );
    assert_eq!(private_of("<private/>"), opaque("", &[("v", "urn:v")]));
    assert_eq!(
        private_of("<private></private>"),
        opaque("", &[("v", "urn:v")])
    );
    // declarations of the first element are its own, not the scope's
    assert_eq!(
        private_of("<private><y:e xmlns:y=\"urn:y\"/><z/></private>"),
        opaque("<y:e xmlns:y=\"urn:y\"/><z/>", &[("v", "urn:v")])
    );
    // an element named like the dialect but in another namespace stays opaque
    assert_eq!(
        private_of("<private><v:guestAssociatedEvent><v:state>established</v:state></v:guestAssociatedEvent></private>"),
        opaque(
            "<v:guestAssociatedEvent><v:state>established</v:state></v:guestAssociatedEvent>",
            &[("v", "urn:v")]
        )
    );
}

#[test]
fn the_dialect_is_decoded_in_place_and_what_follows_is_ignored() {
    let pd = private_of(
        "<private><hd:guestAssociatedEvent xmlns:hd=\"urn:ctid:csta:hotdesk:1\"><hd:state>cancelled</hd:state>\
         <hd:guest>2001</hd:guest><hd:host>1001</hd:host></hd:guestAssociatedEvent><trailer><x/></trailer></private>",
    );
    assert_eq!(
        pd.hotdesk(),
        Some(&HotDesk::event(HotDeskState::Cancelled, "2001", "1001"))
    );
    let pd = private_of("<private> <guestAssociatedExtension><action>query</action><host>1001</host></guestAssociatedExtension></private>");
    assert_eq!(pd.hotdesk(), Some(&HotDesk::query_host("1001")));
}

#[test]
fn broken_private_content_is_an_error() {
    for bad in [
        "<private><v:a></private>",
        "<private><hd:guestAssociatedEvent xmlns:hd=\"urn:ctid:csta:hotdesk:1\"><hd:guest>1</hd:guest></hd:guestAssociatedEvent></private>",
    ] {
        let doc = format!("<PrivateEvent><monitorCrossRefID>1</monitorCrossRefID><privateData>{bad}</privateData></PrivateEvent>");
        assert!(decode(doc.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn broadsoft_not_ready_reason_is_decoded_encoded_and_carried_in_json() {
    let bs = "http://schema.broadsoft.com/CSTAPrivateData";
    // as BroadWorks writes it, with the prefix declared on <private>
    let pd = private_of(&format!(
        "<private xmlns:pri=\"{bs}\"><pri:AgentNotReadyReasonValue> 3 </pri:AgentNotReadyReasonValue></private>"
    ));
    assert_eq!(pd.not_ready_reason(), Some("3"));
    // without a namespace too (lenient), not in another one
    let pd =
        private_of("<private><AgentNotReadyReasonValue>7</AgentNotReadyReasonValue></private>");
    assert_eq!(pd.not_ready_reason(), Some("7"));
    let other =
        private_of("<private><v:AgentNotReadyReasonValue>7</v:AgentNotReadyReasonValue></private>");
    assert_eq!(other.not_ready_reason(), None);

    // SetAgentState carrying it encodes to what decodes back, in XML and JSON
    let msg = Message::SetAgentState(SetAgentState {
        device: "4001".into(),
        requested_agent_state: ReqAgentState::NotReady,
        agent_id: Some("agent7".into()),
        password: None,
        group: None,
        extensions: Some(Extensions::private(PrivateData::with_not_ready_reason(
            "12",
        ))),
    });
    let xml = String::from_utf8(encode(&msg, Edition::Ed3).unwrap()).unwrap();
    assert!(
        xml.contains(&format!("<private xmlns:pri=\"{bs}\"><pri:AgentNotReadyReasonValue>12</pri:AgentNotReadyReasonValue></private>")),
        "{xml}"
    );
    assert_eq!(decode(xml.as_bytes()).unwrap(), msg);
    let json = ctid_csta::json::to_json(&msg);
    assert_eq!(
        json["extensions"]["privateData"]["private"]["agentNotReadyReasonValue"], "12",
        "{json}"
    );
    assert_eq!(ctid_csta::json::from_json(&json).unwrap(), msg);
}
