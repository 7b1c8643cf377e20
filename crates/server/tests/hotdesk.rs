//! Hot desking end to end: ctid and csta-sim on 127.0.0.1:0, real sockets, clients through the
//! ctid-client library. Covers the association made before start-up, associations made and
//! cancelled at the phone, private services 1 and 2 with every error path, an unconfigured guest,
//! link loss and restore with re-learned associations, and one copy per client.

use std::time::Duration;

use ctid_client::Client;
use ctid_protocol::{AddressInfoType, Event, EventName, Request};

mod common;
use common::*;

async fn register(c: &mut Client, dn: &str) -> Event {
    let ev = c.request(Request::register_address(dn), T).await.unwrap();
    assert_eq!(ev.name, EventName::EventRegistered, "{ev:?}");
    ev
}

fn hd_request(guest: &str, id: u32, host: Option<&str>) -> Request {
    let mut r = Request::private_service(guest, id);
    if let Some(h) = host {
        r = r.with_extension("HOST_DN", h);
    }
    r
}

/// The next event that is not a link-status event, or None after `wait` of silence.
async fn next(c: &mut Client, wait: Duration) -> Option<Event> {
    c.next_event(wait).await.unwrap()
}

/// The next EventPrivateInfo, skipping the switch's side effects (forwarding, agent events).
async fn expect_private(c: &mut Client, id: u32, guest: &str, host: &str) -> Event {
    let ev = loop {
        let ev = next(c, T).await.expect("EventPrivateInfo");
        if ev.name == EventName::EventPrivateInfo {
            break ev;
        }
        assert!(
            matches!(
                ev.name,
                EventName::EventForwardSet | EventName::EventForwardCancel
            ),
            "{ev:?}"
        );
    };
    assert_eq!(
        (
            ev.private_msg_id,
            ev.this_dn.as_deref(),
            ev.other_dn.as_deref()
        ),
        (Some(id), Some(guest), Some(host)),
        "{ev:?}"
    );
    ev
}

async fn expect_silence(c: &mut Client) {
    if let Some(ev) = next(c, Duration::from_millis(400)).await {
        panic!("unexpected event {ev:?}");
    }
}

fn code(ev: &Event) -> Option<u32> {
    assert_eq!(ev.name, EventName::EventError, "{ev:?}");
    ev.error_code.map(|c| c.0)
}

