//! The client library and `ctictl` against a small in-test ctid stand-in over a real WebSocket
//! on 127.0.0.1:0. The stand-in decodes requests with ctid-protocol and answers like ctid would:
//! EventLinkConnected (with a SessionID, as ctid's first frame has) on connect; an unsolicited
//! event before every answer (so correlation and buffering are exercised); EventRegistered,
//! EventUnregistered, EventAddressInfo, EventPrivateInfo, EventServerInfo or EventError. DN
//! "9999" is never answered.

use std::net::SocketAddr;
use std::time::Duration;

use ctid_client::{Client, Error};
use ctid_protocol::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

async fn start_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp));
        }
    });
    addr
}

async fn serve(tcp: tokio::net::TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let mut seq = 0u64;
    let mut out = |mut e: Event| {
        seq += 1;
        e.stamp(seq, format_time(std::time::SystemTime::now()));
        Message::text(e.to_json())
    };
    let mut link = Event::new(EventName::EventLinkConnected);
    link.session_id = Some("5f0c9a1e77d24b6c8e3f0a2b4c6d8e1f".into());
    if ws.send(out(link)).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let mut answers = Vec::new();
        match parse_request(text.as_str()) {
            Err(e) => answers.push(e.to_event()),
            Ok(req) => {
                if req.this_dn.as_deref() == Some("9999") {
                    continue;
                }
                // something unrelated first, without ReferenceID
                answers.push(Event::hot_desk(2, "7777", "7000"));
                answers.push(answer(&req));
                if req.name == RequestName::RequestRegisterAddress
                    && req.this_dn.as_deref() == Some("5001")
                {
                    answers.push(Event::new(EventName::EventDNDOn).with_this_dn("5001"));
                }
            }
        }
        for e in answers {
            if ws.send(out(e)).await.is_err() {
                return;
            }
        }
    }
}

