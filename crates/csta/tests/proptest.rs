//! Property tests: typed values survive encode → decode in every edition (and the JSON form),
//! and the frame decoder reassembles frames however the byte stream is split, never panicking.
//!
//! Generated strings contain XML specials (`& < > " '`), `]]>`, non-ASCII and inner whitespace.
//! The decoder trims surrounding whitespace and treats an empty optional element as absent, so
//! text values are generated trimmed, and optional values are never blank.

use bytes::BytesMut;
use ctid_csta::frame::{decode_frame, encode_frame, FrameItem, MAX_FRAME_LEN};
use ctid_csta::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

// ------------------------------------------------------------------------------- strings

/// Characters that stress escaping and UTF-8 handling, plus plain ones.
const ALPHABET: &[char] = &[
    'a', 'Z', '0', '9', '-', '_', '.', ':', '/', '#', '&', '<', '>', '"', '\'', ';', ']', '=', '?',
    '!', ' ', '\t', '\n', 'é', 'ü', 'ß', 'Ω', '中', '文', '😀', '\u{a0}', '\u{2028}',
];

/// Only what XML (and quick-xml's trim_text) treats as whitespace.
fn xml_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// A text value as the decoder hands it back: trimmed, possibly empty (up to 24 characters:
/// both sides of CompactString's 24-byte inline limit).
fn text() -> BoxedStrategy<CompactString> {
    prop_oneof![
        vec(select(ALPHABET), 0..24)
            .prop_map(|v| xml_trim(&v.into_iter().collect::<String>()).into()),
        // entity-like and CDATA-like sequences that must survive as plain text
        select(
            &[
                "&amp;",
                "&lt;x&gt;",
                "]]>",
                "<![CDATA[x]]>",
                "a&#65;b",
                "<!-- c -->",
                "&unknown;"
            ][..]
        )
        .prop_map(CompactString::from),
        "[0-9]{1,6}".prop_map(CompactString::from),
    ]
    .boxed()
}

/// A text value that is not empty (required elements, values whose emptiness means absence).
fn text1() -> BoxedStrategy<CompactString> {
    text().prop_filter("non-empty", |s| !s.is_empty()).boxed()
}

/// An optional text element: absent or non-empty (an empty element decodes as absent).
fn opt_text() -> BoxedStrategy<Option<CompactString>> {
    option::of(text1()).boxed()
}

// ------------------------------------------------------------------------------- enums

/// Any enumeration value: a standard literal, or an arbitrary (unknown) literal kept verbatim.
/// Built through `parse`, so an arbitrary string that happens to be a literal is the variant.
macro_rules! enum_strategy {
    ($name:ident, $t:ty) => {
        fn $name() -> BoxedStrategy<$t> {
            prop_oneof![
                select(<$t>::LITERALS).prop_map(<$t>::parse),
                text1().prop_map(|s| <$t>::parse(&s)),
            ]
            .boxed()
        }
    };
}

enum_strategy!(local_connection_state, LocalConnectionState);
enum_strategy!(simple_call_state, SimpleCallState);
enum_strategy!(event_cause, EventCause);
enum_strategy!(req_agent_state, ReqAgentState);
enum_strategy!(monitor_type, MonitorType);
enum_strategy!(hotdesk_action, HotDeskAction);
enum_strategy!(hotdesk_state, HotDeskState);
enum_strategy!(operation_error, OperationError);
enum_strategy!(security_error, SecurityError);
enum_strategy!(state_incompatibility_error, StateIncompatibilityError);
enum_strategy!(system_resource_error, SystemResourceAvailabilityError);
enum_strategy!(
    subscribed_resource_error,
    SubscribedResourceAvailabilityError
);
enum_strategy!(performance_error, PerformanceManagementError);
enum_strategy!(private_data_info_error, PrivateDataInfoError);

#[test]
fn unknown_literals_are_generated() {
    // The strategies above must reach Other(..): an arbitrary string is rarely a literal.
    assert!(matches!(EventCause::parse("x&<y"), EventCause::Other(_)));
}

// ------------------------------------------------------------------------------- common types

fn connection_id() -> BoxedStrategy<ConnectionId> {
    (opt_text(), opt_text())
        .prop_map(|(call_id, device_id)| ConnectionId { call_id, device_id })
        .boxed()
}