#[tokio::test]
async fn association_made_before_start_up_is_reported_in_registered_and_address_info() {
    let r = rig().await;
    let mut c = r.client().await;
    let ev = register(&mut c, "2010").await;
    assert_eq!(ev.extension_str("HOST_DN"), Some("1010"));
    let q = c
        .request(Request::query_address("2010", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.name, EventName::EventAddressInfo);
    assert_eq!(q.extension_str("HOST_DN"), Some("1010"));
    // The host carries no HOST_DN; another guest carries none either.
    assert_eq!(
        register(&mut c, "1010").await.extension_str("HOST_DN"),
        None
    );
    assert_eq!(
        register(&mut c, "2001").await.extension_str("HOST_DN"),
        None
    );
}

#[tokio::test]
async fn unconfigured_guest_is_queried_at_first_registration() {
    // No DNs configured at all: 2010 and 2004 are unconfigured Extensions.
    let r = rig_with(|c| c.engine.dns.clear()).await;
    let mut c = r.client().await;
    let ev = register(&mut c, "2010").await;
    assert_eq!(ev.extension_str("HOST_DN"), Some("1010"));
    assert_eq!(ev.address_type, Some(ctid_protocol::AddressType::Dn));
    register(&mut c, "2004").await;
    let ok = c
        .request(hd_request("2004", 1, Some("1004")), T)
        .await
        .unwrap();
    assert_eq!(ok.name, EventName::EventPrivateInfo, "{ok:?}");
    let q = c
        .request(Request::query_address("2004", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.extension_str("HOST_DN"), Some("1004"));
    // An unconfigured DN of a type accept-dn-type refuses: 59.
    let mut req = Request::register_address("T100");
    req.address_type = Some(ctid_protocol::AddressType::Trunk);
    assert_eq!(code(&c.request(req, T).await.unwrap()), Some(59));
}

#[tokio::test]
async fn association_at_the_phone_reaches_guest_and_host_clients_once_each() {
    let r = rig().await;
    let (mut a, mut b, mut both) = (r.client().await, r.client().await, r.client().await);
    register(&mut a, "2001").await;
    register(&mut b, "1001").await;
    register(&mut both, "2001").await;
    register(&mut both, "1001").await;
    let mut twin = r.client().await; // a second client on the same DN as `a`
    register(&mut twin, "2001").await;

    r.sim.hotdesk_associate("2001", "1001").await.unwrap();
    for c in [&mut a, &mut b, &mut both, &mut twin] {
        let ev = expect_private(c, 1, "2001", "1001").await;
        assert_eq!(ev.reference_id, None);
    }
    // Forwarding side effects are not hot-desking events; skip them, but no second copy of 1.
    for c in [&mut a, &mut b, &mut both, &mut twin] {
        while let Some(ev) = next(c, Duration::from_millis(400)).await {
            assert_ne!(ev.name, EventName::EventPrivateInfo, "duplicate {ev:?}");
        }
    }
    let q = a
        .request(Request::query_address("2001", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.extension_str("HOST_DN"), Some("1001"));

    r.sim.hotdesk_cancel("2001").await.unwrap();
    for c in [&mut a, &mut b, &mut both, &mut twin] {
        let ev = loop {
            let ev = next(c, T).await.expect("EventPrivateInfo 2");
            if ev.name == EventName::EventPrivateInfo {
                break ev;
            }
        };
        assert_eq!(
            (
                ev.private_msg_id,
                ev.this_dn.as_deref(),
                ev.other_dn.as_deref()
            ),
            (Some(2), Some("2001"), Some("1001"))
        );
    }
    let q = a
        .request(Request::query_address("2001", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.extension_str("HOST_DN"), None);
}

#[tokio::test]
async fn private_services_succeed_and_others_see_one_unsolicited_copy() {
    let r = rig().await;
    let (mut a, mut b) = (r.client().await, r.client().await);
    register(&mut a, "2002").await;
    register(&mut b, "1002").await;
    let ev = a
        .request(hd_request("2002", 1, Some("1002")), T)
        .await
        .unwrap();
    assert_eq!(ev.name, EventName::EventPrivateInfo, "{ev:?}");
    assert!(ev.reference_id.is_some());
    assert_eq!(
        (ev.private_msg_id, ev.other_dn.as_deref()),
        (Some(1), Some("1002"))
    );
    let other = loop {
        let e = next(&mut b, T).await.unwrap();
        if e.name == EventName::EventPrivateInfo {
            break e;
        }
    };
    assert_eq!(other.reference_id, None);
    assert_eq!(other.event_sequence_number, ev.event_sequence_number);
    // The requester gets exactly one EventPrivateInfo.
    while let Some(e) = next(&mut a, Duration::from_millis(400)).await {
        assert_ne!(e.name, EventName::EventPrivateInfo, "second copy {e:?}");
    }
    assert_eq!(r.sim_host_of("2002").await.as_deref(), Some("1002"));

    let ev = a.request(hd_request("2002", 2, None), T).await.unwrap();
    assert_eq!(
        (ev.name, ev.private_msg_id, ev.other_dn.as_deref()),
        (EventName::EventPrivateInfo, Some(2), Some("1002"))
    );
    assert_eq!(r.sim_host_of("2002").await, None);
}

impl Rig {
    async fn sim_host_of(&self, guest: &str) -> Option<String> {
        let s = self.sim.snapshot().await;
        let text = s.to_string();
        // The snapshot lists associations; find ours without depending on its exact layout.
        let assoc = s
            .get("associations")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        match assoc {
            serde_json::Value::Array(v) => v.iter().find_map(|p| {
                let g = p
                    .get("guest")
                    .and_then(|x| x.as_str())
                    .or_else(|| p.get(0).and_then(|x| x.as_str()))?;
                if g != guest {
                    return None;
                }
                p.get("host")
                    .and_then(|x| x.as_str())
                    .or_else(|| p.get(1).and_then(|x| x.as_str()))
                    .map(str::to_string)
            }),
            serde_json::Value::Object(m) => {
                m.get(guest).and_then(|h| h.as_str()).map(str::to_string)
            }
            _ => panic!("snapshot has no associations: {text}"),
        }
    }
}

#[tokio::test]
async fn private_service_error_paths() {
    let r = rig_with(|c| {
        c.links[0].request_timeout = Duration::from_millis(700);
        c.engine.request_timeout_ms = 700;
    })
    .await;
    let mut a = r.client().await;
    // 41: not registered
    assert_eq!(
        code(
            &a.request(hd_request("2003", 1, Some("1003")), T)
                .await
                .unwrap()
        ),
        Some(41)
    );
    // 41: ModeMonitor
    let mut m = Request::register_address("2006");
    m.register_mode = Some(ctid_protocol::RegisterMode::Monitor);
    assert_eq!(
        a.request(m, T).await.unwrap().name,
        EventName::EventRegistered
    );
    let ev = a
        .request(hd_request("2006", 1, Some("1006")), T)
        .await
        .unwrap();
    assert_eq!(code(&ev), Some(41));
    assert!(ev.error_message.unwrap().contains("ModeMonitor"));
    register(&mut a, "2003").await;
    register(&mut a, "2004").await;
    // 53: HOST_DN missing, equal to ThisDN, ThisDN not an Extension
    assert_eq!(
        code(&a.request(hd_request("2003", 1, None), T).await.unwrap()),
        Some(53)
    );
    assert_eq!(
        code(
            &a.request(hd_request("2003", 1, Some("2003")), T)
                .await
                .unwrap()
        ),
        Some(53)
    );
    register(&mut a, "3001").await;
    assert_eq!(
        code(
            &a.request(hd_request("3001", 1, Some("1003")), T)
                .await
                .unwrap()
        ),
        Some(53)
    );
    // 51: unknown private service
    assert_eq!(
        code(&a.request(hd_request("2003", 3013, None), T).await.unwrap()),
        Some(51)
    );
    // 1151: unknown host at the switch
    let ev = a
        .request(hd_request("2003", 1, Some("9999")), T)
        .await
        .unwrap();
    assert_eq!(code(&ev), Some(1151));
    assert_eq!(
        ev.extension_str("CSTAError"),
        Some("operation/invalidDeviceID")
    );
    // 1161: cancel when not associated
    assert_eq!(
        code(&a.request(hd_request("2003", 2, None), T).await.unwrap()),
        Some(1161)
    );
    // success, then 1161: already associated; 1172: host taken by another guest
    assert_eq!(
        a.request(hd_request("2003", 1, Some("1003")), T)
            .await
            .unwrap()
            .name,
        EventName::EventPrivateInfo
    );
    let ev = a
        .request(hd_request("2003", 1, Some("1005")), T)
        .await
        .unwrap();
    assert_eq!(code(&ev), Some(1161));
    assert_eq!(
        ev.extension_str("CSTAError"),
        Some("stateIncompatibility/invalidObjectState")
    );
    let ev = a
        .request(hd_request("2004", 1, Some("1003")), T)
        .await
        .unwrap();
    assert_eq!(code(&ev), Some(1172));
    assert_eq!(
        ev.extension_str("CSTAError"),
        Some("systemResourceAvailibility/resourceBusy")
    );
    // 57: the Connector does not answer
    r.sim.set_stall(true).await;
    let ev = a
        .request(hd_request("2004", 1, Some("1004")), T)
        .await
        .unwrap();
    assert_eq!(code(&ev), Some(57));
    r.sim.set_stall(false).await;
    // 54: the link is down
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    r.wait_link("down").await;
    let ev = a
        .request(hd_request("2004", 1, Some("1004")), T)
        .await
        .unwrap();
    assert_eq!(code(&ev), Some(54));
    r.sim.set_stall(false).await;
}

#[tokio::test]
async fn link_loss_and_restore_relearn_associations() {
    let r = rig().await;
    let mut a = r.client().await;
    register(&mut a, "2007").await;
    register(&mut a, "2008").await;
    register(&mut a, "2010").await;
    assert_eq!(
        a.request(hd_request("2007", 1, Some("1007")), T)
            .await
            .unwrap()
            .name,
        EventName::EventPrivateInfo
    );
    // Drain the unsolicited side effects.
    while next(&mut a, Duration::from_millis(300)).await.is_some() {}

    // Keep the link down while the switch changes: stall the sim so sessions cannot start.
    r.sim.set_stall(true).await;
    r.sim.drop_connections().await;
    let ev = next(&mut a, T).await.unwrap();
    assert_eq!(ev.name, EventName::EventLinkDisconnected, "{ev:?}");
    assert_eq!(ev.error_code.map(|c| c.0), Some(54));
    // While down: registrations and queries are answered from the last known state ...
    let q = a
        .request(Request::query_address("2007", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.extension_str("HOST_DN"), Some("1007"));
    // ... and switch requests get 54 at once.
    assert_eq!(
        code(
            &a.request(hd_request("2008", 1, Some("1008")), T)
                .await
                .unwrap()
        ),
        Some(54)
    );
    // The people at the desks change things meanwhile.
    r.sim.hotdesk_cancel("2007").await.unwrap();
    r.sim.hotdesk_associate("2008", "1008").await.unwrap();
    r.sim.set_stall(false).await;

    // After restore: the changes, then EventLinkConnected.
    let mut seen = Vec::new();
    loop {
        let ev = next(&mut a, Duration::from_secs(10))
            .await
            .expect("events after restore");
        if ev.name == EventName::EventLinkConnected {
            break;
        }
        if ev.name == EventName::EventPrivateInfo {
            seen.push((
                ev.private_msg_id.unwrap(),
                ev.this_dn.clone().unwrap(),
                ev.other_dn.clone().unwrap(),
            ));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (1, "2008".to_string(), "1008".to_string()),
            (2, "2007".to_string(), "1007".to_string())
        ]
    );
    // The unchanged pre-start association is still there and still reported.
    let q = a
        .request(Request::query_address("2010", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.extension_str("HOST_DN"), Some("1010"));
    let q = a
        .request(Request::query_address("2008", AddressInfoType::DnStatus), T)
        .await
        .unwrap();
    assert_eq!(q.extension_str("HOST_DN"), Some("1008"));
    // And services work again.
    let ev = a.request(hd_request("2008", 2, None), T).await.unwrap();
    assert_eq!(ev.name, EventName::EventPrivateInfo);
    expect_silence_or_side_effects(&mut a).await;
}

/// Forwarding side effects may follow; no further hot-desking event may.
async fn expect_silence_or_side_effects(c: &mut Client) {
    while let Some(ev) = next(c, Duration::from_millis(400)).await {
        assert_ne!(ev.name, EventName::EventPrivateInfo, "{ev:?}");
    }
    let _ = expect_silence;
}

#[tokio::test]
async fn malformed_requests_get_event_error_and_the_connection_lives() {
    let r = rig().await;
    let mut a = r.client().await;
    for (text, want) in [
        ("not json", 53),
        (r#"{"request":"RequestNope","ReferenceID":1}"#, 51),
        (
            r#"{"request":"RequestRegisterAddress","ReferenceID":"x","ThisDN":"2001"}"#,
            53,
        ),
        (
            r#"{"request":"RequestRegisterAddress","ReferenceID":2,"ThisDN":17}"#,
            53,
        ),
        (
            r#"{"request":"RequestRegisterAddress","ReferenceID":3,"ThisDN":"bad dn!"}"#,
            53,
        ),
        (
            r#"{"request":"RequestMakeCall","ReferenceID":4,"ThisDN":"2001","OtherDN":"1001"}"#,
            41,
        ),
        (r#"{"request":"RequestRegisterAll","ReferenceID":5}"#, 51),
    ] {
        a.send_text(text.to_string()).await.unwrap();
        let ev = next(&mut a, T).await.unwrap();
        assert_eq!(code(&ev), Some(want), "{text}: {ev:?}");
    }
    register(&mut a, "2005").await;
    let info = a
        .request(
            Request::new(ctid_protocol::RequestName::RequestQueryServer),
            T,
        )
        .await
        .unwrap();
    assert_eq!(info.name, EventName::EventServerInfo);
    assert_eq!(info.extension_str("LinkStatus"), Some("LinkConnected"));
}