fn answer(req: &Request) -> Event {
    let dn = req.this_dn.clone().unwrap_or_default();
    match req.name {
        RequestName::RequestRegisterAddress => {
            let mut e = Event::reply(EventName::EventRegistered, req)
                .with_extension("status", AddressStatus::Idle.as_str());
            e.info_type = Some(AddressInfoType::AddressType);
            e.info_status = Some(InfoStatus::AddressType(AddressType::Dn));
            e.address_type = Some(AddressType::Dn);
            if dn == "2010" {
                e = e.with_extension("HOST_DN", "1010");
            }
            e
        }
        RequestName::RequestUnregisterAddress => Event::reply(EventName::EventUnregistered, req),
        RequestName::RequestQueryAddress => {
            let mut e = Event::reply(EventName::EventAddressInfo, req)
                .with_extension("status", "AddressStatusIdle");
            e.info_type = req.info_type;
            e.info_status = Some(InfoStatus::Number(0));
            e
        }
        RequestName::RequestQueryServer => {
            Event::reply(EventName::EventServerInfo, req).with_extension("ServerVersion", "test")
        }
        RequestName::RequestPrivateService => {
            match (req.private_msg_id, req.extension_str("HOST_DN")) {
                (Some(1), Some("1002")) => Event::error_for(
                    req,
                    ErrorCode::CSTA_INVALID_OBJECT_STATE,
                    format!("hot desking: guest {dn} is already associated"),
                )
                .with_extension("CSTAError", "stateIncompatibility/invalidObjectState"),
                (Some(1), Some(host)) => {
                    Event::hot_desk(1, dn, host).with_reference_id(req.reference_id)
                }
                (Some(1), None) => {
                    Event::error_for(req, ErrorCode::INVALID_ATTR, "HOST_DN missing")
                }
                (Some(2), _) => Event::hot_desk(2, dn, "1001").with_reference_id(req.reference_id),
                _ => Event::error_for(req, ErrorCode::UNSUP_OPER, "PrivateMsgID not supported"),
            }
        }
        other => Event::error_for(req, ErrorCode::UNSUP_OPER, format!("{other} not supported")),
    }
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

#[tokio::test]
async fn request_answer_correlation_keeps_other_events_in_order() {
    let addr = start_server().await;
    let mut c = Client::connect(&url(addr)).await.unwrap();

    let reg = c
        .request(Request::register_address("2010"), T)
        .await
        .unwrap();
    assert_eq!(reg.name, EventName::EventRegistered);
    assert_eq!(reg.reference_id, Some(1));
    assert_eq!(reg.this_dn.as_deref(), Some("2010"));
    assert_eq!(reg.extension_str("HOST_DN"), Some("1010"));

    let mut req = Request::private_service("2001", 1).with_extension("HOST_DN", "1001");
    let id = c.send(&mut req).await.unwrap();
    assert_eq!((id, req.reference_id), (2, Some(2)));
    let e = c
        .wait_for(T, "RequestPrivateService", id, |e| {
            e.reference_id == Some(id)
        })
        .await
        .unwrap()
        .event;
    assert_eq!(
        e.to_json()
            .split(",\"EventSequenceNumber\"")
            .next()
            .unwrap(),
        r#"{"event":"EventPrivateInfo","ReferenceID":2,"ThisDN":"2001","OtherDN":"1001","PrivateMsgID":1"#
    );

    // Everything that was not an answer is still there, in arrival order.
    let mut seen = Vec::new();
    while let Some(e) = c.next_event(Duration::from_millis(200)).await.unwrap() {
        seen.push((e.name, e.this_dn.clone(), e.event_sequence_number));
    }
    assert_eq!(
        seen,
        vec![
            (EventName::EventLinkConnected, None, 1),
            (EventName::EventPrivateInfo, Some("7777".into()), 2),
            (EventName::EventPrivateInfo, Some("7777".into()), 4),
        ]
    );
    c.close().await.unwrap();
}

#[tokio::test]
async fn errors_timeouts_and_explicit_reference_ids() {
    let addr = start_server().await;
    let mut c = Client::connect(&url(addr)).await.unwrap();

    let e = c
        .request(
            Request::private_service("2001", 1).with_extension("HOST_DN", "1002"),
            T,
        )
        .await
        .unwrap();
    assert!(e.is_error());
    assert_eq!(e.error_code, Some(ErrorCode(1161)));
    assert_eq!(
        e.extension_str("CSTAError"),
        Some("stateIncompatibility/invalidObjectState")
    );

    let e = c
        .request(
            Request::new(RequestName::RequestQueryServer).with_reference_id(4242),
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        (e.name, e.reference_id),
        (EventName::EventServerInfo, Some(4242))
    );

    let err = c
        .request(
            Request::register_address("9999"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                reference_id: 2,
                ..
            }
        ),
        "{err}"
    );

    // a malformed frame gets EventError 53 without ReferenceID
    c.send_text("{\"request\":".into()).await.unwrap();
    let e = c
        .wait_for(T, "garbage", 0, |e| {
            e.is_error() && e.reference_id.is_none()
        })
        .await
        .unwrap()
        .event;
    assert_eq!(e.error_code, Some(ErrorCode::INVALID_ATTR));
}

#[tokio::test]
async fn server_going_away_is_reported_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.close(None).await.unwrap();
    });
    let mut c = Client::connect(&url(addr)).await.unwrap();
    let e = c.next_event(T).await.unwrap().unwrap();
    assert_eq!(e.name, EventName::EventServerDisconnected);
    assert!(matches!(c.next_event(T).await, Err(Error::Closed)));
    assert!(matches!(
        c.request(Request::register_address("1"), T).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn connect_error_names_the_url() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = Client::connect(&url(addr)).await.err().unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to ws://{addr}/ws")),
        "{err}"
    );
}

// ----- ctictl -----