fn device_ref() -> BoxedStrategy<DeviceRef> {
    prop_oneof![
        4 => text().prop_map(DeviceRef::Id),
        1 => Just(DeviceRef::NotKnown),
        1 => Just(DeviceRef::Restricted),
    ]
    .boxed()
}

fn redirection_device() -> BoxedStrategy<RedirectionDevice> {
    prop_oneof![
        text().prop_map(RedirectionDevice::NumberDialed),
        Just(RedirectionDevice::NotKnown),
        Just(RedirectionDevice::NotRequired),
        Just(RedirectionDevice::NotSpecified),
        Just(RedirectionDevice::Restricted),
    ]
    .boxed()
}

fn hotdesk() -> BoxedStrategy<HotDesk> {
    prop_oneof![
        (option::of(hotdesk_action()), opt_text(), opt_text()).prop_map(|(action, guest, host)| {
            HotDesk::Extension {
                action,
                guest,
                host,
            }
        }),
        (hotdesk_state(), text1(), text1()).prop_map(|(state, guest, host)| HotDesk::Event {
            state,
            guest,
            host
        }),
    ]
    .boxed()
}

/// Opaque private data: well-formed XML in a vendor namespace, with its declarations.
fn opaque() -> BoxedStrategy<PrivateContent> {
    let prefixes = select(&["", "pri", "scx", "v"][..]);
    let uris = select(
        &[
            "http://schema.broadsoft.com/CSTAPrivateData",
            "http://www.siemens.com/schema/csta",
            "urn:vendor:x&y",
            "urn:ünïcode",
        ][..],
    );
    (prefixes, uris, text(), text())
        .prop_map(|(prefix, uri, a, b)| {
            let el = if prefix.is_empty() {
                "data".to_string()
            } else {
                format!("{prefix}:data")
            };
            let mut esc = Vec::new();
            ctid_csta::xml::escape_into(&mut esc, &a, false);
            let a = String::from_utf8(esc).unwrap();
            let mut esc = Vec::new();
            ctid_csta::xml::escape_into(&mut esc, &b, true);
            let b = String::from_utf8(esc).unwrap();
            PrivateContent::Opaque {
                xml: format!("<{el} attr=\"{b}\">{a}<empty/></{el}>"),
                namespaces: vec![(prefix.to_string(), uri.to_string())],
            }
        })
        .boxed()
}

/// Private data that is not blank (blank = absent).
fn private_data() -> BoxedStrategy<PrivateData> {
    prop_oneof![
        3 => hotdesk().prop_map(HotDesk::into_private_data),
        1 => opaque().prop_map(PrivateData::Private),
        1 => "[0-9A-F]{2,16}".prop_map(PrivateData::String),
    ]
    .boxed()
}

fn extensions() -> BoxedStrategy<Option<Extensions>> {
    option::of(private_data().prop_map(Extensions::private)).boxed()
}

fn csta_error() -> BoxedStrategy<CstaError> {
    prop_oneof![
        operation_error().prop_map(CstaError::Operation),
        security_error().prop_map(CstaError::Security),
        state_incompatibility_error().prop_map(CstaError::StateIncompatibility),
        system_resource_error().prop_map(CstaError::SystemResourceAvailability),
        subscribed_resource_error().prop_map(CstaError::SubscribedResourceAvailability),
        performance_error().prop_map(CstaError::PerformanceManagement),
        private_data_info_error().prop_map(CstaError::PrivateData),
        text().prop_map(CstaError::PrivateErrorCode),
        Just(CstaError::Unspecified),
    ]
    .boxed()
}

fn local_call_state() -> BoxedStrategy<LocalCallState> {
    prop_oneof![
        vec(local_connection_state(), 0..4).prop_map(LocalCallState::Compound),
        simple_call_state().prop_map(LocalCallState::Simple),
        Just(LocalCallState::Unknown),
    ]
    .boxed()
}

// ------------------------------------------------------------------------------- messages

fn delivered_event() -> BoxedStrategy<Message> {
    let a = (
        text1(),
        connection_id(),
        option::of(device_ref()),
        option::of(device_ref()),
        option::of(device_ref()),
        option::of(redirection_device()),
        option::of(connection_id()),
    );
    let b = (
        option::of(local_connection_state()),
        opt_text(),
        option::of(event_cause()),
        option::of(device_ref()),
        option::of(device_ref()),
        option::of(device_ref()),
        option::of(device_ref()),
        extensions(),
    );
    (a, b)
        .prop_map(
            |((x, c, ad, cg, cd, lr, on), (lc, corr, cause, nc, nd, ac, acd, ext))| {
                DeliveredEvent {
                    monitor_cross_ref_id: x,
                    connection: c,
                    alerting_device: ad,
                    calling_device: cg,
                    called_device: cd,
                    last_redirection_device: lr,
                    originating_nid_connection: on,
                    local_connection_info: lc,
                    correlator_data: corr,
                    cause,
                    network_calling_device: nc,
                    network_called_device: nd,
                    associated_calling_device: ac,
                    associated_called_device: acd,
                    extensions: ext,
                }
                .into()
            },
        )
        .boxed()
}

fn set_agent_state() -> BoxedStrategy<Message> {
    (
        text1(),
        req_agent_state(),
        opt_text(),
        option::of("[0-9a-f]{2,8}"),
        opt_text(),
        extensions(),
    )
        .prop_map(|(device, st, agent_id, password, group, ext)| {
            SetAgentState {
                device,
                requested_agent_state: st,
                agent_id,
                password: password.map(CompactString::from),
                group,
                extensions: ext,
            }
            .into()
        })
        .boxed()
}

fn monitor_start() -> BoxedStrategy<Message> {
    let object = prop_oneof![
        text().prop_map(MonitorObject::Device),
        connection_id().prop_map(MonitorObject::Call),
    ];
    (object, option::of(monitor_type()), extensions())
        .prop_map(|(o, t, ext)| {
            MonitorStart {
                monitor_object: o,
                monitor_type: t,
                extensions: ext,
            }
            .into()
        })
        .boxed()
}

fn escape() -> BoxedStrategy<Message> {
    (opt_text(), option::of(private_data()), extensions())
        .prop_map(|(id, pd, ext)| {
            Escape {
                escape_register_id: id,
                private_data: pd,
                extensions: ext,
            }
            .into()
        })
        .boxed()
}

fn escape_response() -> BoxedStrategy<Message> {
    extensions()
        .prop_map(|ext| EscapeResponse { extensions: ext }.into())
        .boxed()
}

fn private_event() -> BoxedStrategy<Message> {
    (text1(), option::of(private_data()), extensions())
        .prop_map(|(x, pd, ext)| {
            PrivateEvent {
                monitor_cross_ref_id: x,
                private_data: pd,
                extensions: ext,
            }
            .into()
        })
        .boxed()
}

fn snapshot_device_response() -> BoxedStrategy<Message> {
    let info = (
        connection_id(),
        option::of(device_ref()),
        option::of(local_call_state()),
    )
        .prop_map(|(c, e, l)| SnapshotDeviceResponseInfo {
            connection_identifier: c,
            endpoint_device: e,
            local_call_state: l,
        });
    let result = prop_oneof![
        text().prop_map(SnapshotResult::ServiceCrossRefId),
        vec(info, 0..4).prop_map(SnapshotResult::Data),
    ];
    (result, extensions())
        .prop_map(|(r, ext)| {
            SnapshotDeviceResponse {
                cross_ref_id_or_snapshot_data: r,
                extensions: ext,
            }
            .into()
        })
        .boxed()
}

fn error_code() -> BoxedStrategy<Message> {
    csta_error()
        .prop_map(|e| CstaErrorCode::from(e).into())
        .boxed()
}

fn message() -> BoxedStrategy<Message> {
    prop_oneof![
        delivered_event(),
        set_agent_state(),
        monitor_start(),
        escape(),
        escape_response(),
        private_event(),
        snapshot_device_response(),
        error_code(),
    ]
    .boxed()
}

fn edition() -> BoxedStrategy<Edition> {
    select(&[Edition::Ed3, Edition::Ed4, Edition::Ed5, Edition::Ed6][..]).boxed()
}