async fn ctictl(addr: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctictl"))
        .arg("--server")
        .arg(url(addr))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctictl_commands() {
    let addr = start_server().await;

    let (rc, out, err) = ctictl(addr, &["register", "2010", "2011"]).await;
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out,
        "EventRegistered ThisDN=2010 AddressType=AddressTypeDN status=AddressStatusIdle HOST_DN=1010\n\
         EventRegistered ThisDN=2011 AddressType=AddressTypeDN status=AddressStatusIdle\n"
    );

    let (rc, out, err) = ctictl(
        addr,
        &["hotdesk", "initiate", "--guest", "2001", "--host", "1001"],
    )
    .await;
    assert_eq!(
        (rc, out.as_str()),
        (
            0,
            "EventPrivateInfo ThisDN=2001 OtherDN=1001 PrivateMsgID=1\n"
        ),
        "{err}"
    );

    let (rc, out, _) = ctictl(addr, &["--json", "hotdesk", "cancel", "--guest", "2001"]).await;
    assert_eq!(rc, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with(r#"{"event":"EventPrivateInfo","ReferenceID":2,"ThisDN":"2001","OtherDN":"1001","PrivateMsgID":2,"EventSequenceNumber":"#), "{out}");

    let (rc, out, _) = ctictl(
        addr,
        &["hotdesk", "initiate", "--guest", "2001", "--host", "1002"],
    )
    .await;
    assert_eq!(rc, 1);
    assert_eq!(out, "EventError ThisDN=2001 ErrorCode=1161 ErrorMessage=\"hot desking: guest 2001 is already associated\" CSTAError=stateIncompatibility/invalidObjectState\n");

    let (rc, out, _) = ctictl(addr, &["query", "2010"]).await;
    assert_eq!((rc, out.as_str()), (0, "EventAddressInfo ThisDN=2010 InfoType=AddressInfoDNStatus InfoStatus=0 status=AddressStatusIdle\n"));

    let (rc, out, _) = ctictl(addr, &["unregister", "2010"]).await;
    assert_eq!((rc, out.as_str()), (0, "EventUnregistered ThisDN=2010\n"));

    let (rc, out, _) = ctictl(
        addr,
        &["--json", "send", r#"{"request":"RequestQueryServer"}"#],
    )
    .await;
    assert_eq!(rc, 0);
    assert!(
        out.starts_with(r#"{"event":"EventServerInfo","ReferenceID":1,"#),
        "{out}"
    );

    let (rc, out, _) = ctictl(
        addr,
        &["send", r#"{"request":"RequestFoo","ReferenceID":77}"#],
    )
    .await;
    assert_eq!(
        (rc, out.as_str()),
        (
            1,
            "EventError ErrorCode=51 ErrorMessage=\"unknown request \\\"RequestFoo\\\"\"\n"
        )
    );

    let (rc, out, _) = ctictl(addr, &["send", "not json"]).await;
    assert_eq!(rc, 1);
    assert!(
        out.starts_with("EventError ErrorCode=53 ErrorMessage=\"invalid JSON"),
        "{out}"
    );

    let (rc, out, err) = ctictl(addr, &["--timeout", "0.3", "register", "9999"]).await;
    assert_eq!((rc, out.as_str()), (1, ""));
    assert!(err.contains("timeout"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctictl_watch() {
    let addr = start_server().await;
    let (rc, out, err) = ctictl(addr, &["watch", "5001", "--count", "1"]).await;
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        out,
        "EventLinkConnected SessionID=5f0c9a1e77d24b6c8e3f0a2b4c6d8e1f\n\
         EventPrivateInfo ThisDN=7777 OtherDN=7000 PrivateMsgID=2\n\
         EventRegistered ThisDN=5001 AddressType=AddressTypeDN status=AddressStatusIdle\n\
         EventDNDOn ThisDN=5001\n"
    );
    // silence before the count is reached: exit 1
    let (rc, _, err) = ctictl(addr, &["watch", "5001", "--count", "2", "--timeout", "0.3"]).await;
    assert_eq!(rc, 1);
    assert!(err.contains("1 of 2 events"), "{err}");
    // no count: silence ends the watch normally
    let (rc, out, _) = ctictl(addr, &["--json", "watch", "--timeout", "0.3"]).await;
    assert_eq!(rc, 0);
    assert!(
        out.starts_with(r#"{"event":"EventLinkConnected","SessionID":"5f0c9a1e77d24b6c8e3f0a2b4c6d8e1f","EventSequenceNumber":1,"time":""#),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctictl_usage_and_connection_errors_exit_2() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (rc, _, err) = ctictl(addr, &["register", "5001"]).await;
    assert_eq!(rc, 2);
    assert!(err.starts_with("ctictl: cannot connect to"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (rc, _, _) = ctictl(addr, &["hotdesk", "initiate", "--guest", "1"]).await;
    assert_eq!(rc, 2);
    let (rc, _, _) = ctictl(addr, &["frobnicate"]).await;
    assert_eq!(rc, 2);
}