/// encode → decode is the identity, and so is to_json → from_json.
fn assert_round_trip(msg: &Message, ed: Edition) -> Result<(), TestCaseError> {
    let xml = encode(msg, ed).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let shown = String::from_utf8_lossy(&xml).into_owned();
    let back = decode_with(&xml, &CodecOptions::default())
        .map_err(|e| TestCaseError::fail(format!("decode: {e}\n{shown}")))?;
    prop_assert_eq!(&back.message, msg, "{}", shown);
    let expect_ed = match msg.name() {
        n if n.ends_with("ApplicationSession") => None,
        _ => Some(ed),
    };
    prop_assert_eq!(back.edition, expect_ed);
    let json = json::to_json(msg);
    prop_assert_eq!(&json["message"], msg.name());
    let from = json::from_json(&json).map_err(|e| TestCaseError::fail(format!("json: {e}")))?;
    prop_assert_eq!(&from, msg, "{}", json);
    // JSON text too (what ctictl prints and reads).
    let again: serde_json::Value = serde_json::from_str(&json.to_string()).unwrap();
    prop_assert_eq!(again, json);
    Ok(())
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn messages_round_trip(msg in message(), ed in edition()) {
        assert_round_trip(&msg, ed)?;
    }

    #[test]
    fn connection_id_round_trips(c in connection_id(), ed in edition()) {
        let msg: Message = ClearConnection { connection_to_be_cleared: c, correlator_data: None, extensions: None }.into();
        assert_round_trip(&msg, ed)?;
    }

    #[test]
    fn device_ref_round_trips(d in device_ref(), ed in edition()) {
        // As an optional field: DeviceRef::Id("") is not blank and must come back as it was.
        let msg: Message = BackInServiceEvent { monitor_cross_ref_id: "1".into(), device: Some(d), cause: None, extensions: None }.into();
        assert_round_trip(&msg, ed)?;
    }

    #[test]
    fn hotdesk_round_trips_in_every_carrier(h in hotdesk(), ed in edition(), xref in text1()) {
        let pd = h.clone().into_private_data();
        let escape: Message = Escape { escape_register_id: None, private_data: Some(pd.clone()), extensions: None }.into();
        let resp: Message = EscapeResponse { extensions: Some(Extensions::private(pd.clone())) }.into();
        let ev: Message = PrivateEvent { monitor_cross_ref_id: xref, private_data: Some(pd), extensions: None }.into();
        for m in [escape, resp, ev] {
            assert_round_trip(&m, ed)?;
        }
        // and through a non-default dialect namespace configured on both sides
        let opts = CodecOptions { edition: ed, hotdesk_ns: "urn:example:hd&2".into() };
        let m: Message = Escape { escape_register_id: None, private_data: Some(h.clone().into_private_data()), extensions: None }.into();
        let xml = encode_with(&m, &opts).unwrap();
        prop_assert_eq!(decode_with(&xml, &opts).unwrap().message, m);
    }

    #[test]
    fn every_error_family_round_trips(e in csta_error(), ed in edition()) {
        let msg: Message = CstaErrorCode::from(e.clone()).into();
        assert_round_trip(&msg, ed)?;
        let xml = String::from_utf8(encode(&msg, ed).unwrap()).unwrap();
        // the family element is the standard's spelling
        let family = format!("<{}", e.family());
        prop_assert!(xml.contains(&family), "{}", xml);
    }

    #[test]
    fn text_values_survive_pretty_printing(dev in text1(), ed in edition()) {
        // A peer that pretty-prints: whitespace around every value is not part of it.
        let m: Message = MonitorStart { monitor_object: MonitorObject::Device(dev), monitor_type: None, extensions: None }.into();
        let xml = String::from_utf8(encode(&m, ed).unwrap()).unwrap();
        let pretty = xml.replace('>', ">\n  ").replace("<", "\n\t<").replacen("\n\t<?xml", "<?xml", 1);
        prop_assert_eq!(decode(pretty.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{pretty}")))?, m);
    }
}

// ------------------------------------------------------------------------------- frames

fn frame_payloads() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    vec((0u16..=9999, vec(any::<u8>(), 0..300)), 0..8)
}

/// Feed `chunks` one at a time, draining every frame each time; stop at framing loss.
fn feed(chunks: &[&[u8]]) -> (Vec<FrameItem>, bool, usize) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match decode_frame(&mut buf, MAX_FRAME_LEN) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(_) => return (out, true, buf.len()),
            }
        }
    }
    (out, false, buf.len())
}

fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts {
        out.push(&bytes[last..c]);
        last = c;
    }
    out.push(&bytes[last..]);
    out
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn valid_frames_come_back_intact_however_split(
        frames in frame_payloads(),
        points in vec(any::<usize>(), 0..20),
    ) {
        let mut stream = BytesMut::new();
        for (id, xml) in &frames {
            encode_frame(InvokeId::new(*id).unwrap(), xml, &mut stream).unwrap();
        }
        let (items, lost, left) = feed(&split_at_points(&stream, &points));
        prop_assert!(!lost);
        prop_assert_eq!(left, 0);
        prop_assert_eq!(items.len(), frames.len());
        for (item, (id, xml)) in items.iter().zip(&frames) {
            match item {
                FrameItem::Frame(f) => {
                    prop_assert_eq!(f.invoke_id.get(), *id);
                    prop_assert_eq!(&f.xml[..], &xml[..]);
                }
                other => prop_assert!(false, "skipped: {:?}", other),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_decoder(
        bytes in vec(any::<u8>(), 0..2000),
        points in vec(any::<usize>(), 0..20),
    ) {
        let (items, lost, left) = feed(&split_at_points(&bytes, &points));
        // Every byte is accounted for: consumed by items, left buffered, or the framing was lost.
        let consumed: usize = items.iter().map(|i| match i {
            FrameItem::Frame(f) => f.xml.len() + 8,
            FrameItem::Skipped { raw, .. } => raw.len(),
        }).sum();
        if !lost {
            prop_assert_eq!(consumed + left, bytes.len());
        }
        // Splitting does not change the outcome.
        let whole = feed(&[&bytes[..]]);
        prop_assert_eq!(whole.0, items);
        prop_assert_eq!(whole.1, lost);
    }

    #[test]
    fn good_and_bad_frames_interleaved(
        frames in vec((0u16..=9999, vec(any::<u8>(), 0..64), 0u8..4), 1..10),
        points in vec(any::<usize>(), 0..10),
    ) {
        // kind 0 = good, 1 = bad indicator, 2 = bad invoke ID, 3 = over the limit (limit 100)
        let mut stream = Vec::new();
        for (id, xml, kind) in &frames {
            let mut b = BytesMut::new();
            let body: Vec<u8> = if *kind == 3 { vec![b'x'; 100] } else { xml.clone() };
            encode_frame(InvokeId::new(*id).unwrap(), &body, &mut b).unwrap();
            match kind {
                1 => b[1] = 0x01,
                2 => b[5] = b'x',
                _ => {}
            }
            stream.extend_from_slice(&b);
        }
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for c in split_at_points(&stream, &points) {
            buf.extend_from_slice(c);
            while let Some(i) = decode_frame(&mut buf, 100).unwrap() {
                items.push(i);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(items.len(), frames.len());
        for (item, (id, xml, kind)) in items.iter().zip(&frames) {
            match (item, kind) {
                (FrameItem::Frame(f), 0) => {
                    prop_assert_eq!(f.invoke_id.get(), *id);
                    prop_assert_eq!(&f.xml[..], &xml[..]);
                }
                (FrameItem::Skipped { error: FrameError::Format { .. }, .. }, 1) => {}
                (FrameItem::Skipped { error: FrameError::InvokeId(_), .. }, 2) => {}
                (FrameItem::Skipped { error: FrameError::TooLarge { .. }, .. }, 3) => {}
                (other, k) => prop_assert!(false, "kind {}: {:?}", k, other),
            }
        }
    }

    #[test]
    fn decode_of_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_of_mutated_documents_never_panics(
        msg in message(),
        ed in edition(),
        edits in vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut xml = encode(&msg, ed).unwrap();
        for (at, b) in edits {
            let i = at % xml.len();
            xml[i] = b;
        }
        let _ = decode(&xml);
        xml.truncate(cut % (xml.len() + 1));
        let _ = decode(&xml);
    }
}
